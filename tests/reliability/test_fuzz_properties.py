"""Fuzz properties of every parser and of the HTTP ingestion endpoints.

Each property feeds adversarial input (arbitrary bytes, invalid UTF-8, NULs, lone surrogates,
deep nesting, huge numbers, near-miss timestamps and credentials) to one entry point and checks
the invariants of ``fuzz/invariants.py`` and ``fuzz/ingest_invariants.py``, which the atheris
targets in ``fuzz/`` check too: nothing raises, every record comes out exactly once as a valid
row or a dead letter carrying its payload, valid rows satisfy the schema, timestamps
round-trip, bodies are taken whole or refused with a 4xx, and nothing gets in without a
secret. The block-versus-lines agreement of JSON Lines is ``tests/columnar/test_json_block.py``'s.

The bugs these properties found are pinned at the end, one test each, each the smallest input
that showed it: all fixed, so they stand as regression tests. A bug found later is pinned the
same way first, as an ``xfail(strict=True)`` test, and the broad properties keep clear of its
trigger (saying where) until it is fixed.
"""

from __future__ import annotations

import datetime as dt
import io
import time

import fastavro
import orjson
import pyarrow as pa
import pytest
from hypothesis import HealthCheck
from hypothesis import example
from hypothesis import given
from hypothesis import settings
from hypothesis import strategies as st

from beam_pipelines.ingest.auth import sign
from beam_pipelines.ingest.payloads import PayloadLimits
from beam_pipelines.io.wire_formats import WireFormat
from fuzz import ingest_invariants as ingest
from fuzz import invariants as inv
from tests.conftest import service_unavailable
from tests.io.test_redis import REDIS_URL


def fuzz_settings(examples: int, **overrides) -> settings:
    """Sized so the whole file runs in well under a minute on two cores."""
    return settings(
        max_examples=examples,
        deadline=None,
        suppress_health_check=[
            HealthCheck.too_slow,
            HealthCheck.filter_too_much,
            HealthCheck.function_scoped_fixture,
        ],
        **overrides,
    )


def known_bug(examples: int) -> settings:
    """A strict xfail's settings: one bug, reported as its own exception (not a group)."""
    return fuzz_settings(examples, report_multiple_bugs=False)


UTC = dt.UTC
SAFE_INT = 2**53  # test_integers_beyond_2_53_are_dead_letters_not_crashes
INT64 = st.integers(-(2**63), 2**63 - 1)  # what JSON (orjson), Avro and Parquet carry
SCHEMAS = {'event': inv.EVENT_SCHEMA, 'reading': inv.READING_SCHEMA}
FIELDS = ('event_id', 'event_type', 'entity_id', 'timestamp', 'value', 'source')


_text = st.text(max_size=10)
_scalars = st.one_of(
    st.none(),
    st.booleans(),
    INT64,
    st.floats(allow_nan=False, allow_infinity=False),
    _text,
    st.sampled_from(
        [
            '2024-05-01T12:00:00Z',
            '2024-05-01t12:00:00.123456789+02:00',
            '2024-02-30T00:00:00Z',
            '2100-01-01T00:00:00Z',
            '1969-12-31T23:59:59.999999Z',
            '1714564800',
            '1714564800123',
            ' 12.5 ',
            '1e308',
            '1e999',
            '-0',
            'NaN',
            'inf',
            '0x10',
            'CLICK ',
            'a\u0000b',
            ' ',
            '',
            'true',
            'yes',
            'a',
            'b',
        ]
    ),
)
_values = st.recursive(
    _scalars,
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(_text, inner, max_size=3),
    max_leaves=6,
)
_records = st.fixed_dictionaries(
    {},
    optional={
        name: _values
        for name in (*FIELDS, 'count', 'ok', 'kind', 'extra', 'attributes', '_pos', '')
    },
)
_SPECIAL_LINES = [
    b'',
    b' ',
    b'\r',
    b'\t\x0b\x0c',
    b'\x00',
    b'{}',
    b'[]',
    b'null',
    b'"x"',
    b'{"event_id":"x"}{"event_id":"y"}',
    b'\xef\xbb\xbf{"event_id":"x"}',
    b'{"event_id":"\\ud800","event_type":"a","entity_id":"b","timestamp":1}',
    b'{"event_id":"\\udfff\\ud800"}',
    b'{"event_id":"\\u0000","event_type":"\\u0000","entity_id":"b","timestamp":1}',
    b'{"event_id":"a","event_type":"a","entity_id":"b","timestamp":1e400}',
    b'{"event_id":"a","event_type":"a","entity_id":"b","timestamp":NaN}',
    b'{"event_id":"a","event_type":"a","entity_id":"b","timestamp":1,"value":-1e-400}',
    b'{"event_id":"a","event_type":"a","entity_id":"b","timestamp":1,"value":123456789012345678901234567890}',
    b'{"x":' + b'[' * 200 + b']' * 200 + b'}',  # deeper: test_deep_extra_fields_...
    b'{"x":' + b'[' * 1100 + b']' * 1100 + b'}',  # over orjson's depth limit
    b'{"event_id":"a",}',
    b'{"event_id":"a\xff"}',
    b'{"event_id":"\xed\xa0\x80"}',  # a surrogate encoded as UTF-8 bytes
]


