"""A corpus of hostile and malformed inputs for the event parsers.

Each :class:`HostileCase` is a named generator that writes one input file (JSON Lines, CSV,
Avro or Parquet) or one file of stream messages (CSV or Avro on the wire), mixing a few good
events with what a broken producer, a truncated upload or an attacker sends: invalid UTF-8, NUL
bytes, JSON nested 100,000 deep, a 100 MB line, non-finite numbers, duplicate keys, wrong types,
timestamps out of range, blank lines and byte order marks, truncated records and files, files
written with another schema. A case also says what must become of it: how many good events
come out valid, how many records become dead letters and with which error types. Nothing may
crash the pipeline or vanish without a dead letter.

Plain Python (orjson, fastavro, pyarrow), no Beam: ``tests/reliability`` runs every case
through the flagship. To write the corpus for a run by hand::

    python -m beam_pipelines.reliability.hostile OUT_DIR [--light]
"""

from __future__ import annotations

import argparse
import csv
import dataclasses
import io
import logging
import os
import struct
import sys
from collections.abc import Callable
from collections.abc import Iterator

import fastavro
import orjson
import pyarrow as pa
import pyarrow.parquet as pq

__all__ = [
    'AVRO_SCHEMA',
    'CASES',
    'FIELDS',
    'HostileCase',
    'good_events',
    'read_messages',
    'write_corpus',
    'write_good',
]

_LOGGER = logging.getLogger(__name__)

FIELDS = ('event_id', 'event_type', 'entity_id', 'timestamp', 'value')
HUGE_BYTES = 100 * 1024 * 1024  # the 100 MB line and CSV field
DEEP = 100_000  # the nesting depth of the deep JSON
_GOOD_IN_FILE = 3  # good events mixed into each case's own file (where its format allows)
AVRO_SCHEMA = {
    'type': 'record',
    'name': 'Event',
    'fields': [
        {'name': 'event_id', 'type': 'string'},
        {'name': 'event_type', 'type': 'string'},
        {'name': 'entity_id', 'type': 'string'},
        {'name': 'timestamp', 'type': ['string', 'long', 'double']},
        {'name': 'value', 'type': ['null', 'double', 'string']},
    ],
}


@dataclasses.dataclass(frozen=True)
class HostileCase:
    """One hostile input and what must become of it.

    Attributes:
        name: names the case and its file (``<name>.<ext>``).
        fmt: 'jsonl', 'csv', 'avro' or 'parquet' (a file), or 'wire_csv' / 'wire_avro' (stream
            messages, read back with :func:`read_messages`).
        write: writes the input to the path it is given.
        good: good events in the input (ids ``<name>.good-N``): each must come out valid.
        bad: records that must become dead letters (a file that cannot be read at all: 1).
        reasons: the error types those dead letters may carry.
        accepted: the ids of hostile but legal records (a NUL escaped in a JSON string, an
            integer beyond 2**53) that must come out as valid events.
        heavy: big or deep enough to be run in a subprocess with bounded memory and time.
        note: what the case is about, for reports.
    """

    name: str
    fmt: str
    write: Callable[[str], None]
    good: int
    bad: int
    reasons: frozenset[str]
    accepted: tuple[str, ...] = ()
    heavy: bool = False
    note: str = ''

    def good_ids(self) -> set[str]:
        """The ids of the good events in the input."""
        return {e['event_id'] for e in good_events(self.good, f'{self.name}.good')}

    @property
    def filename(self) -> str:
        ext = {'wire_csv': 'csv.msgs', 'wire_avro': 'avro.msgs'}.get(self.fmt, self.fmt)
        return f'{self.name}.{ext}'


def good_events(n: int, prefix: str = 'good') -> list[dict]:
    """``n`` valid events (ids ``<prefix>-0`` ...), a second apart."""
    return [
        {
            'event_id': f'{prefix}-{i}',
            'event_type': 'click',
            'entity_id': f'u{i % 2}',
            'timestamp': f'2024-05-01T00:00:{10 + i:02d}Z',
            'value': 1.5 + i,
        }
        for i in range(n)
    ]


def write_good(path: str, fmt: str, n: int, prefix: str = 'good') -> None:
    """Writes ``n`` good events in a file format."""
    events = good_events(n, prefix)
    if fmt == 'jsonl':
        _write(path, b''.join(orjson.dumps(e) + b'\n' for e in events))
    elif fmt == 'csv':
        _write(path, _csv_header() + b''.join(_csv_row(e) for e in events))
    elif fmt == 'avro':
        with open(path, 'wb') as f:
            fastavro.writer(f, AVRO_SCHEMA, events)
    elif fmt == 'parquet':
        pq.write_table(pa.Table.from_pylist(events), path)
    else:
        raise ValueError(f'fmt must be jsonl, csv, avro or parquet, got {fmt!r}')


def read_messages(path: str) -> Iterator[bytes]:
    """The messages of a wire case's file (each a 4-byte big-endian length, then its bytes)."""
    with open(path, 'rb') as f:
        data = f.read()
    at = 0
    while at < len(data):
        (n,) = struct.unpack_from('>I', data, at)
        yield data[at + 4 : at + 4 + n]
        at += 4 + n


