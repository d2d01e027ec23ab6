"""The invariants of the ingestion front doors (request bodies, authentication, the HTTP
endpoints, the MQTT bridge's topic fields), whatever the request.

The rules (see :mod:`fuzz.invariants` for how they are checked and skipped):

* ``payload-*``: a request body is taken (each event one JSON object within the limits, all or
  nothing) or refused with a ``PayloadError`` of status 400 or 413, nothing else.
* ``auth-*``: verification raises nothing but ``AuthError``, never accepts a request that does
  not prove it holds a secret, and never echoes a secret.
* ``http-*``: the ingestion endpoints answer every request with a 2xx or a 4xx (a JSON error),
  never a 5xx; a 2xx only with credentials; what a 2xx accepted is what the payload parser
  takes.
* ``fill-*``: the MQTT bridge's topic fields keep a payload that is not a JSON object as it
  is, and an object an object with its own fields and the topic's.

Plain Python; imports neither atheris nor hypothesis.
"""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import time
from collections.abc import Iterable
from collections.abc import Mapping
from typing import Literal

import orjson

from beam_pipelines.ingest.auth import SIGNATURE_HEADER
from beam_pipelines.ingest.auth import TIMESTAMP_HEADER
from beam_pipelines.ingest.auth import Authenticator
from beam_pipelines.ingest.auth import AuthError
from beam_pipelines.ingest.mqtt_bridge import TopicFields
from beam_pipelines.ingest.payloads import PayloadError
from beam_pipelines.ingest.payloads import PayloadLimits
from beam_pipelines.ingest.payloads import parse_batch
from beam_pipelines.ingest.payloads import parse_single
from fuzz.invariants import InvariantViolation
from fuzz.invariants import _require
from fuzz.invariants import decoded_object

__all__ = [
    'JSON_LINES',
    'IngestHarness',
    'InvariantViolation',
    'check_auth',
    'check_http',
    'check_payload',
    'check_topic_fill',
    'proves_secret',
]

JSON_LINES = ('application/x-ndjson', 'application/jsonl')
HTTP_STATUSES = (200, 202, 400, 401, 413, 415)


def check_topic_fill(template: str, topic: str, payload: bytes, skip=()) -> bytes:
    """The MQTT bridge's topic fields: a payload that is not a JSON object, or nests deeper than
    orjson writes back (the pipeline dead-letters it), passes unchanged; an object keeps its
    fields and gains the topic's, and stays an object."""
    fields = TopicFields(template)
    out = fields.fill(topic, payload)
    _require(isinstance(out, bytes), 'fill-returns-bytes', type(out), skip)
    decoded = decoded_object(payload)
    found = fields.fields(topic)
    if decoded is None or not found or not writable(decoded):
        _require(out == payload, 'fill-keeps-other-payloads', (payload, out), skip)
        return out
    filled = orjson.loads(out)
    _require(isinstance(filled, dict), 'fill-keeps-an-object', out, skip)
    for key, value in decoded.items():
        if value not in (None, '') or key not in found:
            _require(filled.get(key) == value, 'fill-keeps-fields', (key, value, out), skip)
    for key, value in found.items():
        if decoded.get(key) in (None, ''):
            _require(filled.get(key) == value, 'fill-adds-topic-fields', (key, out), skip)
    return out


def writable(value) -> bool:
    """Whether orjson writes ``value`` back (it reads 1024 levels deep, writes 254)."""
    try:
        orjson.dumps(value)
    except orjson.JSONEncodeError:
        return False
    return True


def check_payload(
    body: bytes,
    content_type: str = 'application/json',
    limits: PayloadLimits | None = None,
    single: bool = False,
    skip: Iterable[str] = (),
) -> list[bytes] | PayloadError:
    """A request body is taken whole or refused with a 400/413 ``PayloadError``.

    Rules: payload-raises-payload-error-only (any other exception escapes), payload-status,
    payload-events-are-objects, payload-limits, payload-all-or-nothing.
    """
    limits = limits or PayloadLimits()
    try:
        events = parse_single(body, limits) if single else parse_batch(body, content_type, limits)
    except PayloadError as exc:
        _require(exc.status in (400, 413), 'payload-status', exc.status, skip)
        _require(len(exc.problems) <= 20, 'payload-status', len(exc.problems), skip)
        return exc
    _require(isinstance(events, list), 'payload-events-are-objects', type(events), skip)
    _require(len(events) <= limits.max_events, 'payload-limits', len(events), skip)
    for event in events:
        _require(isinstance(event, bytes), 'payload-events-are-objects', event, skip)
        _require(isinstance(orjson.loads(event), dict), 'payload-events-are-objects', event, skip)
        _require(b'\n' not in event, 'payload-events-are-objects', event, skip)
    if single:
        _require(len(events) == 1, 'payload-all-or-nothing', events, skip)
    elif content_type in JSON_LINES:
        lines = [line.strip() for line in body.split(b'\n') if line.strip()]
        _require(events == lines, 'payload-all-or-nothing', (events, lines), skip)
        _require(all(len(e) <= limits.max_event_bytes for e in events), 'payload-limits', '', skip)
    else:
        value = orjson.loads(body)
        if isinstance(value, dict):
            value = value['events']
        _require(len(events) == len(value), 'payload-all-or-nothing', (events, value), skip)
        _require(all(len(e) <= limits.max_event_bytes for e in events), 'payload-limits', '', skip)
    return events


