"""Reading files into raw batches: range splits lose and repeat nothing; corrupt files
become dead letters."""

from __future__ import annotations

import io
import os

import fastavro
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from hypothesis import given
from hypothesis import settings
from hypothesis import strategies as st

from beam_pipelines.io.files import FileRange
from beam_pipelines.io.files import _read_avro
from beam_pipelines.io.files import _read_csv
from beam_pipelines.io.files import _read_jsonl
from beam_pipelines.io.files import _read_parquet
from beam_pipelines.io.files import _split
from beam_pipelines.io.files import infer_format


class _Meta:
    def __init__(self, path):
        self.path = path
        self.size_in_bytes = os.path.getsize(path)


def _read_all_ranges(path, range_bytes, batch_rows=3):
    lines, offsets = [], []
    for rng in _split(_Meta(path), None, range_bytes):
        for batch in _read_jsonl(rng, batch_rows):
            lines.extend(batch.line_list())
            offsets.extend(batch.positions)
    return lines, offsets


@settings(max_examples=60, deadline=None)
@given(
    st.lists(st.binary(max_size=20).map(lambda b: b.replace(b'\n', b'')), max_size=30),
    st.integers(1, 40),
    st.booleans(),
)
def test_jsonl_ranges_cover_every_line_once(tmp_path_factory, lines, range_bytes, trailing):
    path = str(tmp_path_factory.mktemp('r') / 'x.jsonl')
    data = b'\n'.join(lines) + (b'\n' if trailing and lines else b'')
    with open(path, 'wb') as f:
        f.write(data)
    got, offsets = _read_all_ranges(path, range_bytes)
    expected = data.split(b'\n')
    if expected and expected[-1] == b'':
        expected.pop()
    if min(range_bytes, len(data)) > 3 and data.startswith(b'\xef\xbb\xbf'):
        expected[0] = expected[0][3:]  # a byte order mark is not part of the first line
    assert got == expected
    for line, offset in zip(got, offsets):
        assert data[offset : offset + len(line)] == line


def test_infer_format():
    assert infer_format('a/b.JSONL') == 'jsonl'
    assert infer_format('x.csv.gz') == 'csv'
    assert infer_format('x.parquet') == 'parquet'
    assert infer_format('x.txt') is None


def test_csv_bad_rows_and_invalid_utf8(tmp_path):
    path = tmp_path / 'e.csv'
    path.write_bytes(b'event_id,value\na,1\nb,2,3\nc,\xff\nd,n/a\ne,\n')
    batches = list(_read_csv(FileRange(str(path), 'csv', 0, path.stat().st_size), 100))
    rows = [r for b in batches if b.table is not None for r in b.table.to_pylist()]
    failures = [f for b in batches for f in b.failures]
    # Only an empty cell is null: 'n/a' is a value (validation decides what it is worth).
    assert [(r['event_id'], r['value']) for r in rows] == [('a', '1'), ('d', 'n/a'), ('e', None)]
    assert sorted(f[0] for f in failures) == ['csv_row_error', 'invalid_utf8']
    assert sum(b.record_count() for b in batches) == 5


def test_avro_truncated_file_reports_what_was_lost(tmp_path):
    path = tmp_path / 'e.avro'
    schema = {'type': 'record', 'name': 'E', 'fields': [{'name': 'event_id', 'type': 'string'}]}
    with open(path, 'wb') as f:
        fastavro.writer(f, schema, [{'event_id': f'e{i}'} for i in range(5000)], sync_interval=1000)
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2])
    batches = list(_read_avro(FileRange(str(path), 'avro', 0, -1), 1000))
    good = sum(len(b.positions) for b in batches)
    failures = [f for b in batches for f in b.failures]
    assert 0 < good < 5000
    assert len(failures) == 1 and failures[0][0] == 'corrupt_file'
    assert f'after {good} records' in failures[0][1]


