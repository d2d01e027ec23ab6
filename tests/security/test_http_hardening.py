"""HTTP hardening of the services the project serves, against the real Redis and PostgreSQL.

The ingestion service (``python -m beam_pipelines.ingest serve``) runs as the real command on a
free port, with ``PYTHONASYNCIODEBUG=1`` (aiohttp's own 500 page then carries the traceback, so
any error the service left to aiohttp would show it). Fault injection (a stream client that
raises) and the other modes run in process. What ``tests/ingest/test_service.py`` already covers
(a missing header and a bad signature on ``/v1/events``, 413 for a body and for too many events,
400 for non-objects, 503 with Redis down) is not repeated; this adds every write endpoint, every
way credentials can be wrong, bodies refused before they are read, inflated and chunked
bodies, content types, malformed JSON, and what the error bodies may contain. The ops API and
the metrics exporter are checked for the same.
"""

from __future__ import annotations

import asyncio
import gzip
import http.client
import json
import logging
import os
import re
import socket
import subprocess
import sys
import time

import orjson
import psycopg2
import pytest
from aiohttp.test_utils import TestClient
from aiohttp.test_utils import TestServer

from beam_pipelines.ingest.auth import Authenticator
from beam_pipelines.ingest.auth import sign
from beam_pipelines.ingest.service import ServiceConfig
from beam_pipelines.ingest.service import make_app
from beam_pipelines.io.stream_append import AsyncStreamAppender
from beam_pipelines.observability.prometheus import RunMetrics
from beam_pipelines.ops.app import OpsConfig
from beam_pipelines.ops.app import make_app as make_ops_app
from tests.conftest import free_port
from tests.conftest import wait_for_port
from tests.io.test_postgres import PG_URL
from tests.io.test_redis import REDIS_URL
from tests.io.test_redis import client  # noqa: F401  (fixture)
from tests.io.test_redis import prefix  # noqa: F401  (fixture)

SECRET = 'hardening-secret-0123456789'
OTHER = 'someone-elses-secret-0123'
BEARER = {'Authorization': f'Bearer {SECRET}'}
JSON = {'Content-Type': 'application/json'}
MAX_BODY = 4096
MAX_EVENT = 512
MAX_EVENTS = 10
TOLERANCE = 60
WRITE_ENDPOINTS = ('/v1/events', '/v1/events/batch')
EVENT = b'{"event_id":"e1","value":1}'
# What an error body must never hold: a traceback, source paths, module or exception names.
LEAKS = re.compile(
    r'Traceback|File "|\.py\b|site-packages|/work/|/usr/|beam_pipelines\.|aiohttp|redis\.|'
    r'Error:|Exception|WRONGTYPE|Connection refused|Errno|line \d+, in ',
)


def body_for(endpoint: str) -> bytes:
    return EVENT if endpoint == '/v1/events' else b'[' + EVENT + b']'


class Answer:
    def __init__(self, status: int, headers: dict, body: bytes):
        self.status, self.headers, self.body = status, headers, body

    def json(self) -> dict:
        return json.loads(self.body)


def assert_short_json_error(answer: Answer, status: int | None = None) -> dict:
    """A refusal: a small JSON object with a one-line ``error``, nothing internal in it."""
    if status is not None:
        assert answer.status == status, answer.body
    assert answer.headers.get('content-type', '').startswith('application/json'), answer.headers
    text = answer.body.decode()
    assert LEAKS.search(text) is None, text
    payload = json.loads(text)
    assert isinstance(payload['error'], str) and '\n' not in payload['error']
    assert len(payload['error']) <= 200 and len(answer.body) <= 4096
    return payload


def call(port: int, method: str, path: str, body=b'', headers=None, **kwargs) -> Answer:
    conn = http.client.HTTPConnection('127.0.0.1', port, timeout=10)
    try:
        conn.request(method, path, body=body, headers=headers or {}, **kwargs)
        response = conn.getresponse()
        return Answer(
            response.status, {k.lower(): v for k, v in response.getheaders()}, response.read()
        )
    finally:
        conn.close()