def proves_secret(
    headers: Mapping[str, str],
    body: bytes,
    secrets: list[bytes],
    now: float,
    tolerance_secs: float,
    mode: str,
) -> bool:
    """Whether a request proves it holds a secret (an oracle written apart from ``auth``): a
    token equal to a secret, or a signature of the timestamp and body made with one."""

    def ascii_(value: str) -> bytes | None:
        try:
            return value.strip().encode('ascii')
        except UnicodeEncodeError:
            return None

    tokens = []
    authorization = headers.get('Authorization') or ''
    if authorization[:7].lower() == 'bearer ':
        tokens.append(authorization[7:])
    if headers.get('X-API-Key') is not None:
        tokens.append(headers['X-API-Key'])
    if mode != 'hmac' and any(ascii_(t) in secrets for t in tokens):
        return True
    stamp = (headers.get(TIMESTAMP_HEADER) or '').strip()
    given = ascii_(headers.get(SIGNATURE_HEADER) or '')
    if mode == 'token' or given is None:
        return False
    for secret in secrets:
        digest = hmac.new(secret, stamp.encode() + b'.' + body, hashlib.sha256).hexdigest()
        if given == f'sha256={digest}'.encode():
            return True
    return False


def check_auth(
    headers: Mapping[str, str],
    body: bytes,
    secrets: list[bytes],
    mode: str = 'any',
    now: float = 1_714_521_600.0,
    tolerance_secs: float = 300.0,
    skip: Iterable[str] = (),
) -> bool:
    """Verifies one request. Rules: auth-raises-auth-error-only (any other exception escapes),
    auth-no-entry-without-secret, auth-never-echoes-secret. Returns whether it was accepted."""
    auth = Authenticator(secrets, mode=mode, tolerance_secs=tolerance_secs, clock=lambda: now)
    try:
        auth.check(headers, body)
        accepted = True
    except AuthError as exc:
        accepted = False
        message = str(exc).encode('utf-8', 'surrogateescape')
        _require(not any(s in message for s in secrets), 'auth-never-echoes-secret', message, skip)
    if accepted:
        _require(
            proves_secret(headers, body, secrets, now, tolerance_secs, mode),
            'auth-no-entry-without-secret',
            lambda: dict(headers),
            skip,
        )
    return accepted


# --- The HTTP ingestion service --------------------------------------------------------------


class IngestHarness:
    """The ingestion service (``make_app``) on aiohttp's test server on loopback, appending to
    the real Redis at ``redis_url``, driven from one event loop; each call is one request.

    Raises (from the constructor): ``redis.RedisError`` when Redis does not answer.
    """

    def __init__(
        self,
        redis_url: str,
        stream: str,
        secret: bytes,
        limits: PayloadLimits,
        max_body_bytes: int = 64 * 1024,
    ):
        import redis
        from aiohttp.test_utils import TestClient
        from aiohttp.test_utils import TestServer

        from beam_pipelines.ingest.service import ServiceConfig
        from beam_pipelines.ingest.service import make_app

        self.secret = secret
        self.limits = limits
        self.stream = stream
        self._redis = redis.Redis.from_url(redis_url)
        self._redis.ping()
        self._redis.delete(stream)
        config = ServiceConfig(
            redis_url,
            stream,
            high_water=10**12,
            max_body_bytes=max_body_bytes,
            limits=limits,
            backlog_check_secs=3600.0,
        )
        app = make_app(config, Authenticator([secret]))
        self._loop = asyncio.new_event_loop()

        async def start():
            client = TestClient(TestServer(app))
            await client.start_server()
            return client

        self._client = self._loop.run_until_complete(start())
        self.requests = 0

    def post(self, path: str, body: bytes, headers: dict[str, str]) -> tuple[int, object]:
        async def send():
            response = await self._client.post(path, data=body, headers=headers)
            raw = await response.read()
            return response.status, raw

        status, raw = self._loop.run_until_complete(send())
        self.requests += 1
        if self.requests % 500 == 0:
            self._redis.delete(self.stream)  # bounded: nothing reads this stream
        try:
            return status, orjson.loads(raw)
        except orjson.JSONDecodeError:
            return status, raw

    def close(self) -> None:
        self._loop.run_until_complete(self._client.close())
        self._loop.close()
        self._redis.delete(self.stream)
        self._redis.close()


def check_http(
    harness: IngestHarness,
    endpoint: Literal['single', 'batch'],
    body: bytes,
    headers: dict[str, str],
    skip: Iterable[str] = (),
) -> int:
    """One request to the ingestion service. Rules: http-never-5xx, http-status (one of
    ``HTTP_STATUSES``; errors as a JSON object), http-no-entry-without-secret,
    http-accepts-what-the-parser-takes. Returns the status."""
    from aiohttp.helpers import parse_content_type

    path = '/v1/events' if endpoint == 'single' else '/v1/events/batch'
    status, answer = harness.post(path, body, headers)
    _require(status < 500, 'http-never-5xx', lambda: (status, answer, headers, body[:200]), skip)
    _require(status in HTTP_STATUSES, 'http-status', (status, answer), skip)
    if status >= 400:
        _require(
            isinstance(answer, dict) and 'error' in answer and 'reason' in answer,
            'http-status',
            answer,
            skip,
        )
    proven = proves_secret(headers, body, [harness.secret], time.time(), 300.0, 'any')
    if status in (200, 202):
        _require(proven, 'http-no-entry-without-secret', headers, skip)
        # aiohttp's own reading of the header (the client sends application/octet-stream
        # when there is none).
        raw_type = headers.get('Content-Type')
        content_type = parse_content_type(raw_type)[0] if raw_type is not None else ''
        expected = check_payload(body, content_type, harness.limits, endpoint == 'single', skip)
        _require(
            isinstance(expected, list) and answer.get('accepted') == len(expected),
            'http-accepts-what-the-parser-takes',
            (answer, expected),
            skip,
        )
    return status
