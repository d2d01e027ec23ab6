"""A dirty block through pyarrow in groups: what it reads is what the per-line path gives, the
lines it cannot read go to the per-line path, and nothing is lost or read twice."""

from __future__ import annotations

import json

import numpy as np
import orjson
import pyarrow as pa
import pytest
from hypothesis import example
from hypothesis import given
from hypothesis import settings
from hypothesis import strategies as st

from beam_pipelines.columnar import json_split
from beam_pipelines.columnar.batch import BlockLines
from beam_pipelines.columnar.json_split import concat_loose
from beam_pipelines.columnar.json_split import split_json_block
from tests.conftest import assert_block_gives_what_lines_give
from tests.conftest import raw_block


def _event(i: int, **fields) -> dict:
    return {
        'event_id': f'e{i}',
        'event_type': 'click',
        'entity_id': f'u{i % 3}',
        'timestamp': 1714521600 + i if i % 2 else f'2024-05-01T00:00:{i % 60:02d}Z',
        'value': 1.5 * i if i % 5 else str(1.5 * i),
        'source': 'web',
        **({'country': 'DE'} if i % 3 else {}),
        **fields,
    }


# Lines each kind of trouble: the pre-screen catches some, pyarrow's refusals the others.
BROKEN = [
    b'{"event_id":"t1","timestamp":17145',  # truncated
    b'{"event_id":"\xff\xfe","timestamp":1714521600}',  # invalid UTF-8
    b'event {event_id:x}',  # not JSON
    b'',  # blank: not a record
    b'   ',
    b'[1,2]',  # not an object
    orjson.dumps(_event(900, event_id=12345)),  # a number where a string belongs
    b'{"event_id":"t2","value":NaN}',  # not JSON; pyarrow would read it
    b'{"event_id":"t3","timestamp":1714521600,}',  # trailing comma
    b'{"event_id":"t4","event_id":"t5"}',  # a key twice
    b'{"event_id":"t6"}{"event_id":"t7"}',  # two objects on one line
    b'{"event_id":"t8","timestamp":true}',  # a boolean timestamp
    b'{"event_id":"t9","tags":["a",{"b":1}]}',  # nested: rendered by the per-line path
    b'{"event_id":"t10","day":"2024-05-01"}',  # pyarrow would read a date
    '{"event_id":"t11","entity_id":"Zoë","timestamp":1714521600}'.encode(),  # valid UTF-8
    b'{"event_id":"t12","timestamp" : "2024-05-01T00:00:00Z"}',  # spaced
    b'{"event_id":"t13","timestamp":1714521600}\r',  # CRLF
]


def _split(lines: list[bytes], schema):
    batch = raw_block(lines)
    starts = np.asarray(batch.positions, np.int64)
    return split_json_block(batch.text, starts - starts[0], schema)


def test_mixed_types_and_broken_lines_are_read_by_pyarrow_but_the_broken_lines(schema, monkeypatch):
    monkeypatch.setattr(json_split, '_RETRIES', 100)  # a budget for this many broken lines
    clean = [orjson.dumps(_event(i)) for i in range(40)]
    lines = clean[:20] + BROKEN + clean[20:]
    split = _split(lines, schema)
    broken = set(range(20, 20 + len(BROKEN)))
    # Every good line is read by pyarrow although timestamps and values mix JSON types; the
    # valid UTF-8 line, the spaced key and the CRLF line too (the spaced one as a guess that
    # pyarrow confirms). The rest go line by line; no line is in both or in neither.
    assert set(split.rest.tolist()) <= broken
    assert set(range(20)) | set(range(20 + len(BROKEN), len(lines))) <= set(split.rows.tolist())
    assert sorted(split.rows.tolist() + split.rest.tolist()) == list(range(len(lines)))
    assert split.table.num_rows == len(split.rows)
    assert_block_gives_what_lines_give(lines, schema)


def test_a_line_pyarrow_refuses_is_found_and_the_lines_around_it_are_kept(schema):
    lines = [orjson.dumps(_event(i)) for i in range(30)]
    lines[7] = b'{"event_id":"bad","timestamp":1714521600,}'
    lines[21] = b'{"event_id":"bad2","value":Infinity}'
    split = _split(lines, schema)
    assert split.rest.tolist() == [7, 21]
    assert sorted(split.rows.tolist()) == [i for i in range(30) if i not in (7, 21)]
    assert_block_gives_what_lines_give(lines, schema)


def test_a_group_refused_too_often_goes_line_by_line(schema, monkeypatch):
    monkeypatch.setattr(json_split, '_RETRIES', 2)
    lines = [orjson.dumps(_event(2 * i + 1, value=1.0)) for i in range(20)]  # one group
    for i in (3, 6, 9, 12):
        lines[i] = b'{"event_id":"x","value":1,}'
    split = _split(lines, schema)
    # Two calls after the first: one names line 3, one reads lines 0-2; then the budget is out.
    assert sorted(split.rows.tolist()) == [0, 1, 2]
    assert split.rest.tolist() == list(range(3, 20))
    assert_block_gives_what_lines_give(lines, schema)


def test_a_clean_block_is_read_whole(schema):
    lines = [orjson.dumps(_event(2 * i + 1, value=1.0)) for i in range(10)]
    split = _split(lines, schema)
    assert split.rest.tolist() == []
    assert split.rows.tolist() == list(range(10))


