"""The sync's source: a PostgreSQL table's catalog, its safe watermark bound, and its rows as
Arrow batches (watermark mode) or its changes from a replication slot (CDC mode).

Types: text-like columns arrive as strings, integers as int64, floats as float64, booleans,
``timestamptz`` as UTC timestamps (microseconds), ``timestamp`` and ``date`` as such; every other
type (``json``/``jsonb``, ``numeric``, ``uuid``, arrays, ...) is read as its PostgreSQL text
form (``col::text``), which a PostgreSQL destination parses back into the same type and which
is what a Redis destination stores. CDC rows are brought to the same Arrow types, so both modes
give a destination identical values.
"""

from __future__ import annotations

import dataclasses
import logging
from collections.abc import Iterable
from collections.abc import Iterator
from typing import Any

import psycopg2
import pyarrow as pa

from beam_pipelines.io.postgres import connect
from beam_pipelines.io.postgres import ident
from beam_pipelines.io.postgres_cdc import peek_changes

__all__ = [
    'SourceTable',
    'changes_as_tables',
    'read_batches',
    'runs_of_changes',
    'safe_upper_bound',
    'source_conn',
]

_LOGGER = logging.getLogger(__name__)

# PostgreSQL type (format_type) -> Arrow type; anything else is read as text.
_ARROW_TYPES = {
    'text': pa.string(),
    'character varying': pa.string(),
    'character': pa.string(),
    'name': pa.string(),
    'smallint': pa.int64(),
    'integer': pa.int64(),
    'bigint': pa.int64(),
    'real': pa.float64(),
    'double precision': pa.float64(),
    'boolean': pa.bool_(),
    'timestamp with time zone': pa.timestamp('us', tz='UTC'),
    'timestamp without time zone': pa.timestamp('us'),
    'date': pa.date32(),
}
WATERMARK_TYPE = 'timestamp with time zone'


def source_conn(url: str, role: str):
    """A source connection in UTC, named in ``pg_stat_activity`` (``bp_sync:<role>``)."""
    return connect(url, options='-c TimeZone=UTC', application_name=f'bp_sync:{role}')


@dataclasses.dataclass(frozen=True)
class SourceTable:
    """A source table as the catalog describes it.

    Attributes:
        schema: its schema.
        table: its name.
        columns: column names in table order.
        pg_types: ``format_type`` of each column (for creating a destination table).
        not_null: the columns declared NOT NULL.
        key: the primary key (or the ``--key`` given).
    """

    schema: str
    table: str
    columns: tuple[str, ...]
    pg_types: dict[str, str]
    not_null: frozenset[str]
    key: tuple[str, ...]

    @property
    def qualified(self) -> str:
        return f'{ident(self.schema)}.{ident(self.table)}'

    @property
    def arrow_schema(self) -> pa.Schema:
        return pa.schema(
            [(c, _ARROW_TYPES.get(self.pg_types[c], pa.string())) for c in self.columns]
        )

    @classmethod
    def describe(cls, conn, schema: str, table: str, key: tuple[str, ...] = ()) -> SourceTable:
        """Reads columns, types and primary key from the catalog.

        Raises:
            ValueError: no such table, no primary key (and no ``key``), or a ``key`` column
                that is not in the table.
        """
        with conn, conn.cursor() as cur:
            cur.execute(
                'SELECT a.attname, format_type(a.atttypid, a.atttypmod), a.attnotnull '
                'FROM pg_attribute a JOIN pg_class c ON c.oid = a.attrelid '
                'JOIN pg_namespace n ON n.oid = c.relnamespace '
                'WHERE n.nspname = %s AND c.relname = %s AND a.attnum > 0 '
                'AND NOT a.attisdropped ORDER BY a.attnum',
                (schema, table),
            )
            rows = cur.fetchall()
            if not rows:
                raise ValueError(f'no table {schema}.{table} in the source database')
            cur.execute(
                'SELECT a.attname FROM pg_constraint k '
                'JOIN pg_class c ON c.oid = k.conrelid '
                'JOIN pg_namespace n ON n.oid = c.relnamespace '
                'CROSS JOIN LATERAL unnest(k.conkey) WITH ORDINALITY AS u(attnum, pos) '
                'JOIN pg_attribute a ON a.attrelid = c.oid AND a.attnum = u.attnum '
                "WHERE n.nspname = %s AND c.relname = %s AND k.contype = 'p' ORDER BY u.pos",
                (schema, table),
            )
            primary = tuple(r[0] for r in cur.fetchall())
        columns = tuple(r[0] for r in rows)
        key = tuple(key) or primary
        if not key:
            raise ValueError(f'{schema}.{table} has no primary key: pass --key')
        missing = [k for k in key if k not in columns]
        if missing:
            raise ValueError(f'--key columns {missing} are not columns of {schema}.{table}')
        return cls(
            schema,
            table,
            columns,
            {r[0]: r[1] for r in rows},
            frozenset(r[0] for r in rows if r[2]),
            key,
        )

    def select_list(self) -> str:
        return ', '.join(
            ident(c) if self.pg_types[c] in _ARROW_TYPES else f'{ident(c)}::text AS {ident(c)}'
            for c in self.columns
        )


