"""json_objects: rows of numbers as JSON objects, compared with orjson on the same rows."""

from __future__ import annotations

import json
import math

import orjson
import pyarrow as pa
import pytest
from hypothesis import given
from hypothesis import settings
from hypothesis import strategies as st

from beam_pipelines.columnar.json_objects import json_objects

_FLOATS = st.one_of(st.none(), st.floats(allow_nan=True, allow_infinity=True))
_INTS = st.one_of(st.none(), st.integers(min_value=-(2**63), max_value=2**63 - 1))


def _as_orjson_reads(value):
    """What orjson writes for a value, read back (NaN and infinities become null)."""
    return orjson.loads(orjson.dumps(value))


@settings(max_examples=200, deadline=None)
@given(st.lists(st.tuples(_INTS, _FLOATS, _FLOATS), max_size=40))
def test_each_object_reads_back_as_orjson_would_write_its_row(rows):
    table = pa.table(
        {
            'count': pa.array([r[0] for r in rows], pa.int64()),
            'sum': pa.array([r[1] for r in rows], pa.float64()),
            'p 95"': pa.array([r[2] for r in rows], pa.float32()),
        }
    )
    objects = json_objects(table).to_pylist()
    assert len(objects) == len(rows)
    for text, row in zip(objects, table.to_pylist(), strict=True):
        read = json.loads(text)
        expected = {k: _as_orjson_reads(v) for k, v in row.items()}
        assert list(read) == list(row)
        assert read == expected
        # floats stay floats (3.0 is written '3.0', not '3'), integers integers
        assert [type(v) for v in read.values()] == [type(v) for v in expected.values()]
        for value in read.values():
            assert not (isinstance(value, float) and math.isnan(value))


def test_chunks_empty_tables_and_other_types():
    chunked = pa.table({'a': pa.chunked_array([[1.0], [2.5, None]])})
    assert json_objects(chunked).to_pylist() == ['{"a":1.0}', '{"a":2.5}', '{"a":null}']
    assert json_objects(pa.table({'a': pa.array([], pa.int64())})).to_pylist() == []
    with pytest.raises(TypeError, match='not a number column'):
        json_objects(pa.table({'a': ['x']}))
