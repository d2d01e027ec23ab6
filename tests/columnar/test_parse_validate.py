"""Parsing, cleansing and validation of JSON records, vectorised, with row explanations."""

import base64
import contextlib
import datetime as dt

import orjson
import pyarrow as pa
import pydantic
import pytest
from hypothesis import example
from hypothesis import given
from hypothesis import settings
from hypothesis import strategies as st

from beam_pipelines.columnar.batch import RawBatch
from beam_pipelines.columnar.cleanse import cleanse_table
from beam_pipelines.columnar.parse import parse_raw_batch
from beam_pipelines.columnar.validate import split_valid
from beam_pipelines.dead_letter import ENVELOPE_FIELDS
from beam_pipelines.dead_letter import decode_payload
from beam_pipelines.schema import Event
from beam_pipelines.schema import SchemaError
from beam_pipelines.schema import compile_schema
from tests.conftest import run_columnar
from tests.schemas import Reading

GOOD = {
    'event_id': 'e1',
    'event_type': ' Page_View ',
    'entity_id': ' u1 ',
    'timestamp': '2024-05-01T12:00:00Z',
    'value': '12.5',
    'source': 'web',
    'country': 'DE',
    'tags': ['a'],
}


def test_cleansing_trims_lowers_coerces_and_keeps_extras(schema):
    valid, dead = run_columnar([GOOD], schema)
    assert dead == []
    row = valid.to_pylist()[0]
    assert row['event_type'] == 'page_view'
    assert row['entity_id'] == 'u1'
    assert row['value'] == 12.5
    assert row['timestamp'] == dt.datetime(2024, 5, 1, 12, tzinfo=dt.UTC)
    assert orjson.loads(row['attributes']) == {'country': 'DE', 'tags': ['a']}


@pytest.mark.parametrize(
    'change, error_type, fragment',
    [
        ({'entity_id': None}, 'missing_field', 'entity_id: is missing'),
        ({'entity_id': '   '}, 'constraint_violation', "entity_id: '' is empty"),
        ({'event_id': 17}, 'type_error', 'event_id: expected a string, got an integer'),
        ({'value': 'n/a'}, 'invalid_value', "value: 'n/a' is not a number"),
        ({'value': True}, 'type_error', 'value: expected a number, got a boolean'),
        ({'value': [1]}, 'type_error', 'value: expected a number, got an array'),
        ({'timestamp': '2024-05-01 12:00'}, 'invalid_timestamp', 'timestamp: not RFC 3339'),
        ({'timestamp': {'s': 1}}, 'type_error', 'timestamp: expected a string or a number'),
        ({'value': '1e400'}, 'invalid_value', 'value: inf is not a finite number'),
    ],
)
def test_invalid_rows_are_dead_lettered_with_reason(schema, change, error_type, fragment):
    record = {**GOOD, **change}
    record = {k: v for k, v in record.items() if v is not None}
    valid, dead = run_columnar([GOOD, record], schema)
    assert valid.num_rows == 1
    assert len(dead) == 1
    envelope = dead[0]
    assert set(envelope) == set(ENVELOPE_FIELDS)
    assert envelope['stage'] == 'validate'
    assert envelope['error_type'] == error_type
    assert fragment in envelope['error_message']
    assert orjson.loads(decode_payload(envelope)) == record
    assert envelope['source']['offset'] > 0


def test_parse_failures_keep_raw_payload(schema):
    lines = [GOOD, b'{"event_id": "x", ', b'\xff\xfe{}', b'[1, 2]', b'', b'   ', GOOD]
    valid, dead = run_columnar(lines, schema)
    assert valid.num_rows == 2
    kinds = sorted(d['error_type'] for d in dead)
    assert kinds == ['invalid_utf8', 'json_decode_error', 'not_an_object']
    binary = next(d for d in dead if d['error_type'] == 'invalid_utf8')
    assert binary['payload_encoding'] == 'base64'
    assert base64.b64decode(binary['payload']) == b'\xff\xfe{}'
    assert all(d['stage'] == 'parse' for d in dead)


def test_several_errors_in_one_row_are_all_reported(schema):
    bad = {'event_id': '', 'event_type': 'x', 'entity_id': 'u', 'timestamp': 'soon', 'value': 'a'}
    _, dead = run_columnar([bad], schema)
    message = dead[0]['error_message']
    assert 'event_id' in message and 'timestamp' in message and 'value' in message


