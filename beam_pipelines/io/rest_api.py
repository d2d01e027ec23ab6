"""Polling a REST API for new records: pagination, rate limits, retries, an incremental cursor.

Plain Python with no Beam in it (``ReadFromRestApi`` in ``rest_source`` wraps it). One
:meth:`RestPoller.poll` reads every page of what is new since a :class:`Cursor` and yields the
records as raw JSON lines, page by page, with the cursor to keep after that page.

**Pagination** (``RestApiSpec.pagination``):

* ``none``: one request.
* ``offset``: ``?offset=0&limit=N``, then the offset moved by the records received, ... until
  an empty page (APIs may cap pages below N, so a short page is not taken as the last).
* ``page``: ``?page=1&limit=N``, then ``page=2``, ... until an empty page.
* ``cursor``: ``?cursor=<next>`` with ``next`` read from the body (``next_cursor_field``, a
  dotted path) until it is missing or empty.
* ``link``: the ``Link: <url>; rel="next"`` header (RFC 8288, as GitHub's API) until absent;
  relative links are resolved, and a link to another origin is refused (the session carries
  the API's token).

**Incremental cursor.** The cursor is the largest ``watermark_field`` seen (a modification
time the API assigns, such as ``updated_at``) and the keys of the records that carry exactly
that time (their ``id_field`` as JSON text, or a hash of the record without one). Each poll
sends the cursor as ``since_param`` (when the API takes one) and drops, on the client too,
records older than the cursor and the boundary records it has already seen, so an API whose
``since`` is inclusive does not repeat its last records on every poll, and one without ``since``
can be polled incrementally (it is read from its first page each time, so a poll that would need
more than ``max_pages`` pages fails rather than never reading the rest; with ``since`` the next
poll goes on from the cursor). Records without a readable time are passed on once (the
pipeline dead-letters them when its schema needs a time) and remembered by key, the latest
10,000 of them. The API should return records oldest first; a record that appears later with
a time older than the cursor is not seen again (the usual limit of timestamp-based extraction;
use CDC where that matters).

**Rate limits and retries.** Requests are paced by a :class:`~beam_pipelines.throttling.
RateLimiter` (``requests_per_sec``). Connection errors, timeouts, 429 and 5xx are retried with
the :class:`~beam_pipelines.throttling.RetryPolicy`, waiting at least the ``Retry-After`` the
API asks for; any other error status fails the poll (nothing of it is kept, and the cursor
does not move).
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import hashlib
import logging
import time
import urllib.parse
from collections.abc import Iterator
from typing import Any

import orjson
import requests

from beam_pipelines.columnar.timestamps import parse_timestamp
from beam_pipelines.redaction import redact
from beam_pipelines.throttling import RateLimiter
from beam_pipelines.throttling import RetryPolicy
from beam_pipelines.throttling import retry_after_secs

__all__ = ['PAGINATIONS', 'Cursor', 'RestApiError', 'RestApiSpec', 'RestPoller', 'record_key']

_LOGGER = logging.getLogger(__name__)
PAGINATIONS = ('none', 'offset', 'page', 'cursor', 'link')
MAX_TIMELESS = 10_000
_EPOCH = dt.datetime(1970, 1, 1, tzinfo=dt.UTC)


class RestApiError(Exception):
    """The API refused a request (a status that retrying cannot fix) or answered garbage."""


@dataclasses.dataclass(frozen=True)
class RestApiSpec:
    """Where the API is and how it pages (see the module docstring).

    Attributes:
        url: the collection's URL.
        pagination: one of ``PAGINATIONS``.
        items_field: dotted path of the record list in the body; None: the body is the list.
        page_size: records asked per page (``limit_param``).
        since_param: the query parameter taking the cursor; None: filter on the client only.
        watermark_field, id_field: a record's modification time and its id.
        params: fixed query parameters.
        requests_per_sec: most requests per second (None: no pacing).
        max_pages: most pages in one poll (the next poll goes on from the cursor).
    """

    url: str
    pagination: str = 'none'
    items_field: str | None = None
    page_size: int = 100
    limit_param: str = 'limit'
    offset_param: str = 'offset'
    page_param: str = 'page'
    first_page: int = 1
    cursor_param: str = 'cursor'
    next_cursor_field: str = 'next_cursor'
    since_param: str | None = None
    watermark_field: str = 'timestamp'
    id_field: str = 'event_id'
    params: tuple[tuple[str, str], ...] = ()
    requests_per_sec: float | None = None
    max_pages: int = 10_000
    timeout_secs: float = 30.0

    def __post_init__(self):
        if not self.url.startswith(('http://', 'https://')):
            raise ValueError(f'url must be http(s)://..., got {redact(self.url.split("?")[0])!r}')
        if self.pagination not in PAGINATIONS:
            raise ValueError(f'pagination must be one of {PAGINATIONS}, got {self.pagination!r}')
        if self.page_size < 1 or self.max_pages < 1:
            raise ValueError('page_size and max_pages must be >= 1')
        if self.requests_per_sec is not None and not self.requests_per_sec > 0:
            raise ValueError(f'requests_per_sec must be > 0, got {self.requests_per_sec}')

    @property
    def name(self) -> str:
        """The URL as shown in batches, dead letters and summaries: no credentials and no query
        string (where API keys often travel)."""
        return redact(self.url.split('?', 1)[0])


@dataclasses.dataclass(frozen=True)
class Cursor:
    """How far the API has been read.

    Attributes:
        since: the largest record time, as the API wrote it (sent back as ``since_param``).
        since_us: the same in microseconds.
        boundary_ids: the keys of the records at exactly that time (see :func:`record_key`).
        timeless: the keys of records without a readable time already passed on, most recent
            last, at most ``MAX_TIMELESS`` (beyond that the oldest may be passed on again).
    """

    since: Any = None
    since_us: int | None = None
    boundary_ids: frozenset = frozenset()
    timeless: tuple[str, ...] = ()

    def to_json(self) -> bytes:
        return orjson.dumps(
            {
                'since': self.since,
                'since_us': self.since_us,
                'boundary_ids': sorted(self.boundary_ids),
                'timeless': list(self.timeless),
            }
        )

    @classmethod
    def from_json(cls, data: bytes) -> Cursor:
        d = orjson.loads(data)
        return cls(
            d['since'], d['since_us'], frozenset(d['boundary_ids']), tuple(d.get('timeless', ()))
        )


def record_key(record: dict, id_field: str) -> str:
    """A record's key in the cursor: its id as JSON text (so ``1``, ``"1"`` and ``true`` stay
    distinct, and any JSON value works), or a hash of the whole record when it has no id."""
    value = record.get(id_field)
    if value is not None:
        return orjson.dumps(value, option=orjson.OPT_SORT_KEYS).decode()
    digest = hashlib.sha256(orjson.dumps(record, option=orjson.OPT_SORT_KEYS)).hexdigest()
    return f'#{digest[:32]}'


class RestPoller:
    """Reads what is new in the API since a cursor (see the module docstring).

    Args:
        spec: the API.
        session: a ``requests.Session`` (headers such as ``Authorization`` set on it).
        retry: backoff for transient failures.
        sleep, clock: injected by tests.
    """

    def __init__(
        self,
        spec: RestApiSpec,
        session: requests.Session,
        retry: RetryPolicy | None = None,
        sleep=time.sleep,
        clock=time.monotonic,
    ):
        self.spec = spec
        self._session = session
        self._retry = retry or RetryPolicy()
        self._sleep = sleep
        self._pacer = (
            RateLimiter(spec.requests_per_sec, 1, clock=clock) if spec.requests_per_sec else None
        )
        self.requests = 0

    def poll(self, cursor: Cursor) -> Iterator[tuple[list[bytes], Cursor]]:
        """Yields ``(records, cursor)`` per page: the new records as JSON lines, and the cursor
        to keep once they are safely processed.

        Raises:
            RestApiError: the API refused a request or its body is not what the spec says.
            requests.RequestException: a transient failure that outlasted the retries.
        """
        spec = self.spec
        start = running = cursor
        params = dict(spec.params)
        if spec.since_param and cursor.since is not None:
            params[spec.since_param] = str(cursor.since)
        if spec.pagination in ('offset', 'page', 'link'):
            params[spec.limit_param] = str(spec.page_size)
        url, position = spec.url, 0 if spec.pagination == 'offset' else spec.first_page
        for _ in range(spec.max_pages):
            if spec.pagination == 'offset':
                params[spec.offset_param] = str(position)
            elif spec.pagination == 'page':
                params[spec.page_param] = str(position)
            response = self._get(url, params)
            body = _json(response, spec.name)
            items = _dig(body, spec.items_field)
            if not isinstance(items, list):
                raise RestApiError(
                    f'{spec.name}: {spec.items_field or "the body"} is not a list of records'
                )
            fresh, running = self._advance(items, start, running)
            yield fresh, running
            if spec.pagination == 'none':
                return
            if spec.pagination in ('offset', 'page'):
                # An empty page ends the read: APIs may cap a page below the size asked for,
                # so a short page does not mean the last one.
                if not items:
                    return
                position += len(items) if spec.pagination == 'offset' else 1
            elif spec.pagination == 'cursor':
                following = _dig(body, spec.next_cursor_field)
                if following in (None, ''):
                    return
                params[spec.cursor_param] = str(following)
            else:  # link: the next URL carries every parameter
                url = self._next_link(response)
                if url is None:
                    return
                params = {}
        if not spec.since_param:
            # Without a since parameter every poll starts from the first page again: what lies
            # beyond max_pages would never be read.
            raise RestApiError(
                f'{spec.name}: more than max_pages={spec.max_pages} pages and the API takes no '
                'since parameter; raise max_pages or give since_param'
            )
        _LOGGER.warning(
            '%s: stopped after max_pages=%d pages; the next poll goes on from the cursor',
            spec.name,
            spec.max_pages,
        )

    def _next_link(self, response: requests.Response) -> str | None:
        following = response.links.get('next', {}).get('url')
        if not following:
            return None
        following = urllib.parse.urljoin(response.url, following)  # it may be relative
        origin = urllib.parse.urlsplit(self.spec.url)[:2]
        if urllib.parse.urlsplit(following)[:2] != origin:
            # The session carries the API's token: it goes to the API's own origin only.
            raise RestApiError(f'{self.spec.name}: a next link leaves the API origin')
        return following

    def _advance(self, items: list, start: Cursor, running: Cursor) -> tuple[list[bytes], Cursor]:
        """The records not read by an earlier poll (``start`` is where this poll began), and the
        cursor moved past them (``running`` is where this poll's earlier pages left it)."""
        spec = self.spec
        fresh = []
        since, since_us, boundary = running.since, running.since_us, set(running.boundary_ids)
        timeless, seen_timeless = list(running.timeless), set(start.timeless)
        for item in items:
            if not isinstance(item, dict):
                fresh.append(orjson.dumps(item))  # not a record: the parser dead-letters it
                continue
            key = record_key(item, spec.id_field)
            raw_time = item.get(spec.watermark_field)
            try:
                us = _micros(raw_time)
            except ValueError:
                # No time to place it by: passed on once (the pipeline dead-letters it if its
                # schema needs a time), remembered by key so later polls do not repeat it.
                if key not in seen_timeless:
                    seen_timeless.add(key)
                    timeless.append(key)
                    fresh.append(orjson.dumps(item))
                continue
            if start.since_us is not None and (
                us < start.since_us or (us == start.since_us and key in start.boundary_ids)
            ):
                continue  # read by an earlier poll
            fresh.append(orjson.dumps(item))
            if since_us is None or us > since_us:
                since, since_us, boundary = raw_time, us, set()
            if us == since_us:
                boundary.add(key)
        timeless = tuple(timeless[-MAX_TIMELESS:])
        return fresh, Cursor(since, since_us, frozenset(boundary), timeless)

    def _get(self, url: str, params: dict) -> requests.Response:
        delays = self._retry.delays()
        while True:
            if self._pacer is not None:
                while (wait := self._pacer.acquire('api')) > 0:
                    self._sleep(wait)
            self.requests += 1
            try:
                response = self._session.get(url, params=params, timeout=self.spec.timeout_secs)
            except (requests.ConnectionError, requests.Timeout) as exc:
                delay = next(delays, None)
                if delay is None:
                    raise
                _LOGGER.warning(
                    '%s: %s; retrying in %.1f s', self.spec.name, type(exc).__name__, delay
                )
                self._sleep(delay)
                continue
            if response.status_code == 429 or response.status_code >= 500:
                delay = next(delays, None)
                if delay is None:
                    raise RestApiError(
                        f'{self.spec.name}: HTTP {response.status_code} after '
                        f'{self._retry.attempts} attempts'
                    )
                delay = max(delay, retry_after_secs(response.headers.get('Retry-After')))
                _LOGGER.warning(
                    '%s: HTTP %d; retrying in %.1f s', self.spec.name, response.status_code, delay
                )
                self._sleep(delay)
                continue
            if response.status_code >= 400:
                raise RestApiError(
                    f'{self.spec.name}: HTTP {response.status_code}: {response.text[:200]}'
                )
            return response


def _json(response: requests.Response, name: str):
    try:
        return orjson.loads(response.content)
    except orjson.JSONDecodeError as exc:
        raise RestApiError(f'{name}: the body is not JSON: {exc}') from None


def _dig(body, path: str | None):
    if path is None:
        return body
    for part in path.split('.'):
        if not isinstance(body, dict):
            return None
        body = body.get(part)
    return body


def _micros(value) -> int:
    return (parse_timestamp(value) - _EPOCH) // dt.timedelta(microseconds=1)