@st.composite
def _lines(draw) -> bytes:
    kind = draw(st.sampled_from(['record', 'mutated', 'bytes', 'special']))
    if kind == 'bytes':
        line = draw(st.binary(max_size=60))
    elif kind == 'special':
        line = draw(st.sampled_from(_SPECIAL_LINES))
    else:
        line = orjson.dumps(draw(_records))
        if kind == 'mutated' and line:
            at = draw(st.integers(0, len(line)))
            how = draw(st.sampled_from(['truncate', 'insert', 'replace']))
            byte = draw(st.sampled_from([b'\x00', b'\xff', b'\xc3', b'"', b'\\', b'{', b',', b'9']))
            if how == 'truncate':
                line = line[:at]
            elif how == 'insert':
                line = line[:at] + byte + line[at:]
            else:
                line = line[:at] + byte + line[at + 1 :]
    return line.replace(b'\n', b' ')


# --- JSON Lines: messages, blocks, files ----------------------------------------------------


@fuzz_settings(300)
@given(st.lists(_lines(), min_size=1, max_size=10), st.sampled_from(sorted(SCHEMAS)))
def test_every_json_line_is_one_valid_row_or_one_dead_letter(lines, schema_name):
    """As message sources give lines, and as a file block: never raises, each non-blank line
    comes out once at its offset, dead letters carry its bytes, valid rows satisfy the schema
    and the pydantic model (value for value)."""
    inv.check_json_lines(lines, SCHEMAS[schema_name])
    # A list of lists in a schema field: test_nested_lists_in_a_json_lines_file_are_dead_letters.
    if not any(_nested_list_field(line) for line in lines):
        inv.check_json_lines(lines, SCHEMAS[schema_name], as_block=True)


def _nested_list_field(line: bytes) -> bool:
    record = inv.decoded_object(line)
    return record is not None and any(
        isinstance(v, list) and any(isinstance(item, list) for item in v) for v in record.values()
    )


@fuzz_settings(120)
@given(st.lists(_lines(), min_size=0, max_size=12), st.booleans(), st.integers(1, 5))
def test_a_json_lines_file_read_in_batches_keeps_the_same_invariants(lines, trailing, rows):
    data = b'\n'.join(lines) + (b'\n' if trailing and lines else b'')
    inv.check_file(data, 'jsonl', batch_rows=rows)


# --- Timestamps -----------------------------------------------------------------------------


