"""The project's one dead-letter envelope.

Every record that cannot become a clean event becomes one of these, never a log line. The
envelope keeps the raw record (text, or base64 with ``payload_encoding='base64'`` when it is not
valid UTF-8) and where it came from, so ``replay`` can feed it back through the same pipeline:

    {"stage": "parse", "error_type": "json_decode_error", "error_message": "...",
     "payload": "{\"event_id\": ...", "payload_encoding": "utf-8", "payload_format": "json",
     "source": {"uri": "events.jsonl", "offset": 1234}, "pipeline": "event_analytics",
     "processing_time": "2026-11-23T19:00:00.000000Z", "event_time": null}
"""

from __future__ import annotations

import base64
import datetime as dt
from typing import Any

import orjson

__all__ = [
    'ENVELOPE_FIELDS',
    'Stage',
    'decode_payload',
    'make_dead_letter',
    'now',
    'to_json_line',
]

ENVELOPE_FIELDS = (
    'stage',
    'error_type',
    'error_message',
    'payload',
    'payload_encoding',
    'payload_format',
    'source',
    'pipeline',
    'processing_time',
    'event_time',
)


class Stage:
    """Stage names used in envelopes."""

    READ = 'read'
    PARSE = 'parse'
    VALIDATE = 'validate'
    LATE = 'late'
    SINK = 'sink'


def now() -> str:
    """The current time as a dead letter's ``processing_time`` (RFC 3339, UTC)."""
    return dt.datetime.now(dt.UTC).strftime('%Y-%m-%dT%H:%M:%S.%fZ')


def make_dead_letter(
    *,
    stage: str,
    error_type: str,
    error_message: str,
    payload: bytes | str | None,
    source: dict[str, Any],
    pipeline: str,
    payload_format: str = 'json',
    event_time: str | None = None,
    processing_time: str | None = None,
) -> dict[str, Any]:
    """Builds one dead-letter envelope.

    Args:
        stage: where it failed (see :class:`Stage`).
        error_type: a short machine-readable class of error (``json_decode_error``, ...).
        error_message: a human explanation naming the field(s) at fault.
        payload: the raw record; bytes that are not UTF-8 are kept as base64.
        source: where the record came from, e.g. ``{'uri': ..., 'offset': ...}``.
        pipeline: the pipeline's name.
        payload_format: how to read the payload back: 'json' (a JSON line, or a decoded row
            rendered as a JSON object), 'csv' (a raw CSV line), or the file format for a read
            failure of a whole file.
        event_time: the record's event time (RFC 3339, UTC) when it is known.
        processing_time: when it was dead-lettered (defaults to now).

    Returns:
        The envelope as a dict with the keys in ``ENVELOPE_FIELDS``.
    """
    encoding = 'utf-8'
    if isinstance(payload, bytes | bytearray | memoryview):
        raw = bytes(payload)
        try:
            payload = raw.decode('utf-8')
        except UnicodeDecodeError:
            payload = base64.b64encode(raw).decode('ascii')
            encoding = 'base64'
    return {
        'stage': stage,
        'error_type': error_type,
        'error_message': error_message,
        'payload': payload,
        'payload_encoding': encoding,
        'payload_format': payload_format,
        'source': source,
        'pipeline': pipeline,
        'processing_time': processing_time or now(),
        'event_time': event_time,
    }


def decode_payload(envelope: dict[str, Any]) -> bytes:
    """Returns the raw record bytes of an envelope (the inverse of :func:`make_dead_letter`)."""
    payload = envelope.get('payload') or ''
    if envelope.get('payload_encoding') == 'base64':
        return base64.b64decode(payload)
    return payload.encode('utf-8')


def to_json_line(envelope: dict[str, Any]) -> str:
    """Serialises an envelope as one JSON line (no trailing newline)."""
    return orjson.dumps(envelope, default=str).decode('utf-8')
