"""Fuzz target: Avro files through ``io.files._read_avro``, parsing, cleansing and validation.

Input: byte 0 picks raw (even: the rest is the file) or structured (odd: records in
``fuzz.invariants.AVRO_SCHEMA`` built from the bytes, each field's union branch and value
chosen by them, written with the null or deflate codec, and, when bit 1 is set, truncated).
Invariants: ``fuzz.invariants.check_file`` (nothing raises; every record of an intact file once,
as a valid row or a dead letter; a damaged file's loss is one ``corrupt_file`` dead letter;
valid rows typed).

    python -m fuzz.fuzz_avro CORPUS_DIR -max_total_time=60
"""

from __future__ import annotations

import struct
import sys

from fuzz.harness import FuzzInput
from fuzz.harness import instrumented_imports
from fuzz.harness import reported

with instrumented_imports():
    from fuzz import invariants as inv


def _long(given: FuzzInput) -> int:
    return int.from_bytes(given.bytes(8), 'little', signed=True)


def _double(given: FuzzInput) -> float:
    return struct.unpack('<d', given.bytes(8).ljust(8, b'\x00'))[0]


def _text(given: FuzzInput) -> str:
    return given.text(24)


_BRANCHES = {
    'event_id': [lambda g: None, _text, _long, lambda g: g.bytes(8)],
    'event_type': [lambda g: None, _text, lambda g: bool(g.byte() & 1)],
    'entity_id': [lambda g: None, _text],
    'timestamp': [lambda g: None, _long, _double, _text, lambda g: 1714564800 + g.byte()],
    'value': [lambda g: None, _double, _long, _text, lambda g: bool(g.byte() & 1)],
    'source': [lambda g: None, _text, lambda g: [_long(g) for _ in range(g.byte() % 3)]],
    'extra': [
        lambda g: None,
        _text,
        lambda g: g.bytes(8),
        lambda g: {_text(g): _double(g) for _ in range(g.byte() % 3)},
    ],
}


def _records(given: FuzzInput) -> list[dict]:
    return [
        {name: given.pick(branches)(given) for name, branches in _BRANCHES.items()}
        for _ in range(given.int_in(0, 12))
    ]


SEEDS = [
    b'\x01\x03' + bytes(range(1, 60)),
    b'\x03\x05' + bytes(range(200, 256)) * 2,
    b'\x00'
    + inv.avro_file(
        [
            {
                'event_id': 'e1',
                'event_type': 'click',
                'entity_id': 'u1',
                'timestamp': 1714564800,
                'value': 1.5,
                'source': None,
                'extra': {'k': 1.0},
            }
        ]
    ),
]


def TestOneInput(data: bytes) -> None:
    given = FuzzInput(data)
    mode = given.byte()
    with reported():
        if not mode & 1:
            inv.check_file(given.rest(), 'avro', batch_rows=4)
            return
        records = _records(given)
        raw = inv.avro_file(records, 'deflate' if mode & 4 else 'null')
        if mode & 2:
            inv.check_file(raw[: given.int_in(0, len(raw))], 'avro', batch_rows=4)
        else:
            inv.check_file(raw, 'avro', expected_records=len(records), batch_rows=4)


def main() -> None:
    import atheris

    atheris.Setup(sys.argv, TestOneInput)
    atheris.Fuzz()


if __name__ == '__main__':
    main()