@pytest.fixture(scope='module')
def service(client, tmp_path_factory):  # noqa: F811
    """The real command on a free port: (port, stream, stderr path)."""
    stream = f'test:hardening:{os.getpid()}:{time.monotonic_ns()}'
    port = free_port()
    log = tmp_path_factory.mktemp('ingest') / 'stderr.txt'
    env = {
        **os.environ,
        'BEAM_PIPELINES_INGEST_SECRETS': SECRET,
        'PYTHONASYNCIODEBUG': '1',  # aiohttp's own 500 page would then show the traceback
    }
    argv = [sys.executable, '-m', 'beam_pipelines.ingest', 'serve', '--port', str(port)]
    argv += ['--redis_url', REDIS_URL, '--stream_name', stream]
    argv += ['--max_body_bytes', str(MAX_BODY), '--max_event_bytes', str(MAX_EVENT)]
    argv += ['--max_batch_events', str(MAX_EVENTS)]
    argv += ['--signature_tolerance_secs', str(TOLERANCE)]
    with open(log, 'wb') as err:
        server = subprocess.Popen(argv, env=env, stdout=err, stderr=err)
        try:
            assert wait_for_port(port, 30), log.read_text()
            yield port, stream, log
        finally:
            server.terminate()
            server.wait(timeout=30)
            client.delete(stream)


def stream_length(client, stream) -> int:  # noqa: F811
    return client.xlen(stream)


# -- authentication --------------------------------------------------------------------------


def _bad_credentials(body: bytes) -> dict[str, dict]:
    now = int(time.time())
    return {
        'none': {},
        'wrong bearer': {'Authorization': f'Bearer {OTHER}'},
        'wrong api key': {'X-API-Key': OTHER},
        'empty bearer': {'Authorization': 'Bearer '},
        'basic scheme': {'Authorization': f'Basic {SECRET}'},
        'bearer prefix of the secret': {'Authorization': f'Bearer {SECRET[:-1]}'},
        'bearer with the secret as prefix': {'Authorization': f'Bearer {SECRET}x'},
        'signature by another secret': {
            'X-Signature-Timestamp': str(now),
            'X-Signature': sign(OTHER.encode(), now, body),
        },
        'signature of another body': {
            'X-Signature-Timestamp': str(now),
            'X-Signature': sign(SECRET.encode(), now, body + b' '),
        },
        'signature of another timestamp': {
            'X-Signature-Timestamp': str(now),
            'X-Signature': sign(SECRET.encode(), now - 1, body),
        },
        'replayed after the tolerance': {
            'X-Signature-Timestamp': str(now - TOLERANCE - 5),
            'X-Signature': sign(SECRET.encode(), now - TOLERANCE - 5, body),
        },
        'signed in the future': {
            'X-Signature-Timestamp': str(now + TOLERANCE + 5),
            'X-Signature': sign(SECRET.encode(), now + TOLERANCE + 5, body),
        },
        'timestamp of 400 digits': {  # was a 500: int too large to convert to float
            'X-Signature-Timestamp': '1' + '0' * 400,
            'X-Signature': sign(SECRET.encode(), '1' + '0' * 400, body),
        },
        'timestamp not a number': {
            'X-Signature-Timestamp': 'nan',
            'X-Signature': sign(SECRET.encode(), 'nan', body),
        },
        'signature without timestamp': {'X-Signature': sign(SECRET.encode(), now, body)},
        'signature not hex': {'X-Signature-Timestamp': str(now), 'X-Signature': 'sha256=zz'},
    }


@pytest.mark.parametrize('endpoint', WRITE_ENDPOINTS)
def test_every_write_endpoint_refuses_every_wrong_credential(service, client, endpoint):  # noqa: F811
    port, stream, _ = service
    body = body_for(endpoint)
    before = stream_length(client, stream)
    for case, headers in _bad_credentials(body).items():
        answer = call(port, 'POST', endpoint, body, {**JSON, **headers})
        payload = assert_short_json_error(answer, 401)
        assert payload['reason'] == 'unauthenticated', case
        assert answer.headers['www-authenticate'] == 'Bearer', case
        assert SECRET not in answer.body.decode(), case
    assert stream_length(client, stream) == before  # nothing taken
    # The same request with valid credentials of either scheme is taken.
    now = int(time.time())
    signed = {'X-Signature-Timestamp': str(now), 'X-Signature': sign(SECRET.encode(), now, body)}
    for headers in (BEARER, {'X-API-Key': SECRET}, signed):
        assert call(port, 'POST', endpoint, body, {**JSON, **headers}).status == 202
    assert stream_length(client, stream) == before + 3


