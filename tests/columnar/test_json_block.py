"""pyarrow's JSON reader on a whole block: taken only when it gives what the per-line decoder
gives, refused otherwise; extra fields rendered exactly as orjson renders them."""

from __future__ import annotations

import subprocess
import sys

import numpy as np
import orjson
import pyarrow as pa
import pytest
from hypothesis import given
from hypothesis import settings
from hypothesis import strategies as st

from beam_pipelines.columnar.json_block import read_json_block
from beam_pipelines.columnar.json_block import render_attributes
from tests.conftest import assert_block_gives_what_lines_give
from tests.conftest import raw_block
from tests.conftest import run_columnar

CLEAN = [
    {
        'event_id': f'e{i}',
        'event_type': 'click',
        'entity_id': f'u{i % 3}',
        'timestamp': 1714521600 + i,
        'value': 1.5 * i,
        'source': 'web',
        **({'country': 'DE'} if i % 2 else {}),
    }
    for i in range(6)
]


def _block(lines: list):
    batch = raw_block(lines)
    starts = np.asarray(batch.positions, np.int64)
    return batch.text, starts - starts[0]


def test_clean_lines_are_read_as_a_block(schema):
    table = read_json_block(*_block(CLEAN), schema)
    assert table is not None
    assert table.column('event_id').to_pylist() == [f'e{i}' for i in range(6)]
    assert table.column('attributes').to_pylist() == [None, '{"country":"DE"}'] * 3


@pytest.mark.parametrize(
    'line',
    [
        b'{"event_id":"x","value":NaN}',  # not JSON; pyarrow reads it
        b'{"event_id":"x"}{"event_id":"y"}',  # two objects on one line
        b'{"event_id":"x","day":"2024-05-01"}',  # pyarrow would read a timestamp
        b'{"event_id":"x","timestamp":"2024-05-01 10:00:00"}',
        b'{"event_id":"x","tags":["a"]}',  # nested: rendered by the per-line path
        b'{"event_id":1}',  # a number where a string belongs: a type error per row
        b'{"event_id":"x","timestamp":true}',
        b'   ',  # a blank line is not a record
        b'{"event_id":"x",}',
        b'[1]',
    ],
)
def test_blocks_the_per_line_path_must_explain_are_refused(schema, line):
    lines = [orjson.dumps(r) for r in CLEAN[:2]] + [line]
    assert read_json_block(*_block(lines), schema) is None


def test_attributes_match_orjson_for_every_kind_of_value():
    extras = pa.table(
        {
            'z': ['plain', 'quote"d', 'back\\slash', 'new\nline', None, 'é'],
            'n': [1, None, -3, 2**40, None, 0],
            'b': [True, False, None, None, None, None],
            'f': [None, 0.1, 1e20, None, None, 3.0],
            'nothing': pa.nulls(6),
        }
    )
    expected = [
        orjson.dumps(
            {k: v for k, v in row.items() if v is not None}, option=orjson.OPT_SORT_KEYS
        ).decode()
        if any(v is not None for v in row.values())
        else None
        for row in extras.to_pylist()
    ]
    assert render_attributes(extras).to_pylist() == expected


_SCALARS = {
    'string': st.text(max_size=8),
    'int': st.integers(-(10**12), 10**14),
    'float': st.floats(allow_nan=False, allow_infinity=False),
    'bool': st.booleans(),
    'numeric_text': st.sampled_from(['12.5', ' 7 ', '1714564800', 'n/a']),
    'time_text': st.sampled_from(['2024-05-01T12:00:00Z', '2024-05-01T12:00:00.5+02:00', 'x']),
}


@st.composite
def _batches(draw):
    """A batch whose fields each keep one JSON type (so the block path has a chance), with
    missing and null values, extra fields, and now and then a line that breaks it."""
    kinds = {
        name: draw(st.sampled_from(sorted(_SCALARS)))
        for name in ('event_id', 'event_type', 'entity_id', 'timestamp', 'value', 'source', 'x')
    }
    records = draw(
        st.lists(
            st.fixed_dictionaries(
                {},
                optional={
                    name: st.one_of(st.none(), _SCALARS[kind]) for name, kind in kinds.items()
                },
            ),
            min_size=1,
            max_size=8,
        )
    )
    lines = [orjson.dumps(r) for r in records]
    if draw(st.booleans()):
        lines.insert(draw(st.integers(0, len(lines))), draw(st.sampled_from([b'{', b'[]', b''])))
    return lines


