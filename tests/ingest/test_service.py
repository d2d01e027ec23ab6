"""The HTTP ingestion service against the real Redis server (never mocked).

In-process through aiohttp's test server for the protocol cases, and as the real command
(``python -m beam_pipelines.ingest serve``) feeding the flagship end to end.
"""

from __future__ import annotations

import asyncio
import json
import os
import subprocess
import sys
import time
import urllib.error
import urllib.request

import orjson
import pyarrow.parquet as pq
import pytest
import redis
from aiohttp.test_utils import TestClient
from aiohttp.test_utils import TestServer

from beam_pipelines import event_analytics
from beam_pipelines.generate_events import GeneratorConfig
from beam_pipelines.generate_events import generate_records
from beam_pipelines.generate_events import write_events
from beam_pipelines.ingest.auth import Authenticator
from beam_pipelines.ingest.auth import sign
from beam_pipelines.ingest.payloads import PayloadLimits
from beam_pipelines.ingest.service import GroupCommit
from beam_pipelines.ingest.service import ServiceConfig
from beam_pipelines.ingest.service import make_app
from beam_pipelines.io.stream_append import FIELD
from beam_pipelines.io.stream_append import AsyncStreamAppender
from tests.conftest import free_port
from tests.conftest import wait_for_port
from tests.io.test_redis import REDIS_URL
from tests.io.test_redis import client  # noqa: F401  (fixture)
from tests.io.test_redis import prefix  # noqa: F401  (fixture)

SECRET = 'test-secret-0123456789'
BEARER = {'Authorization': f'Bearer {SECRET}'}


def serve(stream: str, check, **overrides):
    """Runs ``check(http)`` against the service on ``stream``, in an event loop."""
    config = ServiceConfig(REDIS_URL, stream, **{'backlog_check_secs': 0.0, **overrides})
    app = make_app(config, Authenticator([SECRET.encode()]))

    async def main():
        async with TestClient(TestServer(app)) as http:
            await check(http)

    asyncio.run(main())


def entries(client, stream):  # noqa: F811
    return [fields[FIELD] for _, fields in client.xrange(stream)]


def test_single_events_and_batches_are_appended_in_order(client, prefix):  # noqa: F811
    stream = f'{prefix}events'

    async def check(http):
        r = await http.post('/v1/events', data=b'{"event_id": "e1"}', headers=BEARER)
        assert r.status == 202
        body = await r.json()
        assert body['accepted'] == 1 and body['first_id'] == body['last_id']
        batch = [{'event_id': 'e2'}, {'event_id': 'e3'}]
        r = await http.post('/v1/events/batch', json=batch, headers=BEARER)
        assert (r.status, (await r.json())['accepted']) == (202, 2)
        lines = b'{"event_id":"e4"}\n{"event_id":"e5"}\n'
        headers = {**BEARER, 'Content-Type': 'application/x-ndjson'}
        r = await http.post('/v1/events/batch', data=lines, headers=headers)
        assert r.status == 202
        r = await http.post('/v1/events/batch', json=[], headers=BEARER)
        assert (r.status, (await r.json())['accepted']) == (200, 0)

    serve(stream, check)
    assert [orjson.loads(e)['event_id'] for e in entries(client, stream)] == [
        'e1',
        'e2',
        'e3',
        'e4',
        'e5',
    ]


def test_signed_requests_and_refusals(client, prefix):  # noqa: F811
    stream = f'{prefix}events'
    body = b'{"event_id":"signed"}'

    async def check(http):
        stamp = int(time.time())
        signed = {
            'X-Signature-Timestamp': str(stamp),
            'X-Signature': sign(SECRET.encode(), stamp, body),
        }
        assert (await http.post('/v1/events', data=body, headers=signed)).status == 202
        r = await http.post('/v1/events', data=body + b' ', headers=signed)
        assert r.status == 401 and (await r.json())['error'] == 'invalid signature'
        r = await http.post('/v1/events', data=body)
        assert r.status == 401 and 'missing credentials' in (await r.json())['error']
        # Without credentials a body is not even read: 401, not 413, for an oversized one.
        assert (await http.post('/v1/events/batch', data=b'[' + b' ' * 9000 + b']')).status == 401
        r = await http.post('/v1/events/batch', data=b'[{"ok":1}, 2, "x"]', headers=BEARER)
        assert r.status == 400
        assert [p['index'] for p in (await r.json())['problems']] == [1, 2]
        r = await http.post('/v1/events', data=b'{"broken":', headers=BEARER)
        assert r.status == 400 and 'not JSON' in (await r.json())['error']
        r = await http.post(
            '/v1/events/batch', data=b'{"x": "' + b'y' * 5000 + b'"}', headers=BEARER
        )
        assert r.status == 413
        many = orjson.dumps([{'i': i} for i in range(11)])
        assert (await http.post('/v1/events/batch', data=many, headers=BEARER)).status == 413

    serve(stream, check, max_body_bytes=4096, limits=PayloadLimits(max_events=10))
    assert entries(client, stream) == [body]  # only the signed event: refusals take nothing


