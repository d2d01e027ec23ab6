"""A PostgreSQL destination: each batch is COPYed into a temporary table and upserted on the key
(:func:`beam_pipelines.io.postgres.copy_and_merge`), deletes are merged the same way; one
transaction per batch, so a retried batch rewrites the same rows.

With ``create_table`` a missing destination table is created on the first batch, with the
source's column types (and NOT NULLs) for the columns that come from the source unchanged, an
equivalent type for the others, and the key as primary key. Defaults, indexes and triggers are
not copied: the destination keeps the source's values, ``loaded_at`` included.
"""

from __future__ import annotations

import contextlib
import logging

import psycopg2
import psycopg2.errors
import pyarrow as pa

from beam_pipelines.io.postgres import PostgresTarget
from beam_pipelines.io.postgres import connect
from beam_pipelines.io.postgres import copy_and_merge
from beam_pipelines.io.postgres import ident
from beam_pipelines.sync.mapping import Mapping
from beam_pipelines.sync.source import SourceTable
from beam_pipelines.sync.source import table_exists

__all__ = ['PostgresDestination']

_LOGGER = logging.getLogger(__name__)

_PG_TYPES = {
    pa.string(): 'text',
    pa.large_string(): 'text',
    pa.int64(): 'bigint',
    pa.int32(): 'integer',
    pa.int16(): 'smallint',
    pa.float64(): 'double precision',
    pa.float32(): 'real',
    pa.bool_(): 'boolean',
    pa.date32(): 'date',
}


class PostgresDestination:
    """Upserts and deletes batches in ``schema.table``.

    Args:
        url: libpq URL of the destination database.
        schema: destination schema.
        table: destination table.
        key: the destination key (a unique constraint of the table).
        source: the source table (for ``create_table``).
        mapping: how source columns became destination columns (for ``create_table``).
        create_table: create the table (and schema) on the first batch if it is missing.
        application_name: how the connection shows in ``pg_stat_activity``.

    Raises:
        ValueError: the table is missing and ``create_table`` is off.
    """

    # Worth another attempt on a fresh connection; data errors are the row's fault instead.
    transient = (
        psycopg2.OperationalError,
        psycopg2.InterfaceError,
        psycopg2.errors.SerializationFailure,
        psycopg2.errors.DeadlockDetected,
    )
    rejected = (psycopg2.DataError, psycopg2.IntegrityError)

    def __init__(
        self,
        url: str,
        schema: str,
        table: str,
        key: tuple[str, ...],
        source: SourceTable,
        mapping: Mapping,
        create_table: bool = False,
        application_name: str = 'bp_sync',
    ):
        self._url = url
        self._schema = schema
        self._table = table
        self._key = key
        self._source = source
        self._mapping = mapping
        self._application_name = application_name
        self._conn = None
        self._missing = not table_exists(self._connection(), schema, table)
        if self._missing and not create_table:
            raise ValueError(
                f'destination table {schema}.{table} does not exist: pass --create_table'
            )

    def _connection(self):
        if self._conn is None or self._conn.closed:
            self._conn = connect(
                self._url, options='-c TimeZone=UTC', application_name=self._application_name
            )
        return self._conn

    def reset(self, _error=None) -> None:
        """Drops the connection (after a transient error); the next call opens a new one."""
        if self._conn is not None:
            with contextlib.suppress(psycopg2.Error):
                self._conn.close()
            self._conn = None

    close = reset

    def upsert(self, table: pa.Table) -> None:
        """Inserts or updates the rows, in one transaction."""
        conn = self._connection()
        with conn, conn.cursor() as cur:
            if self._missing:
                self._create(cur, table.schema)
            target = PostgresTarget(self._table, tuple(table.column_names), self._key, self._schema)
            copy_and_merge(cur, target, table)
        self._missing = False

    def delete(self, keys: pa.Table) -> None:
        """Deletes the rows with these keys, in one transaction."""
        if self._missing:
            return  # nothing was ever written
        target = PostgresTarget(self._table, self._key, self._key, self._schema, delete=True)
        staging = f'pg_temp.{ident("_stage_" + self._table)}'
        conn = self._connection()
        with conn, conn.cursor() as cur:
            # copy_and_merge stages upserts and deletes under one temp table name, with
            # different columns: drop it around the delete so each gets its own shape.
            cur.execute(f'DROP TABLE IF EXISTS {staging}')
            copy_and_merge(cur, target, keys.select(list(self._key)))
            cur.execute(f'DROP TABLE IF EXISTS {staging}')

    def _create(self, cur, schema: pa.Schema) -> None:
        origin = {self._mapping.rename.get(c, c): c for c in self._source.columns}
        columns = []
        for field in schema:
            source_name = origin.get(field.name)
            if source_name is not None and field.name not in self._mapping.casts:
                pg_type = self._source.pg_types[source_name]
                not_null = source_name in self._source.not_null
            else:
                pg_type = _pg_type(field.type)
                not_null = False
            null = ' NOT NULL' if not_null or field.name in self._key else ''
            columns.append(f'{ident(field.name)} {pg_type}{null}')
        key = ', '.join(ident(k) for k in self._key)
        cur.execute(f'CREATE SCHEMA IF NOT EXISTS {ident(self._schema)}')
        cur.execute(
            f'CREATE TABLE IF NOT EXISTS {ident(self._schema)}.{ident(self._table)} '
            f'({", ".join(columns)}, PRIMARY KEY ({key}))'
        )
        _LOGGER.info('created destination table %s.%s', self._schema, self._table)


def _pg_type(arrow_type: pa.DataType) -> str:
    if pa.types.is_timestamp(arrow_type):
        return 'timestamptz' if arrow_type.tz else 'timestamp'
    return _PG_TYPES.get(arrow_type, 'text')
