"""Fuzz target: Parquet files through ``io.files._read_parquet``, parsing, cleansing and
validation.

Input: byte 0 picks raw (even: the rest is the file) or structured (odd: a table whose schema
fields and an extra field each get a column of an Arrow type chosen by the bytes, any type a
Parquet writer may produce, with values from the bytes; bit 1 truncates the written file).
Invariants: ``fuzz.invariants.check_file`` (nothing raises; every row of an intact file once,
as a valid row or a dead letter; valid rows typed).

    python -m fuzz.fuzz_parquet CORPUS_DIR -max_total_time=60
"""

from __future__ import annotations

import datetime as dt
import struct
import sys

from fuzz.harness import FuzzInput
from fuzz.harness import instrumented_imports
from fuzz.harness import reported

with instrumented_imports():
    import pyarrow as pa

    from fuzz import invariants as inv

FIELDS = ('event_id', 'event_type', 'entity_id', 'timestamp', 'value', 'source', 'extra')


def _int(given: FuzzInput, signed=True) -> int:
    return int.from_bytes(given.bytes(8), 'little', signed=signed)


def _double(given: FuzzInput) -> float:
    return struct.unpack('<d', given.bytes(8).ljust(8, b'\x00'))[0]


_TYPES = {
    'string': (pa.string(), lambda g: g.text(12)),
    'large_string': (pa.large_string(), lambda g: g.text(12)),
    'binary': (pa.binary(), lambda g: g.bytes(8)),
    'int64': (pa.int64(), _int),
    'uint64': (pa.uint64(), lambda g: _int(g, signed=False)),
    'int32': (pa.int32(), lambda g: _int(g) % 2**31),
    'float64': (pa.float64(), _double),
    'float32': (pa.float32(), lambda g: float(g.int_in(-(2**20), 2**20)) / 8),
    'bool': (pa.bool_(), lambda g: bool(g.byte() & 1)),
    'null': (pa.null(), lambda g: None),
    'timestamp_us': (pa.timestamp('us', tz='UTC'), lambda g: _int(g) // 1000),
    'timestamp_ms': (pa.timestamp('ms'), lambda g: _int(g) // 1000),
    'date32': (pa.date32(), lambda g: dt.date(1970, 1, 1) + dt.timedelta(days=g.int_in(0, 10**6))),
    'list': (pa.list_(pa.int64()), lambda g: [g.byte() for _ in range(g.byte() % 3)]),
    'struct': (pa.struct([('a', pa.int64())]), lambda g: {'a': g.byte()}),
    'dictionary': (pa.dictionary(pa.int32(), pa.string()), lambda g: g.text(12)),
}
_NAMES = sorted(_TYPES)


def _table(given: FuzzInput) -> pa.Table:
    n = given.int_in(0, 6)
    mask = given.byte()
    columns = {}
    for i, name in enumerate(FIELDS):
        if mask & (1 << i):
            arrow_type, value = _TYPES[given.pick(_NAMES)]
            nulls = given.byte()
            values = [None if nulls & (1 << r) else value(given) for r in range(n)]
            columns[name] = pa.array(values, arrow_type)
    return pa.table(columns) if columns else pa.table({'event_id': pa.nulls(n, pa.string())})


SEEDS = [
    b'\x00'
    + inv.parquet_file(
        pa.table(
            {
                'event_id': ['e1', 'e2'],
                'event_type': ['click', 'view'],
                'entity_id': ['u1', 'u2'],
                'timestamp': pa.array([1714564800, 1714564801], pa.int64()),
                'value': [1.5, None],
            }
        )
    ),
    b'\x01\x03\x1f' + bytes(range(1, 120)),
    b'\x01\x05\x7f' + bytes(range(255, 100, -1)),
    b'\x03\x04\x1f' + bytes(range(50, 200)),
]


def TestOneInput(data: bytes) -> None:
    given = FuzzInput(data)
    mode = given.byte()
    with reported():
        if not mode & 1:
            inv.check_file(given.rest(), 'parquet', batch_rows=4)
            return
        table = _table(given)
        raw = inv.parquet_file(table, row_group_size=3)
        if mode & 2:
            inv.check_file(raw[: given.int_in(0, len(raw))], 'parquet', batch_rows=4)
        else:
            inv.check_file(raw, 'parquet', expected_records=table.num_rows, batch_rows=4)


def main() -> None:
    import atheris

    atheris.Setup(sys.argv, TestOneInput)
    atheris.Fuzz()


if __name__ == '__main__':
    main()