def test_parquet_truncated_file_is_a_dead_letter(tmp_path):
    path = tmp_path / 'e.parquet'
    pq.write_table(pa.table({'event_id': ['a', 'b']}), path)
    path.write_bytes(path.read_bytes()[:20])
    batches = list(_read_parquet(FileRange(str(path), 'parquet', 0, 20), 10))
    assert [f[0] for b in batches for f in b.failures] == ['corrupt_file']


@pytest.mark.parametrize('batch_rows', [1, 2, 1000])
def test_parquet_batches(tmp_path, batch_rows):
    path = tmp_path / 'e.parquet'
    pq.write_table(pa.table({'event_id': [f'e{i}' for i in range(7)]}), path)
    batches = list(_read_parquet(FileRange(str(path), 'parquet', 0, 1), batch_rows))
    assert [p for b in batches for p in b.positions] == list(range(7))


def test_csv_with_byte_order_mark(tmp_path):
    path = tmp_path / 'bom.csv'
    path.write_bytes(b'\xef\xbb\xbfevent_id,value\r\na,1\r\n')
    batches = list(_read_csv(FileRange(str(path), 'csv', 0, path.stat().st_size), 100))
    rows = [r for b in batches if b.table is not None for r in b.table.to_pylist()]
    assert rows == [{'event_id': 'a', 'value': '1'}]


def test_parquet_row_group_ranges_cover_every_row_once(tmp_path):
    path = tmp_path / 'e.parquet'
    pq.write_table(
        pa.table({'event_id': [f'e{i:05d}' for i in range(1000)]}), path, row_group_size=64
    )
    ranges = list(_split(_Meta(str(path)), None, range_bytes=300))
    assert len(ranges) > 3 and all(r.unit == 'row_groups' for r in ranges)
    seen = []
    for rng in ranges:
        for batch in _read_parquet(rng, 50):
            ids = batch.table.column('event_id').to_pylist()
            assert ids == [f'e{p:05d}' for p in batch.positions]
            seen.extend(batch.positions)
    assert sorted(seen) == list(range(1000))


def _batches(path, reader, fmt, batch_rows=100):
    size = os.path.getsize(path)
    return list(reader(FileRange(str(path), fmt, 0, size if fmt != 'avro' else -1), batch_rows))


def _outcome(batches):
    """(valid ids in order, (error type, position) of each failure)."""
    ids = []
    for b in batches:
        if b.table is not None:
            ids += b.table.column('event_id').to_pylist()
        if b.records is not None:
            ids += [r['event_id'] for r in b.records]
        if b.text is not None:
            ids += b.line_list()
    return ids, [(f[0], f[3]) for b in batches for f in b.failures]


def test_jsonl_byte_order_mark_is_not_part_of_the_first_line(tmp_path):
    path = tmp_path / 'bom.jsonl'
    path.write_bytes(b'\xef\xbb\xbf{"a":1}\n{"b":2}\n')
    batches = _batches(path, _read_jsonl, 'jsonl')
    assert [line for b in batches for line in b.line_list()] == [b'{"a":1}', b'{"b":2}']
    assert [p for b in batches for p in b.positions] == [3, 11]


@pytest.mark.parametrize('data', [b'{"a":1}', b'{"a":1}\n{"b":2}'])
def test_jsonl_batches_of_one_line_read_a_last_line_without_newline(tmp_path, data):
    path = tmp_path / 'e.jsonl'
    path.write_bytes(data)
    batches = _batches(path, _read_jsonl, 'jsonl', batch_rows=1)
    assert [line for b in batches for line in b.line_list()] == data.split(b'\n')


def test_csv_of_zero_bytes_has_no_records(tmp_path):
    path = tmp_path / 'empty.csv'
    path.write_bytes(b'')
    assert _batches(path, _read_csv, 'csv') == []


def test_csv_row_longer_than_a_block_is_read_with_the_rest(tmp_path):
    # Arrow fails a block that no row ends in: the file is read again with larger blocks.
    path = tmp_path / 'long.csv'
    path.write_bytes(b'event_id,note\na,1\nb,"' + b'x' * (5 << 20) + b'"\nc,3\n')
    ids, failures = _outcome(_batches(path, _read_csv, 'csv', batch_rows=2))
    assert ids == ['a', 'b', 'c'] and failures == []


