"""Reading files into raw batches: range splits lose and repeat nothing; corrupt files
become dead letters."""

from __future__ import annotations

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