@st.composite
def _timestamp_texts(draw) -> str:
    """Near-miss RFC 3339: right shape, fields in and out of range, odd separators."""

    def two(low, high):
        return f'{draw(st.integers(low, high)):02d}'

    date = f'{draw(st.integers(0, 9999)):04d}-{two(0, 13)}-{two(0, 32)}'
    sep = draw(st.sampled_from(['T', 't', ' ', '_', '']))
    clock = f'{two(0, 25)}:{two(0, 61)}:{two(0, 61)}'
    fraction = draw(st.sampled_from(['', '.', '.5', '.123456', '.1234567', '.123456789', '.1' * 6]))
    zone = draw(
        st.sampled_from(['Z', 'z', '', '+00:00', '-00:00', '+05:30', '-23:59', '+24:00', '+1:00'])
    )
    pad = draw(st.sampled_from(['', ' ', '\t', '\u3000', '\x00']))
    return pad + date + sep + clock + fraction + zone + pad


_timestamp_values = st.one_of(
    _timestamp_texts(),
    _text,
    INT64,
    st.floats(),
    st.none(),
    st.booleans(),
    st.sampled_from(['1e11', '1e15', '-1e15', '100000000000.5', '4102444800', '.5', '5.', '+5']),
)


@fuzz_settings(800)
@given(_timestamp_values)
@example('4102444799.9999995')
@example(99999999999.99999)
@example('2099-12-31T23:59:59.9999999Z')
def test_any_timestamp_is_parsed_alike_by_both_paths_or_refused(value):
    inv.check_timestamp(value)


@fuzz_settings(400)
@given(
    st.datetimes(
        min_value=dt.datetime(1900, 1, 1),
        max_value=dt.datetime(2200, 1, 1),
        timezones=st.sampled_from(
            [
                UTC,
                dt.timezone(dt.timedelta(hours=5, minutes=30)),
                dt.timezone(-dt.timedelta(hours=23, minutes=59)),
            ]
        ),
    )
)
def test_timestamps_round_trip_as_rfc_3339_and_epoch_values(moment):
    inv.check_timestamp_round_trip(moment)


# --- CSV, Avro, Parquet -----------------------------------------------------------------------

_GOOD_CSV_HEADERS = [
    b'event_id,event_type,entity_id,timestamp,value',
    b'event_id,event_type,entity_id,timestamp,value,source,extra',
    b'\xef\xbb\xbfevent_id,event_type,entity_id,timestamp',
    b'timestamp,value,event_id,entity_id,event_type',
]
_CSV_HEADERS = [*_GOOD_CSV_HEADERS, b'event_id,event_id', b'', b'a,\xff']
_cells = st.sampled_from(
    [
        b'',
        b'a',
        b' x ',
        b'Click',
        b'1714564800',
        b'2024-05-01T12:00:00Z',
        b'12.5',
        b'1e999',
        b'\xff',
        b'\xc3',
        b'\x00',
        b'n/a',
        b'NULL',
        b'a,b',
        b'-0',
        b'99999999999999999999999',
    ]
)


@fuzz_settings(160)
@given(
    st.sampled_from(_CSV_HEADERS),
    st.lists(st.lists(_cells, min_size=1, max_size=7).map(b','.join), max_size=10),
    st.booleans(),
)
def test_every_csv_row_is_one_valid_row_or_one_dead_letter(header, rows, crlf):
    """Rows without quotes: each non-empty line is one record, as a row or a dead letter, and
    a file with a good header is never given up whole."""
    newline = b'\r\n' if crlf else b'\n'
    data = newline.join([header, *rows]) + newline
    good_header = header in _GOOD_CSV_HEADERS
    expected = sum(1 for row in rows if row) if good_header else None
    inv.check_file(data, 'csv', expected_records=expected)


@fuzz_settings(120)
@given(st.binary(max_size=200))
def test_any_bytes_as_a_csv_file_are_rows_or_dead_letters(data):
    inv.check_file(data, 'csv')


_avro_records = st.fixed_dictionaries(
    {
        'event_id': st.one_of(st.none(), _text, INT64, st.binary(max_size=4)),
        'event_type': st.one_of(st.none(), _text, st.booleans()),
        'entity_id': st.one_of(st.none(), _text),
        'timestamp': st.one_of(
            st.none(),
            INT64,
            st.floats(),
            _timestamp_texts(),
            st.sampled_from([1714564800, 1714564800123]),
        ),
        'value': st.one_of(st.none(), st.floats(), INT64, _text, st.booleans()),
        'source': st.one_of(st.none(), _text, st.lists(st.integers(-5, 5), max_size=2)),
        'extra': st.one_of(
            st.none(),
            _text,
            st.binary(max_size=4),
            st.dictionaries(_text, st.floats(), max_size=2),
        ),
    }
)


