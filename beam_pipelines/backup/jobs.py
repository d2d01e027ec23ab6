"""The ``backup_jobs`` table: one row per backup, written as it starts, succeeds or fails.

Each write commits on its own (the connection is not the dump's), so a crashed backup still
leaves its ``running`` or ``failed`` row behind. Errors are stored with credentials removed.
"""

from __future__ import annotations

import datetime as dt
import logging

from psycopg2 import sql

from beam_pipelines.backup.manifest import Manifest

__all__ = [
    'FAILED',
    'PRUNED',
    'RUNNING',
    'SUCCEEDED',
    'fail',
    'mark_pruned',
    'start',
    'statuses',
    'succeed',
]

_LOGGER = logging.getLogger(__name__)

RUNNING = 'running'
SUCCEEDED = 'succeeded'
FAILED = 'failed'
PRUNED = 'pruned'


def _execute(conn, schema: str, statement: str, params: tuple) -> int:
    """Runs one statement on ``{jobs}`` (the schema's backup_jobs) and commits it.

    Returns:
        The rows it touched.
    """
    table = sql.SQL('{}.backup_jobs').format(sql.Identifier(schema))
    with conn, conn.cursor() as cur:
        cur.execute(sql.SQL(statement).format(jobs=table), params)
        return cur.rowcount


def start(
    conn,
    schema: str,
    backup_id: str,
    mode: str,
    parent_id: str | None,
    archive_root: str,
    started_at: dt.datetime,
) -> None:
    _execute(
        conn,
        schema,
        'INSERT INTO {jobs} (backup_id, mode, parent_id, archive, started_at, status) '
        'VALUES (%s, %s, %s, %s, %s, %s)',
        (backup_id, mode, parent_id, archive_root, started_at, RUNNING),
    )


def succeed(conn, schema: str, manifest: Manifest, watermark: dt.datetime) -> None:
    _execute(
        conn,
        schema,
        'UPDATE {jobs} SET status = %s, finished_at = clock_timestamp(), watermark = %s, '
        'rows = %s, bytes = %s, manifest = %s::jsonb, error = NULL WHERE backup_id = %s',
        (
            SUCCEEDED,
            watermark,
            manifest.rows,
            manifest.bytes,
            manifest.to_json().decode(),
            manifest.backup_id,
        ),
    )


def fail(conn, schema: str, backup_id: str, error: str) -> None:
    """Marks a backup failed; the error must already be free of credentials."""
    _execute(
        conn,
        schema,
        'UPDATE {jobs} SET status = %s, finished_at = clock_timestamp(), error = %s '
        'WHERE backup_id = %s',
        (FAILED, error, backup_id),
    )


def statuses(conn, schema: str, backup_ids: list[str]) -> dict[str, str]:
    table = sql.SQL('{}.backup_jobs').format(sql.Identifier(schema))
    with conn, conn.cursor() as cur:
        cur.execute(
            sql.SQL('SELECT backup_id, status FROM {} WHERE backup_id = ANY(%s)').format(table),
            (list(backup_ids),),
        )
        return dict(cur.fetchall())


def mark_pruned(conn, schema: str, backup_ids: list[str]) -> int:
    """Returns:
    How many job rows were marked."""
    if not backup_ids:
        return 0
    return _execute(
        conn,
        schema,
        'UPDATE {jobs} SET status = %s WHERE backup_id = ANY(%s)',
        (PRUNED, list(backup_ids)),
    )