def test_rate_limit_answers_429_with_retry_after(client, prefix):  # noqa: F811
    stream = f'{prefix}events'
    ten = orjson.dumps([{'i': i} for i in range(10)])

    async def check(http):
        assert (await http.post('/v1/events/batch', data=ten, headers=BEARER)).status == 202
        r = await http.post('/v1/events/batch', data=ten, headers=BEARER)
        assert r.status == 429 and int(r.headers['Retry-After']) >= 1
        assert (await r.json())['reason'] == 'rate_limited'
        # Clients are told apart by --client_header here: the entry the trusted proxy appended
        # (the last); what the client itself put before it does not choose its bucket.
        other = {**BEARER, 'X-Forwarded-For': '10.0.0.9, 10.0.0.1'}
        assert (await http.post('/v1/events/batch', data=ten, headers=other)).status == 202
        spoofed = {**BEARER, 'X-Forwarded-For': '192.0.2.77, 10.0.0.1'}
        assert (await http.post('/v1/events/batch', data=ten, headers=spoofed)).status == 429
        r = await http.post('/v1/events/batch', data=orjson.dumps([{}] * 11), headers=other)
        assert r.status == 413  # larger than the whole burst: retrying would never help

    serve(
        stream,
        check,
        rate_limit_eps=5,
        rate_limit_burst=10,
        client_header='X-Forwarded-For',
    )
    assert len(entries(client, stream)) == 20


def test_backpressure_above_the_high_water_mark(client, prefix):  # noqa: F811
    stream = f'{prefix}events'
    client.xgroup_create(stream, 'pipeline', id='0', mkstream=True)
    six = orjson.dumps([{'i': i} for i in range(6)])

    async def check(http):
        assert (await http.post('/v1/events/batch', data=six, headers=BEARER)).status == 202
        health = await (await http.get('/health')).json()
        assert health['backlog'] == 6 and health['status'] == 'backpressure'
        r = await http.post('/v1/events', data=b'{"i": 6}', headers=BEARER)
        assert r.status == 429 and r.headers['Retry-After'] == '2'
        assert (await r.json())['reason'] == 'backpressure'
        # The pipeline catches up: it reads and acknowledges, and producers may go on.
        read = client.xreadgroup('pipeline', 'c', {stream: '>'})
        client.xack(stream, 'pipeline', *[i for i, _ in read[0][1]])
        assert (await http.post('/v1/events', data=b'{"i": 6}', headers=BEARER)).status == 202
        metrics = await (await http.get('/metrics')).text()
        assert 'beam_pipelines_ingest_events_total 7.0' in metrics
        assert 'beam_pipelines_ingest_refused_events_total{reason="backpressure"} 1.0' in metrics
        assert 'status="429"' in metrics

    serve(stream, check, high_water=5, consumer_group='pipeline', retry_after_secs=2)


def test_redis_down_is_503_not_an_error_page():
    config = ServiceConfig('redis://127.0.0.1:1/0', 'events', backlog_check_secs=0.0)
    app = make_app(config, Authenticator([SECRET.encode()]))

    async def main():
        async with TestClient(TestServer(app)) as http:
            r = await http.post('/v1/events', data=b'{"event_id":"e"}', headers=BEARER)
            assert r.status == 503 and r.headers['Retry-After'] == '1'
            assert (await http.get('/health')).status == 503

    asyncio.run(main())