def test_custom_schema_rules_are_vectorised():
    schema = compile_schema(Reading)
    assert schema.row_level  # its own validator is not one the vectorised path knows
    base = {
        'event_id': 'r-1',
        'event_type': 'temp',
        'entity_id': 'd',
        'timestamp': 1.7e9,
        'value': 20,
    }
    rows = [
        base,
        {**base, 'event_id': 'x-1'},
        {**base, 'event_type': 'wind'},
        {**base, 'value': 200},
        {**base, 'colour': 'red'},
    ]
    valid, dead = run_columnar(rows, schema)
    assert valid.num_rows == 1
    messages = [d['error_message'] for d in sorted(dead, key=lambda d: d['source']['offset'])]
    assert "does not match '^r-'" in messages[0]
    assert 'is not one of' in messages[1]
    assert 'must be <= 150' in messages[2]
    assert 'forbidden' in messages[3]


def test_schema_without_core_fields_is_rejected():
    class Bad(pydantic.BaseModel):
        event_id: str

    with pytest.raises(SchemaError, match='lacks the core field'):
        compile_schema(Bad)


_json_scalars = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(-(10**12), 10**14),
    st.floats(allow_nan=False, allow_infinity=False),
    st.text(max_size=12),
    st.sampled_from(['2024-05-01T12:00:00Z', '1714564800', '  12.5 ', 'CLICK ']),
)
_records = st.fixed_dictionaries(
    {},
    optional={
        'event_id': _json_scalars,
        'event_type': _json_scalars,
        'entity_id': _json_scalars,
        'timestamp': _json_scalars,
        'value': _json_scalars,
        'source': _json_scalars,
        'extra': _json_scalars,
    },
)


@settings(max_examples=200, deadline=None)
@given(st.lists(_records, min_size=1, max_size=8))
# Found by this property: Arrow read [0.0, false] as two doubles, so a boolean timestamp next
# to a number passed as 1970-01-01.
@example(
    [
        {'event_id': 'a', 'event_type': 't', 'entity_id': 'u', 'timestamp': 0.0},
        {'event_id': 'b', 'event_type': 't', 'entity_id': 'u', 'timestamp': False},
        {'event_id': 'c', 'event_type': 't', 'entity_id': 'u', 'timestamp': 1, 'value': True},
        {'event_id': 'd', 'event_type': 't', 'entity_id': 'u', 'timestamp': 2, 'value': 1.5},
    ]
)
def test_vectorised_validation_agrees_with_the_pydantic_model(schema, records):
    """Each record is valid in the columnar path exactly when the pydantic model accepts it."""
    valid, dead = run_columnar(records, schema)
    expected_valid = []
    for record in records:
        with contextlib.suppress(pydantic.ValidationError):
            expected_valid.append(Event.model_validate(record))
    got = valid.num_rows if valid is not None else 0
    assert got == len(expected_valid), (records, dead)
    assert got + len(dead) == len(records)
    if got:
        rows = valid.to_pylist()
        for row, model in zip(rows, expected_valid):
            assert row['event_id'] == model.event_id
            assert row['event_type'] == model.event_type
            assert row['timestamp'] == model.timestamp
            assert row['value'] == model.value


@settings(max_examples=300, deadline=None)
@given(st.lists(st.binary(max_size=60), min_size=1, max_size=10))
def test_arbitrary_bytes_become_an_event_or_a_dead_letter(schema, lines):
    lines = [line.replace(b'\n', b' ') for line in lines]
    valid, dead = run_columnar(lines, schema)
    blank = sum(1 for line in lines if not line.strip())
    got = valid.num_rows if valid is not None else 0
    assert got + len(dead) + blank == len(lines)
    for envelope in dead:
        assert set(envelope) == set(ENVELOPE_FIELDS)
        assert decode_payload(envelope) in lines


_LINE = b'{"event_id":"%s","event_type":"click","entity_id":"u1","timestamp":"2024-05-01T12:00:00Z"'


def _line(event_id: str, rest: bytes = b'') -> bytes:
    return (_LINE % event_id.encode()) + rest + b'}'


@pytest.mark.parametrize('as_block', [False, True])
def test_a_key_named_twice_is_a_dead_letter_not_a_silent_choice(schema, as_block):
    # orjson keeps the last of two values without a word; pyarrow refuses the block.
    lines = [
        _line('a', b',"value":1,"value":2'),
        _line('b', b',"n":{"x":1,"x":2}'),  # nested
        _line('c', b',"event\\u005fid":"c2"'),  # the same key, escaped
        _line('d', b',"note":"a:b:{c}","x":null,"y" : [1,{"z":"q:"}]'),  # colons, nulls, spaces
        _line('e', b',"caf\\u00e9":"\\u00e9:"'),  # escapes, no repeat
    ]
    valid, dead = run_columnar(lines, schema, as_block=as_block)
    assert valid.column('event_id').to_pylist() == ['d', 'e']
    assert [(d['error_type'], d['error_message']) for d in dead] == [
        ('duplicate_key', "key 'value' appears twice in one JSON object"),
        ('duplicate_key', "key 'x' appears twice in one JSON object"),
        ('duplicate_key', "key 'event_id' appears twice in one JSON object"),
    ]
    assert decode_payload(dead[0]) == lines[0]


