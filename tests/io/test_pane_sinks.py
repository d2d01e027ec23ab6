"""Panes into the real PostgreSQL and Redis: replaced (accumulating) or added (discarding), with
replays and out-of-order panes changing nothing, and merged-away sessions deleted."""

from __future__ import annotations

import statistics

import apache_beam as beam
import pyarrow as pa
import pytest
from apache_beam.testing.test_pipeline import TestPipeline

from beam_pipelines.columnar.aggregate import WindowSpec
from beam_pipelines.columnar.panes import TriggerSpec
from beam_pipelines.columnar.panes import WindowPanes
from beam_pipelines.io.postgres import connect
from beam_pipelines.io.redis_sink import RedisLayout
from beam_pipelines.io.redis_sink import WriteToRedis
from beam_pipelines.io.warehouse import WriteToWarehouse
from beam_pipelines.io.warehouse_schema import migrate
from tests.io.test_postgres import pg_schema  # noqa: F401  (fixture)
from tests.io.test_postgres import pg_url  # noqa: F401  (fixture)
from tests.io.test_postgres import query
from tests.io.test_redis import REDIS_URL
from tests.io.test_redis import client  # noqa: F401  (fixture)
from tests.io.test_redis import prefix  # noqa: F401  (fixture)
from tests.transforms.test_stream_aggregate import batch

VALUES = [1.0, 2.0, 4.0, 8.0]


def four_panes(accumulating: bool) -> list[pa.Table]:
    """Early, on-time, late and final panes of window [0, 60) holding VALUES in the end."""
    panes = WindowPanes(
        WindowSpec('fixed', size_secs=60),
        TriggerSpec(allowed_lateness_secs=60, early_firing_secs=10, accumulating=accumulating),
    )
    panes.add(batch(('a', 'click', 5, 1.0), ('a', 'click', 6, 2.0)))
    early = panes.processing_time_panes()
    panes.add(batch(('a', 'click', 7, 4.0)))
    on_time = panes.advance(60_000_000)
    panes.add(batch(('a', 'click', 8, 8.0)))
    late = panes.late_panes()
    final = panes.advance(120_000_000)
    return [early, on_time, late, final]


def delivered(panes: list[pa.Table]) -> list[pa.Table]:
    """The panes as a sink may see them: one replayed, one stale arriving late."""
    early, on_time, late, final = panes
    return [early, on_time, on_time, late, early, final]


@pytest.mark.parametrize('mode', ['accumulating', 'discarding'])
def test_postgres_applies_each_pane_once(pg_url, pg_schema, mode):  # noqa: F811
    conn = connect(pg_url)
    migrate(conn, pg_schema)
    conn.close()
    tables = delivered(four_panes(mode == 'accumulating'))
    with TestPipeline() as p:
        _ = {
            'events': p | 'NoEvents' >> beam.Create([], reshuffle=False),
            'aggregates': p | 'Panes' >> beam.Create(tables, reshuffle=False),
            'dead_letter': p | 'NoDeadLetters' >> beam.Create([], reshuffle=False),
        } | WriteToWarehouse(pg_url, pg_schema, 'test', mode)
    (row,) = query(
        pg_url,
        f'SELECT count, value_count, sum, min, max, mean, stddev, p50, pane_timing, pane_index, '
        f'is_final FROM "{pg_schema}".aggregates',
    )
    count, n, total, lo, hi, mean, stddev, p50, timing, index, final = row
    assert (count, n, total, lo, hi) == (4, 4, 15.0, 1.0, 8.0)
    assert mean == pytest.approx(3.75)
    assert stddev == pytest.approx(statistics.stdev(VALUES))
    assert (timing, index, final) == ('late', 3, True)
    if mode == 'accumulating':
        assert p50 == pytest.approx(2.0, rel=0.01)
    else:
        assert p50 is None  # two quantiles do not merge into one


def test_postgres_deletes_retracted_sessions(pg_url, pg_schema):  # noqa: F811
    conn = connect(pg_url)
    migrate(conn, pg_schema)
    conn.close()
    panes = WindowPanes(WindowSpec('session', gap_secs=10), TriggerSpec(allowed_lateness_secs=300))
    panes.add(batch(('a', 'click', 0, 1.0), ('a', 'click', 18, 2.0)))
    first = panes.advance(40_000_000)
    panes.add(batch(('a', 'click', 9, 4.0)))
    merged = panes.late_panes()
    retracted = panes.take_retractions()
    for step, (aggregates, retractions) in enumerate([(first, []), (merged, [retracted])]):
        with TestPipeline() as p:
            _ = {
                'events': p | 'NoEvents' >> beam.Create([], reshuffle=False),
                'aggregates': p | 'Panes' >> beam.Create([aggregates], reshuffle=False),
                'dead_letter': p | 'NoDeadLetters' >> beam.Create([], reshuffle=False),
                'retractions': p | 'Retractions' >> beam.Create(retractions, reshuffle=False),
            } | WriteToWarehouse(pg_url, pg_schema, 'test', 'accumulating')
        rows = query(
            pg_url,
            f'SELECT extract(epoch FROM window_start), extract(epoch FROM window_end), count '
            f'FROM "{pg_schema}".aggregates ORDER BY 1',
        )
        expected = [(0, 10, 1), (18, 28, 1)] if step == 0 else [(0, 28, 3)]
        assert [(float(s), float(e), c) for s, e, c in rows] == expected


@pytest.mark.parametrize('mode', ['accumulating', 'discarding'])
def test_redis_applies_each_pane_once(client, prefix, mode):  # noqa: F811
    layout = RedisLayout(prefix=prefix)
    tables = delivered(four_panes(mode == 'accumulating'))
    with TestPipeline() as p:
        _ = p | beam.Create(tables, reshuffle=False) | WriteToRedis(REDIS_URL, layout, mode)
    latest = {
        k.decode(): v.decode() for k, v in client.hgetall(layout.latest('a', 'click')).items()
    }
    assert latest['count'] == '4' and float(latest['sum']) == 15.0
    assert float(latest['min']) == 1.0 and float(latest['max']) == 8.0
    assert float(latest['stddev']) == pytest.approx(statistics.stdev(VALUES))
    assert (latest['pane_index'], latest['is_final']) == ('3', 'true')
    assert client.zcard(layout.series('a', 'click')) == 1
    assert client.ttl(layout.latest('a', 'click')) > 0
