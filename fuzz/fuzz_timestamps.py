"""Fuzz target: timestamp parsing, row level (``parse_timestamp``) and vectorised
(``normalise_timestamps``).

Input: byte 0 picks the kind: text, an integer (up to 9 bytes, signed), a float (8 bytes), an
RFC 3339 near miss built from the bytes, or a datetime to round-trip (seconds from 1900 to
2200, microseconds, a UTC offset). Invariants: ``fuzz.invariants.check_timestamp`` /
``check_timestamp_round_trip`` (only ``ValueError`` with the module's messages, results in
range, both paths agree, ISO-8601 and epoch values round-trip).

    python -m fuzz.fuzz_timestamps CORPUS_DIR -max_total_time=60
"""

from __future__ import annotations

import datetime as dt
import struct
import sys

from fuzz.harness import FuzzInput
from fuzz.harness import instrumented_imports
from fuzz.harness import reported

with instrumented_imports():
    from fuzz import invariants as inv

SEEDS = [
    b'\x00 2024-05-01T12:00:00.123456789+02:00',
    b'\x00 1714564800',
    b'\x00 1714564800123.5',
    b'\x01\x00\x00\x00\x00\x00\x00\x20\x00',
    b'\x02' + struct.pack('<d', 1714564800.25),
    b'\x03' + bytes(range(16)),
    b'\x04' + bytes(range(40)),
    '\x00\u0661\u0667\u0661\u0664\u0665\u0666\u0664\u0668\u0660\u0660'.encode(),
]
_SEPARATORS = ['T', 't', ' ', '_', '']
_ZONES = ['Z', 'z', '', '+00:00', '-00:00', '+05:30', '-23:59', '+24:00', '+1:00', '+00:60']
_FRACTIONS = ['', '.', '.5', '.123456', '.1234567', '.123456789', '.1234567890']
_PADS = ['', ' ', '\t', '\u3000', '\x00', '\n']


def _near_miss(given: FuzzInput) -> str:
    date = f'{given.int_in(0, 9999):04d}-{given.int_in(0, 99):02d}-{given.int_in(0, 99):02d}'
    clock = f'{given.int_in(0, 99):02d}:{given.int_in(0, 99):02d}:{given.int_in(0, 99):02d}'
    pad = given.pick(_PADS)
    return (
        pad
        + date
        + given.pick(_SEPARATORS)
        + clock
        + given.pick(_FRACTIONS)
        + given.pick(_ZONES)
        + pad
    )


def TestOneInput(data: bytes) -> None:
    given = FuzzInput(data)
    kind = given.byte() % 5
    with reported():
        if kind == 0:
            inv.check_timestamp(given.rest().decode('utf-8', 'replace'))
        elif kind == 1:
            inv.check_timestamp(int.from_bytes(given.bytes(9), 'little', signed=True))
        elif kind == 2:
            (number,) = struct.unpack('<d', given.bytes(8).ljust(8, b'\x00'))
            inv.check_timestamp(number)
        elif kind == 3:
            seconds = given.int_in(-2_208_988_800, 7_258_118_400)  # 1900 .. 2200
            offset = dt.timedelta(minutes=given.int_in(-1439, 1439))
            moment = dt.datetime.fromtimestamp(seconds, dt.UTC).replace(
                microsecond=given.int_in(0, 999_999)
            )
            inv.check_timestamp_round_trip(moment.astimezone(dt.timezone(offset)))
        else:
            inv.check_timestamp(_near_miss(given))


def main() -> None:
    import atheris

    atheris.Setup(sys.argv, TestOneInput)
    atheris.Fuzz()


if __name__ == '__main__':
    main()
