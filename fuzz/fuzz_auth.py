"""Fuzz target: authentication of ingestion requests (``ingest.auth.Authenticator``).

Input: byte 0 picks the mode (token, hmac, any) and byte 1 which of the four credential headers
are sent (``Authorization``, ``X-API-Key``, ``X-Signature``, ``X-Signature-Timestamp``); each
sent value is up to 80 bytes, read as aiohttp reads headers (UTF-8, undecodable bytes kept
as surrogates); the rest is the body. The seeds hold the secret, so mutations explore near it.
Invariants: ``fuzz.ingest_invariants.check_auth`` (only ``AuthError``; nothing accepted unless
it proves it holds the secret; no secret in a refusal).

    python -m fuzz.fuzz_auth CORPUS_DIR -max_total_time=60
"""

from __future__ import annotations

import sys

from fuzz.harness import FuzzInput
from fuzz.harness import instrumented_imports
from fuzz.harness import reported

with instrumented_imports():
    from beam_pipelines.ingest.auth import sign
    from fuzz import ingest_invariants as ingest

SECRET = b'fuzz-secret-0123456789abcdef'
NOW = 1_714_521_600.0
MODES = ('any', 'token', 'hmac')
HEADERS = ('Authorization', 'X-API-Key', 'X-Signature', 'X-Signature-Timestamp')


def _seed(mode: int, headers: dict[str, bytes], body: bytes) -> bytes:
    mask = sum(1 << i for i, name in enumerate(HEADERS) if name in headers)
    out = bytes([mode, mask])
    for name in HEADERS:
        if name in headers:
            out += bytes([len(headers[name])]) + headers[name]
    return out + body


SEEDS = [
    _seed(0, {'Authorization': b'Bearer ' + SECRET}, b'{}'),
    _seed(1, {'X-API-Key': b' ' + SECRET + b' '}, b''),
    _seed(
        2,
        {
            'X-Signature': sign(SECRET, '1714521600', b'{"a":1}').encode(),
            'X-Signature-Timestamp': b'1714521600',
        },
        b'{"a":1}',
    ),
    _seed(0, {'X-Signature': b'sha256=00', 'X-Signature-Timestamp': b'1' + b'0' * 70}, b''),
]


def TestOneInput(data: bytes) -> None:
    given = FuzzInput(data)
    mode = MODES[given.byte() % len(MODES)]
    mask = given.byte()
    headers = {}
    for i, name in enumerate(HEADERS):
        if mask & (1 << i):
            headers[name] = given.bytes(80).decode('utf-8', 'surrogateescape')
    with reported():
        ingest.check_auth(headers, given.rest(), [SECRET], mode=mode, now=NOW)


def main() -> None:
    import atheris

    atheris.Setup(sys.argv, TestOneInput)
    atheris.Fuzz()


if __name__ == '__main__':
    main()
