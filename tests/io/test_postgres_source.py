"""ReadFromPostgres and incremental extraction against the real PostgreSQL server."""

from __future__ import annotations

import apache_beam as beam
import psycopg2
import pytest
from apache_beam.metrics.metric import MetricsFilter
from apache_beam.testing.test_pipeline import TestPipeline
from apache_beam.testing.util import assert_that
from apache_beam.testing.util import equal_to

from beam_pipelines.io.postgres import PostgresTarget
from beam_pipelines.io.postgres import WriteToPostgres
from beam_pipelines.io.postgres_source import CommitWatermark
from beam_pipelines.io.postgres_source import ReadFromPostgres
from beam_pipelines.io.postgres_source import WatermarkStore
from tests.io.test_postgres import pg_schema  # noqa: F401  (fixture)
from tests.io.test_postgres import pg_url  # noqa: F401  (fixture)
from tests.io.test_postgres import query


def _execute(url, sql):
    with psycopg2.connect(url) as conn, conn.cursor() as cur:
        cur.execute(sql)
    conn.close()


@pytest.fixture
def readings(pg_url, pg_schema):  # noqa: F811
    _execute(
        pg_url,
        f'CREATE SCHEMA "{pg_schema}"; CREATE TABLE "{pg_schema}".readings '
        '(id bigint PRIMARY KEY, note text, at timestamptz DEFAULT now())',
    )
    _insert(pg_url, pg_schema, 1, 1000)
    return f'{pg_schema}.readings'


def _insert(url, schema, first, last):
    _execute(
        url,
        f'INSERT INTO "{schema}".readings (id, note) '
        f"SELECT g, 'n' || g FROM generate_series({first}, {last}) g",
    )


def _ids(tables):
    return tables | beam.FlatMap(lambda t: t.column('id').to_pylist())


@pytest.mark.parametrize('key, ranges', [('id', 4), (None, 1)])
def test_reads_every_row_once_in_parallel_ranges(pg_url, readings, key, ranges):  # noqa: F811
    with TestPipeline() as p:
        tables = p | ReadFromPostgres(
            pg_url, table=readings, key=key, num_ranges=ranges, batch_rows=97
        )
        assert_that(_ids(tables), equal_to(list(range(1, 1001))))


def test_query_source(pg_url, readings):  # noqa: F811
    with TestPipeline() as p:
        tables = p | ReadFromPostgres(
            pg_url, query=f'SELECT id FROM {readings} WHERE id <= 10', key='id', num_ranges=3
        )
        assert_that(_ids(tables), equal_to(list(range(1, 11))))


class _Boom(beam.DoFn):
    def process(self, table):
        raise RuntimeError('sink down')


def _incremental_run(pg_url, schema, table, fail=False):  # noqa: F811
    """One run: read after the committed watermark, load, commit. Returns (rows read, mark)."""
    store = WatermarkStore(pg_url, schema)
    after, upper = store.get('readings'), store.upper_bound(table, 'id')
    target = PostgresTarget('copy', ('id', 'note'), ('id',), schema)
    p = beam.Pipeline()
    tables = p | ReadFromPostgres(
        pg_url, table=table, key='id', num_ranges=3, after=after, up_to=upper
    )
    if fail:
        written = tables | beam.ParDo(_Boom())
    else:
        written = (
            tables
            | beam.Map(lambda t: t.select(['id', 'note']))
            | WriteToPostgres(pg_url, target, 'test')
        )['written']
    _ = (written,) | CommitWatermark(store, 'readings', upper)
    result = p.run()
    result.wait_until_finish()
    counters = result.metrics().query(MetricsFilter().with_name('postgres_rows_read'))
    return sum(c.committed for c in counters['counters']), store.get('readings')


def test_incremental_runs_neither_skip_nor_repeat(pg_url, pg_schema, readings):  # noqa: F811
    _execute(pg_url, f'CREATE TABLE "{pg_schema}".copy (id bigint PRIMARY KEY, note text)')
    assert _incremental_run(pg_url, pg_schema, readings) == (1000, 1000)
    _insert(pg_url, pg_schema, 1001, 1500)
    with pytest.raises(Exception, match='sink down'):
        _incremental_run(pg_url, pg_schema, readings, fail=True)
    assert WatermarkStore(pg_url, pg_schema).get('readings') == 1000  # not committed
    assert _incremental_run(pg_url, pg_schema, readings) == (500, 1500)
    assert query(pg_url, f'SELECT count(*), count(DISTINCT id) FROM "{pg_schema}".copy') == [
        (1500, 1500)
    ]