def _damage(data: bytes, how: str, at: int) -> bytes:
    at = at % (len(data) + 1)
    if how == 'truncate':
        return data[:at]
    if how == 'flip' and at < len(data):
        return data[:at] + bytes([data[at] ^ 0x5A]) + data[at + 1 :]
    return data


@fuzz_settings(120)
@given(
    st.lists(_avro_records, max_size=12),
    st.sampled_from(['null', 'deflate']),
    st.sampled_from(['intact', 'truncate', 'flip']),
    st.integers(0, 10**6),
)
def test_every_avro_record_is_one_valid_row_or_one_dead_letter(records, codec, how, at):
    data = _damage(inv.avro_file(records, codec), how, at)
    inv.check_file(data, 'avro', expected_records=len(records) if how == 'intact' else None)


_PARQUET_KINDS = {
    # Any type a Parquet file may hold. Native timestamps stay below 1e11 s: beyond,
    # test_native_timestamps_keep_their_instant.
    'string': (st.one_of(st.none(), _text), pa.string()),
    'large_string': (_text, pa.large_string()),
    'int64': (INT64, pa.int64()),
    'float64': (st.floats(), pa.float64()),
    'bool': (st.booleans(), pa.bool_()),
    'binary': (st.binary(max_size=4), pa.binary()),
    'null': (st.none(), pa.null()),
    'timestamp_us': (st.integers(-(10**15), 10**15), pa.timestamp('us', tz='UTC')),
    'timestamp_ms': (st.integers(-(9 * 10**13), 9 * 10**13), pa.timestamp('ms')),
    'uint64': (st.integers(0, 2**64 - 1), pa.uint64()),
    'date32': (st.dates(), pa.date32()),
    'list': (st.lists(INT64, max_size=2), pa.list_(pa.int64())),
    'struct': (st.fixed_dictionaries({'a': st.integers(0, 9)}), pa.struct([('a', pa.int64())])),
    'dictionary': (_timestamp_texts(), pa.dictionary(pa.int32(), pa.string())),
}


@st.composite
def _parquet_tables(draw) -> pa.Table:
    n = draw(st.integers(0, 8))
    names = draw(st.lists(st.sampled_from([*FIELDS, 'extra']), unique=True, min_size=1))
    columns = {}
    for name in names:
        values, arrow_type = _PARQUET_KINDS[draw(st.sampled_from(sorted(_PARQUET_KINDS)))]
        columns[name] = pa.array(draw(st.lists(values, min_size=n, max_size=n)), arrow_type)
    return pa.table(columns)


@fuzz_settings(120)
@given(_parquet_tables(), st.sampled_from(['intact', 'truncate', 'flip']), st.integers(0, 10**6))
def test_every_parquet_row_is_one_valid_row_or_one_dead_letter(table, how, at):
    data = _damage(inv.parquet_file(table), how, at)
    inv.check_file(data, 'parquet', expected_records=table.num_rows if how == 'intact' else None)


# --- Wire formats and the MQTT bridge ---------------------------------------------------------

_AVRO_WIRE_SCHEMA = {
    'type': 'record',
    'name': 'Wire',
    'fields': [
        {'name': 'event_id', 'type': 'string'},
        {'name': 'timestamp', 'type': ['long', 'string', 'null']},
        {'name': 'value', 'type': ['null', 'double']},
    ],
}


def _schemaless(record: dict) -> bytes:
    out = io.BytesIO()
    fastavro.schemaless_writer(out, fastavro.parse_schema(_AVRO_WIRE_SCHEMA), record)
    return out.getvalue()


