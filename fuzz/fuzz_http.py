"""Fuzz target: the HTTP ingestion endpoints (``ingest.service``), in process on aiohttp's
test server on loopback, appending to the real Redis (``BEAM_PIPELINES_TEST_REDIS_URL``,
default ``redis://127.0.0.1:6379/0``; stream ``fuzz:http:events``, emptied every 500 requests
and by ``--cleanup``).

Input: byte 0 picks the endpoint (bit 0), the credentials (bits 1-2: none, a bearer token, a
signature of the body, a garbled token) and the content type (bits 3-5); byte 1 which extra
headers are sent, each up to 60 bytes; the rest is the body. Invariants:
``fuzz.ingest_invariants.check_http`` (never a 5xx; a 2xx only with credentials, accepting
what the payload parser takes; refusals are JSON).

    python -m fuzz.fuzz_http CORPUS_DIR -max_total_time=60
"""

from __future__ import annotations

import os
import sys
import time

from fuzz.harness import FuzzInput
from fuzz.harness import instrumented_imports
from fuzz.harness import reported

with instrumented_imports():
    from beam_pipelines.ingest.auth import sign
    from beam_pipelines.ingest.payloads import PayloadLimits
    from fuzz import ingest_invariants as ingest

REDIS_URL = os.environ.get('BEAM_PIPELINES_TEST_REDIS_URL', 'redis://127.0.0.1:6379/0')
STREAM = 'fuzz:http:events'
SECRET = b'fuzz-secret-0123456789abcdef'
LIMITS = PayloadLimits(max_events=8, max_event_bytes=256)
CONTENT_TYPES = [
    None,
    'application/json',
    'application/x-ndjson',
    'application/jsonl',
    'text/plain',
    'application/vnd.api+json; charset=utf-8',
    'APPLICATION/X-NDJSON',
    'application/json; boundary="',
]
EXTRA_HEADERS = ('Authorization', 'X-API-Key', 'X-Signature', 'X-Signature-Timestamp')
SEEDS = [
    b'\x02\x00{"event_id":"e1"}',
    b'\x03\x00[{"event_id":"e1"},{"event_id":"e2"}]',
    b'\x15\x00{"a":1}\n{"b":2}\n',
    b'\x04\x00{"event_id":"signed"}',
    b'\x00\x0c\x0bsha256=00ab\x0b9999999999{}',
]
_HARNESS: list = []


def _harness() -> ingest.IngestHarness:
    if not _HARNESS:
        _HARNESS.append(ingest.IngestHarness(REDIS_URL, STREAM, SECRET, LIMITS, 64 * 1024))
    return _HARNESS[0]


def _header_value(raw: bytes) -> str:
    # What an HTTP client can send: no control characters (aiohttp refuses them).
    return ''.join(c for c in raw.decode('utf-8', 'replace') if c.isprintable())


def TestOneInput(data: bytes) -> None:
    given = FuzzInput(data)
    mode = given.byte()
    mask = given.byte()
    headers = {}
    for i, name in enumerate(EXTRA_HEADERS):
        if mask & (1 << i):
            headers[name] = _header_value(given.bytes(60))
    body = given.rest()
    credentials = (mode >> 1) & 3
    if credentials == 1:
        headers['Authorization'] = f'Bearer {SECRET.decode()}'
    elif credentials == 2:
        stamp = str(int(time.time()))
        headers.pop('Authorization', None)
        headers.pop('X-API-Key', None)
        headers['X-Signature-Timestamp'] = stamp
        headers['X-Signature'] = sign(SECRET, stamp, body)
    elif credentials == 3:
        headers['Authorization'] = f'Bearer {SECRET.decode()[:-1]}'
    content_type = CONTENT_TYPES[(mode >> 3) % len(CONTENT_TYPES)]
    if content_type is not None:
        headers['Content-Type'] = content_type
    with reported():
        ingest.check_http(_harness(), 'single' if mode & 1 else 'batch', body, headers)


def main() -> None:
    if '--cleanup' in sys.argv:
        import redis

        redis.Redis.from_url(REDIS_URL).delete(STREAM)
        return
    import atheris

    _harness()  # fail now, not in the first input, when Redis is not there
    atheris.Setup(sys.argv, TestOneInput)
    atheris.Fuzz()


if __name__ == '__main__':
    main()