def write_corpus(directory: str, light_only: bool = False) -> list[str]:
    """Writes every case (or the light ones) into ``directory``; returns the paths."""
    os.makedirs(directory, exist_ok=True)
    paths = []
    for case in CASES.values():
        if light_only and case.heavy:
            continue
        path = os.path.join(directory, case.filename)
        case.write(path)
        paths.append(path)
    return paths


# --- building blocks ------------------------------------------------------------------------


def _good(path: str, n: int = _GOOD_IN_FILE) -> list[dict]:
    """The good events of a case's file, ids named after the case (its file name's stem), so
    that the cases can share a run without their events being taken for duplicates."""
    return good_events(n, os.path.basename(path).split('.')[0] + '.good')


def _write(path: str, data: bytes) -> None:
    with open(path, 'wb') as f:
        f.write(data)


def _event(id_: str, /, **changes) -> dict:
    """A good event with id ``id_`` and some fields changed (``...`` removes the field)."""
    base = {
        'event_id': id_,
        'event_type': 'click',
        'entity_id': 'u1',
        'timestamp': '2024-05-01T00:01:00Z',
        'value': 2.0,
    }
    base.update(changes)
    return {k: v for k, v in base.items() if v is not ...}


def _json(event: dict) -> bytes:
    return orjson.dumps(event)


