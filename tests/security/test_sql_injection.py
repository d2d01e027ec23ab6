"""SQL injection evidence against the real PostgreSQL server (never mocked).

What the audit of every ``execute``, ``executemany``, ``copy_expert`` and ``sql.SQL`` in
``beam_pipelines/`` found, and these tests hold: values are always bound parameters (``%s``,
``%(name)s``) or COPY data (CSV that Arrow writes with every field quoted); identifiers (schema,
table and column names, which come from flags) pass ``beam_pipelines.io.postgres.ident``
(``[A-Za-z_][A-Za-z0-9_]*`` only, then double-quoted) or are composed with
``psycopg2.sql.Identifier``.

The tests push hostile strings through the public write paths as data (entity ids, event types,
attribute keys and values, dead-letter payloads, messages and sources) and read them back byte for
byte; hostile identifiers given as options are refused with a clear error or safely quoted.
Every example also checks that no other table was touched: a sentinel table ``x`` sits first on
the writing connection's ``search_path``, where an injected ``DROP TABLE x`` would find it.

Each test works in schemas of its own (``t_<hex>``) and drops them afterwards.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import json
import urllib.parse
import uuid

import apache_beam as beam
import orjson
import psycopg2
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from apache_beam.testing.test_pipeline import TestPipeline
from hypothesis import HealthCheck
from hypothesis import given
from hypothesis import settings
from hypothesis import strategies as st
from psycopg2 import sql

from beam_pipelines import cli
from beam_pipelines import event_analytics
from beam_pipelines.backup.tables import migration_version
from beam_pipelines.columnar.aggregate import AGGREGATE_SCHEMA
from beam_pipelines.columnar.timestamps import TIMESTAMP_TYPE
from beam_pipelines.dead_letter import decode_payload
from beam_pipelines.dead_letter import make_dead_letter
from beam_pipelines.io.postgres import PostgresTarget
from beam_pipelines.io.postgres import copy_and_merge
from beam_pipelines.io.postgres_source import ReadFromPostgres
from beam_pipelines.io.postgres_source import WatermarkStore
from beam_pipelines.io.warehouse import DEAD_LETTER_COLUMNS
from beam_pipelines.io.warehouse import EventPartitions
from beam_pipelines.io.warehouse import WriteToWarehouse
from beam_pipelines.io.warehouse import dead_letter_id
from beam_pipelines.io.warehouse import dead_letter_rows
from beam_pipelines.io.warehouse import event_rows
from beam_pipelines.io.warehouse import events_target
from beam_pipelines.io.warehouse_schema import ensure_event_partitions
from beam_pipelines.io.warehouse_schema import migrate
from beam_pipelines.ops.queries import NAMED
from beam_pipelines.ops.queries import dead_letters_query
from beam_pipelines.sync.jobs import JobLog
from beam_pipelines.warehouse import grant_readonly
from tests.io.test_postgres import pg_url  # noqa: F401  (fixture)

DAY = dt.datetime(2024, 5, 1, 12, tzinfo=dt.UTC)
SENTINEL = 'untouched'

# Strings that end a literal, a quoted identifier, a dollar quote or a COPY stream, or that a
# formatter would substitute, if any of them were pasted into SQL instead of bound.
HOSTILE = (
    "'; DROP TABLE x; --",
    '"; DROP TABLE x; --',
    "'); DROP TABLE x; --",
    "\\'; DROP TABLE x; --",
    "' OR '1'='1",
    '$$; DROP TABLE x; $$',
    '$q$ DROP TABLE x; $q$',
    "E'\\x27; DROP TABLE x; --",
    "x'); COPY x TO PROGRAM 'true'; --",
    '%s',
    '%(x)s',
    '%%',
    '%',
    '{}',
    '{s}',
    '{0}',
    '\\',
    '\\\\',
    '\\.',
    '\\N',
    'NULL',
    ' ',
    ',',
    '"',
    "'",
    '""',
    "''",
    '\r\n\\.\r\n',
    '\n\\.\n',
    'a\tb',
    '\u2028\u2029',
    '\ufeff',
    'zero\u200bwidth',
    '\U0001f642\U0001f44d\U0001f3fd',
    'Ω≈ç√',
    '-- comment',
    '/* x */',
    ';',
)
# Long strings: compressible ones fit the btree index entries of the key columns too.
LONG = ("'; DROP TABLE x; --" * 600, '\\.$$\'"%s' * 2000, 'é' * 40_000)

_CHARS = st.characters(blacklist_categories=('Cs',), blacklist_characters='\x00')
_PIECES = st.one_of(st.sampled_from(HOSTILE), st.text(_CHARS, max_size=30))
hostile = st.lists(_PIECES, min_size=0, max_size=4).map(''.join)
hostile_or_long = st.one_of(hostile, st.sampled_from(LONG))


# -- helpers ---------------------------------------------------------------------------------


def _schema_name() -> str:
    return f't_{uuid.uuid4().hex[:12]}'


@contextlib.contextmanager
def sentinel_schema(url: str):
    """A schema holding table ``x`` with one row; yields its name; dropped after."""
    name = _schema_name()
    conn = psycopg2.connect(url)
    try:
        with conn, conn.cursor() as cur:
            cur.execute(sql.SQL('CREATE SCHEMA {}').format(sql.Identifier(name)))
            cur.execute(sql.SQL('CREATE TABLE {}.x (v text)').format(sql.Identifier(name)))
            cur.execute(
                sql.SQL('INSERT INTO {}.x VALUES (%s)').format(sql.Identifier(name)), (SENTINEL,)
            )
        yield name
    finally:
        with conn, conn.cursor() as cur:
            cur.execute(sql.SQL('DROP SCHEMA IF EXISTS {} CASCADE').format(sql.Identifier(name)))
        conn.close()


def with_search_path(url: str, schema: str) -> str:
    """``url`` with the connection's ``search_path`` set to ``schema`` (where ``x`` is)."""
    options = urllib.parse.quote(f'-c search_path={schema}')
    return f'{url}{"&" if "?" in url else "?"}options={options}'


