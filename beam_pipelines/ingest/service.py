"""The HTTP ingestion service: webhook endpoints that append events to the pipeline's stream.

Endpoints:

* ``POST /v1/events``: one event, a JSON object.
* ``POST /v1/events/batch``: a JSON array of events, ``{"events": [...]}``, or JSON Lines
  (``Content-Type: application/x-ndjson``).
* ``GET /health``: 200 with the stream backlog when Redis answers, else 503 (no credentials
  needed, for load balancers and orchestrators).
* ``GET /metrics``: the service's Prometheus metrics.

Each accepted request is appended to the Redis stream atomically (all its events or none; with
the requests that arrived while the previous append was in flight: :class:`GroupCommit`)
before the 202 answer, so an acknowledged event is in the stream; the pipeline reads
it through its consumer group (``--source redis_stream``). Refusals, in the order checked:

* 401: no or wrong credentials (:mod:`beam_pipelines.ingest.auth`).
* 413: body over ``max_body_bytes`` (refused on its declared ``Content-Length`` before any of it
  is read), too many events, an event too large, or a batch larger than the client's whole
  rate-limit burst.
* 415: a ``Content-Type`` that is not JSON (or JSON Lines, for batches); none, or
  ``application/octet-stream``, is read as JSON.
* 400: not JSON, or an event that is not a JSON object (every problem listed; nothing taken).
* 429 with ``Retry-After``: the client is over its rate limit, or the pipeline is behind (the
  consumer group's backlog is above ``high_water``): backpressure, so producers slow down
  instead of the stream growing without bound.
* 503 with ``Retry-After``: Redis does not answer.

A 4xx other than 429 means the request will never be taken as it is; 429 and 503 mean "retry
later, unchanged". Retrying after a lost 202 can only duplicate events, which the pipeline drops
by ``event_id``. Every answer, errors included, is a short JSON object: an unexpected failure is
a 500 ``{"error": "internal error"}`` whose traceback goes to the log, never to the client.
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import dataclasses
import logging
import math
import time

import orjson
import prometheus_client
import redis
from aiohttp import web

from beam_pipelines.ingest.auth import Authenticator
from beam_pipelines.ingest.auth import AuthError
from beam_pipelines.ingest.payloads import JSON_LINES_TYPES
from beam_pipelines.ingest.payloads import PayloadError
from beam_pipelines.ingest.payloads import PayloadLimits
from beam_pipelines.ingest.payloads import parse_batch
from beam_pipelines.ingest.payloads import parse_single
from beam_pipelines.io.stream_append import AsyncStreamAppender
from beam_pipelines.throttling import RateLimiter

__all__ = ['BacklogGate', 'GroupCommit', 'ServiceConfig', 'make_app']

_LOGGER = logging.getLogger(__name__)


@dataclasses.dataclass(frozen=True)
class ServiceConfig:
    """What the service needs (see ``python -m beam_pipelines.ingest serve --help``)."""

    redis_url: str
    stream_name: str
    consumer_group: str = 'beam_pipelines'
    high_water: int = 1_000_000
    max_body_bytes: int = 8 * 1024 * 1024
    limits: PayloadLimits = dataclasses.field(default_factory=PayloadLimits)
    rate_limit_eps: float | None = None  # events/s per client; None: no limit
    rate_limit_burst: float | None = None  # default: one second's worth, at least max_events
    backlog_check_secs: float = 0.5
    retry_after_secs: int = 1
    client_header: str | None = None  # e.g. X-Forwarded-For behind a trusted proxy

    def __post_init__(self):
        if self.max_body_bytes < 1:
            raise ValueError(f'max_body_bytes must be >= 1, got {self.max_body_bytes}')
        if self.rate_limit_eps is not None and not self.rate_limit_eps > 0:
            raise ValueError(f'rate_limit_eps must be > 0, got {self.rate_limit_eps}')
        if self.retry_after_secs < 1:
            raise ValueError(f'retry_after_secs must be >= 1, got {self.retry_after_secs}')


class BacklogGate:
    """Whether the stream is above its high-water mark, asked of Redis at most every
    ``check_secs`` (one ``XINFO GROUPS`` for many requests, not one each).

    Raises (from :meth:`over`): ``redis.RedisError`` when Redis does not answer.
    """

    def __init__(self, appender: AsyncStreamAppender, check_secs: float, clock=time.monotonic):
        self._appender = appender
        self._check_secs = check_secs
        self._clock = clock
        self._checked_at = -math.inf
        self.backlog = 0
        self._lock = asyncio.Lock()

    async def over(self) -> bool:
        if self._clock() - self._checked_at >= self._check_secs:
            async with self._lock:  # one refresh at a time; the others use its answer
                if self._clock() - self._checked_at >= self._check_secs:
                    self.backlog = await self._appender.backlog()
                    self._checked_at = self._clock()
        return self.backlog > self._appender.high_water


class GroupCommit:
    """Appends concurrent requests together: while one append is in flight, the requests that
    arrive queue up and go in the next one, as a database's group commit. Under load that turns
    hundreds of round trips and ``MULTI``/``EXEC``s a second into a few large ones; alone, a
    request goes at once. A group is appended atomically, so every request in it is in the
    stream (answered 202) or none is (each answered 503).

    Args:
        appender: the stream.
        max_events, max_bytes: most events and bytes in one append (a group is split between
            requests; one request larger than either goes alone). A script appending a group
            holds Redis for its duration, so groups stay small.
    """

    def __init__(
        self,
        appender: AsyncStreamAppender,
        max_events: int = 10_000,
        max_bytes: int = 16 * 1024 * 1024,
    ):
        self._appender = appender
        self._max_events = max_events
        self._max_bytes = max_bytes
        self._pending: collections.deque[tuple[list[bytes], asyncio.Future]] = collections.deque()
        self._wake = asyncio.Event()
        self._task: asyncio.Task | None = None
        self.appends = 0

    def start(self) -> None:
        self._task = asyncio.get_running_loop().create_task(self._run())
        self._task.add_done_callback(self._ended)

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task

    async def append(self, events: list[bytes]) -> list[str]:
        """Appends the events in order; returns their entry ids once they are in the stream."""
        if self._task is None or self._task.done():
            raise RuntimeError('the group commit is not running')
        future = asyncio.get_running_loop().create_future()
        self._pending.append((events, future))
        self._wake.set()
        return await future

    def _ended(self, task: asyncio.Task) -> None:
        # Stopped or (it should not) crashed: nobody may wait for an append that will not come.
        while self._pending:
            _, future = self._pending.popleft()
            if not future.done():
                future.set_exception(RuntimeError('the group commit stopped'))

    async def _run(self) -> None:
        while True:
            await self._wake.wait()
            self._wake.clear()
            while self._pending:
                await self._flush(self._take_group())

    def _take_group(self) -> list[tuple[list[bytes], asyncio.Future]]:
        """The next requests in order, up to the event and byte caps (at least one request)."""
        group, events, size = [], 0, 0
        while self._pending:
            batch = self._pending[0][0]
            batch_bytes = sum(len(e) for e in batch)
            if group and (
                events + len(batch) > self._max_events or size + batch_bytes > self._max_bytes
            ):
                break
            group.append(self._pending.popleft())
            events, size = events + len(batch), size + batch_bytes
        return group

    async def _flush(self, group) -> None:
        try:
            ids = await self._appender.append([e for events, _ in group for e in events])
        except Exception as exc:  # every request of the group learns it failed
            for _, future in group:
                if not future.done():
                    future.set_exception(exc)
            return
        self.appends += 1
        start = 0
        for events, future in group:
            if not future.done():  # a client that went away has its future cancelled
                future.set_result(ids[start : start + len(events)])
            start += len(events)


class _Metrics:
    def __init__(self):
        self.registry = prometheus_client.CollectorRegistry()
        self.requests = prometheus_client.Counter(
            'beam_pipelines_ingest_requests',
            'Ingestion requests by endpoint and HTTP status.',
            ['endpoint', 'status'],
            registry=self.registry,
        )
        self.events = prometheus_client.Counter(
            'beam_pipelines_ingest_events',
            'Events appended to the stream.',
            registry=self.registry,
        )
        self.refused = prometheus_client.Counter(
            'beam_pipelines_ingest_refused_events',
            'Events in refused requests, by reason (counted where the count is known).',
            ['reason'],
            registry=self.registry,
        )
        self.backlog = prometheus_client.Gauge(
            'beam_pipelines_ingest_stream_backlog',
            "Entries the pipeline's consumer group has not acknowledged (last check).",
            registry=self.registry,
        )
        self.append_seconds = prometheus_client.Histogram(
            'beam_pipelines_ingest_append_seconds',
            'Time to append one request to the Redis stream.',
            registry=self.registry,
        )


class _Refused(Exception):
    def __init__(self, status: int, reason: str, message: str, **extra):
        super().__init__(message)
        self.status, self.reason, self.extra = status, reason, extra


class _Service:
    def __init__(self, config: ServiceConfig, auth: Authenticator, appender: AsyncStreamAppender):
        self._config = config
        self._auth = auth
        self._appender = appender
        self.commits = GroupCommit(appender)
        self._gate = BacklogGate(appender, config.backlog_check_secs)
        self._limiter = None
        if config.rate_limit_eps is not None:
            burst = config.rate_limit_burst or max(config.rate_limit_eps, config.limits.max_events)
            self._limiter = RateLimiter(config.rate_limit_eps, burst)
        self.metrics = _Metrics()

    async def single(self, request: web.Request) -> web.Response:
        return await self._handle(request, 'single')

    async def batch(self, request: web.Request) -> web.Response:
        return await self._handle(request, 'batch')

    async def _handle(self, request: web.Request, endpoint: str) -> web.Response:
        try:
            response = await self._take(request, endpoint)
        except _Refused as refused:
            response = _refusal(refused)
        except Exception:
            # Answered here, generically: aiohttp's own 500 page carries the traceback (file
            # paths, source lines) whenever the event loop runs in debug mode
            # (PYTHONASYNCIODEBUG=1, python -X dev). The traceback goes to the log instead.
            _LOGGER.exception('ingestion request failed')
            response = _internal_error()
        self.metrics.requests.labels(endpoint, str(response.status)).inc()
        return response

    async def _take(self, request: web.Request, endpoint: str) -> web.Response:
        too_large = _Refused(
            413, 'too_large', f'the body is over {self._config.max_body_bytes} bytes', close=True
        )
        try:
            # All but a signature is checked before the body is read; a signature needs it.
            authenticated = self._auth.precheck(request.headers)
            # A declared length over the limit is refused before a byte is read (the reader
            # below stops at the limit for bodies that do not declare one: chunked, or
            # compressed ones, whose limit is on what they inflate to).
            if (request.content_length or 0) > self._config.max_body_bytes:
                raise too_large
            body = await request.read()
            if not authenticated:
                self._auth.check_signature(request.headers, body)
        except AuthError as exc:
            raise _Refused(
                401, 'unauthenticated', str(exc), challenge=_challenge(self._auth), close=True
            ) from None
        except web.HTTPRequestEntityTooLarge:
            raise too_large from None
        if not _takes_content_type(request.content_type, endpoint):
            lines = ' (or application/x-ndjson)' if endpoint == 'batch' else ''
            raise _Refused(
                415,
                'unsupported_media_type',
                f'Content-Type must be application/json{lines}, got {request.content_type[:100]}',
            )
        try:
            if endpoint == 'single':
                events = parse_single(body, self._config.limits)
            else:
                events = parse_batch(body, request.content_type, self._config.limits)
        except PayloadError as exc:
            reason = 'too_large' if exc.status == 413 else 'malformed'
            raise _Refused(exc.status, reason, str(exc), problems=exc.problems) from None
        if not events:
            return _json(200, {'accepted': 0})
        await self._check_capacity(request, len(events))
        started = time.perf_counter()
        try:
            ids = await self.commits.append(events)
        except redis.RedisError as exc:
            raise self._unavailable('appending to the stream', exc, len(events)) from None
        self.metrics.append_seconds.observe(time.perf_counter() - started)
        self.metrics.events.inc(len(ids))
        return _json(202, {'accepted': len(ids), 'first_id': ids[0], 'last_id': ids[-1]})

    async def _check_capacity(self, request: web.Request, count: int) -> None:
        try:
            over = await self._gate.over()
        except redis.RedisError as exc:
            raise self._unavailable('reading the stream backlog', exc, count) from None
        self.metrics.backlog.set(self._gate.backlog)
        if over:
            self.metrics.refused.labels('backpressure').inc(count)
            raise _Refused(
                429,
                'backpressure',
                'the pipeline is behind; retry later',
                retry=self._config.retry_after_secs,
            )
        if self._limiter is None:
            return
        wait = self._limiter.acquire(self._client_of(request), count)
        if math.isinf(wait):
            self.metrics.refused.labels('too_large').inc(count)
            raise _Refused(
                413,
                'too_large',
                f'{count} events is more than the rate limit burst '
                f'({self._limiter.burst:.0f}); split the batch',
            )
        if wait > 0:
            self.metrics.refused.labels('rate_limited').inc(count)
            raise _Refused(429, 'rate_limited', 'rate limit exceeded', retry=math.ceil(wait))

    def _unavailable(self, doing: str, exc: Exception, count: int) -> _Refused:
        _LOGGER.warning('%s failed: %s', doing, exc)
        self.metrics.refused.labels('unavailable').inc(count)
        return _Refused(
            503, 'unavailable', 'the stream is unavailable', retry=self._config.retry_after_secs
        )

    def _client_of(self, request: web.Request) -> str:
        header = self._config.client_header
        if header and request.headers.get(header):
            # The last entry is the one the trusted proxy added (the address it saw); entries
            # before it are whatever the client sent, so a client could not pick its bucket.
            return request.headers[header].split(',')[-1].strip()
        return request.remote or 'unknown'

    async def health(self, request: web.Request) -> web.Response:
        if not await self._appender.ping():
            return _json(503, {'status': 'unavailable', 'redis': False})
        try:
            backlog = await self._appender.backlog()
        except redis.RedisError:
            return _json(503, {'status': 'unavailable', 'redis': False})
        self.metrics.backlog.set(backlog)
        over = backlog > self._appender.high_water
        return _json(
            200,
            {
                'status': 'backpressure' if over else 'ok',
                'redis': True,
                'stream': self._appender.stream,
                'backlog': backlog,
                'high_water': self._appender.high_water,
            },
        )

    async def metrics_text(self, request: web.Request) -> web.Response:
        return web.Response(
            body=prometheus_client.generate_latest(self.metrics.registry),
            headers={'Content-Type': prometheus_client.CONTENT_TYPE_LATEST},
        )


def _json(status: int, payload: dict, headers: dict | None = None) -> web.Response:
    return web.Response(
        status=status, body=orjson.dumps(payload), content_type='application/json', headers=headers
    )


def _internal_error() -> web.Response:
    return _json(500, {'error': 'internal error', 'reason': 'internal'})


def _takes_content_type(content_type: str, endpoint: str) -> bool:
    """JSON (``application/json``, ``application/*+json``), or no declared type (aiohttp reads
    a missing header as ``application/octet-stream``); JSON Lines for batches."""
    if content_type in ('application/json', 'application/octet-stream'):
        return True
    if content_type.startswith('application/') and content_type.endswith('+json'):
        return True
    return endpoint == 'batch' and content_type in JSON_LINES_TYPES


def _challenge(auth) -> str:
    # A 401 names the scheme to use (RFC 9110 requires WWW-Authenticate on every 401).
    return 'Signature' if getattr(auth, 'mode', None) == 'hmac' else 'Bearer'


def _refusal(refused: _Refused) -> web.Response:
    payload = {'error': str(refused), 'reason': refused.reason}
    if refused.extra.get('problems'):
        payload['problems'] = refused.extra['problems']
    headers = {}
    if refused.extra.get('retry') is not None:
        headers['Retry-After'] = str(refused.extra['retry'])
    if refused.extra.get('challenge'):
        headers['WWW-Authenticate'] = refused.extra['challenge']
    response = _json(refused.status, payload, headers or None)
    if refused.extra.get('close'):
        # Refused before its body was read: the connection cannot carry another request, so
        # the client is told it closes (aiohttp discards what the client still sends, for its
        # lingering time at most, without buffering it).
        response.force_close()
    return response


@web.middleware
async def _json_errors(request: web.Request, handler) -> web.StreamResponse:
    """Every error of the application as a short JSON object: aiohttp's own pages are text
    (404, 405) and, in debug mode, a 500 with the traceback."""
    try:
        return await handler(request)
    except web.HTTPException as exc:
        if exc.status < 400:
            raise
        reason = exc.reason or 'error'
        headers = {
            k: v
            for k, v in exc.headers.items()
            if k.lower() not in ('content-type', 'content-length')
        }
        return _json(
            exc.status,
            {'error': reason, 'reason': reason.lower().replace(' ', '_')},
            headers or None,
        )
    except Exception:
        _LOGGER.exception('request to %s failed', request.path)
        return _internal_error()


def make_app(
    config: ServiceConfig, auth: Authenticator, appender: AsyncStreamAppender | None = None
) -> web.Application:
    """The aiohttp application. ``appender`` defaults to one on ``config``'s stream; it is
    closed when the application shuts down."""
    appender = appender or AsyncStreamAppender(
        config.redis_url, config.stream_name, config.consumer_group, config.high_water
    )
    service = _Service(config, auth, appender)
    app = web.Application(client_max_size=config.max_body_bytes, middlewares=[_json_errors])
    app.add_routes(
        [
            web.post('/v1/events', service.single),
            web.post('/v1/events/batch', service.batch),
            web.get('/health', service.health),
            web.get('/metrics', service.metrics_text),
        ]
    )

    async def start(_app):
        service.commits.start()

    async def close(_app):
        await service.commits.stop()
        await appender.close()

    app.on_startup.append(start)
    app.on_cleanup.append(close)
    return app