@settings(max_examples=300, deadline=None)
@given(_batches())
def test_a_block_gives_what_the_lines_give(schema, lines):
    assert_block_gives_what_lines_give(lines, schema)


@pytest.mark.parametrize('value', [b'[null,false]', b'[[null,null]]', b'{"a":[null,1]}'])
def test_lists_pyarrow_builds_broken_give_what_the_lines_give(schema, value):
    """pyarrow's JSON reader builds these lists with offsets past their items (found by the
    fuzz property); the block must not fail, and must give what the lines give."""
    lines = [b'{"event_id":null,"":' + value + b'}', *(orjson.dumps(r) for r in CLEAN[:2])]
    assert_block_gives_what_lines_give(lines, schema)
    assert_block_gives_what_lines_give(lines[:1], schema)


def test_crlf_lines_and_a_line_longer_than_a_chunk_give_what_the_lines_give(schema):
    crlf = [orjson.dumps(r) + b'\r' for r in CLEAN]
    long = orjson.dumps({**CLEAN[0], 'event_id': 'long', 'note': 'x' * (5 << 20)})
    for lines in (crlf, [*crlf[:2], long]):
        assert_block_gives_what_lines_give(lines, schema)
    assert read_json_block(*_block(crlf), schema) is not None  # '\r' is JSON whitespace
    # A line longer than a chunk: pyarrow takes it too, and the result is the same.
    assert read_json_block(*_block([*crlf[:2], long]), schema) is not None


def test_a_block_that_may_nest_deeper_than_the_bound_is_left_to_the_lines(schema):
    # pyarrow's reader recurses on nesting: some 50,000 levels overflow its stack and kill the
    # process. A line with more opening brackets than the bound never reaches it.
    shallow = orjson.dumps({**CLEAN[0], 'note': '[' * 60})  # brackets in a string: still flat
    deep = orjson.dumps(CLEAN[1])[:-1] + b',"x":' + b'[' * 65 + b']' * 65 + b'}'
    assert read_json_block(*_block([orjson.dumps(CLEAN[0]), shallow]), schema) is not None
    assert read_json_block(*_block([orjson.dumps(CLEAN[0]), deep]), schema) is None


def test_a_line_nested_100000_deep_does_not_crash_the_block_reader(schema, tmp_path):
    # In a child process: were the bound gone, pyarrow would take this one down with it.
    script = tmp_path / 'deep.py'
    script.write_text(
        'import numpy as np\n'
        'from beam_pipelines.columnar.json_block import read_json_block\n'
        'from beam_pipelines.schema import Event, compile_schema\n'
        "line = b'{\"x\":' + b'[' * 100_000 + b']' * 100_000 + b'}\\n'\n"
        'print(read_json_block(line, np.zeros(1, np.int64), compile_schema(Event)))\n'
    )
    done = subprocess.run(
        [sys.executable, str(script)], capture_output=True, text=True, timeout=120
    )
    assert done.returncode == 0, done.stderr[-2000:]
    assert done.stdout.strip() == 'None'


@pytest.mark.parametrize(
    'line',
    [
        b'{"event_id":"x","note":"\xff"}',  # pyarrow does not check UTF-8 in strings
        b'{"event_id":"\xc3"}',
        b'{"\xff":1}',  # nor in keys
    ],
)
def test_a_block_that_is_not_utf8_is_left_to_the_lines(schema, line):
    lines = [orjson.dumps(r) for r in CLEAN[:2]] + [line]
    assert read_json_block(*_block(lines), schema) is None
    valid, dead = run_columnar(lines, schema, as_block=True)
    assert valid.num_rows == 2
    assert [d['error_type'] for d in dead] == ['invalid_utf8']
