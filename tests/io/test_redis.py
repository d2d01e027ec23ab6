"""WriteToRedis against the real Redis server (never mocked).

The server comes from ``BEAM_PIPELINES_TEST_REDIS_URL`` (default redis://127.0.0.1:6379/0).
Each test writes under its own key prefix and deletes it afterwards. Without a server the tests
skip, except under CI, where they fail.
"""

from __future__ import annotations

import json
import os
import uuid

import apache_beam as beam
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
import redis
from apache_beam.testing.test_pipeline import TestPipeline
from redis.backoff import NoBackoff

from beam_pipelines import event_analytics
from beam_pipelines.columnar.aggregate import AGGREGATE_SCHEMA
from beam_pipelines.generate_events import GeneratorConfig
from beam_pipelines.generate_events import generate_records
from beam_pipelines.generate_events import write_events
from beam_pipelines.io.redis_sink import RedisLayout
from beam_pipelines.io.redis_sink import WriteToRedis
from beam_pipelines.io.redis_sink import _CountedRetry
from tests.conftest import service_unavailable

REDIS_URL = os.environ.get('BEAM_PIPELINES_TEST_REDIS_URL', 'redis://127.0.0.1:6379/0')
MINUTE_US = 60_000_000
STATS = ('count', 'value_count', 'sum', 'min', 'max', 'mean', 'stddev', 'p50', 'p95')


@pytest.fixture(scope='module')
def client():
    c = redis.Redis.from_url(REDIS_URL)
    try:
        c.ping()
    except redis.RedisError as exc:
        service_unavailable(f'Redis at {REDIS_URL}', exc)
    yield c
    c.close()


@pytest.fixture
def prefix(client):
    p = f'test:{uuid.uuid4().hex[:10]}:'
    yield p
    keys = list(client.scan_iter(f'{p}*'))
    if keys:
        client.delete(*keys)


def aggregates(rows):
    """Aggregate rows from (entity, type, window index in minutes, count, sum)."""
    n = len(rows)
    cols = {
        name: pa.nulls(n, field.type)
        for name, field in zip(AGGREGATE_SCHEMA.names, AGGREGATE_SCHEMA)
    }
    cols['entity_id'] = pa.array([r[0] for r in rows])
    cols['event_type'] = pa.array([r[1] for r in rows])
    cols['window_start'] = pa.array([r[2] * MINUTE_US for r in rows], pa.int64()).cast(
        AGGREGATE_SCHEMA.field('window_start').type
    )
    cols['window_end'] = pa.array([(r[2] + 1) * MINUTE_US for r in rows], pa.int64()).cast(
        AGGREGATE_SCHEMA.field('window_end').type
    )
    cols['count'] = pa.array([r[3] for r in rows], pa.int64())
    cols['value_count'] = pa.array([r[3] for r in rows], pa.int64())
    cols['sum'] = pa.array([float(r[4]) for r in rows])
    return pa.table(cols, schema=AGGREGATE_SCHEMA)


def write(tables, layout):
    with TestPipeline() as p:
        _ = p | beam.Create(tables) | WriteToRedis(REDIS_URL, layout)


def snapshot(client, prefix):
    out = {}
    for key in sorted(client.scan_iter(f'{prefix}*')):
        kind = client.type(key)
        if kind == b'hash':
            out[key] = client.hgetall(key)
        else:
            out[key] = client.zrange(key, 0, -1, withscores=True)
    return out


def test_writes_are_idempotent_and_latest_never_rolls_back(client, prefix):
    layout = RedisLayout(prefix=prefix, ttl_secs=3600, series_length=10)
    batch = aggregates(
        [('u1', 'click', 5, 2, 10), ('u1', 'click', 6, 1, 4), ('u2', 'view', 5, 3, 9)]
    )
    write([batch], layout)
    first = snapshot(client, prefix)
    write([batch], layout)  # a retried or re-run write
    assert snapshot(client, prefix) == first
    latest = client.hgetall(layout.latest('u1', 'click'))
    assert latest[b'window_start_ms'] == str(6 * 60_000).encode()
    assert latest[b'sum'] == b'4.0'
    # An older window arriving later does not replace the newer one.
    write([aggregates([('u1', 'click', 4, 9, 99)])], layout)
    assert client.hget(layout.latest('u1', 'click'), 'sum') == b'4.0'
    series = client.zrange(layout.series('u1', 'click'), 0, -1)
    assert series == [str(m * 60_000).encode() for m in (4, 5, 6)]
    data = client.hget(layout.series_data('u1', 'click'), str(5 * 60_000))
    assert json.loads(data)['count'] == 2
    assert 0 < client.ttl(layout.latest('u1', 'click')) <= 3600
    assert 0 < client.ttl(layout.series('u1', 'click')) <= 3600