def test_modes_refuse_the_other_scheme_over_http(client, prefix):  # noqa: F811
    now = int(time.time())
    signed = {'X-Signature-Timestamp': str(now), 'X-Signature': sign(SECRET.encode(), now, EVENT)}
    statuses = {}

    async def main():
        for mode in ('token', 'hmac'):
            config = ServiceConfig(REDIS_URL, f'{prefix}events', backlog_check_secs=0.0)
            app = make_app(config, Authenticator([SECRET.encode()], mode))
            async with TestClient(TestServer(app)) as http_:
                for name, headers in (('bearer', BEARER), ('signed', signed)):
                    r = await http_.post('/v1/events', data=EVENT, headers={**JSON, **headers})
                    statuses[mode, name] = (r.status, r.headers.get('WWW-Authenticate'))

    asyncio.run(main())
    assert statuses == {
        ('token', 'bearer'): (202, None),
        ('token', 'signed'): (401, 'Bearer'),
        ('hmac', 'bearer'): (401, 'Signature'),
        ('hmac', 'signed'): (202, None),
    }


def test_reads_need_no_credentials_and_give_nothing_away(service):
    port, _, _ = service
    health = call(port, 'GET', '/health')
    assert health.status == 200 and set(health.json()) == {
        'status',
        'redis',
        'stream',
        'backlog',
        'high_water',
    }
    metrics = call(port, 'GET', '/metrics')
    assert metrics.status == 200 and SECRET not in metrics.body.decode()
    for method, path in (('GET', '/v1/events'), ('PUT', '/v1/events/batch'), ('GET', '/nope')):
        answer = call(port, method, path, headers=BEARER)
        assert_short_json_error(answer, 405 if path != '/nope' else 404)
    assert 'POST' in call(port, 'GET', '/v1/events').headers['allow']


# -- sizes -----------------------------------------------------------------------------------


def _raw_request(port: int, head: bytes, body: bytes = b'') -> tuple[bytes, float]:
    """Sends ``head`` and ``body`` on a socket and nothing more; returns the first response
    (headers and its Content-Length of body) and the seconds it took to come."""
    started = time.monotonic()
    with socket.create_connection(('127.0.0.1', port), timeout=10) as s:
        s.sendall(head + body)
        received = b''
        while True:
            chunk = s.recv(65536)
            received += chunk
            top, sep, rest = received.partition(b'\r\n\r\n')
            length = re.search(rb'(?i)content-length: *(\d+)', top)
            if not chunk or (sep and length and len(rest) >= int(length.group(1))):
                return received, time.monotonic() - started


def _answer_of(raw: bytes) -> Answer:
    head, _, body = raw.partition(b'\r\n\r\n')
    lines = head.decode().split('\r\n')
    headers = {k.strip().lower(): v.strip() for k, _, v in (h.partition(':') for h in lines[1:])}
    return Answer(int(lines[0].split()[1]), headers, body)


@pytest.mark.parametrize('endpoint', WRITE_ENDPOINTS)
def test_a_declared_body_over_the_limit_is_refused_before_it_is_read(service, endpoint):
    """Content-Length: 1 GB, then 1 KB of it: the 413 comes at once, telling the client the
    connection closes (the server buffers none of the body)."""
    port, _, _ = service
    head = (
        f'POST {endpoint} HTTP/1.1\r\nHost: 127.0.0.1\r\nAuthorization: Bearer {SECRET}\r\n'
        f'Content-Type: application/json\r\nContent-Length: {10**9}\r\n\r\n'
    ).encode()
    raw, seconds = _raw_request(port, head, b'[' + b' ' * 1000)
    assert seconds < 2.0, 'the server waited for the body'
    answer = _answer_of(raw)
    assert assert_short_json_error(answer, 413)['reason'] == 'too_large'
    assert answer.headers.get('connection', '').lower() == 'close'


