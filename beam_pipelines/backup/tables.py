"""Warehouse tables in and out of the archive: catalog, safe watermark, COPY dumps and loads.

Which tables: every table of the schema, found in the catalog, except :data:`EXCLUDED_TABLES`.
The list is explicit because leaving ``gdpr_keys`` out is a promise, not an accident (see there).

Incremental dumps take the rows of the snapshot whose ``loaded_at`` (moved by a trigger on every
update, see migration 5) is at or after the parent's watermark ``to``. The watermark of a backup is
a time every row stamped before it is known to be in the snapshot (see :func:`safe_upper_bound`);
rows stamped later may be in flight, so the next backup starts there. Rows of the snapshot
stamped after the watermark are taken too, so a restore is the snapshot's state, not an older
one; the next incremental takes them again, which the restore's replace-by-key absorbs.

Tables without ``loaded_at`` (``gdpr_tombstones``, ``gdpr_audit``, ``sync_jobs``: one row per
request or job, small) are copied whole every time: their other times (``erased_at``,
``started_at``) are not moved when a row changes, so they cannot be watermarks, and a whole copy
also carries deletions.

Rows deleted from a ``loaded_at`` table leave no trace an incremental could see; a restore brings
them back until the next full backup. For erased subjects the restore hook (tombstones) removes
them again.
"""

from __future__ import annotations

import csv
import dataclasses
import datetime as dt
import gzip
import io
import logging

from psycopg2 import sql

from beam_pipelines.backup import archive
from beam_pipelines.backup.manifest import BackupError
from beam_pipelines.backup.manifest import FileEntry
from beam_pipelines.backup.manifest import VerificationError
from beam_pipelines.io.warehouse_schema import ensure_event_partitions

__all__ = [
    'EXCLUDED_TABLES',
    'WATERMARK_COLUMN',
    'Table',
    'check_fits',
    'count_csv_rows',
    'discover_tables',
    'dump_table',
    'load_table',
    'migration_version',
    'safe_upper_bound',
    'set_session_formats',
]

_LOGGER = logging.getLogger(__name__)

EXCLUDED_TABLES = frozenset(
    {
        # The per-subject encryption keys. Deleting a subject's key must make every copy of its
        # encrypted data unreadable, backups included (crypto-shredding): a backup holding the
        # key would bring the data back. Never back it up.
        'gdpr_keys',
        # The job records of backups themselves: they change while the backup runs, and a
        # restored copy would claim backups the restored database never made.
        'backup_jobs',
        # Written by migrate() on the restore target; the manifest records the version.
        'bp_schema_migrations',
    }
)
WATERMARK_COLUMN = 'loaded_at'
# Tables partitioned by UTC day on this column: a restore creates their partitions first.
_DAILY_PARTITIONS = {'events': 'event_time'}
_INSUFFICIENT = '<insufficient privilege>'


@dataclasses.dataclass(frozen=True)
class Table:
    """A table to back up: its columns in order and primary key."""

    name: str
    columns: tuple[str, ...]
    key: tuple[str, ...]

    @property
    def incremental(self) -> bool:
        return WATERMARK_COLUMN in self.columns


def set_session_formats(cur) -> None:
    """Fixes the text forms COPY uses, so a dump reads back the same anywhere: UTC times, ISO
    dates, shortest exact floats, UTF-8."""
    cur.execute("SET TIME ZONE 'UTC'")
    cur.execute("SET DateStyle = 'ISO, YMD'")
    cur.execute('SET extra_float_digits = 1')
    cur.execute("SET client_encoding = 'UTF8'")


def migration_version(cur, schema: str) -> int:
    """The latest migration applied to ``schema`` (0 when it has none)."""
    # Quoted (as the migrations create it): unquoted, a mixed-case schema folds to lower case
    # and its migrations are not found (version 0).
    qualified = sql.Identifier(schema, 'bp_schema_migrations').as_string(cur)
    cur.execute('SELECT to_regclass(%s)', (qualified,))
    if cur.fetchone()[0] is None:
        return 0
    cur.execute(
        sql.SQL('SELECT coalesce(max(version), 0) FROM {}.bp_schema_migrations').format(
            sql.Identifier(schema)
        )
    )
    return cur.fetchone()[0]