def _post(port: int, path: str, body: bytes, headers: dict) -> int:
    request = urllib.request.Request(
        f'http://127.0.0.1:{port}{path}', data=body, headers=headers, method='POST'
    )
    try:
        with urllib.request.urlopen(request, timeout=30) as response:
            return response.status
    except urllib.error.HTTPError as exc:
        return exc.code


@pytest.mark.e2e
def test_events_posted_to_the_service_give_the_same_results_as_a_file(
    tmp_path,
    client,  # noqa: F811
    prefix,  # noqa: F811
):
    stream = f'{prefix}events'
    records, _ = generate_records(GeneratorConfig(events=3000, seed=21, entities=20))
    objects = [r for r in records if isinstance(r, dict)]  # the service refuses non-JSON
    port = free_port()
    env = {**os.environ, 'BEAM_PIPELINES_INGEST_SECRETS': SECRET}
    argv = [sys.executable, '-m', 'beam_pipelines.ingest', 'serve', '--port', str(port)]
    argv += ['--redis_url', REDIS_URL, '--stream_name', stream, '--consumer_group', 'g']
    server = subprocess.Popen(argv, env=env, stderr=subprocess.PIPE)
    try:
        assert wait_for_port(port, 30), server.stderr.read().decode()
        headers = {**BEARER, 'Content-Type': 'application/json'}
        for i in range(0, len(objects), 500):
            status = _post(port, '/v1/events/batch', orjson.dumps(objects[i : i + 500]), headers)
            assert status == 202
    finally:
        server.terminate()
        assert server.wait(timeout=30) == 0
    assert client.xlen(stream) == len(objects)

    from_stream = tmp_path / 'stream'
    argv = ['--source', 'redis_stream', '--redis_url', REDIS_URL, '--stream_name', stream]
    argv += ['--consumer_group', 'g', '--stop_at_end', '--output_dir', str(from_stream)]
    assert event_analytics.run([*argv, '--redis_prefix', prefix]) == 0
    path = tmp_path / 'events.jsonl'
    write_events(objects, str(path), 'jsonl')
    from_file = tmp_path / 'file'
    assert event_analytics.run(['--input', str(path), '--output_dir', str(from_file)]) == 0
    stream_counts = json.loads((from_stream / 'run_summary.json').read_text())['counts']
    assert stream_counts.pop('redis_commands') > 0  # --redis_url is also the serving store
    file_counts = json.loads((from_file / 'run_summary.json').read_text())['counts']
    assert stream_counts == file_counts
    assert stream_counts['read'] == len(objects) and stream_counts['dead_letter'] > 0
    keys = [(k, 'ascending') for k in ('entity_id', 'event_type', 'window_start')]
    stream_aggregates, file_aggregates = (
        pq.read_table(out / 'aggregates').sort_by(keys).to_pylist()
        for out in (from_stream, from_file)
    )
    assert stream_aggregates == file_aggregates


def test_concurrent_requests_are_appended_together_in_order(client, prefix):  # noqa: F811
    stream, broken = f'{prefix}events', f'{prefix}not-a-stream'
    client.set(broken, 'a string: XADD fails on it')

    async def main():
        good = AsyncStreamAppender(REDIS_URL, stream)
        bad = AsyncStreamAppender(REDIS_URL, broken)
        commits, failing = GroupCommit(good, max_events=50), GroupCommit(bad)
        commits.start()
        failing.start()
        try:
            batches = [
                [orjson.dumps({'r': r, 'i': i}) for i in range(r % 3 + 1)] for r in range(120)
            ]
            ids = await asyncio.gather(*(commits.append(b) for b in batches))
            errors = await asyncio.gather(
                *(failing.append([b'{}']) for _ in range(5)), return_exceptions=True
            )
        finally:
            await commits.stop()
            await failing.stop()
            await good.close()
            await bad.close()
        return batches, ids, errors, commits.appends

    batches, ids, errors, appends = asyncio.run(main())
    assert [len(i) for i in ids] == [len(b) for b in batches]
    entries = client.xrange(stream)
    assert [e for _, e in entries] == [{FIELD: x} for b in batches for x in b]  # request order
    by_id = {i.decode(): fields[FIELD] for i, fields in entries}
    assert all(by_id[i] == x for got, b in zip(ids, batches) for i, x in zip(got, b))
    assert appends < len(batches)  # grouped, and no group above max_events (50)
    assert all(isinstance(e, redis.ResponseError) for e in errors)