def test_columns_of_the_pieces_are_typed_as_the_per_line_path_types_mixed_values():
    parts = [
        pa.table({'v': pa.array([1, 2]), 'b': pa.array([True, None]), 'n': pa.nulls(2)}),
        pa.table({'v': pa.array([2.5]), 'b': pa.array(['x']), 'n': pa.array([3])}),
        pa.table({'v': pa.array(['7 ']), 'b': pa.nulls(1), 'n': pa.nulls(1)}),
    ]
    joined = concat_loose(parts)
    # As pa.array infers [1, 2, 2.5] (doubles) before the mixed path renders them as text.
    assert joined.column('v').to_pylist() == ['1', '2', '2.5', '7 ']
    assert joined.column('b').to_pylist() == ['true', None, 'x', None]
    assert joined.column('n').to_pylist() == [None, None, 3, None]


_SCALARS = st.one_of(
    st.none(),
    st.text(max_size=6),
    st.integers(-(10**12), 10**14),
    st.sampled_from([2**53 + 1, -(2**53) - 1, 2**63 - 1, 2**63, 2**64, -(2**63)]),
    st.floats(allow_nan=False, allow_infinity=False),
    st.booleans(),
    st.sampled_from(['12.5', ' 7 ', '1714564800', '2024-05-01T12:00:00Z', 'n/a']),
)


@st.composite
def _dirty_batches(draw):
    """Records whose fields take any scalar JSON type from one line to the next (so groups
    and refusals both happen), with extra fields, and broken lines anywhere."""
    names = ('event_id', 'event_type', 'entity_id', 'timestamp', 'value', 'source', 'x')
    records = draw(
        st.lists(
            st.fixed_dictionaries({}, optional={name: _SCALARS for name in names}),
            min_size=1,
            max_size=24,
        )
    )
    # The standard library writes integers past 64 bits, which orjson refuses.
    lines = [json.dumps(r, separators=(',', ':')).encode() for r in records]
    for _ in range(draw(st.integers(0, 3))):
        lines.insert(draw(st.integers(0, len(lines))), draw(st.sampled_from(BROKEN)))
    return lines


@settings(max_examples=300, deadline=None)
@given(_dirty_batches())
@example([orjson.dumps(_event(i)) for i in range(6)] + BROKEN)
def test_a_dirty_block_gives_what_its_lines_give(schema, lines):
    assert_block_gives_what_lines_give(lines, schema)
    split = _split(lines, schema)
    if split is not None:
        assert sorted(split.rows.tolist() + split.rest.tolist()) == list(range(len(lines)))


def test_integers_beyond_a_double_among_floats_become_what_the_lines_make_them(schema):
    # Three pieces (the refused middle line splits the group): a safe cast of the huge
    # integer to a double would fail the whole batch; the lines make it the nearest double.
    lines = [
        orjson.dumps(_event(1, value=2**53 + 1)),
        b'{"event_id":"x","value":1,}',
        orjson.dumps(_event(3, value=1.5)),
        orjson.dumps(_event(4, timestamp=1714521600 * 10**9 + 1)),  # nanoseconds
        orjson.dumps(_event(5, timestamp=1714521600.5)),
    ]
    assert_block_gives_what_lines_give(lines, schema)


def test_an_extra_field_of_whole_numbers_among_fractions_keeps_its_text(schema):
    # pyarrow reads the column as doubles: 10 would become 10.0 in attributes; the per-line
    # path keeps 10. Those rows are left to it.
    lines = [orjson.dumps(_event(2 * i + 1, value=1.0, price=p)) for i, p in enumerate([10, 2.5])]
    split = _split(lines, schema)
    assert split.rest.tolist() == [0]
    assert_block_gives_what_lines_give(lines, schema)


def test_a_nested_extra_on_every_line_costs_two_reads_not_a_bisection(schema, monkeypatch):
    calls = []
    real = json_split.parse_lines
    monkeypatch.setattr(json_split, 'parse_lines', lambda *a, **k: calls.append(1) or real(*a, **k))
    lines = [orjson.dumps(_event(2 * i + 1, value=1.0, tags=['a', 'b'])) for i in range(64)]
    split = _split(lines, schema)
    assert split.rest.tolist() == list(range(64))  # all explained by the per-line path
    assert len(calls) <= 2
    assert_block_gives_what_lines_give(lines, schema)


def test_block_lines_are_cut_one_at_a_time_with_or_without_an_index():
    text = b'{"a":1}\n{"b":2}\n{"c":3}'  # the last line without its newline
    starts = [0, 8, 16]
    lines = BlockLines(text, starts)
    assert [lines[0], lines[2], lines[-1], lines[-3]] == [
        b'{"a":1}',
        b'{"c":3}',
        b'{"c":3}',
        b'{"a":1}',
    ]
    assert BlockLines(text, starts, np.array([2, 0]))[0:2] == [b'{"c":3}', b'{"a":1}']
    with pytest.raises(IndexError):
        lines[3]


@pytest.mark.parametrize('line', BROKEN)
def test_each_broken_line_alone_among_good_ones(schema, line):
    assert_block_gives_what_lines_give(
        [orjson.dumps(_event(1)), line, orjson.dumps(_event(2))], schema
    )
