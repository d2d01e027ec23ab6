"""Fuzz target: JSON Lines through parsing (per line and as a pyarrow block), cleansing and
validation, as message sources give them and as the file reader reads them.

Input: byte 0 picks the schema (bit 0: the custom ``Reading`` schema, else ``Event``) and the
path (bit 1: one block of text, as files are read; bit 2: a whole file through
``io.files._read_jsonl`` with ``batch_rows`` 1 + byte 0 >> 3 mod 5); the rest is the text.
Invariants: ``fuzz.invariants.check_json_lines`` / ``check_file`` (nothing raises, every
non-blank line once at its offset, dead letters keep their bytes, valid rows typed, the
vectorised path agrees with the pydantic model).

    python -m fuzz.fuzz_json_lines CORPUS_DIR -max_total_time=60
"""

from __future__ import annotations

import sys

from fuzz.harness import FuzzInput
from fuzz.harness import instrumented_imports
from fuzz.harness import reported

with instrumented_imports():
    from fuzz import invariants as inv

_EVENT = (
    b'{"event_id":"e1","event_type":"Click","entity_id":"u1","timestamp":1714564800,"value":1.5}'
)
SEEDS = [
    b'\x00' + _EVENT + b'\n' + _EVENT.replace(b'1714564800', b'"2024-05-01T12:00:00Z"'),
    b'\x02' + _EVENT + b'\n' + _EVENT.replace(b'"value":1.5', b'"x":[1,{"y":null}]'),
    b'\x01' + _EVENT[:-1] + b',"count":3,"ok":"yes","kind":"a"}',
    b'\x04' + _EVENT + b'\n\n' + b'{"event_id":' + b'\n',
    b'\x0e' + _EVENT + b'\r\n' + _EVENT,
    b'\x00' + _EVENT.replace(b'Click', b'\\u03a3\\u0391\\u03a3'),
]


def TestOneInput(data: bytes) -> None:
    given = FuzzInput(data)
    mode = given.byte()
    schema = inv.READING_SCHEMA if mode & 1 else inv.EVENT_SCHEMA
    text = given.rest()
    with reported():
        if mode & 4:
            inv.check_file(text, 'jsonl', schema, batch_rows=1 + (mode >> 3) % 5)
        else:
            inv.check_json_lines(text.split(b'\n')[:64], schema, as_block=bool(mode & 2))


def main() -> None:
    import atheris

    atheris.Setup(sys.argv, TestOneInput)
    atheris.Fuzz()


if __name__ == '__main__':
    main()