@pytest.mark.parametrize('as_block', [False, True])
def test_json_deeper_than_orjson_writes_back_is_a_dead_letter(schema, as_block):
    # orjson reads 1024 levels but writes 254: the extra fields' JSON could not be made.
    deep = _line('deep', b',"x":' + b'[' * 300 + b']' * 300)
    kept = _line('kept', b',"x":' + b'[' * 200 + b']' * 200)
    valid, dead = run_columnar([deep, kept, _line('flat')], schema, as_block=as_block)
    assert valid.column('event_id').to_pylist() == ['kept', 'flat']
    assert [d['error_type'] for d in dead] == ['too_deeply_nested']


def test_integers_beyond_2_53_are_numbers_or_timestamps_out_of_range(schema):
    lines = [
        _line('big', b',"value":%d' % (2**64 - 1)),
        (_LINE % b'late').replace(b'"2024-05-01T12:00:00Z"', b'%d' % (2**63 - 1)) + b'}',
    ]
    for as_block in (False, True):
        valid, dead = run_columnar(lines, schema, as_block=as_block)
        assert valid.column('value').to_pylist() == [float(2**64 - 1)]
        assert [d['error_type'] for d in dead] == ['invalid_timestamp']


def _run_table(table: pa.Table, schema):
    parsed, dead = parse_raw_batch(
        RawBatch('mem://e.parquet', 'parquet', range(table.num_rows), table=table), schema, 't'
    )
    parsed = parsed._replace(table=cleanse_table(parsed.table, schema, parsed.errors))
    valid, invalid = split_valid(parsed, schema, 't')
    return valid, dead + invalid


@pytest.mark.parametrize(
    'field, column, message',
    [
        ('value', pa.array([True]), 'value: expected a number, got a boolean'),
        ('value', pa.array([[1.0]]), 'value: expected a number, got an array'),
        ('value', pa.array([{'a': 1}]), 'value: expected a number, got an object'),
        ('value', pa.array([dt.date(2024, 5, 1)]), 'value: expected a number, got date'),
        ('value', pa.array([b'12']), 'value: expected a number, got bytes'),
        ('value', pa.array(['n/a'], pa.large_string()), "value: 'n/a' is not a number"),
        ('timestamp', pa.array([10**17], pa.timestamp('ms')), 'outside [1970-01-01'),
        ('timestamp', pa.array([2**64 - 1], pa.uint64()), 'outside [1970-01-01'),
        ('timestamp', pa.array([[1]]), 'timestamp: expected a string or a number, got an array'),
        ('event_id', pa.array([b'\xff'], pa.binary()), 'event_id: expected a string, got bytes'),
    ],
)
def test_decoded_columns_of_any_type_are_type_errors_not_failed_casts(field, column, message):
    # Parquet columns of types cleansing does not cast in bulk go value by value, as mixed
    # JSON values do; and a value Python cannot hold (a timestamp in the year 3 million) is
    # shown as its raw integer in the dead letter.
    schema = compile_schema(Event)
    base = {
        'event_id': pa.array(['a']),
        'event_type': pa.array(['click']),
        'entity_id': pa.array(['u']),
        'timestamp': pa.array(['2024-05-01T12:00:00Z']),
        'value': pa.array([1.0]),
    }
    valid, dead = _run_table(pa.table({**base, field: column}), schema)
    assert valid.num_rows == 0
    assert len(dead) == 1 and message in dead[0]['error_message']


def test_a_timestamp_column_in_ns_and_ms_is_exact_to_the_microsecond():
    schema = compile_schema(Event)
    for column in (
        pa.array([1714564800123456789], pa.timestamp('ns', tz='UTC')),
        pa.array([1714564800123], pa.timestamp('ms')),
    ):
        table = pa.table(
            {'event_id': ['a'], 'event_type': ['c'], 'entity_id': ['u'], 'timestamp': column}
        )
        valid, dead = _run_table(table, schema)
        micros = 1714564800123456 if column.type.unit == 'ns' else 1714564800123000
        assert dead == []
        assert valid.column('timestamp').cast(pa.int64()).to_pylist() == [micros]


def test_a_long_value_is_shown_cut_in_its_error_message(schema):
    valid, dead = run_columnar([_line('a', b',"value":"' + b'x' * 1_000_000 + b'"')], schema)
    assert valid is None or valid.num_rows == 0
    assert dead[0]['error_message'] == f"value: '{'x' * 76}... is not a number"
