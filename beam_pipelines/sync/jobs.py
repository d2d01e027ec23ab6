"""The sync-job record: one ``sync_jobs`` row per run (warehouse migration 5), and the lock that
keeps two runs of one sync from overlapping.

A sync's committed position is the ``watermark_to`` of its latest succeeded job in the same
mode (a timestamp in watermark mode, an LSN in CDC mode). Failed runs are recorded too, with
their counts so far and the error (credentials masked), but move nothing forward.
"""

from __future__ import annotations

import datetime as dt
from typing import Any

from beam_pipelines.io.postgres import ident

__all__ = ['JobLog', 'JobsTableMissing']

_FIELDS = (
    'status',
    'finished_at',
    'rows_read',
    'rows_written',
    'rows_failed',
    'watermark_to',
    'lag_secs',
    'error',
)


class JobsTableMissing(ValueError):
    """The jobs schema has no ``sync_jobs`` table (the warehouse is not migrated)."""


class JobLog:
    """Reads and writes ``schema.sync_jobs`` through an autocommit connection.

    Raises:
        JobsTableMissing: no ``sync_jobs`` in ``schema``.
    """

    def __init__(self, conn, schema: str):
        conn.autocommit = True
        self._conn = conn
        self._table = f'{ident(schema)}.sync_jobs'
        with conn.cursor() as cur:
            cur.execute('SELECT to_regclass(%s)', (self._table,))
            if cur.fetchone()[0] is None:
                raise JobsTableMissing(
                    f'no sync_jobs table in schema {schema!r} of the source database: migrate '
                    f'the warehouse first (python -m beam_pipelines.warehouse migrate '
                    f'--postgres_url URL --pg_schema {schema}), or pass --jobs_schema'
                )

    def lock(self, name: str) -> bool:
        """Takes the sync's session lock (held until the connection closes); False if taken."""
        with self._conn.cursor() as cur:
            cur.execute('SELECT pg_try_advisory_lock(hashtext(%s))', (f'bp_sync:{name}',))
            return cur.fetchone()[0]

    def committed(self, name: str, mode: str) -> str | None:
        """The ``watermark_to`` of the sync's latest succeeded job in ``mode`` (None: none)."""
        with self._conn.cursor() as cur:
            cur.execute(
                f'SELECT watermark_to FROM {self._table} WHERE name = %s AND mode = %s '
                "AND status = 'succeeded' ORDER BY started_at DESC LIMIT 1",
                (name, mode),
            )
            row = cur.fetchone()
        return row[0] if row else None

    def start(
        self,
        job_id: str,
        name: str,
        source: str,
        destination: str,
        mode: str,
        watermark_from: str | None,
    ) -> None:
        with self._conn.cursor() as cur:
            cur.execute(
                f'INSERT INTO {self._table} (job_id, name, source, destination, mode, '
                'started_at, status, watermark_from) '
                "VALUES (%s, %s, %s, %s, %s, %s, 'running', %s)",
                (job_id, name, source, destination, mode, _now(), watermark_from),
            )

    def finish(self, job_id: str, **fields: Any) -> None:
        """Records the outcome (``status`` and any of the counts, watermark, lag, error)."""
        unknown = set(fields) - set(_FIELDS)
        if unknown:
            raise ValueError(f'not sync_jobs fields: {sorted(unknown)}')
        fields.setdefault('finished_at', _now())
        sets = ', '.join(f'{ident(k)} = %s' for k in fields)
        with self._conn.cursor() as cur:
            cur.execute(
                f'UPDATE {self._table} SET {sets} WHERE job_id = %s', (*fields.values(), job_id)
            )


def _now() -> dt.datetime:
    return dt.datetime.now(dt.UTC)
