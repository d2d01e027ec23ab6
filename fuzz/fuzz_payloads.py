"""Fuzz target: request bodies of the ingestion service (``ingest.payloads``).

Input: byte 0 picks the endpoint (bit 0: one event, else a batch) and the batch's content type
(bits 1-3); the rest is the body. Invariants: ``fuzz.ingest_invariants.check_payload`` (taken
whole, each event one JSON object within the limits, or refused with a ``PayloadError`` of
status 400 or 413; nothing else is raised).

    python -m fuzz.fuzz_payloads CORPUS_DIR -max_total_time=60
"""

from __future__ import annotations

import sys

from fuzz.harness import FuzzInput
from fuzz.harness import instrumented_imports
from fuzz.harness import reported

with instrumented_imports():
    from beam_pipelines.ingest.payloads import PayloadLimits
    from fuzz import ingest_invariants as ingest

LIMITS = PayloadLimits(max_events=8, max_event_bytes=256)
CONTENT_TYPES = [
    'application/json',
    'application/x-ndjson',
    'application/jsonl',
    'text/plain',
    '',
    'application/vnd.api+json',
    'multipart/form-data',
    'APPLICATION/X-NDJSON',
]
SEEDS = [
    b'\x01{"event_id":"e1","value":1}',
    b'\x00[{"event_id":"e1"},{"event_id":"e2"}]',
    b'\x00{"events":[{"a":1},2,"x"]}',
    b'\x02{"a":1}\n\n{"b":[1,2]}\n[]\n',
    b'\x04{"a":1}\n{"b":2}',
    b'\x01{"a":' + b'[' * 250 + b']' * 250 + b'}',  # near orjson's 254-level write limit
]


def TestOneInput(data: bytes) -> None:
    given = FuzzInput(data)
    mode = given.byte()
    content_type = CONTENT_TYPES[(mode >> 1) % len(CONTENT_TYPES)]
    with reported():
        ingest.check_payload(given.rest(), content_type, LIMITS, single=bool(mode & 1))


def main() -> None:
    import atheris

    atheris.Setup(sys.argv, TestOneInput)
    atheris.Fuzz()


if __name__ == '__main__':
    main()