def test_an_unauthenticated_large_body_is_refused_without_being_read(service):
    port, _, _ = service
    head = (
        'POST /v1/events/batch HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\n'
        f'Content-Length: {10**9}\r\n\r\n'
    ).encode()
    raw, seconds = _raw_request(port, head)
    assert seconds < 2.0, 'the server waited for the body'
    answer = _answer_of(raw)
    assert_short_json_error(answer, 401)
    assert answer.headers.get('connection', '').lower() == 'close'


def test_chunked_and_inflated_bodies_are_limited_as_they_are_read(service, client):  # noqa: F811
    port, stream, _ = service
    before = stream_length(client, stream)

    def chunks():
        for _ in range(100):
            yield b' ' * 1000

    headers = {**BEARER, **JSON}
    answer = call(port, 'POST', '/v1/events/batch', chunks(), headers, encode_chunked=True)
    assert assert_short_json_error(answer, 413)['reason'] == 'too_large'
    # A gzip bomb: 2 KB on the wire, 2 MB inflated; the limit is on what it inflates to.
    bomb = gzip.compress(b'[' + b'{},' * 700_000 + b'{}]')
    assert len(bomb) < MAX_BODY
    answer = call(port, 'POST', '/v1/events/batch', bomb, {**headers, 'Content-Encoding': 'gzip'})
    assert_short_json_error(answer, 413)
    # A small compressed batch is fine.
    small = gzip.compress(b'[' + EVENT + b']')
    answer = call(port, 'POST', '/v1/events/batch', small, {**headers, 'Content-Encoding': 'gzip'})
    assert answer.status == 202
    assert stream_length(client, stream) == before + 1


def test_an_event_over_max_event_bytes_is_refused_whole(service, client):  # noqa: F811
    port, stream, _ = service
    before = stream_length(client, stream)
    big = orjson.dumps({'event_id': 'big', 'pad': 'x' * MAX_EVENT})
    headers = {**BEARER, **JSON}
    assert_short_json_error(call(port, 'POST', '/v1/events', big, headers), 413)
    # In a batch: the request is refused whole (413: size is its only problem), naming it.
    batch = b'[' + EVENT + b',' + big + b']'
    payload = assert_short_json_error(call(port, 'POST', '/v1/events/batch', batch, headers), 413)
    assert payload['problems'] == [{'index': 1, 'error': f'over {MAX_EVENT} bytes'}]
    lines = EVENT + b'\n' + big + b'\n'
    ndjson = {**BEARER, 'Content-Type': 'application/x-ndjson'}
    payload = assert_short_json_error(call(port, 'POST', '/v1/events/batch', lines, ndjson), 413)
    assert payload['problems'] == [{'line': 2, 'error': f'over {MAX_EVENT} bytes'}]
    # With another problem too, it is a malformed request (400), every problem listed.
    mixed = b'[' + big + b', 3]'
    payload = assert_short_json_error(call(port, 'POST', '/v1/events/batch', mixed, headers), 400)
    assert [p['index'] for p in payload['problems']] == [0, 1]
    assert stream_length(client, stream) == before


# -- content types and malformed bodies ------------------------------------------------------


@pytest.mark.parametrize('endpoint', WRITE_ENDPOINTS)
def test_content_types_that_are_not_json_are_415(service, client, endpoint):  # noqa: F811
    port, stream, _ = service
    before = stream_length(client, stream)
    body = body_for(endpoint)
    refused = [
        'text/html',
        'text/plain',
        'application/x-www-form-urlencoded',
        'multipart/form-data; boundary=x',
        'application/xml',
        'image/png',
    ]
    if endpoint == '/v1/events':
        refused.append('application/x-ndjson')
    for content_type in refused:
        answer = call(port, 'POST', endpoint, body, {**BEARER, 'Content-Type': content_type})
        payload = assert_short_json_error(answer, 415)
        assert payload['reason'] == 'unsupported_media_type', content_type
    taken = ['application/json; charset=utf-8', 'application/cloudevents+json', None]
    for content_type in taken:
        headers = {**BEARER, **({'Content-Type': content_type} if content_type else {})}
        assert call(port, 'POST', endpoint, body, headers).status == 202, content_type
    assert stream_length(client, stream) == before + len(taken)