def tables(cur, *schemas: str) -> set[tuple[str, str]]:
    cur.execute(
        'SELECT schemaname, tablename FROM pg_tables WHERE schemaname = ANY(%s)', (list(schemas),)
    )
    return set(cur.fetchall())


def assert_sentinel(cur, schema: str) -> None:
    cur.execute(sql.SQL('SELECT v FROM {}.x').format(sql.Identifier(schema)))
    assert cur.fetchall() == [(SENTINEL,)], 'the sentinel table was touched'


def _utf8(value) -> bytes | None:
    return None if value is None else bytes(value)


@pytest.fixture(scope='module')
def warehouse(pg_url):  # noqa: F811
    """(connection, warehouse schema, sentinel schema): a migrated warehouse with the day's
    partition, written through a connection whose ``search_path`` finds the sentinel first."""
    with sentinel_schema(pg_url) as guard:
        schema = _schema_name()
        conn = psycopg2.connect(with_search_path(pg_url, guard))
        try:
            migrate(conn, schema)
            with conn, conn.cursor() as cur:
                ensure_event_partitions(cur, schema, [DAY.date()])
            yield conn, schema, guard
        finally:
            conn.rollback()
            with conn, conn.cursor() as cur:
                cur.execute(
                    sql.SQL('DROP SCHEMA IF EXISTS {} CASCADE').format(sql.Identifier(schema))
                )
            conn.close()


def _events_table(rows) -> pa.Table:
    n = len(rows)
    return pa.table(
        {
            'event_id': [r[0] for r in rows],
            'event_type': [r[1] for r in rows],
            'entity_id': [r[2] for r in rows],
            'timestamp': pa.array([DAY] * n, pa.timestamp('us', tz='UTC')).cast(TIMESTAMP_TYPE),
            'value': pa.array([float(i) for i in range(n)], pa.float64()),
            'source': pa.array([r[3] for r in rows], pa.string()),
            'attributes': [orjson.dumps(r[4]).decode() for r in rows],
        }
    )


def _stored_events(cur, schema: str) -> dict[bytes, tuple]:
    cur.execute(
        sql.SQL(
            "SELECT convert_to(event_id, 'UTF8'), convert_to(event_type, 'UTF8'), "
            "convert_to(entity_id, 'UTF8'), convert_to(source, 'UTF8'), attributes FROM {}.events"
        ).format(sql.Identifier(schema))
    )
    return {bytes(r[0]): (bytes(r[1]), bytes(r[2]), _utf8(r[3]), r[4]) for r in cur.fetchall()}


def _expected_events(rows) -> dict[bytes, tuple]:
    return {
        r[0].encode(): (
            r[1].encode(),
            r[2].encode(),
            None if r[3] is None else r[3].encode(),
            r[4],
        )
        for r in rows
    }


