"""Tombstones enforced on data that comes back from outside the pipelines: a restored backup.

A backup taken before an erasure still holds the subject's rows (pseudonymised, or raw in dead
letters). A restore must not resurrect them, so after loading, and in the restore's own
transaction, every restored value that a tombstone names is found and its rows are deleted, in
the warehouse and in the restored files. Tombstones come from the restored ``gdpr_tombstones``
table and from the archive's tombstone log (``<archive>/tombstones/``, written by ``gdpr erase
--archive``), which also covers erasures made after the backup was taken.

Tombstones are keyed digests, so finding what they name means hashing the candidate values: the
subject columns and attribute values of the warehouse, and every string value of the files.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable

import orjson
from apache_beam.io.filesystems import FileSystems

from beam_pipelines.backup.archive import list_files
from beam_pipelines.gdpr.matching import payload_values
from beam_pipelines.gdpr.secrets import KeyRing
from beam_pipelines.gdpr.secrets import SecretsError
from beam_pipelines.gdpr.stores import files as file_store
from beam_pipelines.gdpr.tombstones import Tombstones
from beam_pipelines.gdpr.tombstones import load_tombstones
from beam_pipelines.io.postgres import ident

__all__ = ['TOMBSTONE_LOG', 'TombstoneEnforcer', 'log_tombstones', 'read_tombstone_log']

_LOGGER = logging.getLogger(__name__)
TOMBSTONE_LOG = 'tombstones'


def log_tombstones(archive: str, request_id: str, stones: list[str]) -> str:
    """Writes an erasure's tombstones to the archive's log; returns the file's path."""
    path = FileSystems.join(archive.rstrip('/'), TOMBSTONE_LOG, f'{request_id}.json')
    with FileSystems.create(path) as f:
        f.write(orjson.dumps({'request_id': request_id, 'tombstones': sorted(stones)}))
    return path


def read_tombstone_log(archive: str) -> dict[str, str]:
    """Every tombstone the archive's log holds, with its request id."""
    pattern = FileSystems.join(archive.rstrip('/'), TOMBSTONE_LOG, '*.json')
    out = {}
    for meta in FileSystems.match([pattern])[0].metadata_list:
        with FileSystems.open(meta.path) as f:
            record = orjson.loads(f.read())
        out.update({t: record['request_id'] for t in record['tombstones']})
    return out


def _matched(values: Iterable[str], tombstones: Tombstones, ring: KeyRing) -> list[str]:
    return sorted({v for v in values if v and tombstones.matches(v, ring)})


class TombstoneEnforcer:
    """The ``after_restore`` hook of :func:`beam_pipelines.backup.restore.restore`.

    Also the core of ``gdpr enforce``, which runs it on the live stores.

    Args:
        ring: the pseudonym keys (None: refuse when there are tombstones to enforce).
        archive: the archive whose tombstone log is applied too (None: only the tables').
        tombstone_conn, tombstone_schema: another store whose tombstones apply too (the live
            GDPR store, when restoring; the pipelines' own store, when it is not the
            warehouse).
    """

    def __init__(
        self,
        ring: KeyRing | None,
        archive: str | None = None,
        tombstone_conn=None,
        tombstone_schema: str | None = None,
    ):
        self._ring = ring
        self._archive = archive
        self._other = (tombstone_conn, tombstone_schema) if tombstone_conn is not None else None
        self.tombstones = Tombstones(frozenset())

    def __call__(self, conn, schema: str, output_dirs) -> dict:
        s = ident(schema)
        logged = read_tombstone_log(self._archive) if self._archive else {}
        with conn.cursor() as cur:
            cur.executemany(
                f'INSERT INTO {s}.gdpr_tombstones (pseudonym, request_id) VALUES (%s, %s) '
                'ON CONFLICT (pseudonym) DO NOTHING',
                sorted(logged.items()),
            )
        tombstones = load_tombstones(conn, schema)
        if self._other is not None:
            other = load_tombstones(*self._other)
            tombstones = Tombstones(tombstones.pseudonyms | other.pseudonyms)
        self.tombstones = tombstones
        if not tombstones:
            return {'tombstones': 0}
        if self._ring is None:
            raise SecretsError(
                f'the restored data is subject to {len(tombstones.pseudonyms)} tombstones: pass '
                'the GDPR secrets (--gdpr_secrets_file or $BP_GDPR_SECRETS) to enforce them'
            )
        tombstones.check_keys(self._ring)
        report = {'tombstones': len(tombstones.pseudonyms), 'from_log': len(logged)}
        report['postgres'] = self._warehouse(conn, s, tombstones)
        roots = [str(d) for d in output_dirs or ()]
        if roots:
            values = set()
            for root in roots:
                for path in list_files(root):
                    values |= file_store.file_values(path)
            matched = _matched(values, tombstones, self._ring)
            report['files'] = file_store.erase_matching(roots, matched) if matched else {}
        _LOGGER.info('tombstones enforced on the restore: %s', report)
        return report

    def _warehouse(self, conn, s: str, tombstones: Tombstones) -> dict[str, int]:
        counts = {}
        with conn.cursor() as cur:
            cur.execute(
                f'SELECT entity_id FROM {s}.events UNION SELECT a.value FROM {s}.events, '
                f'jsonb_each_text(attributes) a UNION SELECT entity_id FROM {s}.aggregates '
                f'UNION SELECT entity_id FROM {s}.anomalies'
            )
            matched = _matched((r[0] for r in cur.fetchall()), tombstones, self._ring)
            cur.execute(
                f'DELETE FROM {s}.events WHERE entity_id = ANY(%(m)s) OR EXISTS (SELECT 1 FROM '
                'jsonb_each_text(attributes) a WHERE a.value = ANY(%(m)s))',
                {'m': matched},
            )
            counts['events'] = cur.rowcount
            for table in ('aggregates', 'anomalies'):
                cur.execute(f'DELETE FROM {s}.{table} WHERE entity_id = ANY(%s)', (matched,))
                counts[table] = cur.rowcount
            cur.execute(f'SELECT id, payload, payload_encoding FROM {s}.dead_letters')
            dead = [
                row_id
                for row_id, payload, encoding in cur.fetchall()
                if any(
                    tombstones.matches(v, self._ring)
                    for v in set(payload_values({'payload': payload, 'payload_encoding': encoding}))
                )
            ]
            cur.execute(f'DELETE FROM {s}.dead_letters WHERE id = ANY(%s)', (dead,))
            counts['dead_letters'] = cur.rowcount
        return counts