def safe_upper_bound(conn) -> Any:
    """The upper watermark bound of a run: no transaction still open can write at or below it.

    A row's ``loaded_at`` is its writing transaction's ``now()``, its start time. Every open
    transaction started at or after ``min(xact_start)`` of those in ``pg_stat_activity``, and
    every later one after our own ``now()``, so whatever they write lands strictly above
    ``least(now(), min(xact_start)) - 1 µs`` and is read by the next run. This must run before
    the read's snapshot is taken (its own statement in READ COMMITTED): a transaction that
    commits in between is then visible to the read.
    """
    with conn, conn.cursor() as cur:
        cur.execute(
            'SELECT least(now(), (SELECT min(xact_start) FROM pg_stat_activity '
            'WHERE datname = current_database() AND pid <> pg_backend_pid() '
            "AND xact_start IS NOT NULL)) - interval '1 microsecond'"
        )
        return cur.fetchone()[0]


def read_batches(
    conn,
    source: SourceTable,
    watermark_column: str | None,
    after: Any,
    upper: Any,
    batch_rows: int,
) -> Iterator[pa.Table]:
    """Streams the rows with ``after < watermark <= upper`` (``after`` None: no lower bound;
    ``watermark_column`` None: every row) as Arrow tables of up to ``batch_rows`` rows."""
    sql = f'SELECT {source.select_list()} FROM {source.qualified}'
    clauses, params = [], []
    if watermark_column is not None:
        wm = ident(watermark_column)
        if after is not None:
            clauses.append(f'{wm} > %s::timestamptz')
            params.append(after)
        clauses.append(f'{wm} <= %s::timestamptz')
        params.append(upper)
    if clauses:
        sql += ' WHERE ' + ' AND '.join(clauses)
    schema = source.arrow_schema
    # A named (server-side) cursor: rows stream batch by batch, never all in memory.
    with conn, conn.cursor(name='bp_sync_read') as cur:
        cur.itersize = batch_rows
        cur.execute(sql, params)
        while rows := cur.fetchmany(batch_rows):
            columns = list(zip(*rows))
            yield pa.table(
                [pa.array(list(col), f.type) for col, f in zip(columns, schema)], schema=schema
            )


def changes_as_tables(
    url: str, slot: str, upper_lsn: str, source: SourceTable, batch_rows: int
) -> Iterator[tuple[str, pa.Table, str]]:
    """The slot's changes to ``source`` up to ``upper_lsn`` (nothing acknowledged), in LSN
    order, as the runs of :func:`runs_of_changes`."""
    for changes in peek_changes(url, slot, upper_lsn, batch_rows):
        yield from runs_of_changes(changes, source)


def runs_of_changes(
    changes: Iterable[dict], source: SourceTable
) -> Iterator[tuple[str, pa.Table, str]]:
    """Parsed changes (:func:`~beam_pipelines.io.postgres_cdc.parse_test_decoding` plus
    ``lsn``) of ``source``, as runs of one kind, in order; other tables' changes are skipped.

    Yields:
        ``(op, table, last_lsn)``: op is 'upsert' (inserts and updates: whole rows) or 'delete'
        (key columns only). Applying the tables in order applies the changes in order.
    """
    schema = source.arrow_schema
    run: list[dict] = []
    kind = lsn = None
    for change in changes:
        if change['schema'] != source.schema or change['table'] != source.table:
            continue  # the slot decodes the whole database
        op = 'delete' if change['op'] == 'delete' else 'upsert'
        if run and op != kind:
            yield kind, _typed(run, schema, kind, source.key), lsn
            run = []
        kind, lsn = op, change.get('lsn')
        run.append(change['row'])
    if run:
        yield kind, _typed(run, schema, kind, source.key), lsn


def _typed(rows: list[dict], schema: pa.Schema, kind: str, key: tuple[str, ...]) -> pa.Table:
    """Decoded rows (values as ``test_decoding`` prints them) in the watermark read's types."""
    names = key if kind == 'delete' else schema.names
    arrays = []
    for name in names:
        field = schema.field(name)
        values = [r.get(name) for r in rows]
        if pa.types.is_timestamp(field.type) or pa.types.is_date(field.type):
            arrays.append(pa.array(values, pa.string()).cast(field.type))
        elif pa.types.is_string(field.type):
            arrays.append(pa.array([None if v is None else str(v) for v in values], pa.string()))
        else:
            arrays.append(pa.array(values, field.type))
    return pa.table(arrays, names=list(names))


def table_exists(conn, schema: str, table: str) -> bool:
    with conn, conn.cursor() as cur:
        cur.execute('SELECT to_regclass(%s)', (f'{ident(schema)}.{ident(table)}',))
        return cur.fetchone()[0] is not None


def slot_position(conn, slot: str) -> str | None:
    """The slot's acknowledged LSN (where the next read starts)."""
    try:
        with conn, conn.cursor() as cur:
            cur.execute(
                'SELECT confirmed_flush_lsn::text FROM pg_replication_slots WHERE slot_name = %s',
                (slot,),
            )
            row = cur.fetchone()
    except psycopg2.Error:
        return None
    return row[0] if row else None