def _jsonl_with(bad_lines: list[bytes], tail: bytes = b'') -> Callable[[str], None]:
    """Good lines with the bad ones between them (bad lines cross the good ones' batch), then
    ``tail`` (written as is, e.g. a last line without its newline)."""

    def write(path: str) -> None:
        good = [orjson.dumps(e) for e in _good(path)]
        lines = [good[0], *bad_lines[: len(bad_lines) // 2], good[1]]
        lines += [*bad_lines[len(bad_lines) // 2 :], good[2]]
        _write(path, b''.join(line + b'\n' for line in lines) + tail)

    return write


def _csv_header() -> bytes:
    return (','.join(FIELDS) + '\n').encode()


def _csv_row(event: dict) -> bytes:
    out = io.StringIO()
    csv.writer(out, lineterminator='\n').writerow([event.get(f, '') for f in FIELDS])
    return out.getvalue().encode()


def _csv_with(bad_rows: list[bytes], tail: bytes = b'', head: bytes = b'') -> Callable:
    """A CSV file: ``head``, the header, good rows with the bad ones (raw bytes, newline
    included) between them, then ``tail``."""

    def write(path: str) -> None:
        good = [_csv_row(e) for e in _good(path)]
        rows = [good[0], *bad_rows[: len(bad_rows) // 2], good[1]]
        rows += [*bad_rows[len(bad_rows) // 2 :], good[2]]
        _write(path, head + _csv_header() + b''.join(rows) + tail)

    return write


def _avro(schema: dict, records: list[dict], with_good: bool = True) -> Callable:
    def write(path: str) -> None:
        rows = list(records)
        if with_good:
            rows = _good(path) + rows
        with open(path, 'wb') as f:
            fastavro.writer(f, schema, rows)

    return write


def _parquet(table: Callable[[str], pa.Table]) -> Callable:
    def write(path: str) -> None:
        pq.write_table(table(path), path)

    return write


def _messages(messages: Callable[[str], list[bytes]]) -> Callable:
    def write(path: str) -> None:
        _write(path, b''.join(struct.pack('>I', len(m)) + m for m in messages(path)))

    return write


# --- JSON Lines -----------------------------------------------------------------------------


def _nested(depth: int, open_: bytes, close: bytes) -> bytes:
    return open_ * depth + close * depth


def _write_deep_jsonl(path: str) -> None:
    lines = [
        # Arrays and objects 100,000 deep: beyond any parser's recursion.
        _json(_event('bad-deep-array'))[:-1] + b',"nested":' + _nested(DEEP, b'[', b']') + b'}',
        _json(_event('bad-deep-object'))[:-1]
        + b',"nested":'
        + b'{"a":' * DEEP
        + b'1'
        + b'}' * DEEP
        + b'}',
        # Never closed.
        b'{"event_id":"bad-deep-open","nested":' + b'[' * DEEP,
        # 500 deep: within what a JSON decoder takes, beyond what an encoder writes back.
        _json(_event('bad-deep-500'))[:-1] + b',"nested":' + _nested(500, b'[', b']') + b'}',
        # In a schema field.
        _json(_event('bad-deep-value', value=...))[:-1]
        + b',"value":'
        + _nested(500, b'[', b']')
        + b'}',
    ]
    _jsonl_with(lines)(path)


def _write_huge_jsonl(path: str) -> None:
    """One 100 MB line (valid JSON up to a trailing comma at its very end, so that a parser
    reads all of it before it fails) between good lines."""
    good = [orjson.dumps(e) + b'\n' for e in _good(path)]
    head = _json(_event('bad-huge'))[:-1] + b',"blob":"'
    with open(path, 'wb') as f:
        f.write(good[0] + good[1])
        f.write(head)
        chunk = b'x' * (1 << 20)
        for _ in range(HUGE_BYTES // len(chunk)):
            f.write(chunk)
        f.write(b'",}\n')
        f.write(good[2])


def _write_bom_and_blank_jsonl(path: str) -> None:
    good = [orjson.dumps(e) for e in _good(path)]
    _write(
        path,
        b'\xef\xbb\xbf'  # a byte order mark before the first line: an encoding mark, not data
        + good[0]
        + b'\n\n   \n\t\r\n\r\n'
        + good[1]
        + b'\n \n'
        + b'\xef\xbb\xbf'  # one in the middle (two files concatenated): part of that line
        + _json(_event('bad-bom-inside'))
        + b'\n'
        + good[2]
        + b'\n\n\n',
    )


def _write_avro_truncated(keep: str) -> Callable:
    """An Avro file of good events, one block each, cut in the middle of its last block
    (``keep='middle'``) or within its header (``keep='header'``)."""

    def write(path: str) -> None:
        out = io.BytesIO()
        writer = fastavro.write.Writer(out, fastavro.parse_schema(AVRO_SCHEMA))
        ends = []
        events = _good(path, _GOOD_IN_FILE + 1) if keep == 'middle' else good_events(4, 'cut')
        for event in events:
            writer.write(event)
            writer.flush()  # one block per record
            ends.append(out.tell())
        data = out.getvalue()
        # In the middle of the last block; or the magic and a part of the metadata.
        cut = (ends[-2] + ends[-1]) // 2 if keep == 'middle' else 20
        _write(path, data[:cut])

    return write


def _write_avro_header_only(path: str) -> None:
    """A complete header and no block: what a file cut right after its header looks like. Avro
    keeps no record count, so this is a valid empty file."""
    with open(path, 'wb') as f:
        fastavro.writer(f, AVRO_SCHEMA, [])


def _avro_invalid_utf8(path: str) -> None:
    """A string field holding invalid UTF-8: the records written as ``bytes`` (the same binary
    layout), under a header that says ``string``."""
    bytes_schema = {
        **AVRO_SCHEMA,
        'fields': [
            {'name': 'event_id', 'type': 'string'},
            {'name': 'event_type', 'type': 'string'},
            {'name': 'entity_id', 'type': 'bytes'},
            {'name': 'timestamp', 'type': ['string', 'long', 'double']},
            {'name': 'value', 'type': ['null', 'double', 'string']},
        ],
    }
    parsed = fastavro.parse_schema(bytes_schema)
    sync = b'\x5a' * 16
    events = _good(path)
    bad = _event('bad-utf8', entity_id=b'u\xff\xfe')
    blocks = []
    # One block per record: a record that cannot be decoded costs only its own block.
    for record in [events[0], bad, events[1], events[2]]:
        body = io.BytesIO()
        row = dict(record)
        if isinstance(row['entity_id'], str):
            row['entity_id'] = row['entity_id'].encode()
        fastavro.schemaless_writer(body, parsed, row)
        data = body.getvalue()
        blocks.append(_avro_long(1) + _avro_long(len(data)) + data + sync)
    meta = {'avro.schema': orjson.dumps(AVRO_SCHEMA), 'avro.codec': b'null'}
    header = b'Obj\x01' + _avro_long(len(meta))
    for key, value in meta.items():
        header += _avro_long(len(key)) + key.encode() + _avro_long(len(value)) + value
    header += _avro_long(0) + sync
    _write(path, header + b''.join(blocks))


def _avro_long(n: int) -> bytes:
    n = (n << 1) ^ (n >> 63)
    out = bytearray()
    while n & ~0x7F:
        out.append((n & 0x7F) | 0x80)
        n >>= 7
    out.append(n)
    return bytes(out)


_OTHER_SCHEMA = {
    'type': 'record',
    'name': 'Reading',
    'fields': [
        {'name': 'id', 'type': 'long'},
        {'name': 'kind', 'type': 'string'},
        {'name': 'when', 'type': 'long'},
        {'name': 'amount', 'type': 'string'},
    ],
}

_WRONG_TYPES_SCHEMA = {
    'type': 'record',
    'name': 'Event',
    'fields': [
        {'name': 'event_id', 'type': ['string', 'long', 'boolean']},
        {'name': 'event_type', 'type': ['string', {'type': 'array', 'items': 'long'}]},
        {'name': 'entity_id', 'type': ['string', {'type': 'map', 'values': 'long'}]},
        {'name': 'timestamp', 'type': ['string', 'boolean', 'bytes']},
        {'name': 'value', 'type': ['null', 'double', 'string', 'boolean']},
    ],
}


# --- Parquet --------------------------------------------------------------------------------


def _parquet_with_good(path: str, bad: pa.Table) -> pa.Table:
    good = pa.Table.from_pylist(_good(path), schema=bad.schema)
    return pa.concat_tables([good, bad])


def _parquet_wrong_types_scalars(path: str) -> pa.Table:
    return pa.table(
        {
            'event_id': pa.array([1, 2], pa.int64()),
            'event_type': pa.array([1.5, 2.5], pa.float64()),
            'entity_id': pa.array([True, False]),
            'timestamp': pa.array([True, False]),
            'value': pa.array([True, False]),
        }
    )


def _parquet_wrong_types_nested(path: str) -> pa.Table:
    return pa.table(
        {
            'event_id': pa.array([b'bad-n1', b'bad-\xff'], pa.binary()),
            'event_type': pa.array([['click'], []], pa.list_(pa.string())),
            'entity_id': pa.array([{'a': 1}, {'a': 2}], pa.struct([('a', pa.int64())])),
            'timestamp': pa.array([19000, 19001], pa.date32()),
            'value': pa.array([[1.0], [2.0, 3.0]], pa.list_(pa.float64())),
        }
    )


def _invalid_utf8_strings(values: list[bytes]) -> pa.Array:
    """A string array holding bytes that are not UTF-8 (Arrow does not check when built from
    buffers)."""
    binary = pa.array(values, pa.binary())
    return pa.Array.from_buffers(pa.string(), len(binary), binary.buffers())


def _parquet_invalid_utf8(path: str) -> pa.Table:
    rows = [*_good(path), _event('bad-utf8')]
    table = pa.Table.from_pylist(rows)
    entity = [r['entity_id'].encode() for r in rows[:-1]] + [b'u\xff\xfe']
    return table.set_column(2, 'entity_id', _invalid_utf8_strings(entity))


def _parquet_timestamps(path: str) -> pa.Table:
    """A typed timestamp column (milliseconds) with values that overflow int64 when scaled to
    microseconds, and others out of range."""
    good = [1714521610_000, 1714521611_000, 1714521612_000]  # 2024-05-01T00:00:10Z ...
    bad = [10**17, -(10**17), -1, 4102444800_000]  # the year ~3 million, before 1970, 2100
    ids = [e['event_id'] for e in _good(path)] + [f'bad-ts-{i}' for i in range(len(bad))]
    n = len(ids)
    return pa.table(
        {
            'event_id': ids,
            'event_type': ['click'] * n,
            'entity_id': ['u1'] * n,
            'timestamp': pa.array(good + bad, pa.timestamp('ms', tz='UTC')),
            'value': [1.0] * n,
        }
    )


def _parquet_repeated_columns(path: str) -> pa.Table:
    rows = _good(path)
    columns = [pa.array([r[f] for r in rows]) for f in FIELDS]
    return pa.Table.from_arrays([*columns, columns[0]], names=[*FIELDS, 'event_id'])


def _write_parquet_truncated(keep: str) -> Callable:
    def write(path: str) -> None:
        out = io.BytesIO()
        pq.write_table(pa.Table.from_pylist(good_events(50, prefix='cut')), out)
        data = out.getvalue()
        _write(path, data[: len(data) // 2] if keep == 'middle' else data[:4])

    return write


# --- Stream messages (wire formats) ---------------------------------------------------------


def _wire_csv_messages(path: str) -> list[bytes]:
    good = [_csv_row(e).rstrip(b'\n') for e in _good(path)]
    return [
        good[0],
        b'bad-1,click,u\xff,2024-05-01T00:01:00Z,1',  # invalid UTF-8
        b'bad-2,"click,u1,2024-05-01T00:01:00Z,1',  # unbalanced quote
        b'bad-3,click,u1',  # missing columns
        b'bad-4,click,u1,2024-05-01T00:01:00Z,1,extra',  # extra column
        b'',  # an empty message
        good[1],
        b'odd-nul,cl\x00ick,u1,2024-05-01T00:01:00Z,1',  # a NUL: a character like any other
        b'bad-6,click,u1,0000-01-01T00:00:00Z,1e400',  # out of range, not finite
        good[2],
    ]


def _wire_avro_messages(path: str) -> list[bytes]:
    parsed = fastavro.parse_schema(AVRO_SCHEMA)

    def encode(record) -> bytes:
        out = io.BytesIO()
        fastavro.schemaless_writer(out, parsed, record)
        return out.getvalue()

    good = [encode(e) for e in _good(path)]
    whole = encode(_event('bad-cut'))
    other = io.BytesIO()
    record = {'id': 1, 'kind': 'x', 'when': 2, 'amount': 'y'}
    fastavro.schemaless_writer(other, fastavro.parse_schema(_OTHER_SCHEMA), record)
    return [
        good[0],
        whole[: len(whole) // 2],  # truncated
        b'',  # empty
        b'\xff' * 16,  # garbage: a huge negative length
        good[1],
        other.getvalue(),  # written with another schema
        b'\x02' + b'\xff\xff\xff\xff\x0f' + b'x',  # a string length of 2 GiB
        whole + b'trailing',  # more bytes than the record
        good[2],
    ]


# --- the corpus -----------------------------------------------------------------------------


def _jsonl_cases() -> list[HostileCase]:
    ev = _event
    return [
        HostileCase(
            'jsonl_invalid_utf8',
            'jsonl',
            _jsonl_with(
                [
                    _json(ev('bad-1'))[:-1] + b',"note":"caf\xe9"}',  # Latin-1, not UTF-8
                    b'{"event_id":"bad-2","entity_id":"\xc3\x28","event_type":"x"}',
                    b'\xff\xfe\xfd',
                    b'{"event_id":"bad-4","entity_id":"\xed\xa0\x80"}',  # an encoded surrogate
                    _json(ev('bad-5'))[:-1] + b',"\xff":1}',  # in a key
                    _json(ev('bad-6', event_id=...))[:-1] + b',"event_id":"\xff"}',
                ]
            ),
            good=3,
            bad=6,
            reasons=frozenset({'invalid_utf8'}),
        ),
        HostileCase(
            'jsonl_nul_in_line',
            'jsonl',
            _jsonl_with(
                [
                    _json(ev('bad-1')) + b'\x00',
                    b'\x00' + _json(ev('bad-2')),
                    b'\x00\x00\x00\x00',
                ]
            ),
            good=3,
            bad=3,
            reasons=frozenset({'json_decode_error'}),
        ),
        HostileCase(
            'jsonl_nul_in_string',
            'jsonl',
            _jsonl_with(
                [
                    b'{"event_id":"bad-\x001","event_type":"click","entity_id":"u1",'
                    b'"timestamp":"2024-05-01T00:01:00Z"}',  # raw: JSON forbids it
                    b'{"event_id":"odd-nul","event_type":"click","entity_id":"u\\u0000x",'
                    b'"timestamp":"2024-05-01T00:01:00Z"}',  # escaped: a legal character
                ]
            ),
            good=3,
            bad=1,
            accepted=('odd-nul',),
            reasons=frozenset({'json_decode_error'}),
        ),
        HostileCase(
            'jsonl_deep_nesting',
            'jsonl',
            _write_deep_jsonl,
            good=3,
            bad=5,
            reasons=frozenset({'json_decode_error', 'too_deeply_nested', 'type_error'}),
            heavy=True,
            note='nested 100,000 deep (arrays, objects, never closed) and 500 deep',
        ),
        HostileCase(
            'jsonl_huge_line',
            'jsonl',
            _write_huge_jsonl,
            good=3,
            bad=1,
            reasons=frozenset({'json_decode_error'}),
            heavy=True,
            note='one 100 MB line',
        ),
        HostileCase(
            'jsonl_non_finite_numbers',
            'jsonl',
            _jsonl_with(
                [
                    b'{"event_id":"bad-1","event_type":"click","entity_id":"u1",'
                    b'"timestamp":"2024-05-01T00:01:00Z","value":1e400}',
                    b'{"event_id":"bad-2","event_type":"click","entity_id":"u1",'
                    b'"timestamp":"2024-05-01T00:01:00Z","value":-1e400}',
                    b'{"event_id":"bad-3","event_type":"click","entity_id":"u1",'
                    b'"timestamp":"2024-05-01T00:01:00Z","value":NaN}',
                    b'{"event_id":"bad-4","event_type":"click","entity_id":"u1",'
                    b'"timestamp":"2024-05-01T00:01:00Z","value":Infinity}',
                    b'{"event_id":"bad-5","event_type":"click","entity_id":"u1",'
                    b'"timestamp":"2024-05-01T00:01:00Z","value":-Infinity}',
                    b'{"event_id":"bad-6","event_type":"click","entity_id":"u1",'
                    b'"timestamp":1e400,"value":1}',
                    b'{"event_id":"bad-7","event_type":"click","entity_id":"u1",'
                    b'"timestamp":"2024-05-01T00:01:00Z","value":1,"extra":NaN}',
                ]
            ),
            good=3,
            bad=7,
            reasons=frozenset({'json_decode_error'}),
        ),
        HostileCase(
            'jsonl_big_integers',
            'jsonl',
            _jsonl_with(
                [
                    _json(ev('odd-big-1', value=2**53 + 1)),  # a number: the nearest float
                    _json(ev('odd-big-2', value=2**64 - 1)),
                    _json(ev('odd-big-3', value=...))[:-1] + b',"value":' + b'9' * 30 + b'}',
                    _json(ev('bad-1', timestamp=2**63 - 1)),
                    _json(ev('bad-2', timestamp=2**64 - 1)),
                    _json(ev('bad-3', timestamp=-(2**63))),
                ]
            ),
            good=3,
            bad=3,
            accepted=('odd-big-1', 'odd-big-2', 'odd-big-3'),
            reasons=frozenset({'invalid_timestamp'}),
        ),
        HostileCase(
            'jsonl_duplicate_keys',
            'jsonl',
            _jsonl_with(
                [
                    b'{"event_id":"bad-1","event_id":"bad-1b","event_type":"click",'
                    b'"entity_id":"u1","timestamp":"2024-05-01T00:01:00Z","value":1}',
                    b'{"event_id":"bad-2","event_type":"click","entity_id":"u1",'
                    b'"timestamp":"2024-05-01T00:01:00Z","value":1,"value":"x"}',
                    b'{"event_id":"bad-3","event_type":"click","entity_id":"u1",'
                    b'"timestamp":"2024-05-01T00:01:00Z","a":1,"a":2}',
                    b'{"event_id":"bad-4","event_type":"click","entity_id":"u1",'
                    b'"timestamp":"2024-05-01T00:01:00Z","n":{"a":1,"a":2}}',
                    b'{"event_id":"bad-5","event_type":"click","entity_id":"u1",'
                    b'"timestamp":"2024-05-01T00:01:00Z","event\\u005fid":"bad-5b"}',
                ]
            ),
            good=3,
            bad=5,
            reasons=frozenset({'duplicate_key'}),
        ),
        HostileCase(
            'jsonl_wrong_types',
            'jsonl',
            _jsonl_with(
                [
                    _json(ev('bad-1', event_id=123)),
                    _json(ev('bad-2', event_type=True)),
                    _json(ev('bad-3', entity_id=[1, 2])),
                    _json(ev('bad-4', timestamp={'s': 1})),
                    _json(ev('bad-5', timestamp=True)),
                    _json(ev('bad-6', value='abc')),
                    _json(ev('bad-7', value=True)),
                    _json(ev('bad-8', value=[1.0])),
                    _json(ev('bad-9', entity_id=None)),
                    _json(ev('bad-10', event_type=...)),
                    b'[1,2,3]',
                    b'"an event"',
                    b'42',
                    b'null',
                    b'{}',
                ]
            ),
            good=3,
            bad=15,
            reasons=frozenset(
                {
                    'type_error',
                    'invalid_value',
                    'invalid_timestamp',
                    'missing_field',
                    'not_an_object',
                }
            ),
        ),
        HostileCase(
            'jsonl_timestamps_out_of_range',
            'jsonl',
            _jsonl_with(
                [
                    _json(ev('bad-1', timestamp='0000-01-01T00:00:00Z')),
                    _json(ev('bad-2', timestamp='10000-01-01T00:00:00Z')),
                    _json(ev('bad-3', timestamp=1e20)),
                    _json(ev('bad-4', timestamp=-1)),
                    _json(ev('bad-5', timestamp='1969-12-31T23:59:59Z')),
                    _json(ev('bad-6', timestamp='2100-01-01T00:00:00Z')),
                    _json(ev('bad-7', timestamp='-1e20')),
                    _json(ev('bad-8', timestamp=-9223372036854775808)),
                    _json(ev('bad-9', timestamp='2024-13-45T25:61:61Z')),
                ]
            ),
            good=3,
            bad=9,
            reasons=frozenset({'invalid_timestamp'}),
        ),
        HostileCase(
            'jsonl_blank_lines_and_bom',
            'jsonl',
            _write_bom_and_blank_jsonl,
            good=3,
            bad=1,
            reasons=frozenset({'json_decode_error'}),
            note='a BOM first, empty and whitespace-only lines, a BOM mid-file',
        ),
        HostileCase(
            'jsonl_truncated_last_line',
            'jsonl',
            _jsonl_with([], tail=b'{"event_id":"bad-cut","event_type":"cl'),
            good=3,
            bad=1,
            reasons=frozenset({'json_decode_error'}),
        ),
        HostileCase(
            'jsonl_zero_bytes',
            'jsonl',
            lambda path: _write(path, b''),
            good=0,
            bad=0,
            reasons=frozenset(),
        ),
    ]


def _csv_cases() -> list[HostileCase]:
    def row(*cells: str) -> bytes:
        return (','.join(cells) + '\n').encode()

    ts = '2024-05-01T00:01:00Z'
    return [
        HostileCase(
            'csv_invalid_utf8',
            'csv',
            _csv_with(
                [
                    b'bad-1,click,u\xff,2024-05-01T00:01:00Z,1\n',
                    b'bad-2,caf\xe9,u1,2024-05-01T00:01:00Z,1\n',
                    b'\xc3,x\n',  # of the wrong width too: Arrow cannot report it
                ]
            ),
            good=3,
            bad=3,
            reasons=frozenset({'invalid_utf8', 'csv_row_error'}),
        ),
        HostileCase(
            'csv_nul_bytes',
            'csv',
            _csv_with(
                [
                    b'odd-nul,click,u\x001,2024-05-01T00:01:00Z,1\n',  # a NUL is a character
                    b'\x00\x00\x00\n',
                ]
            ),
            good=3,
            bad=1,
            accepted=('odd-nul',),
            reasons=frozenset({'csv_row_error'}),
        ),
        HostileCase(
            'csv_huge_field',
            'csv',
            _write_huge_csv,
            good=3,
            bad=1,
            reasons=frozenset({'invalid_value'}),
            heavy=True,
            note='one 100 MB field',
        ),
        HostileCase(
            'csv_non_finite_numbers',
            'csv',
            _csv_with(
                [
                    row('bad-1', 'click', 'u1', ts, '1e400'),
                    row('bad-2', 'click', 'u1', ts, '-1e400'),
                    row('bad-3', 'click', 'u1', ts, 'NaN'),
                    row('bad-4', 'click', 'u1', ts, 'Infinity'),
                    row('bad-5', 'click', 'u1', ts, '-inf'),
                    row('bad-6', 'click', 'u1', '1e400', '1'),
                ]
            ),
            good=3,
            bad=6,
            reasons=frozenset({'invalid_value', 'invalid_timestamp'}),
        ),
        HostileCase(
            'csv_wrong_types',
            'csv',
            _csv_with(
                [
                    row('', 'click', 'u1', ts, '1'),
                    row('bad-2', '', 'u1', ts, '1'),
                    row('bad-3', 'click', '', ts, '1'),
                    row('bad-4', 'click', 'u1', '', '1'),
                    row('bad-5', 'click', 'u1', 'yesterday', '1'),
                    row('bad-6', 'click', 'u1', 'true', '1'),
                    row('bad-7', 'click', 'u1', ts, 'abc'),
                    row('bad-8', 'click', 'u1', ts, 'true'),
                    row('bad-9', 'click', 'u1', ts, '[1]'),
                ]
            ),
            good=3,
            bad=9,
            reasons=frozenset({'missing_field', 'invalid_value', 'invalid_timestamp'}),
        ),
        HostileCase(
            'csv_timestamps_out_of_range',
            'csv',
            _csv_with(
                [
                    row('bad-1', 'click', 'u1', '0000-01-01T00:00:00Z', '1'),
                    row('bad-2', 'click', 'u1', '10000-01-01T00:00:00Z', '1'),
                    row('bad-3', 'click', 'u1', '1e20', '1'),
                    row('bad-4', 'click', 'u1', '-1', '1'),
                    row('bad-5', 'click', 'u1', '2100-01-01T00:00:00Z', '1'),
                    row('bad-6', 'click', 'u1', '-9223372036854775808', '1'),
                ]
            ),
            good=3,
            bad=6,
            reasons=frozenset({'invalid_timestamp'}),
        ),
        HostileCase(
            'csv_blank_lines_and_bom',
            'csv',
            _csv_with([b'\n', b'\r\n', b'\n\n'], head=b'\xef\xbb\xbf'),
            good=3,
            bad=0,
            reasons=frozenset(),
        ),
        HostileCase(
            'csv_whitespace_lines',
            'csv',
            _csv_with([b'   \n', b'\t\n']),
            good=3,
            bad=2,
            reasons=frozenset({'csv_row_error'}),
        ),
        HostileCase(
            'csv_truncated_last_line',
            'csv',
            _csv_with([], tail=b'bad-cut,click,u1,2024-05-01T00:0'),
            good=3,
            bad=1,
            reasons=frozenset({'csv_row_error'}),
        ),
        HostileCase(
            'csv_truncated_in_quotes',
            'csv',
            _csv_with([], tail=b'bad-cut,"click,u1'),
            good=3,
            bad=1,
            reasons=frozenset({'csv_row_error'}),
        ),
        HostileCase(
            'csv_missing_and_extra_columns',
            'csv',
            _csv_with(
                [
                    row('bad-1', 'click', 'u1', ts),
                    row('bad-2'),
                    row('bad-3', 'click', 'u1', ts, '1', 'extra'),
                    row('bad-4', 'click', 'u1', ts, '1', '', '', ''),
                ]
            ),
            good=3,
            bad=4,
            reasons=frozenset({'csv_row_error'}),
        ),
        HostileCase(
            'csv_unbalanced_quotes',
            'csv',
            _csv_with(
                [
                    # The quote opened here is closed on the next line: one record, 4 columns.
                    b'bad-1,"click,u1,2024-05-01T00:01:00Z,1\n'
                    b'bad-2,click,u1",2024-05-01T00:01:00Z,1\n',
                    b'bad-3,cl"ick,u1,2024-05-01T00:01:00Z,1"\n',  # a quote inside a field
                ]
            ),
            good=3,
            bad=2,
            reasons=frozenset({'csv_row_error', 'invalid_value'}),
            note='an unbalanced quote makes one record of the lines up to the next quote',
        ),
        HostileCase(
            'csv_zero_bytes',
            'csv',
            lambda path: _write(path, b''),
            good=0,
            bad=0,
            reasons=frozenset(),
        ),
    ]


def _write_huge_csv(path: str) -> None:
    good = [_csv_row(e) for e in _good(path)]
    with open(path, 'wb') as f:
        f.write(_csv_header() + good[0] + good[1])
        f.write(b'bad-huge,click,u1,2024-05-01T00:01:00Z,"')
        chunk = b'x' * (1 << 20)
        for _ in range(HUGE_BYTES // len(chunk)):
            f.write(chunk)
        f.write(b'"\n')
        f.write(good[2])


def _avro_cases() -> list[HostileCase]:
    return [
        HostileCase(
            'avro_other_schema',
            'avro',
            _avro(
                _OTHER_SCHEMA,
                [{'id': i, 'kind': 'click', 'when': 1714521610, 'amount': '1'} for i in range(3)],
                with_good=False,
            ),
            good=0,
            bad=3,
            reasons=frozenset({'missing_field'}),
        ),
        HostileCase(
            'avro_wrong_types',
            'avro',
            _avro(
                _WRONG_TYPES_SCHEMA,
                [
                    _event('bad-1', event_id=7),
                    _event('bad-2', event_type=[1, 2]),
                    _event('bad-3', entity_id={'a': 1}),
                    _event('bad-4', timestamp=True),
                    _event('bad-5', timestamp=b'\x00\x01'),
                    _event('bad-6', value=True),
                    _event('bad-7', value='abc'),
                    _event('bad-8', event_id=False),
                ],
            ),
            good=3,
            bad=8,
            reasons=frozenset({'type_error', 'invalid_value', 'invalid_timestamp'}),
        ),
        HostileCase(
            'avro_invalid_utf8',
            'avro',
            _avro_invalid_utf8,
            good=3,
            bad=1,
            reasons=frozenset({'invalid_utf8'}),
        ),
        HostileCase(
            'avro_non_finite_and_out_of_range',
            'avro',
            _avro(
                AVRO_SCHEMA,
                [
                    _event('bad-1', value=float('nan')),
                    _event('bad-2', value=float('inf')),
                    _event('bad-3', value=float('-inf')),
                    _event('bad-4', timestamp=float('inf')),
                    _event('bad-5', timestamp=10**20 // 10**3),
                    _event('bad-6', timestamp=-(2**63)),
                    _event('bad-7', timestamp='0000-01-01T00:00:00Z'),
                    _event('bad-8', timestamp=1e300),
                ],
            ),
            good=3,
            bad=8,
            reasons=frozenset({'invalid_value', 'invalid_timestamp'}),
        ),
        HostileCase(
            'avro_truncated_in_the_middle',
            'avro',
            _write_avro_truncated('middle'),
            good=3,
            bad=1,
            reasons=frozenset({'corrupt_file'}),
        ),
        HostileCase(
            'avro_truncated_header',
            'avro',
            _write_avro_truncated('header'),
            good=0,
            bad=1,
            reasons=frozenset({'corrupt_file'}),
        ),
        HostileCase(
            'avro_header_only',
            'avro',
            _write_avro_header_only,
            good=0,
            bad=0,
            reasons=frozenset(),
            note='a valid empty file: Avro keeps no record count, a cut here cannot be seen',
        ),
        HostileCase(
            'avro_zero_bytes',
            'avro',
            lambda path: _write(path, b''),
            good=0,
            bad=1,
            reasons=frozenset({'corrupt_file'}),
        ),
    ]


def _parquet_cases() -> list[HostileCase]:
    return [
        HostileCase(
            'parquet_wrong_types_scalars',
            'parquet',
            _parquet(_parquet_wrong_types_scalars),
            good=0,
            bad=2,
            reasons=frozenset({'type_error', 'invalid_value', 'invalid_timestamp'}),
        ),
        HostileCase(
            'parquet_wrong_types_nested',
            'parquet',
            _parquet(_parquet_wrong_types_nested),
            good=0,
            bad=2,
            reasons=frozenset({'type_error', 'invalid_value', 'invalid_timestamp'}),
        ),
        HostileCase(
            'parquet_invalid_utf8',
            'parquet',
            _parquet(_parquet_invalid_utf8),
            good=3,
            bad=1,
            reasons=frozenset({'invalid_utf8'}),
        ),
        HostileCase(
            'parquet_non_finite_values',
            'parquet',
            _parquet(
                lambda path: _parquet_with_good(
                    path,
                    pa.Table.from_pylist(
                        [
                            _event('bad-1', value=float('nan')),
                            _event('bad-2', value=float('inf')),
                            _event('bad-3', value=float('-inf')),
                        ]
                    ),
                )
            ),
            good=3,
            bad=3,
            reasons=frozenset({'invalid_value'}),
        ),
        HostileCase(
            'parquet_timestamps_out_of_range',
            'parquet',
            _parquet(_parquet_timestamps),
            good=3,
            bad=4,
            reasons=frozenset({'invalid_timestamp'}),
        ),
        HostileCase(
            'parquet_repeated_columns',
            'parquet',
            _parquet(_parquet_repeated_columns),
            good=0,
            bad=1,
            reasons=frozenset({'corrupt_file'}),
        ),
        HostileCase(
            'parquet_truncated_in_the_middle',
            'parquet',
            _write_parquet_truncated('middle'),
            good=0,
            bad=1,
            reasons=frozenset({'corrupt_file'}),
        ),
        HostileCase(
            'parquet_header_only',
            'parquet',
            _write_parquet_truncated('header'),
            good=0,
            bad=1,
            reasons=frozenset({'corrupt_file'}),
        ),
        HostileCase(
            'parquet_zero_bytes',
            'parquet',
            lambda path: _write(path, b''),
            good=0,
            bad=1,
            reasons=frozenset({'corrupt_file'}),
        ),
    ]


def _wire_cases() -> list[HostileCase]:
    return [
        HostileCase(
            'wire_csv_messages',
            'wire_csv',
            _messages(_wire_csv_messages),
            good=3,
            bad=6,
            accepted=('odd-nul',),
            reasons=frozenset({'csv_decode_error', 'invalid_timestamp', 'invalid_value'}),
        ),
        HostileCase(
            'wire_avro_messages',
            'wire_avro',
            _messages(_wire_avro_messages),
            good=3,
            bad=6,
            reasons=frozenset({'avro_decode_error'}),
        ),
    ]


CASES: dict[str, HostileCase] = {
    case.name: case
    for case in [*_jsonl_cases(), *_csv_cases(), *_avro_cases(), *_parquet_cases(), *_wire_cases()]
}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description='Writes the hostile-input corpus.')
    parser.add_argument('out_dir', help='the directory to write the cases into')
    parser.add_argument('--light', action='store_true', help='leave out the 100 MB cases')
    args = parser.parse_args(argv)
    for path in write_corpus(args.out_dir, light_only=args.light):
        print(path)
    return 0


if __name__ == '__main__':
    sys.exit(main())