@fuzz_settings(160)
@given(
    st.lists(
        st.one_of(
            st.binary(max_size=40),
            st.lists(_cells, min_size=1, max_size=5).map(b','.join),
            st.fixed_dictionaries(
                {
                    'event_id': _text,
                    'timestamp': st.one_of(INT64, _text, st.none()),
                    'value': st.one_of(st.none(), st.floats()),
                }
            ).map(_schemaless),
        ),
        min_size=1,
        max_size=8,
    ),
    st.sampled_from(['csv', 'avro']),
)
def test_every_stream_record_in_a_wire_format_is_one_row_or_one_dead_letter(lines, kind):
    if kind == 'csv':
        wire = WireFormat('csv', csv_columns=('event_id', 'event_type', 'entity_id', 'timestamp'))
    else:
        wire = WireFormat('avro', avro_schema=orjson.dumps(_AVRO_WIRE_SCHEMA).decode())
    inv.check_wire(lines, wire)


@fuzz_settings(300)
@given(
    st.sampled_from(['devices/{entity_id}/telemetry', 'devices/+/{event_type}', '{entity_id}']),
    st.text(alphabet='/+#ab\u00e9\x00', max_size=20).map(lambda t: 'devices/' + t),
    st.one_of(_lines(), st.dictionaries(_text, _values, max_size=4).map(orjson.dumps)),
)
def test_mqtt_topic_fields_keep_payloads_parseable(template, topic, payload):
    ingest.check_topic_fill(template, topic, payload)


# --- Ingestion: payloads, authentication, the endpoints -----------------------------------------

LIMITS = PayloadLimits(max_events=5, max_event_bytes=96)
_bodies = st.one_of(
    st.binary(max_size=120),
    st.lists(_values, max_size=7).map(orjson.dumps),
    st.lists(_records, max_size=7).map(lambda r: orjson.dumps({'events': r})),
    st.lists(_lines(), max_size=7).map(b'\n'.join),
    _records.map(orjson.dumps),
    st.sampled_from(
        [
            b'',
            b'  ',
            b'{"events": 1}',
            b'{"events": [{}]}',
            b'[{}, {}, {}, {}, {}, {}]',
            b'\xef\xbb\xbf{}',
            b'{"a":"\\ud800"}',
            b'[' * 1100 + b']' * 1100,
            b'[{"a":' + b'[' * 200 + b']' * 200 + b'}]',
        ]
    ),
)
_content_types = st.sampled_from(
    ['application/json', 'application/x-ndjson', 'application/jsonl', 'text/plain', '']
)


@fuzz_settings(600)
@given(_bodies, _content_types, st.booleans())
def test_any_body_is_taken_whole_or_refused_with_a_4xx(body, content_type, single):
    ingest.check_payload(body, content_type, LIMITS, single=single)


SECRET = b'fuzz-secret-0123456789abcdef'
NOW = 1_714_521_600.0
_near_secrets = st.sampled_from(
    [
        SECRET.decode(),
        SECRET.decode()[:-1],
        SECRET.decode() + 'x',
        SECRET.decode().upper(),
        ' ' + SECRET.decode() + '\t',
        SECRET.decode() + '\u00e9',
        '',
        'sha256=',
    ]
)
_header_values = st.one_of(
    st.text(max_size=30),
    _near_secrets,
    _near_secrets.map(lambda s: 'Bearer ' + s),
    _near_secrets.map(lambda s: 'bearer  ' + s),
    st.integers(-(10**6), 10**6).map(lambda d: str(int(NOW) + d)),
    st.integers(0, 500).map(lambda n: '9' * n),
    st.sampled_from(['+1714521600', ' 1714521600 ', '1_714_521_600', '1714521600.0', 'nan']),
    st.binary(max_size=8).map(lambda b: 'sha256=' + b.hex()),
)
_headers = st.dictionaries(
    st.sampled_from(
        ['Authorization', 'X-API-Key', 'X-Signature', 'X-Signature-Timestamp', 'Content-Type']
    ),
    _header_values,
    max_size=4,
)


