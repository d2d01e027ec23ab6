"""PostgreSQL to Redis syncs against the real servers: the hash layout, NULLs, TTL, and a
retry after the sync's Redis connection is killed."""

from __future__ import annotations

import datetime as dt
import uuid

import pyarrow as pa

from beam_pipelines.sync import Mapping
from beam_pipelines.sync import SyncConfig
from beam_pipelines.sync import sync_once
from beam_pipelines.sync.retry import RetryPolicy
from tests.io.test_redis import REDIS_URL
from tests.sync.conftest import sql
from tests.sync.conftest import sync

RENAME = {'window_start': 'start', 'window_end': 'end'}


def _basic(ts: dt.datetime) -> str:
    return ts.astimezone(dt.UTC).strftime('%Y%m%dT%H%M%SZ')


def _source_rows(url: str, schema: str) -> list[dict]:
    found = sql(url, f'SELECT row_to_json(a) FROM "{schema}".aggregates a')
    return [r[0] for r in found]


def _assert_hashes_equal_rows(client, url, schema, prefix) -> int:
    rows = sql(url, f'SELECT * FROM "{schema}".aggregates')
    names = [r[0] for r in sql(url, 'SELECT * FROM unnest(%s::text[])', (_columns(url, schema),))]
    assert len(set(client.scan_iter(f'{prefix}*'))) == len(rows)
    for values in rows:
        row = dict(zip(names, values))
        key = (
            f'{prefix}aggregates:{row["entity_id"]}:{row["event_type"]}:'
            f'{_basic(row["window_start"])}:{_basic(row["window_end"])}'
        )
        stored = {k.decode(): v.decode() for k, v in client.hgetall(key).items()}
        assert set(stored) == {RENAME.get(k, k) for k, v in row.items() if v is not None}, key
        for name, value in row.items():
            if value is None:
                continue
            text = stored[RENAME.get(name, name)]
            if isinstance(value, float):
                assert float(text) == value
            elif isinstance(value, dt.datetime):
                assert text == value.astimezone(dt.UTC).strftime('%Y-%m-%dT%H:%M:%S.%fZ')
            elif isinstance(value, bool):
                assert text == str(value).lower()
            else:
                assert text == str(value)
    return len(rows)


def _columns(url, schema) -> list[str]:
    found = sql(
        url,
        'SELECT column_name FROM information_schema.columns WHERE table_schema = %s '
        "AND table_name = 'aggregates' ORDER BY ordinal_position",
        (schema,),
    )
    return [r[0] for r in found]


def test_aggregates_to_redis_hashes_equal_source_rows(pg_url, warehouse, client, prefix):
    name = f'redis_{uuid.uuid4().hex[:8]}'
    args = [
        '--name', name, '--source_url', pg_url, '--source_schema', warehouse,
        '--source_table', 'aggregates', '--dest_url', REDIS_URL, '--key_prefix', prefix,
        '--rename', 'window_start=start,window_end=end', '--ttl_secs', 3600, '--batch_rows', 400,
    ]  # fmt: skip
    assert sync(*args) == 0
    count = _assert_hashes_equal_rows(client, pg_url, warehouse, prefix)
    assert count > 500
    key = next(client.scan_iter(f'{prefix}aggregates:*'))
    assert 3500 < client.ttl(key) <= 3600
    assert client.hget(key, 'pane_index') is None  # NULL: no field

    # A value that becomes NULL disappears from its hash on the next run.
    sql(
        pg_url,
        f'UPDATE "{warehouse}".aggregates SET stddev = NULL '
        'WHERE entity_id = (SELECT min(entity_id) FROM '
        f'"{warehouse}".aggregates)',
    )
    assert sync(*args) == 0
    _assert_hashes_equal_rows(client, pg_url, warehouse, prefix)


def test_a_paused_redis_is_retried_and_the_sync_converges(pg_url, warehouse, client, prefix):
    batches = []

    def pause_redis_on_second_batch(table: pa.Table) -> pa.Table:
        batches.append(table.num_rows)
        if len(batches) == 2:
            # Writes block for 1 s; the sync's commands time out after 0.2 s and are retried.
            client.client_pause(1000, all=False)
        return table

    job = sync_once(
        SyncConfig(
            name=f'pause_{uuid.uuid4().hex[:8]}',
            source_url=pg_url,
            source_schema=warehouse,
            source_table='aggregates',
            dest_url=REDIS_URL,
            key_prefix=prefix,
            batch_rows=300,
            mapping=Mapping(rename=RENAME, transform=pause_redis_on_second_batch),
            retry=RetryPolicy(attempts=8, initial_delay_secs=0.1, max_delay_secs=0.5),
            redis_timeout_secs=0.2,
        )
    )
    assert len(batches) > 2 and job.retries >= 1
    assert job.rows_written == job.rows_read and job.rows_failed == 0
    _assert_hashes_equal_rows(client, pg_url, warehouse, prefix)