def test_series_data_holds_every_statistic_as_its_row_does(client, prefix):
    layout = RedisLayout(prefix=prefix, ttl_secs=3600, series_length=10)
    batch = aggregates([('u1', 'click', m, m + 1, 10.0**m) for m in range(-1, 4)] + [
        ('u2', 'view', 7, 3, 2.5),
    ])  # fmt: skip
    batch = batch.set_column(
        batch.schema.get_field_index('max'),
        'max',
        pa.array([float('nan'), 1e21, -0.0, 123456.0, None, 0.1]),
    )
    write([batch], layout)
    for row in batch.to_pylist():
        data = client.hget(
            layout.series_data(row['entity_id'], row['event_type']),
            str(int(row['window_start'].timestamp() * 1000)),
        )
        stored = json.loads(data)
        expected = {k: row[k] for k in stored}
        expected['max'] = None if expected['max'] != expected['max'] else expected['max']
        assert list(stored) == list(STATS)
        assert stored == expected
        assert [type(v) for v in stored.values()] == [type(v) for v in expected.values()]


def test_a_script_cache_emptied_mid_write_is_written_again(client, prefix, monkeypatch):
    """A Redis restart between a pipeline loading its scripts and running them (NOSCRIPT,
    which the client's own retry does not redo): the batch is written again, whole."""
    load = redis.client.Pipeline.load_scripts
    flushed = []

    def load_then_lose_them(pipe):
        load(pipe)
        if not flushed:
            flushed.append(True)
            client.script_flush()  # what a restart does to the cache

    monkeypatch.setattr(redis.client.Pipeline, 'load_scripts', load_then_lose_them)
    layout = RedisLayout(prefix=prefix, ttl_secs=3600, series_length=10)
    batch = aggregates([('u1', 'click', 5, 2, 10), ('u2', 'view', 5, 3, 9)])
    write([batch], layout)
    assert flushed
    assert client.hget(layout.latest('u1', 'click'), 'sum') == b'10.0'
    assert client.hget(layout.latest('u2', 'view'), 'sum') == b'9.0'
    assert len(client.zrange(layout.series('u2', 'view'), 0, -1)) == 1


def test_series_are_trimmed_with_their_data(client, prefix):
    layout = RedisLayout(prefix=prefix, series_length=3, chunk=4)
    write([aggregates([('u', 't', m, 1, m) for m in range(10)])], layout)
    assert client.zrange(layout.series('u', 't'), 0, -1) == [
        str(m * 60_000).encode() for m in (7, 8, 9)
    ]
    assert sorted(client.hkeys(layout.series_data('u', 't'))) == sorted(
        str(m * 60_000).encode() for m in (7, 8, 9)
    )


def test_flagship_writes_every_key(tmp_path, client, prefix):
    records, _ = generate_records(GeneratorConfig(events=1500, seed=4, entities=20))
    path = tmp_path / 'events.jsonl'
    write_events(records, str(path), 'jsonl')
    out = tmp_path / 'out'
    assert (
        event_analytics.run(
            [
                '--input',
                str(path),
                '--output_dir',
                str(out),
                '--redis_url',
                REDIS_URL,
                '--redis_prefix',
                prefix,
            ]
        )
        == 0
    )
    summary = json.loads((out / 'run_summary.json').read_text())
    agg = pq.read_table(out / 'aggregates')
    keys = set(zip(agg.column('entity_id').to_pylist(), agg.column('event_type').to_pylist()))
    latest = set(client.scan_iter(f'{prefix}latest:*'))
    assert latest == {f'{prefix}latest:{e}:{t}'.encode() for e, t in keys}
    members = sum(client.zcard(k) for k in client.scan_iter(f'{prefix}series:*'))
    assert members == agg.num_rows
    # At least a series write (ZADD, HSET), a trim and a latest write per key.
    # Per key: one series call (windows added, series trimmed) and one latest call.
    assert summary['counts']['redis_commands'] >= 2 * len(keys)


def test_failed_attempts_are_counted_and_retried():
    class Counter:
        n = 0

        def inc(self, by=1):
            self.n += by

    counter, calls = Counter(), []

    def flaky():
        calls.append(1)
        if len(calls) < 3:
            raise redis.ConnectionError('down')
        return 'ok'

    retry = _CountedRetry(counter, NoBackoff(), 3)
    assert retry.call_with_retry(flaky, lambda error: None) == 'ok'
    assert counter.n == 2 and len(calls) == 3