BIG_INT = b'{"a": 123456789012345678901234567890}'
MALFORMED = [
    b'',
    b'   \n',
    b'{"broken":',
    b'\xff\xfe{"a":1}',  # not UTF-8
    b'\xef\xbb\xbf{"a":1}',  # a byte-order mark
    b'{"a":1} trailing',
    b'{"a": NaN}',
    b'{"a": 1e999999}',
    BIG_INT,
    b'[' * 2000 + b']' * 2000,  # deeper than the parser's recursion limit
    b'{"a":' * 600 + b'1' + b'}' * 600,
    b'null',
    b'"just a string"',
    b'{"a": "\\ud800"}',  # a lone surrogate escape
]


@pytest.mark.parametrize('endpoint', WRITE_ENDPOINTS)
def test_malformed_bodies_are_4xx_with_a_short_json_error(service, client, endpoint):  # noqa: F811
    port, stream, _ = service
    before = stream_length(client, stream)
    for body in MALFORMED:
        answer = call(port, 'POST', endpoint, body, {**BEARER, **JSON})
        if endpoint == '/v1/events' and body == BIG_INT:  # valid JSON: a float, as orjson reads
            assert answer.status == 202
            continue
        assert 400 <= answer.status < 500, (body[:40], answer.status)
        assert_short_json_error(answer)
    lines = b'{"a":1}\n{"broken":\n\xff\n[1]\n'
    answer = call(
        port, 'POST', '/v1/events/batch', lines, {**BEARER, 'Content-Type': 'application/x-ndjson'}
    )
    assert [p['line'] for p in assert_short_json_error(answer, 400)['problems']] == [2, 3, 4]
    assert stream_length(client, stream) - before == (endpoint == '/v1/events')


# -- internal errors -------------------------------------------------------------------------


class _BrokenAppender(AsyncStreamAppender):
    """A real appender whose append fails as no code path expects (a bug, a library change):
    the fault injected to see what a client gets for an unexpected exception."""

    async def append(self, events, extra=None):
        raise RuntimeError(f'boom in {__file__} at /srv/app/secret_internal.py line 42')

    async def backlog(self):
        raise KeyError('/srv/app/secret_internal.py')

    async def ping(self):
        raise RuntimeError('/srv/app/secret_internal.py')


def _serve_in_process(appender, requests, stream='x', **overrides) -> list[Answer]:
    """Runs ``requests`` (method, path, body) against an in-process app with the event loop in
    debug mode (aiohttp's 500 page would carry the traceback)."""
    config = ServiceConfig(
        **{'redis_url': REDIS_URL, 'stream_name': stream, 'backlog_check_secs': 0.0, **overrides}
    )
    app = make_app(config, Authenticator([SECRET.encode()]), appender)
    answers = []

    async def main():
        async with TestClient(TestServer(app)) as http_:
            for method, path, body in requests:
                r = await http_.request(method, path, data=body, headers={**BEARER, **JSON})
                answers.append(
                    Answer(r.status, {k.lower(): v for k, v in r.headers.items()}, await r.read())
                )

    asyncio.run(main(), debug=True)
    return answers


def test_an_unexpected_exception_is_a_generic_500_and_logged(caplog):
    caplog.set_level(logging.ERROR, logger='beam_pipelines.ingest.service')
    appender = _BrokenAppender(REDIS_URL, 'never-used')
    single, batch = _serve_in_process(
        appender,
        [('POST', '/v1/events', EVENT), ('POST', '/v1/events/batch', b'[' + EVENT + b']')],
        high_water=10**9,
        backlog_check_secs=10**9,  # the gate is not asked: append is reached
    )
    for answer in (single, batch):
        assert assert_short_json_error(answer, 500) == {
            'error': 'internal error',
            'reason': 'internal',
        }
        assert b'secret_internal' not in answer.body
    # The traceback is the operator's, in the log.
    assert any(r.exc_info and 'secret_internal' in str(r.exc_info[1]) for r in caplog.records)


def test_health_failing_unexpectedly_is_a_generic_500(caplog):
    caplog.set_level(logging.ERROR, logger='beam_pipelines.ingest.service')
    (answer,) = _serve_in_process(
        _BrokenAppender(REDIS_URL, 'never-used'), [('GET', '/health', None)]
    )
    assert assert_short_json_error(answer, 500)['error'] == 'internal error'


