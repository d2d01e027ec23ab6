"""Request bodies into raw events: one JSON object, a batch, or JSON Lines; checked for shape
and size.

The front door checks only what it must to frame events: each event is a JSON object and fits
the size limit. The schema (required fields, types, timestamps) is the pipeline's job, where an
invalid event becomes a dead letter with every failing field named; checking it twice would
let the two disagree. A request is taken whole or refused whole, so a client that retries a
refused request never doubles the events that were fine.

Plain Python, no web framework or Beam in it.
"""

from __future__ import annotations

import dataclasses

import orjson

from beam_pipelines.json_limits import MAX_DEPTH

__all__ = ['JSON_LINES_TYPES', 'PayloadError', 'PayloadLimits', 'parse_batch', 'parse_single']

MAX_PROBLEMS = 20  # problems listed in one error response
JSON_LINES_TYPES = ('application/x-ndjson', 'application/jsonl')


class PayloadError(Exception):
    """A body that cannot be taken; ``status`` is the HTTP status (400 or 413)."""

    def __init__(self, message: str, status: int = 400, problems: list[dict] | None = None):
        super().__init__(message)
        self.status = status
        self.problems = problems or []


@dataclasses.dataclass(frozen=True)
class PayloadLimits:
    """Size limits of a request (the body limit itself is the web server's)."""

    max_events: int = 10_000
    max_event_bytes: int = 256 * 1024

    def __post_init__(self):
        if self.max_events < 1 or self.max_event_bytes < 2:
            raise ValueError('max_events must be >= 1 and max_event_bytes >= 2')


def parse_single(body: bytes, limits: PayloadLimits) -> list[bytes]:
    """One event: the body is a JSON object. Returns it as the one raw event.

    Raises:
        PayloadError: not JSON, not an object, or too large.
    """
    if len(body) > limits.max_event_bytes:
        raise PayloadError(f'the event is over {limits.max_event_bytes} bytes', status=413)
    value = _loads(body, 'body')
    if not isinstance(value, dict):
        raise PayloadError(
            f'the body must be a JSON object (one event), got {_kind(value)}; send batches '
            'to /v1/events/batch'
        )
    return [_dumps(value, 'the event')]  # one line, whatever the client's layout


def parse_batch(body: bytes, content_type: str, limits: PayloadLimits) -> list[bytes]:
    """A batch: a JSON array of objects, ``{"events": [...]}``, or JSON Lines (content type
    ``application/x-ndjson`` or ``application/jsonl``). Returns the raw events in order.

    Raises:
        PayloadError: a malformed body or event (every problem listed, up to 20), or too many
            or too large events.
    """
    if content_type in JSON_LINES_TYPES:
        return _json_lines(body, limits)
    value = _loads(body, 'body')
    if isinstance(value, dict) and isinstance(value.get('events'), list):
        value = value['events']
    if not isinstance(value, list):
        raise PayloadError(
            f'a batch is a JSON array of events or {{"events": [...]}}, got {_kind(value)}'
        )
    _check_count(len(value), limits)
    events, problems = [], []
    for i, item in enumerate(value):
        if not isinstance(item, dict):
            problems.append({'index': i, 'error': f'an event is a JSON object, got {_kind(item)}'})
            continue
        try:
            raw = _dumps(item, 'the event')
        except PayloadError as exc:
            problems.append({'index': i, 'error': str(exc)})
            continue
        if len(raw) > limits.max_event_bytes:
            problems.append(
                {'index': i, 'error': f'over {limits.max_event_bytes} bytes', 'too_large': True}
            )
        events.append(raw)
    _raise_for(problems)
    return events


def _json_lines(body: bytes, limits: PayloadLimits) -> list[bytes]:
    lines = [line.strip() for line in body.split(b'\n')]
    _check_count(sum(1 for line in lines if line), limits)  # blank lines are not records
    events, problems = [], []
    for i, line in enumerate(lines):
        if not line:
            continue
        if len(line) > limits.max_event_bytes:
            problems.append(
                {'line': i + 1, 'error': f'over {limits.max_event_bytes} bytes', 'too_large': True}
            )
            continue
        try:
            value = orjson.loads(line)
        except orjson.JSONDecodeError as exc:
            problems.append({'line': i + 1, 'error': f'not JSON: {exc}'})
            continue
        if not isinstance(value, dict):
            problems.append(
                {'line': i + 1, 'error': f'an event is a JSON object, got {_kind(value)}'}
            )
            continue
        events.append(line)
    _raise_for(problems)
    return events


def _loads(body: bytes, what: str):
    if not body.strip():
        raise PayloadError(f'the {what} is empty')
    try:
        return orjson.loads(body)
    except orjson.JSONDecodeError as exc:
        raise PayloadError(f'the {what} is not JSON: {exc}') from None


def _dumps(value, what: str) -> bytes:
    # orjson reads JSON 1024 levels deep but writes only 254: a deeper event cannot be framed
    # as one line here, and the pipeline would dead-letter it (too_deeply_nested) anyway.
    try:
        return orjson.dumps(value)
    except orjson.JSONEncodeError:
        raise PayloadError(f'{what} nests JSON deeper than {MAX_DEPTH} levels') from None


def _check_count(count: int, limits: PayloadLimits) -> None:
    if count > limits.max_events:
        raise PayloadError(
            f'{count} events in one request; at most {limits.max_events}', status=413
        )


def _raise_for(problems: list[dict]) -> None:
    if problems:
        # 413 when size is the only problem, as for a single event: the request is refused
        # for its size, and the documented answer to "an event too large" is 413.
        too_large = all([p.pop('too_large', False) for p in problems])  # pops every one
        raise PayloadError(
            f'{len(problems)} event(s) cannot be taken; nothing was accepted',
            status=413 if too_large else 400,
            problems=problems[:MAX_PROBLEMS],
        )


def _kind(value) -> str:
    return {
        dict: 'an object',
        list: 'an array',
        str: 'a string',
        bool: 'a boolean',
        type(None): 'null',
    }.get(type(value), 'a number')
