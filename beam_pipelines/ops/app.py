"""The ops API (aiohttp): health, metrics, recent runs, dead-letter browsing and replay, and
allow-listed read-only warehouse queries, behind bearer tokens; its OpenAPI document at
``/openapi.json``. Replays (``POST /dead-letters/replay``) write, through their own connection
URL; everything else only reads.

Every warehouse read runs in a read-only transaction on the connection URL given (which should
be a read-only role: ``python -m beam_pipelines.warehouse grant-readonly``), with every value
bound as a parameter. Errors are one JSON line; no stack trace leaves the service.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import glob
import hashlib
import hmac
import json
import logging
import os

import prometheus_client
import psycopg2
import psycopg2.extras
from aiohttp import web

from beam_pipelines.io.postgres import connect
from beam_pipelines.ops.openapi import spec
from beam_pipelines.ops.queries import DEAD_LETTER_FILTERS
from beam_pipelines.ops.queries import MAX_LIMIT
from beam_pipelines.ops.queries import MAX_OFFSET
from beam_pipelines.ops.queries import NAMED
from beam_pipelines.ops.queries import dead_letters_query
from beam_pipelines.ops.replay import MAX_REPLAY
from beam_pipelines.ops.replay import ReplayRefused
from beam_pipelines.ops.replay import replay
from beam_pipelines.redaction import redact

__all__ = ['OpsConfig', 'make_app']

_LOGGER = logging.getLogger(__name__)
OPEN_PATHS = ('/health', '/openapi.json')


class OpsConfig:
    """What the service serves from.

    Args:
        tokens: the accepted bearer tokens (several while rotating).
        runs_root: a glob of run output directories (each with ``run_summary.json``).
        postgres_url: the warehouse, through a read-only role (None: no warehouse endpoints).
        pg_schema: the warehouse schema.
        replay_url: the warehouse through a role that may write, for replays (None: none).
        event_schema: the compiled event schema replays validate against.
        pipeline: names the pipeline in replayed records' new errors.
        gdpr: the pipelines' personal-data protection, which replays apply too (a
            :class:`~beam_pipelines.gdpr.config.GdprConfig`, or None).
    """

    def __init__(
        self,
        tokens,
        runs_root: str,
        postgres_url: str | None,
        pg_schema: str,
        replay_url: str | None = None,
        event_schema=None,
        pipeline: str = 'event_analytics',
        gdpr=None,
    ):
        self.tokens = [t if isinstance(t, bytes) else t.encode() for t in tokens]
        self.runs_root = runs_root
        self.postgres_url = postgres_url
        self.pg_schema = pg_schema
        self.replay_url = replay_url
        self.event_schema = event_schema
        self.pipeline = pipeline
        self.gdpr = gdpr


class _BadRequest(Exception):
    pass


def _error(status: int, message: str) -> web.Response:
    return web.json_response({'error': message}, status=status)


def _int(request, name: str, default: int, low: int, high: int) -> int:
    raw = request.query.get(name)
    if raw is None:
        return default
    try:
        value = int(raw)
    except ValueError:
        raise _BadRequest(f'{name} must be an integer') from None
    if not low <= value <= high:
        raise _BadRequest(f'{name} must be between {low} and {high}')
    return value


def _time(raw: str | None, name: str) -> dt.datetime | None:
    if raw is None:
        return None
    try:
        when = dt.datetime.fromisoformat(raw.replace('Z', '+00:00'))
        # Bound in UTC: the database takes narrower offsets than ISO 8601 allows.
        return (when if when.tzinfo else when.replace(tzinfo=dt.UTC)).astimezone(dt.UTC)
    except (ValueError, OverflowError):
        raise _BadRequest(f'{name} must be an RFC 3339 date-time') from None


def _text(raw: str | None, name: str, max_len: int = 200) -> str | None:
    if raw is None:
        return None
    if len(raw) > max_len or '\x00' in raw:
        raise _BadRequest(f'{name} must be at most {max_len} characters, without NUL')
    return raw


def _json_value(v):
    return v.isoformat() if isinstance(v, dt.date) else v  # datetimes are dates too


def make_app(config: OpsConfig) -> web.Application:
    registry = prometheus_client.CollectorRegistry()
    requests_total = prometheus_client.Counter(
        'beam_pipelines_ops_requests',
        'Ops API requests by endpoint and status.',
        ['endpoint', 'status'],
        registry=registry,
    )

    @web.middleware
    async def guard(request, handler):
        route = request.match_info.route.resource
        endpoint = route.canonical if route is not None else 'unmatched'
        try:
            if request.path not in OPEN_PATHS and not _authorised(request, config.tokens):
                response = _error(401, 'missing or wrong bearer token')
            else:
                response = await handler(request)
        except _BadRequest as exc:
            response = _error(400, str(exc))
        except web.HTTPException as exc:
            response = _error(exc.status, exc.reason or 'error')
        except psycopg2.DataError:
            # A value the database cannot take (out of its range, a character it refuses).
            response = _error(400, 'a parameter has a value the warehouse cannot take')
        except psycopg2.Error as exc:
            _LOGGER.warning('warehouse error: %s', redact(str(exc).strip()))
            response = _error(503, 'the warehouse did not answer')
        except Exception:
            _LOGGER.exception('ops API error')
            response = _error(500, 'internal error')
        requests_total.labels(endpoint, str(response.status)).inc()
        return response

    async def query_db(sql, params):
        if config.postgres_url is None:
            raise web.HTTPServiceUnavailable(reason='no warehouse configured')
        return await asyncio.get_running_loop().run_in_executor(
            None, _read_only, config.postgres_url, sql, params
        )

    async def health(request):
        if config.postgres_url is None:
            return web.json_response({'status': 'ok', 'postgres': 'not configured'})
        try:
            await query_db('SELECT 1', {})
        except psycopg2.Error:
            return web.json_response({'status': 'degraded', 'postgres': 'unavailable'}, status=503)
        return web.json_response({'status': 'ok', 'postgres': 'ok'})

    async def metrics(request):
        return web.Response(
            body=prometheus_client.generate_latest(registry),
            headers={'Content-Type': prometheus_client.CONTENT_TYPE_LATEST},
        )

    async def openapi(request):
        return web.json_response(spec())

    async def runs(request):
        limit = _int(request, 'limit', 100, 1, MAX_LIMIT)
        offset = _int(request, 'offset', 0, 0, MAX_OFFSET)
        found = _runs(config.runs_root)
        return web.json_response({'runs': found[offset : offset + limit]})

    async def run(request):
        for r in _runs(config.runs_root):
            if r['id'] == request.match_info['run_id']:
                return web.json_response(r)
        return _error(404, 'no such run')

    async def dead_letters(request):
        filters = {n: _text(request.query.get(n), n) for n in DEAD_LETTER_FILTERS}
        filters['since'] = _time(request.query.get('since'), 'since')
        filters['until'] = _time(request.query.get('until'), 'until')
        limit = _int(request, 'limit', 100, 1, MAX_LIMIT)
        offset = _int(request, 'offset', 0, 0, MAX_OFFSET)
        sql, params = dead_letters_query(config.pg_schema, filters, limit, offset)
        rows = await query_db(sql, params)
        return web.json_response({'dead_letters': rows})

    async def queries(request):
        return web.json_response(
            {
                name: {'description': q.description, 'params': [p for p, _, _ in q.params]}
                for name, q in NAMED.items()
            }
        )

    async def named(request):
        query = NAMED.get(request.match_info['name'])
        if query is None:
            return _error(404, 'no such query')
        params = {}
        for pname, ptype, required in query.params:
            raw = request.query.get(pname)
            if raw is None:
                if required:
                    raise _BadRequest(f'{pname} is required')
                continue
            if ptype is int:
                params[pname] = _int(request, pname, 0, 1, MAX_LIMIT)
            elif ptype is str:
                params[pname] = _text(raw, pname)
                if not params[pname]:
                    raise _BadRequest(f'{pname} must not be empty')
            else:
                params[pname] = _time(raw, pname)
        rows = await query_db(query.compose(config.pg_schema), params)
        return web.json_response({'rows': rows})

    async def replay_dead_letters(request):
        if config.replay_url is None:
            raise web.HTTPServiceUnavailable(
                reason='replay is not configured (--replay_postgres_url)'
            )
        try:
            body = await request.json()
        except ValueError:
            raise _BadRequest('the body must be a JSON object') from None
        if not isinstance(body, dict) or set(body) - {'ids', 'filter', 'limit'}:
            raise _BadRequest('the body takes ids, filter and limit')
        ids = body.get('ids')
        if ids is not None and (
            not isinstance(ids, list) or not all(isinstance(i, str) and len(i) <= 64 for i in ids)
        ):
            raise _BadRequest('ids must be a list of dead-letter ids')
        filters = body.get('filter') or {}
        if not isinstance(filters, dict) or set(filters) - set(DEAD_LETTER_FILTERS):
            raise _BadRequest(f'filter takes {", ".join(DEAD_LETTER_FILTERS)}')
        for name, value in filters.items():
            if not isinstance(value, str) or len(value) > 200:
                raise _BadRequest(f'filter.{name} must be a string of at most 200 characters')
        if ids is None and not filters:
            raise _BadRequest('give ids or a filter')
        # A value the database cannot hold (NUL, a lone surrogate) matches no dead letter.
        if not all(_storable(v) for v in filters.values()):
            return web.json_response({'replayed': 0, 'recovered': [], 'failed_again': []})
        if ids is not None:
            ids = [i for i in ids if _storable(i)]
        limit = body.get('limit', 100)
        if not isinstance(limit, int) or isinstance(limit, bool) or not 1 <= limit <= MAX_REPLAY:
            raise _BadRequest(f'limit must be an integer from 1 to {MAX_REPLAY}')
        try:
            result = await asyncio.get_running_loop().run_in_executor(
                None, _replay, config, ids, filters, limit
            )
        except ReplayRefused as exc:
            return _error(409, str(exc))
        return web.json_response(result)

    app = web.Application(middlewares=[guard], client_max_size=64 * 1024)
    app.router.add_post('/dead-letters/replay', replay_dead_letters)
    app.router.add_get('/health', health)
    app.router.add_get('/metrics', metrics)
    app.router.add_get('/openapi.json', openapi)
    app.router.add_get('/runs', runs)
    app.router.add_get('/runs/{run_id}', run)
    app.router.add_get('/dead-letters', dead_letters)
    app.router.add_get('/queries', queries)
    app.router.add_get('/queries/{name}', named)
    return app


def _storable(text: str) -> bool:
    if '\x00' in text:
        return False
    try:
        text.encode('utf-8')
    except UnicodeEncodeError:
        return False
    return True


def _authorised(request, tokens: list[bytes]) -> bool:
    header = request.headers.get('Authorization', '')
    if not header.startswith('Bearer '):
        return False
    given = header[len('Bearer ') :].strip().encode()
    # Every token compared, in constant time: no early exit tells which one was close.
    return any([hmac.compare_digest(given, t) for t in tokens])


def _replay(config: OpsConfig, ids, filters, limit) -> dict:
    conn = connect(config.replay_url)
    try:
        return replay(
            conn,
            config.pg_schema,
            config.event_schema,
            config.pipeline,
            ids,
            filters,
            limit,
            gdpr=config.gdpr,
        )
    finally:
        conn.close()


def _read_only(url: str, sql, params) -> list[dict]:
    conn = connect(url)
    try:
        conn.set_session(readonly=True, autocommit=False)
        with conn.cursor(cursor_factory=psycopg2.extras.RealDictCursor) as cur:
            cur.execute(sql, params)
            rows = cur.fetchall() if cur.description else []
        conn.rollback()
    finally:
        conn.close()
    return [{k: _json_value(v) for k, v in r.items()} for r in rows]


def _runs(pattern: str) -> list[dict]:
    found = []
    for path in glob.glob(os.path.join(pattern, 'run_summary.json')):
        folder = os.path.dirname(os.path.abspath(path))
        try:
            with open(path, encoding='utf-8') as f:
                summary = json.load(f)
        except (OSError, ValueError):
            continue
        report = os.path.join(folder, 'report.html')
        found.append(
            {
                'id': hashlib.sha256(folder.encode()).hexdigest()[:16],
                'path': folder,
                'pipeline': summary.get('pipeline'),
                'input': redact(str(summary.get('input', ''))),
                'finished_at': summary.get('finished_at'),
                'balanced': bool(summary.get('balanced')),
                'counts': {
                    k: v for k, v in (summary.get('counts') or {}).items() if isinstance(v, int)
                },
                'report': report if os.path.exists(report) else None,
            }
        )
    return sorted(found, key=lambda r: r['finished_at'] or '', reverse=True)