@pytest.mark.parametrize(
    'case', ['redis down', 'wrong redis password', 'stream key of another type']
)
def test_redis_failures_are_a_generic_503(client, prefix, case):  # noqa: F811
    stream = f'{prefix}stream'
    url = {
        'redis down': 'redis://127.0.0.1:1/0',
        'wrong redis password': REDIS_URL.replace('://', f'://no_such_user:{SECRET}@', 1),
        'stream key of another type': REDIS_URL,
    }[case]
    client.set(stream, 'a string: XADD fails with WRONGTYPE')
    answers = _serve_in_process(
        None,
        [('POST', '/v1/events', EVENT), ('POST', '/v1/events/batch', b'[' + EVENT + b']')],
        stream=stream,
        redis_url=url,
        backlog_check_secs=10**9 if case == 'stream key of another type' else 0.0,
    )
    for answer in answers:
        payload = assert_short_json_error(answer, 503)
        assert payload == {'error': 'the stream is unavailable', 'reason': 'unavailable'}
        assert answer.headers['retry-after'] == '1' and SECRET not in answer.body.decode()


def test_the_real_service_logged_no_secret_and_no_traceback_for_refusals(service):
    """Everything above was a refusal: the service's own stderr has no traceback for them (an
    error left to aiohttp is logged with one), and never the secret."""
    port, _, log = service
    assert call(port, 'GET', '/health').status == 200  # still up after all of it
    text = log.read_text()
    assert 'Traceback' not in text and SECRET not in text


# -- the other HTTP endpoints ----------------------------------------------------------------


def _ops(requests, **config) -> list[Answer]:
    app = make_ops_app(OpsConfig([SECRET], '/nonexistent/*', **config))
    answers = []

    async def main():
        async with TestClient(TestServer(app)) as http_:
            for method, path, body, headers in requests:
                r = await http_.request(method, path, data=body, headers=headers)
                answers.append(
                    Answer(r.status, {k.lower(): v for k, v in r.headers.items()}, await r.read())
                )

    asyncio.run(main(), debug=True)
    return answers


def test_the_ops_api_refuses_writes_without_a_token_and_answers_errors_generically():
    replay = '/dead-letters/replay'
    hostile_schema = 'x"; DROP TABLE x; --'
    auth = {'Authorization': f'Bearer {SECRET}', **JSON}
    answers = _ops(
        [
            ('POST', replay, b'{"ids": ["a"]}', JSON),
            ('POST', replay, b'{"ids": ["a"]}', {'Authorization': f'Bearer {OTHER}', **JSON}),
            ('POST', replay, b'x' * (65 * 1024), auth),
            ('POST', replay, b'{"broken":', auth),
            ('POST', replay, b'{"ids": ["a"]}', auth),
            ('GET', '/dead-letters', None, auth),
            ('GET', '/nope', None, auth),
        ],
        postgres_url=PG_URL,
        pg_schema=hostile_schema,
        replay_url=PG_URL,
    )
    statuses = [a.status for a in answers]
    # The replay refuses the hostile schema (``ident``) with an exception the API does not
    # expect: a generic 500; the dead-letter page quotes it (``sql.Identifier``): the database
    # finds no such table, a generic 503.
    assert statuses == [401, 401, 413, 400, 500, 503, 404]
    for answer in answers:
        assert_short_json_error(answer)
        assert hostile_schema not in answer.body.decode()  # no SQL or database text
    assert answers[4].json() == {'error': 'internal error'}
    with psycopg2.connect(PG_URL) as conn, conn.cursor() as cur:
        cur.execute('SELECT count(*) FROM pg_namespace WHERE nspname = %s', (hostile_schema,))
        assert cur.fetchone() == (0,)
    conn.close()


def test_the_metrics_exporter_listens_on_loopback_and_takes_no_writes():
    from beam_pipelines.options.observability import ObservabilityOptions

    assert ObservabilityOptions([]).metrics_host == '127.0.0.1'
    port = free_port()
    metrics = RunMetrics('security_test', None, port, '127.0.0.1')
    try:
        assert call(port, 'GET', '/metrics').status == 200
        answer = call(port, 'POST', '/metrics', b'x' * 1000)
        assert answer.status in (405, 501)
        assert LEAKS.search(answer.body.decode(errors='replace')) is None
    finally:
        metrics.close()