def test_csv_row_of_the_wrong_width_not_utf8_does_not_lose_the_file(tmp_path):
    # Arrow cannot hand such a row to the invalid-row handler: the rest of the file is read
    # with Python's csv module, each row a record or a dead letter as before.
    path = tmp_path / 'bad.csv'
    path.write_bytes(b'event_id,value\na,1\nb,2\n\xc3,x,y\nc,3\nd\xff,4\ne\n')
    ids, failures = _outcome(_batches(path, _read_csv, 'csv', batch_rows=1))
    assert ids == ['a', 'b', 'c']
    kinds = sorted(kind for kind, _ in failures)
    assert kinds == ['csv_row_error', 'csv_row_error', 'invalid_utf8']


_AVRO = {'type': 'record', 'name': 'E', 'fields': [{'name': 'event_id', 'type': 'string'}]}


def _avro_blocks(path, ids_per_block, bad=None):
    """An Avro file, one block per list of ids; ``bad`` (an id) is written as bytes that are
    not UTF-8 (a string and bytes share their layout)."""
    out = io.BytesIO()
    writer = fastavro.write.Writer(out, fastavro.parse_schema(_AVRO))
    for ids in ids_per_block:
        for i in ids:
            writer.write({'event_id': i})
        writer.flush()
    data = out.getvalue()
    if bad is not None:
        data = data.replace(bad.encode(), b'\xff' * len(bad))
    path.write_bytes(data)


def test_avro_record_that_does_not_decode_costs_only_its_block(tmp_path):
    path = tmp_path / 'e.avro'
    _avro_blocks(path, [['a', 'b'], ['c', 'BAD-RECORD', 'd'], ['e']], bad='BAD-RECORD')
    ids, failures = _outcome(_batches(path, _read_avro, 'avro', batch_rows=2))
    assert ids == ['a', 'b', 'c', 'e']
    # The record, and the one after it in its block that cannot be found without it.
    assert failures == [('invalid_utf8', 3), ('avro_decode_error', 4)]


def test_avro_truncated_keeps_every_record_decoded_before_the_cut(tmp_path):
    path = tmp_path / 'e.avro'
    _avro_blocks(path, [['a'], ['b'], ['c'], ['d']])
    data = path.read_bytes()
    path.write_bytes(data[:-10])  # inside the last block
    # Batches of 2: the third record used to be lost with the batch it was read into.
    ids, failures = _outcome(_batches(path, _read_avro, 'avro', batch_rows=2))
    assert ids == ['a', 'b', 'c']
    assert failures == [('corrupt_file', 3)]


def test_parquet_row_not_utf8_is_a_dead_letter_and_the_others_are_read(tmp_path):
    path = tmp_path / 'e.parquet'
    binary = pa.array([b'a', b'b\xff', b'c'], pa.binary())
    ids = pa.Array.from_buffers(pa.string(), 3, binary.buffers())  # Arrow does not check
    pq.write_table(pa.table({'event_id': ids, 'n': [1, 2, 3]}), path)
    batches = _batches(path, _read_parquet, 'parquet')
    ids, failures = _outcome(batches)
    assert ids == ['a', 'c'] and failures == [('invalid_utf8', 1)]
    assert [p for b in batches for p in b.positions] == [0, 2]
    payload = batches[0].failures[0][2]
    assert payload == b'{"event_id":"b\\\\xff","n":2}'


def test_parquet_with_repeated_column_names_is_a_corrupt_file(tmp_path):
    path = tmp_path / 'e.parquet'
    pq.write_table(pa.Table.from_arrays([pa.array(['a']), pa.array(['b'])], ['x', 'x']), path)
    failures = [f for b in _batches(path, _read_parquet, 'parquet') for f in b.failures]
    assert [f[0] for f in failures] == ['corrupt_file']
    assert 'repeated column names' in failures[0][1]