# -- values as data --------------------------------------------------------------------------

_EVENT_ROWS = st.lists(
    st.tuples(
        hostile_or_long,  # event_id
        hostile_or_long,  # event_type
        hostile_or_long,  # entity_id
        st.one_of(st.none(), hostile_or_long),  # source
        st.dictionaries(hostile, st.one_of(hostile_or_long, st.none()), max_size=4),
    ),
    min_size=1,
    max_size=6,
    unique_by=lambda r: r[0],
)


# Each example loads the real database: fewer examples, no deadline.
_DATABASE_EXAMPLES = settings(
    max_examples=100,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)


@_DATABASE_EXAMPLES
@given(rows=_EVENT_ROWS)
def test_hostile_event_strings_round_trip_byte_for_byte(warehouse, rows):
    conn, schema, guard = warehouse
    before = None
    with conn, conn.cursor() as cur:
        before = tables(cur, schema, guard)
        cur.execute(sql.SQL('TRUNCATE {}.events').format(sql.Identifier(schema)))
        copy_and_merge(cur, events_target(schema), event_rows(_events_table(rows)), None)
    with conn, conn.cursor() as cur:
        assert _stored_events(cur, schema) == _expected_events(rows)
        assert tables(cur, schema, guard) == before
        assert_sentinel(cur, guard)


def _envelope(fields) -> dict:
    stage, error_type, message, payload, source, pipeline = fields
    return make_dead_letter(
        stage=stage,
        error_type=error_type,
        error_message=message,
        payload=payload,
        source=source,
        pipeline=pipeline,
        event_time='2024-05-01T12:00:00.000000Z',
    )


# Payloads: hostile text, or bytes that are not UTF-8 (kept as base64).
_PAYLOADS = st.one_of(
    hostile_or_long,
    st.binary(min_size=1, max_size=64).filter(lambda b: not _is_utf8(b)),
)


def _is_utf8(raw: bytes) -> bool:
    try:
        raw.decode('utf-8')
    except UnicodeDecodeError:
        return False
    return True


_DEAD_LETTERS = st.lists(
    st.tuples(
        hostile,
        hostile,
        hostile_or_long,
        _PAYLOADS,
        st.dictionaries(
            hostile, st.one_of(hostile_or_long, st.integers(-(2**63), 2**63 - 1)), max_size=3
        ),
        hostile,
    ).map(_envelope),
    min_size=1,
    max_size=6,
    unique_by=dead_letter_id,
)


@_DATABASE_EXAMPLES
@given(envelopes=_DEAD_LETTERS)
def test_hostile_dead_letters_round_trip_byte_for_byte(warehouse, envelopes):
    conn, schema, guard = warehouse
    target = PostgresTarget(
        'dead_letters', DEAD_LETTER_COLUMNS, ('id',), schema, update=False, json_columns=('source',)
    )
    with conn, conn.cursor() as cur:
        before = tables(cur, schema, guard)
        cur.execute(sql.SQL('TRUNCATE {}.dead_letters').format(sql.Identifier(schema)))
        copy_and_merge(cur, target, dead_letter_rows(envelopes))
    with conn, conn.cursor() as cur:
        cur.execute(
            sql.SQL(
                "SELECT id, convert_to(stage, 'UTF8'), convert_to(error_type, 'UTF8'), "
                "convert_to(error_message, 'UTF8'), payload, payload_encoding, source, "
                "convert_to(pipeline, 'UTF8') FROM {}.dead_letters"
            ).format(sql.Identifier(schema))
        )
        stored = {r[0]: r[1:] for r in cur.fetchall()}
        assert tables(cur, schema, guard) == before
        assert_sentinel(cur, guard)
    assert set(stored) == {dead_letter_id(e) for e in envelopes}
    for e in envelopes:
        stage, error_type, message, payload, encoding, source, pipeline = stored[dead_letter_id(e)]
        assert (bytes(stage), bytes(error_type), bytes(message), bytes(pipeline)) == (
            e['stage'].encode(),
            e['error_type'].encode(),
            e['error_message'].encode(),
            e['pipeline'].encode(),
        )
        assert decode_payload({'payload': payload, 'payload_encoding': encoding}) == (
            decode_payload(e)
        )
        assert source == e['source']


