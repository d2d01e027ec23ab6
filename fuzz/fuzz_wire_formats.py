"""Fuzz target: stream records in the CSV and Avro wire formats (``io.wire_formats``), then
parsing, cleansing and validation.

Input: byte 0 picks the format (even: CSV with the columns event_id, event_type, entity_id,
timestamp, value; odd: schemaless Avro records of a fixed schema); the rest is split into
records at newlines. Invariants: ``fuzz.invariants.check_wire`` (nothing raises; each record
decodes or is a dead letter with its raw bytes, and comes out once).

    python -m fuzz.fuzz_wire_formats CORPUS_DIR -max_total_time=60
"""

from __future__ import annotations

import io
import json
import sys

from fuzz.harness import FuzzInput
from fuzz.harness import instrumented_imports
from fuzz.harness import reported

with instrumented_imports():
    import fastavro

    from beam_pipelines.io.wire_formats import WireFormat
    from fuzz import invariants as inv

AVRO_SCHEMA = {
    'type': 'record',
    'name': 'Wire',
    'fields': [
        {'name': 'event_id', 'type': 'string'},
        {'name': 'event_type', 'type': ['null', 'string']},
        {'name': 'entity_id', 'type': ['null', 'string']},
        {'name': 'timestamp', 'type': ['long', 'string', 'null']},
        {'name': 'value', 'type': ['null', 'double', 'long']},
    ],
}
CSV = WireFormat('csv', csv_columns=('event_id', 'event_type', 'entity_id', 'timestamp', 'value'))
AVRO = WireFormat('avro', avro_schema=json.dumps(AVRO_SCHEMA))


def _avro(record: dict) -> bytes:
    out = io.BytesIO()
    fastavro.schemaless_writer(out, fastavro.parse_schema(AVRO_SCHEMA), record)
    return out.getvalue()


SEEDS = [
    b'\x00e1,click,u1,1714564800,1.5\ne2,view,u2,2024-05-01T12:00:00Z,\n"a,b",x\n\xff',
    b'\x01'
    + _avro(
        {
            'event_id': 'e1',
            'event_type': 'click',
            'entity_id': 'u1',
            'timestamp': 1714564800,
            'value': 1.5,
        }
    )
    + b'\n'
    + _avro({'event_id': 'e2', 'event_type': None, 'entity_id': 'u', 'timestamp': 'x', 'value': 7}),
]


def TestOneInput(data: bytes) -> None:
    given = FuzzInput(data)
    wire = AVRO if given.byte() & 1 else CSV
    with reported():
        inv.check_wire(given.rest().split(b'\n')[:64], wire)


def main() -> None:
    import atheris

    atheris.Setup(sys.argv, TestOneInput)
    atheris.Fuzz()


if __name__ == '__main__':
    main()
