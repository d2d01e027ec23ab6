"""``make bench-sinks``: PostgreSQL and Redis load rates of the sinks against plain clients.

Runs the flagship once (files only) to get realistic events and aggregates, then measures on
the same rows, in a fresh schema and key prefix that are dropped afterwards:

* ``WriteToPostgres`` (COPY to staging + upsert) into the warehouse ``events`` table, in a Beam
  pipeline, against a plain psycopg2 ``COPY`` of the same rows straight into an empty table;
* ``WriteToRedis`` (Lua-guarded latest hash + series) in a Beam pipeline, against a plain
  redis-py pipeline of ``HSET`` + ``ZADD`` for the same aggregates.

    python -m beam_pipelines.bench_sinks --events 200000
"""

from __future__ import annotations

import argparse
import io
import os
import subprocess
import sys
import tempfile
import time
import uuid

import apache_beam as beam
import psycopg2
import pyarrow as pa
import pyarrow.csv as pacsv
import pyarrow.parquet as pq
import redis
from apache_beam.metrics.metric import MetricsFilter

from beam_pipelines.io.postgres import connect
from beam_pipelines.io.postgres import event_days
from beam_pipelines.io.postgres import redact
from beam_pipelines.io.redis_sink import RedisLayout
from beam_pipelines.io.redis_sink import WriteToRedis
from beam_pipelines.io.warehouse import WriteToWarehouse
from beam_pipelines.io.warehouse import event_rows
from beam_pipelines.io.warehouse_schema import ensure_event_partitions
from beam_pipelines.io.warehouse_schema import migrate

__all__ = ['main']


def _timed(fn) -> float:
    started = time.perf_counter()
    fn()
    return time.perf_counter() - started


def _sink_seconds(result, metric: str) -> float:
    """Time spent inside the sink DoFns (their latency distribution), in seconds."""
    found = result.metrics().query(MetricsFilter().with_name(metric))['distributions']
    return sum(d.committed.sum for d in found) / 1000.0 if found else float('nan')


def _pipeline_postgres(url: str, schema: str, events: list[pa.Table]) -> float:
    p = beam.Pipeline()
    tables = p | 'Events' >> beam.Create(events)
    empty = p | 'NoAggregates' >> beam.Create([])
    dead = p | 'NoDeadLetters' >> beam.Create([])
    _ = {'events': tables, 'aggregates': empty, 'dead_letter': dead} | WriteToWarehouse(
        url, schema, 'bench'
    )
    result = p.run()
    result.wait_until_finish()
    return _sink_seconds(result, 'postgres_write_ms')


def _plain_copy(url: str, schema: str, events: pa.Table, into_warehouse: bool) -> None:
    """COPY straight into a bare table, or into a fresh copy of the (indexed, partitioned)
    warehouse ``events`` table: the latter isolates what the upsert itself costs."""
    rows = event_rows(events)
    conn = connect(url)
    try:
        with conn, conn.cursor() as cur:
            if into_warehouse:
                target = f'"{schema}_plain".events'
                migrate_conn = connect(url)
                try:
                    migrate(migrate_conn, f'{schema}_plain')
                finally:
                    migrate_conn.close()
                ensure_event_partitions(cur, f'{schema}_plain', event_days(rows, 'event_time'))
            else:
                target = f'"{schema}".plain_events'
                cur.execute(
                    f'CREATE TABLE {target} (event_id text, event_type text, entity_id text, '
                    'event_time timestamptz, value double precision, source text, '
                    'attributes jsonb)'
                )
            buffer = io.BytesIO()
            pacsv.write_csv(
                rows, buffer, pacsv.WriteOptions(include_header=False, quoting_style='all_valid')
            )
            buffer.seek(0)
            columns = ', '.join(rows.column_names)
            cur.copy_expert(f'COPY {target} ({columns}) FROM STDIN WITH (FORMAT csv)', buffer)
    finally:
        conn.close()


def _pipeline_redis(url: str, layout: RedisLayout, aggregates: list[pa.Table]) -> float:
    p = beam.Pipeline()
    _ = p | beam.Create(aggregates) | WriteToRedis(url, layout)
    result = p.run()
    result.wait_until_finish()
    return _sink_seconds(result, 'redis_write_ms')


