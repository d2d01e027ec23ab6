"""Fuzz target: CSV files through ``io.files._read_csv``, parsing, cleansing and validation.

Input: the file's bytes. Invariants: ``fuzz.invariants.check_file`` (nothing raises; each
batch's records come out once, as valid rows or dead letters; no two outputs name the same
record; dead letters are well-formed envelopes; valid rows typed).

    python -m fuzz.fuzz_csv CORPUS_DIR -max_total_time=60
"""

from __future__ import annotations

import sys

from fuzz.harness import instrumented_imports
from fuzz.harness import reported

with instrumented_imports():
    from fuzz import invariants as inv

_HEADER = b'event_id,event_type,entity_id,timestamp,value,source\n'
SEEDS = [
    _HEADER + b'e1,Click,u1,1714564800,1.5,web\ne2,view,u2,2024-05-01T12:00:00Z,,\n',
    _HEADER + b'"e,1",click,u1,1714564800123,"1e3",\r\ne2,x\n',
    b'\xef\xbb\xbf' + _HEADER + b'e1,click,u1,1714564800,n/a,\xff\n',
    b'timestamp,value,event_id,event_type,entity_id,extra\n1714564800,2,a,b,c,{"x":1}\n',
]


def TestOneInput(data: bytes) -> None:
    with reported():
        inv.check_file(data, 'csv', batch_rows=3)


def main() -> None:
    import atheris

    atheris.Setup(sys.argv, TestOneInput)
    atheris.Fuzz()


if __name__ == '__main__':
    main()