def discover_tables(cur, schema: str) -> list[Table]:
    """The schema's tables (partitioned parents, not their partitions), minus the excluded."""
    cur.execute(
        """
        SELECT c.relname,
               array_agg(a.attname::text ORDER BY a.attnum),
               (SELECT array_agg(k.attname::text
                                 ORDER BY array_position(i.indkey::int2[], k.attnum))
                  FROM pg_index i
                  JOIN pg_attribute k ON k.attrelid = i.indrelid AND k.attnum = ANY (i.indkey)
                 WHERE i.indrelid = c.oid AND i.indisprimary)
          FROM pg_class c
          JOIN pg_namespace n ON n.oid = c.relnamespace
          JOIN pg_attribute a ON a.attrelid = c.oid AND a.attnum > 0 AND NOT a.attisdropped
         WHERE n.nspname = %s AND c.relkind IN ('r', 'p') AND NOT c.relispartition
         GROUP BY c.oid, c.relname
         ORDER BY c.relname
        """,
        (schema,),
    )
    return [
        Table(name, tuple(columns), tuple(key or ()))
        for name, columns, key in cur.fetchall()
        if name not in EXCLUDED_TABLES
    ]


def safe_upper_bound(cur) -> dt.datetime:
    """The watermark: every row stamped before it is in a snapshot taken after this call. Run it
    before the dump's snapshot, in autocommit mode, so ``now()`` is this statement's time.

    ``loaded_at`` is its writer's ``now()``, the start of the writer's transaction. A transaction
    still open may commit after the dump's snapshot, but it appears in ``pg_stat_activity`` now
    with ``xact_start``, so its rows carry ``loaded_at >= upper`` and fall in the next backup;
    any transaction starting later stamps ``>= now()``. A row stamped exactly at the bound may be
    in flight, hence ``>=`` for the next backup's rows. Reading the bound in the snapshot's own
    statement instead would race with a transaction committing in between. Two-phase (prepared)
    transactions are not seen; the project does not use them.

    Raises:
        BackupError: this role cannot see other roles' transactions (``pg_stat_activity`` hides
            them without ``pg_read_all_stats``), so no safe bound can be computed.
    """
    cur.execute(
        """
        SELECT least(now(), min(xact_start)),
               count(*) FILTER (WHERE query = %s)
          FROM pg_stat_activity
         WHERE datname = current_database() AND pid <> pg_backend_pid()
        """,
        (_INSUFFICIENT,),
    )
    upper, hidden = cur.fetchone()
    if hidden:
        raise BackupError(
            f'{hidden} sessions of other roles are hidden in pg_stat_activity, so transactions '
            'still in flight cannot be accounted for: grant pg_read_all_stats to the backup role'
        )
    return upper


def dump_table(
    cur,
    schema: str,
    table: Table,
    path: str,
    relative_path: str,
    since: dt.datetime | None,
) -> FileEntry:
    """Streams one table (or its rows with ``loaded_at >= since``) as gzipped CSV with a header.

    Returns:
        The stored file's entry (rows, bytes and SHA-256 counted while streaming).
    """
    s, t = sql.Identifier(schema), sql.Identifier(table.name)
    cols = sql.SQL(', ').join(map(sql.Identifier, table.columns))
    query = sql.SQL('SELECT {} FROM {}.{}').format(cols, s, t)
    incremental = since is not None and table.incremental
    if incremental:
        # COPY takes no server-side parameters; psycopg2 quotes the value as it binds any.
        query += sql.SQL(' WHERE {} >= {}').format(
            sql.Identifier(WATERMARK_COLUMN), sql.Literal(since)
        )
    copy = sql.SQL('COPY ({}) TO STDOUT WITH (FORMAT csv, HEADER)').format(query)
    with archive.open_write(path, 'application/gzip') as raw:
        hashed = archive.HashingWriter(raw)
        # mtime=0: the same rows give the same bytes. COPY writes a row per call, so buffer.
        with (
            gzip.GzipFile(fileobj=hashed, mode='wb', mtime=0) as gz,
            io.BufferedWriter(gz, archive.CHUNK_BYTES) as buffered,
        ):
            cur.copy_expert(copy, buffered)
    return FileEntry(
        path=relative_path,
        kind='table',
        name=table.name,
        rows=cur.rowcount,
        bytes=hashed.bytes,
        sha256=hashed.sha256,
        columns=table.columns,
        key=table.key,
        full_copy=not incremental,
    )


def count_csv_rows(path: str) -> tuple[int, int, str]:
    """Reads a stored dump through: (data rows, stored bytes, SHA-256 of the stored bytes).

    Rows are CSV records, not lines: a quoted value may hold newlines. Reading it whole also
    checks gzip's own CRC.
    """
    with archive.open_read(path) as raw:
        hashed = archive.HashingReader(raw)
        with gzip.GzipFile(fileobj=hashed, mode='rb') as gz:
            text = io.TextIOWrapper(gz, encoding='utf-8', newline='')
            records = sum(1 for _ in csv.reader(text))
        hashed.drain()
    return max(records - 1, 0), hashed.bytes, hashed.sha256


