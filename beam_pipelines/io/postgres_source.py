"""PostgreSQL sources: ``ReadFromPostgres`` (parallel key ranges, server-side cursors, Arrow
batches) and incremental extraction with a durable watermark.

``ReadFromPostgres`` finds the key's bounds when the pipeline runs (not when it is built), splits
them into ``num_ranges`` ranges, spreads the ranges over workers and streams each one with a
named (server-side) cursor, ``batch_rows`` rows at a time, as ``pyarrow.Table`` elements. Only
integer keys are split; other queries are read as one range.

Incremental extraction reads the rows whose watermark column lies in ``(last committed, upper]``,
where ``upper`` is the column's maximum when the run starts, and :class:`CommitWatermark` stores
``upper`` only after the outputs given to it are written. A run that fails before that point is
re-read in full by the next run (idempotent sinks make the repeat harmless), and rows committed
after ``upper`` wait for the next run, so nothing is skipped. The watermark column must only grow
for new or changed rows (a sequence, or a commit timestamp).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Iterator
from typing import Any

import apache_beam as beam
import pyarrow as pa
from apache_beam.metrics import Metrics

from beam_pipelines.io.postgres import NAMESPACE
from beam_pipelines.io.postgres import connect
from beam_pipelines.io.postgres import ident
from beam_pipelines.transforms.completion import RunAfter

__all__ = ['CommitWatermark', 'ReadFromPostgres', 'WatermarkStore']


@dataclasses.dataclass(frozen=True)
class _Range:
    lower: Any  # inclusive (None: unbounded)
    upper: Any  # exclusive (None: unbounded)
    last: bool


class ReadFromPostgres(beam.PTransform):
    """Reads a table or query as Arrow tables.

    Args:
        url: libpq URL or DSN.
        table: a table name (``schema.table`` allowed), or None with ``query``.
        query: a SELECT (no trailing semicolon), or None with ``table``.
        key: an integer column to split on (None: one range).
        num_ranges: how many ranges to read in parallel.
        batch_rows: rows per cursor fetch and per output table.
        after, up_to: optional bounds on ``key``: ``after < key <= up_to`` (incremental runs).
    """

    def __init__(
        self,
        url: str | None,
        table: str | None = None,
        query: str | None = None,
        key: str | None = None,
        num_ranges: int = 8,
        batch_rows: int = 50_000,
        after: Any = None,
        up_to: Any = None,
    ):
        super().__init__()
        if (table is None) == (query is None):
            raise ValueError('pass exactly one of table or query')
        if num_ranges < 1 or batch_rows < 1:
            raise ValueError('num_ranges and batch_rows must be >= 1')
        if table is not None:
            query = 'SELECT * FROM ' + '.'.join(ident(part) for part in table.split('.'))
        if key is not None:
            ident(key)
        self._spec = (url, query, key, num_ranges, batch_rows, after, up_to)

    def expand(self, pbegin):
        url, query, key, num_ranges, batch_rows, after, up_to = self._spec
        return (
            pbegin
            | 'Start' >> beam.Impulse()
            | 'PlanRanges' >> beam.FlatMap(_plan, url, query, key, num_ranges, after, up_to)
            | 'SpreadRanges' >> beam.Reshuffle()
            | 'ReadRanges'
            >> beam.ParDo(
                _ReadRangeFn(url, query, key, batch_rows, after, up_to)
            ).with_output_types(pa.Table)
        )


def _bounded(query: str, key: str | None, after, up_to) -> tuple[str, list]:
    clauses, params = [], []
    if key is not None and after is not None:
        clauses.append(f'{ident(key)} > %s')
        params.append(after)
    if key is not None and up_to is not None:
        clauses.append(f'{ident(key)} <= %s')
        params.append(up_to)
    where = f' WHERE {" AND ".join(clauses)}' if clauses else ''
    return f'SELECT * FROM ({query}) AS q{where}', params


def _plan(_, url, query, key, num_ranges, after, up_to) -> Iterator[_Range]:
    if key is None or num_ranges == 1:
        yield _Range(None, None, True)
        return
    sql, params = _bounded(query, key, after, up_to)
    conn = connect(url)
    try:
        with conn, conn.cursor() as cur:
            cur.execute(f'SELECT min({ident(key)}), max({ident(key)}) FROM ({sql}) AS b', params)
            lo, hi = cur.fetchone()
    finally:
        conn.close()
    if lo is None:
        return
    if not isinstance(lo, int):
        yield _Range(None, None, True)
        return
    step = max(1, -(-(hi - lo + 1) // num_ranges))
    starts = list(range(lo, hi + 1, step))
    for i, start in enumerate(starts):
        last = i == len(starts) - 1
        yield _Range(start, None if last else start + step, last)


class _ReadRangeFn(beam.DoFn):
    def __init__(self, url, query, key, batch_rows, after, up_to):
        self._url = url
        self._query = query
        self._key = key
        self._batch_rows = batch_rows
        self._after = after
        self._up_to = up_to
        self._conn = None

    def setup(self):
        self._conn = connect(self._url)
        self._rows = Metrics.counter(NAMESPACE, 'postgres_rows_read')

    def teardown(self):
        if self._conn is not None:
            self._conn.close()
            self._conn = None

    def process(self, rng: _Range) -> Iterator[pa.Table]:
        sql, params = _bounded(self._query, self._key, self._after, self._up_to)
        clauses = []
        if rng.lower is not None:
            clauses.append(f'{ident(self._key)} >= %s')
            params.append(rng.lower)
        if rng.upper is not None:
            clauses.append(f'{ident(self._key)} < %s')
            params.append(rng.upper)
        if clauses:
            sql = f'SELECT * FROM ({sql}) AS r WHERE {" AND ".join(clauses)}'
        # A named cursor lives on the server: rows stream in batches, never all in memory.
        with self._conn, self._conn.cursor(name='bp_read', withhold=False) as cur:
            cur.itersize = self._batch_rows
            cur.execute(sql, params)
            names = None
            while True:
                rows = cur.fetchmany(self._batch_rows)
                if names is None:
                    names = [d.name for d in cur.description]
                if not rows:
                    break
                columns = list(zip(*rows))
                self._rows.inc(len(rows))
                yield pa.table({n: pa.array(list(c)) for n, c in zip(names, columns)})


class WatermarkStore:
    """Durable extraction watermarks in a state table ``(name, value, committed_at)``.

    Values are stored as text and returned as they were given (ints stay ints).
    """

    def __init__(self, url: str | None, schema: str = 'public', table: str = 'bp_watermarks'):
        self._url = url
        self._table = f'{ident(schema)}.{ident(table)}'

    def _ensure(self, cur) -> None:
        cur.execute(
            f'CREATE TABLE IF NOT EXISTS {self._table} (name text PRIMARY KEY, '
            'value text NOT NULL, kind text NOT NULL, committed_at timestamptz NOT NULL '
            'DEFAULT now())'
        )

    def get(self, name: str) -> Any:
        conn = connect(self._url)
        try:
            with conn, conn.cursor() as cur:
                self._ensure(cur)
                cur.execute(f'SELECT value, kind FROM {self._table} WHERE name = %s', (name,))
                row = cur.fetchone()
        finally:
            conn.close()
        if row is None:
            return None
        return int(row[0]) if row[1] == 'int' else row[0]

    def upper_bound(self, query_or_table: str, column: str) -> Any:
        """The column's current maximum (the upper bound of this run)."""
        source = query_or_table
        if not source.lstrip().lower().startswith('select'):
            source = 'SELECT * FROM ' + '.'.join(ident(p) for p in source.split('.'))
        conn = connect(self._url)
        try:
            with conn, conn.cursor() as cur:
                cur.execute(f'SELECT max({ident(column)}) FROM ({source}) AS s')
                return cur.fetchone()[0]
        finally:
            conn.close()

    def commit(self, name: str, value: Any) -> None:
        kind = 'int' if isinstance(value, int) else 'text'
        conn = connect(self._url)
        try:
            with conn, conn.cursor() as cur:
                self._ensure(cur)
                cur.execute(
                    f'INSERT INTO {self._table} (name, value, kind) VALUES (%s, %s, %s) '
                    'ON CONFLICT (name) DO UPDATE SET value = EXCLUDED.value, '
                    'kind = EXCLUDED.kind, committed_at = now()',
                    (name, str(value), kind),
                )
        finally:
            conn.close()


class CommitWatermark(beam.PTransform):
    """Commits ``value`` for ``name`` once every given PCollection is complete.

    Apply it to a tuple of the pipeline's final outputs (sink results): the commit runs after
    them (see :class:`~beam_pipelines.transforms.completion.RunAfter`).
    """

    def __init__(self, store: WatermarkStore, name: str, value: Any):
        super().__init__()
        self._store = store
        self._name = name
        self._value = value

    def expand(self, outputs):
        return outputs | 'CommitAfterOutputs' >> RunAfter(
            _commit, self._store, self._name, self._value
        )


def _commit(store: WatermarkStore, name: str, value: Any) -> Any:
    if value is not None:
        store.commit(name, value)
    return value