def test_write_to_warehouse_takes_every_hostile_string_as_data(pg_url):  # noqa: F811
    """The public PTransform, on the DirectRunner: events, aggregates and dead letters carrying
    every hostile string land as written, in one pipeline."""
    strings = [*HOSTILE, *LONG]
    rows = [(f'{i}:{s}', s or 'type', f'{s}:{i}', s, {s: s, 'k': s}) for i, s in enumerate(strings)]
    events = _events_table(rows)
    n = len(strings)
    aggregates = pa.table(
        {
            'entity_id': [r[2] for r in rows],
            'event_type': [r[1] for r in rows],
            'window_start': pa.array([DAY] * n, TIMESTAMP_TYPE),
            'window_end': pa.array([DAY + dt.timedelta(minutes=1)] * n, TIMESTAMP_TYPE),
            **{
                f.name: pa.array([1] * n, f.type) if pa.types.is_integer(f.type) else pa.nulls(n)
                for f in AGGREGATE_SCHEMA
                if f.name not in ('entity_id', 'event_type', 'window_start', 'window_end')
            },
        }
    ).cast(AGGREGATE_SCHEMA)
    envelopes = [
        _envelope(('parse', s, s, s.encode(), {'uri': s, s: s}, 'event_analytics')) for s in strings
    ]
    with sentinel_schema(pg_url) as guard:
        schema = _schema_name()
        url = with_search_path(pg_url, guard)
        conn = psycopg2.connect(pg_url)
        try:
            migrate(conn, schema)
            with TestPipeline() as p:
                outputs = {
                    'events': p | 'Events' >> beam.Create([events]),
                    'aggregates': p | 'Aggregates' >> beam.Create([aggregates]),
                    'dead_letter': p | 'DeadLetters' >> beam.Create(envelopes),
                }
                _ = outputs | WriteToWarehouse(url, schema, 'security_test')
            with conn, conn.cursor() as cur:
                assert _stored_events(cur, schema) == _expected_events(rows)
                cur.execute(
                    sql.SQL(
                        "SELECT convert_to(entity_id, 'UTF8'), convert_to(event_type, 'UTF8') "
                        'FROM {}.aggregates'
                    ).format(sql.Identifier(schema))
                )
                assert sorted((bytes(a), bytes(b)) for a, b in cur.fetchall()) == sorted(
                    (r[2].encode(), r[1].encode()) for r in rows
                )
                cur.execute(
                    sql.SQL('SELECT error_message, payload, source FROM {}.dead_letters').format(
                        sql.Identifier(schema)
                    )
                )
                assert sorted(map(tuple, cur.fetchall()), key=repr) == sorted(
                    ((e['error_message'], e['payload'], e['source']) for e in envelopes), key=repr
                )
                assert_sentinel(cur, guard)
        finally:
            with conn, conn.cursor() as cur:
                cur.execute(
                    sql.SQL('DROP SCHEMA IF EXISTS {} CASCADE').format(sql.Identifier(schema))
                )
            conn.close()


def test_the_flagship_loads_hostile_input_as_its_files_hold_it(tmp_path, pg_url):  # noqa: F811
    """End to end: hostile strings in a JSON Lines input reach the warehouse exactly as the
    run's own Parquet output holds them (after the pipeline's cleansing), and hostile malformed
    lines reach ``dead_letters`` as their dead-letter files hold them."""
    lines = []
    for i, s in enumerate([*HOSTILE, LONG[0]]):
        event = {
            'event_id': f'e{i} {s}',
            'event_type': f't {s}',
            'entity_id': f'u {s}',
            'timestamp': '2024-05-01T12:00:00Z',
            'value': i,
            'source': f's {s}',
            s or 'k': s,  # an extra field: kept in attributes
        }
        lines.append(orjson.dumps(event))
        lines.append(f'{{"event_id": "{s}'.encode())  # malformed: a parse dead letter
    (tmp_path / 'events.jsonl').write_bytes(b'\n'.join(lines) + b'\n')
    out = tmp_path / 'out'
    with sentinel_schema(pg_url) as guard:
        schema = _schema_name()
        url = with_search_path(pg_url, guard)
        argv = ['--input', str(tmp_path / 'events.jsonl'), '--output_dir', str(out)]
        argv += ['--postgres_url', url, '--pg_schema', schema, '--no_report']
        try:
            assert event_analytics.run(argv) == 0
            files = pq.read_table(out / 'events').to_pylist()
            dead = [
                json.loads(line)
                for f in (out / 'dead_letter').iterdir()
                for line in f.read_bytes().split(b'\n')  # not splitlines: U+2028 is data
                if line
            ]
            with psycopg2.connect(pg_url) as conn, conn.cursor() as cur:
                cur.execute(
                    sql.SQL(
                        'SELECT event_id, event_type, entity_id, source, attributes FROM {}.events'
                    ).format(sql.Identifier(schema))
                )
                stored = sorted(cur.fetchall(), key=repr)
                cur.execute(
                    sql.SQL('SELECT payload FROM {}.dead_letters').format(sql.Identifier(schema))
                )
                stored_dead = sorted(r[0] for r in cur.fetchall())
                assert_sentinel(cur, guard)
            conn.close()
        finally:
            with psycopg2.connect(pg_url) as conn, conn.cursor() as cur:
                cur.execute(
                    sql.SQL('DROP SCHEMA IF EXISTS {} CASCADE').format(sql.Identifier(schema))
                )
            conn.close()
    assert len(files) == len(HOSTILE) + 1 and len(dead) >= len(HOSTILE) + 1
    assert stored == sorted(
        (
            (
                r['event_id'],
                r['event_type'],
                r['entity_id'],
                r['source'],
                json.loads(r['attributes']),
            )
            for r in files
        ),
        key=repr,
    )
    assert stored_dead == sorted(e['payload'] for e in dead)


