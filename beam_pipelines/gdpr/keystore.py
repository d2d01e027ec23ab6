"""The key store: per-subject data keys, wrapped by a master key, in ``gdpr_keys``.

A subject's row is keyed by its pseudonym (never its plain id). Deleting the row is the
crypto-shredding step of an erasure; backups leave the table out, so no copy of a key outlives
it (:mod:`beam_pipelines.backup`).
"""

from __future__ import annotations

import logging

from beam_pipelines.gdpr import crypto
from beam_pipelines.gdpr.secrets import KeyRing
from beam_pipelines.io.postgres import ident

__all__ = ['KeyStore']

_LOGGER = logging.getLogger(__name__)


class KeyStore:
    """Data keys of subjects in ``{schema}.gdpr_keys``, through one connection.

    Args:
        conn: a psycopg2 connection (the caller commits).
        schema: the warehouse schema holding ``gdpr_keys``.
        master_keys: the ring that wraps the keys (None: only :meth:`delete`).
    """

    def __init__(self, conn, schema: str, master_keys: KeyRing | None):
        self._conn = conn
        self._table = f'{ident(schema)}.gdpr_keys'
        self._master = master_keys

    def keys_for(self, subjects: list[str], create: bool = True) -> dict[str, bytes]:
        """The data keys of ``subjects``; with ``create``, new subjects get a new key.

        Concurrent writers agree: a key is inserted only if none exists, then read back.
        """
        wanted = sorted(set(subjects))
        if not wanted:
            return {}
        with self._conn.cursor() as cur:
            if create:
                rows = []
                for subject in wanted:
                    wrapped = crypto.wrap_key(
                        crypto.new_data_key(), self._master.active_key, subject
                    )
                    rows.append((subject, self._master.active, wrapped))
                cur.executemany(
                    f'INSERT INTO {self._table} (subject, master_key_id, wrapped_key) '
                    'VALUES (%s, %s, %s) ON CONFLICT (subject) DO NOTHING',
                    rows,
                )
            cur.execute(
                f'SELECT subject, master_key_id, wrapped_key FROM {self._table} '
                'WHERE subject = ANY(%s)',
                (wanted,),
            )
            found = cur.fetchall()
        keys = {}
        for subject, kid, wrapped in found:
            if kid not in self._master.keys:
                raise crypto.CryptoError(
                    f'a data key is wrapped by master key {kid!r}, which the secrets lack'
                )
            keys[subject] = crypto.unwrap_key(bytes(wrapped), self._master.keys[kid], subject)
        return keys

    def delete(self, subjects: list[str]) -> int:
        """Deletes the keys of ``subjects`` (shredding their encrypted data); returns how many."""
        with self._conn.cursor() as cur:
            cur.execute(f'DELETE FROM {self._table} WHERE subject = ANY(%s)', (list(subjects),))
            return cur.rowcount

    def rewrap(self) -> int:
        """Re-wraps every key not wrapped by the active master key; returns how many."""
        with self._conn.cursor() as cur:
            cur.execute(
                f'SELECT subject, master_key_id, wrapped_key FROM {self._table} '
                'WHERE master_key_id <> %s FOR UPDATE',
                (self._master.active,),
            )
            rows = cur.fetchall()
            for subject, kid, wrapped in rows:
                if kid not in self._master.keys:
                    raise crypto.CryptoError(f'master key {kid!r} is not in the secrets')
                key = crypto.unwrap_key(bytes(wrapped), self._master.keys[kid], subject)
                cur.execute(
                    f'UPDATE {self._table} SET master_key_id = %s, wrapped_key = %s '
                    'WHERE subject = %s',
                    (
                        self._master.active,
                        crypto.wrap_key(key, self._master.active_key, subject),
                        subject,
                    ),
                )
        _LOGGER.info('re-wrapped %d data keys with master key %s', len(rows), self._master.active)
        return len(rows)