@fuzz_settings(800)
@given(_headers, st.binary(max_size=20), st.sampled_from(['any', 'token', 'hmac']))
@example({'X-Signature': 'sha256=00', 'X-Signature-Timestamp': '1' + '0' * 400}, b'', 'any')
def test_no_headers_get_in_without_the_secret(headers, body, mode):
    ingest.check_auth(headers, body, [SECRET], mode=mode, now=NOW)


@fuzz_settings(200)
@given(
    st.sampled_from(['bearer', 'api_key', 'signature']),
    st.binary(max_size=40),
    st.integers(-299, 299),
    st.sampled_from(['', ' ', '\t']),
)
def test_the_secret_gets_in_by_every_scheme(scheme, body, skew, pad):
    stamp = str(int(NOW) + skew)
    headers = {
        'bearer': {'Authorization': f'Bearer {pad}{SECRET.decode()}{pad}'},
        'api_key': {'X-API-Key': f'{pad}{SECRET.decode()}{pad}'},
        'signature': {
            'X-Signature-Timestamp': pad + stamp,
            'X-Signature': sign(SECRET, stamp, body),
        },
    }[scheme]
    assert ingest.check_auth(headers, body, [SECRET], now=NOW)


@pytest.fixture(scope='module')
def ingestion():
    """The ingestion app on aiohttp's test server against the real Redis (skipped without one,
    except under CI)."""
    import redis

    try:
        harness = ingest.IngestHarness(
            REDIS_URL, f'fuzz:{time.time_ns()}:events', SECRET, LIMITS, max_body_bytes=4096
        )
    except redis.RedisError as exc:
        service_unavailable(f'Redis at {REDIS_URL}', exc)
    yield harness
    harness.close()


@fuzz_settings(160)
@given(
    st.sampled_from(['single', 'batch']),
    _bodies,
    _headers,
    st.sampled_from(['bearer', 'signature', 'none']),
)
def test_the_endpoints_answer_every_request_with_a_2xx_or_a_4xx(
    ingestion, endpoint, body, headers, credentials
):
    headers = {k: v for k, v in headers.items() if v.isprintable() and v.isascii()}
    stamp = str(int(time.time()))
    if credentials == 'bearer':
        headers['Authorization'] = f'Bearer {SECRET.decode()}'
    elif credentials == 'signature':
        headers.pop('Authorization', None)
        headers.pop('X-API-Key', None)
        headers.update({'X-Signature-Timestamp': stamp, 'X-Signature': sign(SECRET, stamp, body)})
    ingest.check_http(ingestion, endpoint, body, headers)


# --- The bugs found, each pinned by its smallest input: all fixed, now regression tests -----

_CORE = b'"event_id":"a","event_type":"click","entity_id":"u1"'


# Was a pinned bug, fixed (cleansing casts numbers to float unsafely): now a regression test.
@known_bug(10)
@given(
    st.integers(SAFE_INT + 1, 2**63 - 1) | st.integers(-(2**63), -SAFE_INT - 1),
    st.sampled_from(['value', 'timestamp']),
    st.booleans(),
)
def test_integers_beyond_2_53_are_dead_letters_not_crashes(number, field, as_block):
    line = (
        b'{'
        + _CORE
        + b',"timestamp":1714564800,"'
        + field.encode()
        + b'":'
        + str(number).encode()
        + b'}'
    )
    inv.check_json_lines([line], as_block=as_block)


# Was a pinned bug, fixed (too_deeply_nested dead letters): now a regression test.
@known_bug(5)
@given(st.integers(254, 1000), st.booleans())
def test_deep_extra_fields_are_kept_or_dead_lettered(depth, as_block):
    nested = b'[' * depth + b']' * depth
    line = b'{' + _CORE + b',"timestamp":1714564800,"x":' + nested + b'}'
    inv.check_json_lines([line], as_block=as_block)


# Was a pinned bug, fixed (orjson.dumps of a deep body raised TypeError, a 500): now a
# regression test.
@known_bug(5)
@given(st.integers(254, 1000), st.booleans())
def test_deep_bodies_are_refused_with_a_400(depth, single):
    nested = b'{"a":' + b'[' * depth + b']' * depth + b'}'
    ingest.check_payload(nested if single else b'[' + nested + b']', single=single)


