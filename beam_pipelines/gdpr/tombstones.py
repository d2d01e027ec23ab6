"""Tombstones: the pseudonyms of erased subjects' identifiers, in ``gdpr_tombstones``.

Ingestion, replays, backfills and restores drop every record that carries a tombstoned value,
so an erasure cannot be undone by reprocessing old input. Only pseudonyms are kept: the table
says nothing about whom it holds to anyone without the pseudonym keys.
"""

from __future__ import annotations

import dataclasses

from beam_pipelines.gdpr.pseudonym import pseudonymise
from beam_pipelines.gdpr.secrets import KeyRing
from beam_pipelines.gdpr.secrets import SecretsError
from beam_pipelines.io.postgres import ident

__all__ = ['Tombstones', 'add_tombstones', 'load_tombstones']


@dataclasses.dataclass(frozen=True)
class Tombstones:
    """A set of tombstoned pseudonyms, and the matching of plain values against it."""

    pseudonyms: frozenset[str]

    @property
    def key_ids(self) -> set[str]:
        return {p.split('_', 1)[0] for p in self.pseudonyms}

    def check_keys(self, ring: KeyRing) -> None:
        """Raises when a tombstone was made with a key the ring lacks: it could not be
        enforced, and erased data would come back."""
        missing = self.key_ids - set(ring.keys)
        if missing:
            raise SecretsError(
                f'tombstones use pseudonym keys {sorted(missing)} that the secrets lack; '
                'restore those keys (retired keys must stay while tombstones use them)'
            )

    def matches(self, value: str, ring: KeyRing) -> bool:
        """Whether a plain value (or a pseudonym) is tombstoned."""
        if value in self.pseudonyms:
            return True
        return any(pseudonymise(value, ring, kid) in self.pseudonyms for kid in self.key_ids)

    def __bool__(self) -> bool:
        return bool(self.pseudonyms)


def load_tombstones(conn, schema: str) -> Tombstones:
    with conn.cursor() as cur:
        cur.execute(f'SELECT pseudonym FROM {ident(schema)}.gdpr_tombstones')
        return Tombstones(frozenset(row[0] for row in cur.fetchall()))


def add_tombstones(cur, schema: str, pseudonyms: list[str], request_id: str) -> int:
    cur.executemany(
        f'INSERT INTO {ident(schema)}.gdpr_tombstones (pseudonym, request_id) VALUES (%s, %s) '
        'ON CONFLICT (pseudonym) DO NOTHING',
        [(p, request_id) for p in sorted(set(pseudonyms))],
    )
    return len(set(pseudonyms))