def _plain_redis(url: str, prefix: str, aggregates: pa.Table) -> int:
    client = redis.Redis.from_url(url)
    pipe = client.pipeline(transaction=False)
    ops = 0
    starts = aggregates.column('window_start').cast(pa.int64()).to_pylist()
    for row, start in zip(aggregates.to_pylist(), starts):
        key = f'{prefix}{row["entity_id"]}:{row["event_type"]}'
        pipe.hset(key, mapping={'count': row['count'], 'sum': row['sum'] or 0})
        pipe.zadd(f'{key}:series', {start: start})
        ops += 2
        if ops % 4000 == 0:
            pipe.execute()
    pipe.execute()
    client.close()
    return ops


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog='bench_sinks', description=__doc__.split('\n\n')[0])
    parser.add_argument('--events', type=int, default=200_000)
    parser.add_argument('--postgres_url', default='postgresql://127.0.0.1:5432/test')
    parser.add_argument('--redis_url', default='redis://127.0.0.1:6379/0')
    args = parser.parse_args(argv)
    work = tempfile.mkdtemp(prefix='bench_sinks_')
    data, out = os.path.join(work, 'events.jsonl'), os.path.join(work, 'out')
    subprocess.run(
        [
            sys.executable,
            '-m',
            'beam_pipelines.generate_events',
            '--events',
            str(args.events),
            '--output',
            data,
        ],
        check=True,
    )
    subprocess.run(
        [
            sys.executable,
            '-m',
            'beam_pipelines.event_analytics',
            '--input',
            data,
            '--output_dir',
            out,
        ],
        check=True,
        stdout=subprocess.DEVNULL,
    )
    events = pq.read_table(os.path.join(out, 'events'))
    aggregates = pq.read_table(os.path.join(out, 'aggregates'))
    event_batches = [events.slice(i, 50_000) for i in range(0, events.num_rows, 50_000)]
    agg_batches = [aggregates.slice(i, 50_000) for i in range(0, aggregates.num_rows, 50_000)]

    schema = f'bench_{uuid.uuid4().hex[:8]}'
    prefix = f'bench:{uuid.uuid4().hex[:8]}:'
    conn = connect(args.postgres_url)
    results = []
    try:
        migrate(conn, schema)
        started = time.perf_counter()
        in_sink = _pipeline_postgres(args.postgres_url, schema, event_batches)
        seconds = time.perf_counter() - started
        results.append(('WriteToPostgres, whole pipeline', events.num_rows, 'rows', seconds))
        results.append(('WriteToPostgres, inside the sink', events.num_rows, 'rows', in_sink))
        seconds = _timed(lambda: _plain_copy(args.postgres_url, schema, events, False))
        results.append(('plain COPY, bare table', events.num_rows, 'rows', seconds))
        seconds = _timed(lambda: _plain_copy(args.postgres_url, schema, events, True))
        results.append(('plain COPY, warehouse table', events.num_rows, 'rows', seconds))
        layout = RedisLayout(prefix=prefix)
        started = time.perf_counter()
        in_sink = _pipeline_redis(args.redis_url, layout, agg_batches)
        seconds = time.perf_counter() - started
        # Per window: ZADD + HSET; per key: the latest script and a trim.
        keys = len(
            set(
                zip(
                    aggregates.column('entity_id').to_pylist(),
                    aggregates.column('event_type').to_pylist(),
                )
            )
        )
        commands = 2 * aggregates.num_rows + 2 * keys
        results.append(('WriteToRedis, whole pipeline', commands, 'commands', seconds))
        results.append(('WriteToRedis, inside the sink', commands, 'commands', in_sink))
        started = time.perf_counter()
        ops = _plain_redis(args.redis_url, prefix + 'plain:', aggregates)
        results.append(
            ('plain pipelined HSET+ZADD', ops, 'commands', time.perf_counter() - started)
        )
    finally:
        with conn, conn.cursor() as cur:
            cur.execute(f'DROP SCHEMA IF EXISTS "{schema}" CASCADE')
            cur.execute(f'DROP SCHEMA IF EXISTS "{schema}_plain" CASCADE')
        conn.close()
        client = redis.Redis.from_url(args.redis_url)
        for key in client.scan_iter(f'{prefix}*', count=10_000):
            client.delete(key)
        client.close()
    print(
        f'\nPostgreSQL {redact(args.postgres_url)}, Redis {redact(args.redis_url)}; '
        f'{events.num_rows:,} events, {aggregates.num_rows:,} aggregates'
    )
    print(f'{"sink":<30} {"items":>10} {"unit":>9} {"seconds":>8} {"per second":>11}')
    for name, items, unit, seconds in results:
        print(f'{name:<30} {items:>10,} {unit:>9} {seconds:>8.2f} {items / seconds:>11,.0f}')
    return 0


if __name__ == '__main__':
    try:
        sys.exit(main())
    except psycopg2.Error as exc:
        sys.exit(f'bench_sinks: error: {redact(str(exc))}')