# Was a pinned bug, fixed (TopicFields.fill raised TypeError re-encoding a deep payload, so
# the broker redelivered it forever): now a regression test.
@known_bug(5)
@given(st.integers(254, 1000))
def test_mqtt_topic_fields_survive_deep_payloads(depth):
    payload = b'{"a":' + b'[' * depth + b']' * depth + b'}'
    ingest.check_topic_fill('devices/{entity_id}/telemetry', 'devices/d1/telemetry', payload)


_CRASHING_PARQUET = {
    'value as list<int64>': ('value', pa.array([[1]])),
    'value as struct': ('value', pa.array([{'a': 1}])),
    'value as date32': ('value', pa.array([dt.date(2024, 5, 1)])),
    'value as uint64 2**64-1': ('value', pa.array([2**64 - 1], pa.uint64())),
    'timestamp as timestamp[ms] 10**17': ('timestamp', pa.array([10**17], pa.timestamp('ms'))),
    'timestamp as uint64 2**64-1': ('timestamp', pa.array([2**64 - 1], pa.uint64())),
    'value as binary b"n/a"': ('value', pa.array([b'n/a'], pa.binary())),
    'value as large_string "n/a"': ('value', pa.array(['n/a'], pa.large_string())),
}


# Was a pinned bug, fixed (columns_to_table takes odd types value by value): now a regression test.
@pytest.mark.parametrize('case', sorted(_CRASHING_PARQUET))
def test_parquet_columns_of_any_type_are_rows_or_dead_letters(case):
    name, column = _CRASHING_PARQUET[case]
    base = {
        'event_id': ['a'],
        'event_type': ['click'],
        'entity_id': ['u'],
        'timestamp': [1714564800],
    }
    inv.check_file(
        inv.parquet_file(pa.table({**base, name: column})), 'parquet', expected_records=1
    )


# Was a pinned bug, fixed (the row-level twin read other scripts' digits, the model took
# "1_000"; both now take the vectorised grammar, ASCII only): now a regression test.
@known_bug(10)
@given(
    st.sampled_from(
        [
            # Arabic-Indic and fullwidth digits.
            ('timestamp', '\u0661\u0667\u0661\u0664\u0665\u0666\u0664\u0668\u0660\u0660'),
            ('timestamp', '\uff11\uff17\uff11\uff14\uff15\uff16\uff14\uff18\uff10\uff10'),
            ('timestamp', '\u0663'),
            ('value', '1_000'),
        ]
    )
)
def test_timestamp_and_value_text_is_read_as_the_model_reads_it(case):
    field, text = case
    record = {'event_id': 'a', 'event_type': 'click', 'entity_id': 'u', 'timestamp': 1714564800}
    record[field] = text
    inv.check_json_lines([orjson.dumps(record)])


# Was a pinned bug, fixed (cleansing lower-cased non-ASCII text with Arrow's one-to-one
# mapping, the model with str.lower; now str.lower for non-ASCII rows): now a regression test.
@known_bug(5)
@given(st.sampled_from(['\u0130', '\u03a3\u0391\u03a3', 'CL\u0130CK']))
def test_event_type_is_lower_cased_as_the_model_does(event_type):
    record = {'event_id': 'a', 'event_type': event_type, 'entity_id': 'u', 'timestamp': 1714564800}
    inv.check_json_lines([orjson.dumps(record)])


# Was a pinned bug, fixed (a wrong-width row was positioned by line number, the others by
# ordinal; now every position is the record's ordinal): now a regression test.
@known_bug(10)
@given(st.integers(2, 6))
def test_csv_record_positions_are_unique(good_rows):
    good = b'a,click,u,1714564800,1\n'
    data = b'event_id,event_type,entity_id,timestamp,value\nx,y\n' + good * good_rows
    inv.check_file(data, 'csv', expected_records=good_rows + 1)