# -- identifiers from options ----------------------------------------------------------------

HOSTILE_IDENTIFIERS = (
    'x; DROP TABLE x; --',
    'x"; DROP TABLE x; --',
    'public.x',
    'x y',
    '',
    '1abc',
    '$$',
    'x\x00',
    "x'",
    'ümlaut',
    'a-b',
    'x\n',  # a regex '$' takes a final newline
    'x' * 64,  # PostgreSQL would truncate it to 63 bytes silently
)


@pytest.mark.parametrize('name', HOSTILE_IDENTIFIERS)
def test_hostile_identifiers_are_refused_where_they_are_formatted_in(pg_url, name):  # noqa: F811
    """Every builder that formats identifiers into SQL refuses a name that is not a plain
    identifier, before any SQL runs, naming it."""
    columns = ('id', 'value')
    refusals = [
        lambda: PostgresTarget(name, columns, ('id',)),
        lambda: PostgresTarget('t', columns, ('id',), schema=name),
        lambda: PostgresTarget('t', (name, 'id'), ('id',)),
        lambda: WriteToWarehouse(pg_url, name, 'p').expand(
            {'events': None, 'aggregates': None, 'dead_letter': None}
        ),
        # A dotted name is schema.table there, each part checked.
        *([] if name == 'public.x' else [lambda: ReadFromPostgres(pg_url, table=name)]),
        lambda: ReadFromPostgres(pg_url, table='t', key=name),
        lambda: WatermarkStore(pg_url, schema=name),
        lambda: WatermarkStore(pg_url, table=name),
        lambda: EventPartitions(name)(None, event_rows(_events_table([('e', 't', 'u', None, {})]))),
    ]
    conn = psycopg2.connect(pg_url)
    try:
        refusals += [
            lambda: migrate(conn, name),
            lambda: grant_readonly(conn, name, 'some_role'),
            lambda: grant_readonly(conn, 'public', name),
            lambda: JobLog(conn, name),
        ]
        for refuse in refusals:
            with pytest.raises(ValueError, match='not a plain SQL identifier') as err:
                refuse()
            assert repr(name) in str(err.value)
    finally:
        conn.close()


@pytest.mark.parametrize('name', ['x; DROP TABLE x; --', 'x"; DROP TABLE x; --', 'Up"per'])
def test_the_flagship_refuses_a_hostile_pg_schema_before_touching_the_database(
    tmp_path,
    pg_url,  # noqa: F811
    name,
):
    (tmp_path / 'e.jsonl').write_text('{}\n')
    argv = ['--input', str(tmp_path / 'e.jsonl'), '--output_dir', str(tmp_path / 'out')]
    with sentinel_schema(pg_url) as guard:
        url = with_search_path(pg_url, guard)
        with pytest.raises(cli.UsageError, match='not a plain SQL identifier'):
            event_analytics.run([*argv, '--postgres_url', url, '--pg_schema', name])
        with psycopg2.connect(pg_url) as conn, conn.cursor() as cur:
            cur.execute('SELECT count(*) FROM pg_namespace WHERE nspname = %s', (name,))
            assert cur.fetchone() == (0,)
            assert_sentinel(cur, guard)
        conn.close()