def load_table(cur, schema: str, entry: FileEntry, path: str) -> int:
    """Loads one dump into ``schema``: COPY into a staging table, then replace by primary key.

    Rows whose key is already there are deleted and inserted again rather than upserted with
    ``ON CONFLICT DO UPDATE``: that fires the ``loaded_at`` trigger, which would stamp restored
    rows with the restore's time instead of keeping the dumped values.

    Returns:
        The rows loaded.

    Raises:
        VerificationError: the file read now is not the one verified (its SHA-256 changed).
    """
    s, t = sql.Identifier(schema), sql.Identifier(entry.name)
    stage = sql.Identifier(f'_bp_restore_{entry.name}')
    cols = sql.SQL(', ').join(map(sql.Identifier, entry.columns))
    cur.execute(
        sql.SQL(
            'CREATE TEMP TABLE IF NOT EXISTS {} (LIKE {}.{} INCLUDING DEFAULTS) ON COMMIT DROP'
        ).format(stage, s, t)
    )
    cur.execute(sql.SQL('TRUNCATE {}').format(stage))
    with archive.open_read(path) as raw:
        hashed = archive.HashingReader(raw)
        with gzip.GzipFile(fileobj=hashed, mode='rb') as gz:
            cur.copy_expert(
                sql.SQL('COPY {} ({}) FROM STDIN WITH (FORMAT csv, HEADER)').format(stage, cols),
                gz,
            )
        hashed.drain()
    rows = cur.rowcount
    if hashed.sha256 != entry.sha256:  # changed since it was verified: roll back
        raise VerificationError(f'{entry.path} changed while being restored (SHA-256 differs)')
    if rows == 0:
        return 0
    cur.execute(sql.SQL('ANALYZE {}').format(stage))
    column = _DAILY_PARTITIONS.get(entry.name)
    if column is not None:
        cur.execute(
            sql.SQL("SELECT DISTINCT ({} AT TIME ZONE 'UTC')::date FROM {} ORDER BY 1").format(
                sql.Identifier(column), stage
            )
        )
        ensure_event_partitions(cur, schema, [row[0] for row in cur.fetchall()])
    if entry.key:
        match = sql.SQL(' AND ').join(
            sql.SQL('t.{c} = s.{c}').format(c=sql.Identifier(c)) for c in entry.key
        )
        cur.execute(sql.SQL('DELETE FROM {}.{} t USING {} s WHERE {}').format(s, t, stage, match))
    cur.execute(sql.SQL('INSERT INTO {}.{} ({}) SELECT {} FROM {}').format(s, t, cols, cols, stage))
    return rows


def target_columns(cur, schema: str) -> dict[str, set[str]]:
    """The columns of every table in the target schema (to check a dump fits before loading)."""
    cur.execute(
        """
        SELECT c.relname, a.attname
          FROM pg_class c
          JOIN pg_namespace n ON n.oid = c.relnamespace
          JOIN pg_attribute a ON a.attrelid = c.oid AND a.attnum > 0 AND NOT a.attisdropped
         WHERE n.nspname = %s AND c.relkind IN ('r', 'p') AND NOT c.relispartition
        """,
        (schema,),
    )
    found: dict[str, set[str]] = {}
    for table, column in cur.fetchall():
        found.setdefault(table, set()).add(column)
    return found


def has_rows(cur, schema: str, table: str) -> bool:
    cur.execute(
        sql.SQL('SELECT EXISTS (SELECT 1 FROM {}.{})').format(
            sql.Identifier(schema), sql.Identifier(table)
        )
    )
    return cur.fetchone()[0]


def check_fits(cur, schema: str, entries: list[FileEntry], allow_nonempty: bool) -> None:
    """Raises BackupError unless every dump's table and columns exist in the target (and, unless
    ``allow_nonempty``, the tables are empty: a restore merges, it does not replace)."""
    found = target_columns(cur, schema)
    for entry in entries:
        if entry.name not in found:
            raise BackupError(f'the target schema {schema} has no table {entry.name}')
        missing = set(entry.columns) - found[entry.name]
        if missing:
            raise BackupError(f'{schema}.{entry.name} lacks the columns {sorted(missing)}')
    if allow_nonempty:
        return
    full = sorted({e.name for e in entries if has_rows(cur, schema, e.name)})
    if full:
        raise BackupError(
            f'the target tables {full} of schema {schema} hold rows: restore into a new schema '
            '(or pass --allow_nonempty to merge into them)'
        )