# Was a pinned bug, fixed (the rest of the file is read with Python's csv): now a regression test.
@known_bug(10)
@given(st.integers(0, 3), st.sampled_from([b'\xc3,x', b'\xff', b'a,b,\xfe']))
def test_a_bad_csv_row_does_not_lose_the_file(good_rows, bad):
    good = b'a,click,u,1714564800,1\n'
    data = b'event_id,event_type,entity_id,timestamp,value\n' + good * good_rows + bad + b'\n'
    inv.check_file(data, 'csv', expected_records=good_rows + 1)


# Was a pinned bug, fixed (_read_jsonl counts complete lines only): now a regression test.
@known_bug(10)
@given(st.binary(min_size=1, max_size=40).map(lambda b: b.replace(b'\n', b' ')))
def test_batches_of_one_row_read_a_last_line_without_its_newline(line):
    inv.check_file(line, 'jsonl', batch_rows=1)


# Was a pinned bug, fixed (read_json_block refuses a block not UTF-8): now a regression test.
@known_bug(10)
@given(st.sampled_from(['event_id', 'timestamp', 'x', 'key']))
def test_a_non_utf8_byte_in_a_json_lines_file_is_a_dead_letter(where):
    record = b'"event_id":"a","event_type":"click","entity_id":"u","timestamp":1714564800'
    if where == 'key':
        line = b'{"\xff":1,' + record + b'}'
    elif where == 'x':
        line = b'{' + record + b',"x":"\xff"}'
    else:
        line = (
            b'{'
            + record.replace(f'"{where}":'.encode(), f'"{where}":"\xff",'.encode() + b'"_":')
            + b'}'
        )
    inv.check_json_lines([line], as_block=True)


# Was a pinned bug, fixed (native timestamps went through the seconds-or-milliseconds guess;
# now clamped to just out of range first): now a regression test.
@known_bug(5)
@given(st.sampled_from([10**12, 2 * 10**11, 5 * 10**11]), st.sampled_from(['us', 'ms']))
def test_native_timestamps_keep_their_instant(seconds, unit):
    raw = seconds * (10**6 if unit == 'us' else 10**3)
    table = pa.table(
        {
            'event_id': ['a'],
            'event_type': ['click'],
            'entity_id': ['u'],
            'timestamp': pa.array([raw], pa.timestamp(unit, tz='UTC')),
        }
    )
    valid, _ = inv.check_file(inv.parquet_file(table), 'parquet', expected_records=1)
    # Out of [1970, 2100): a dead letter, never a valid row at another instant.
    if valid:
        raise inv.InvariantViolation('native-timestamp', f'{seconds} s became a valid row')


# Was a pinned bug, fixed (validation casts to float unsafely): now a regression test.
@known_bug(5)
@given(st.integers(SAFE_INT + 1, 2**63 - 1) | st.integers(-(2**63), -SAFE_INT - 1))
def test_int_fields_beyond_2_53_are_dead_letters_not_crashes(number):
    line = b'{' + _CORE + b',"timestamp":1714564800,"count":' + str(number).encode() + b'}'
    inv.check_json_lines([line], inv.READING_SCHEMA)


# Was a pinned bug, fixed (the header was read from the first physical line; now with
# Python's csv, and Arrow reading it otherwise sends the file to Python's csv): now a
# regression test.
@known_bug(5)
@given(st.sampled_from([b'"a\nb",c\n\xff,1\n', b'"a\nb",c\nx,\xff\n', b'"a\n\x94"\n1\n']))
def test_a_csv_header_name_spanning_lines_is_read_or_refused(data):
    inv.check_file(data, 'csv')


# Was a pinned bug, fixed (read_json_block took pyarrow's invalid list-of-null-lists array;
# such columns are validated, and an invalid one sends the block line by line): now a
# regression test.
@known_bug(5)
@given(st.sampled_from([b'[[null,null]]', b'[[null,null,null]]', b'[[1,2],[null,null]]']))
def test_nested_lists_in_a_json_lines_file_are_dead_letters(value):
    line = b'{' + _CORE + b',"timestamp":' + value + b'}'
    inv.check_json_lines([line], as_block=True)