# Names PostgreSQL keeps as they are: at most 63 bytes (longer ones are truncated), not ``x``.
_NAMES = st.text(_CHARS, min_size=1, max_size=20).filter(
    lambda s: len(s.encode()) <= 63 and s != 'x'
)


@settings(max_examples=100, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    name=st.one_of(
        # Longer than 63 bytes, PostgreSQL truncates a quoted name too (ident() refuses it).
        st.sampled_from(
            [n for n in HOSTILE_IDENTIFIERS if n and '\x00' not in n and len(n.encode()) <= 63]
        ),
        _NAMES,
    )
)
def test_identifiers_composed_with_psycopg2_sql_are_quoted_exactly(warehouse, name):
    """The paths that take any name (the ops API's queries, replay, backup and restore) compose
    it with ``sql.Identifier``: a hostile name is a name, created and found as written."""
    conn, schema, guard = warehouse
    with conn, conn.cursor() as cur:
        before = tables(cur, schema, guard)
        cur.execute(
            sql.SQL('CREATE TABLE {} (v text)').format(sql.Identifier(guard, name)),
        )
        cur.execute(sql.SQL('SELECT count(*) FROM {}').format(sql.Identifier(guard, name)))
        assert cur.fetchone() == (0,)
        assert tables(cur, schema, guard) == before | {(guard, name)}
        cur.execute(sql.SQL('DROP TABLE {}').format(sql.Identifier(guard, name)))
        assert_sentinel(cur, guard)


@pytest.mark.parametrize('name', ['x"; DROP TABLE x; --', "x'; DROP TABLE x; --", 'x'])
def test_the_ops_api_queries_quote_a_hostile_schema(warehouse, name):
    """The ops API's warehouse schema (``--pg_schema``) is not checked with ``ident``: its
    queries compose it with ``sql.Identifier``, so a hostile schema only names a schema that does
    not exist (``x`` names the sentinel schema's table, not a schema, so it does not exist
    either)."""
    conn, _, guard = warehouse
    queries = [
        dead_letters_query(name, {'stage': "'; DROP TABLE x; --"}, 10, 0),
        *((q.compose(name), {p: None for p, _, _ in q.params}) for q in NAMED.values()),
    ]
    for query, params in queries:
        assert f'"{name.replace(chr(34), chr(34) * 2)}".' in query.as_string(conn)
        with conn.cursor() as cur, pytest.raises(psycopg2.errors.UndefinedTable):
            cur.execute(query, params)
        conn.rollback()
    with conn, conn.cursor() as cur:
        assert_sentinel(cur, guard)


def test_mixed_case_schemas_are_quoted_in_catalog_lookups(pg_url):  # noqa: F811
    """``ident`` takes mixed-case names, which PostgreSQL keeps only quoted. The catalog lookups
    that pass a qualified name to ``to_regclass`` quoted it too late (unquoted, it folds to lower
    case): a daily partition was never found, so every batch took the partition lock; a backup
    read the schema's migration version as 0."""
    schema = f'Mixed_{uuid.uuid4().hex[:8]}'
    conn = psycopg2.connect(pg_url)
    try:
        migrate(conn, schema)
        with conn, conn.cursor() as cur:
            ensure_event_partitions(cur, schema, [DAY.date()])
        with conn, conn.cursor() as cur:
            ensure_event_partitions(cur, schema, [DAY.date()])  # exists: no lock needed
            cur.execute(
                "SELECT count(*) FROM pg_locks WHERE locktype = 'advisory' "
                'AND pid = pg_backend_pid()'
            )
            assert cur.fetchone() == (0,)
            assert migration_version(cur, schema) == max(v for v, _, _ in _migrations())
            copy_and_merge(
                cur,
                events_target(schema),
                event_rows(_events_table([('e1', 't', 'u', None, {})])),
                EventPartitions(schema),
            )
            cur.execute(sql.SQL('SELECT event_id FROM {}.events').format(sql.Identifier(schema)))
            assert cur.fetchall() == [('e1',)]
    finally:
        conn.rollback()
        with conn, conn.cursor() as cur:
            cur.execute(sql.SQL('DROP SCHEMA IF EXISTS {} CASCADE').format(sql.Identifier(schema)))
        conn.close()


def _migrations():
    from beam_pipelines.io.warehouse_schema import MIGRATIONS

    return MIGRATIONS
