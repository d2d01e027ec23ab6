"""WriteToPostgres and the warehouse schema against the real PostgreSQL server (never mocked).

The server comes from ``BEAM_PIPELINES_TEST_PG_URL`` (default: 127.0.0.1:5432, database
``test``). Each test works in its own schema and drops it afterwards. Without a server the tests
skip, except under CI, where they fail.
"""

from __future__ import annotations

import datetime as dt
import json
import os
import subprocess
import sys
import threading
import time
import uuid

import apache_beam as beam
import numpy as np
import psycopg2
import pyarrow as pa
import pytest
from apache_beam.testing.test_pipeline import TestPipeline
from apache_beam.testing.util import assert_that
from apache_beam.testing.util import equal_to
from apache_beam.transforms.window import GlobalWindow
from apache_beam.utils.timestamp import MIN_TIMESTAMP

from beam_pipelines.generate_events import GeneratorConfig
from beam_pipelines.generate_events import generate_records
from beam_pipelines.generate_events import write_events
from beam_pipelines.io import postgres
from beam_pipelines.io.postgres import DEAD_LETTER
from beam_pipelines.io.postgres import WRITTEN
from beam_pipelines.io.postgres import PostgresTarget
from beam_pipelines.io.postgres import RetryPolicy
from beam_pipelines.io.postgres import WriteToPostgres
from beam_pipelines.io.postgres import _StraightIn
from beam_pipelines.io.postgres import _WriteFn
from beam_pipelines.io.postgres import copy_and_merge
from beam_pipelines.io.postgres import lanes_of
from beam_pipelines.io.postgres import redact
from beam_pipelines.io.warehouse_schema import MIGRATIONS
from beam_pipelines.io.warehouse_schema import migrate
from tests.conftest import service_unavailable

PG_URL = os.environ.get('BEAM_PIPELINES_TEST_PG_URL', 'postgresql://127.0.0.1:5432/test')
CANARY = 'canary-Zq81xT'


@pytest.fixture(scope='module')
def pg_url():
    try:
        psycopg2.connect(PG_URL).close()
    except psycopg2.Error as exc:
        service_unavailable(f'PostgreSQL at {redact(PG_URL)}', exc)
    return PG_URL


@pytest.fixture
def pg_schema(pg_url):
    name = f't_{uuid.uuid4().hex[:12]}'
    yield name
    with psycopg2.connect(pg_url) as conn, conn.cursor() as cur:
        cur.execute(f'DROP SCHEMA IF EXISTS "{name}" CASCADE')
    conn.close()


def query(url, sql):
    with psycopg2.connect(url) as conn, conn.cursor() as cur:
        cur.execute(sql)
        rows = cur.fetchall()
    conn.close()
    return rows


def _flagship(*args):
    return subprocess.run(
        [sys.executable, '-m', 'beam_pipelines.event_analytics', *map(str, args)],
        capture_output=True,
        text=True,
        timeout=300,
    )


def test_redact_hides_passwords():
    assert redact('postgresql://u:secret@h:5/db') == 'postgresql://u:***@h:5/db'
    assert redact('host=h password=secret dbname=d') == 'host=h password=*** dbname=d'
    assert redact('postgresql://h/db') == 'postgresql://h/db'


def test_migrate_is_idempotent(pg_url, pg_schema):
    conn = psycopg2.connect(pg_url)
    try:
        assert migrate(conn, pg_schema) == [v for v, _, _ in MIGRATIONS]
        assert migrate(conn, pg_schema) == []
    finally:
        conn.close()
    tables = {
        r[0]
        for r in query(pg_url, f"SELECT tablename FROM pg_tables WHERE schemaname = '{pg_schema}'")
    }
    assert {'events', 'aggregates', 'anomalies', 'dead_letters', 'bp_schema_migrations'} <= tables


def _readings_table(pg_url, schema):
    with psycopg2.connect(pg_url) as conn, conn.cursor() as cur:
        cur.execute(f'CREATE SCHEMA "{schema}"')
        cur.execute(
            f'CREATE TABLE "{schema}".readings (id text PRIMARY KEY, '
            'value double precision CHECK (value >= 0), note text)'
        )
    conn.close()
    return PostgresTarget('readings', ('id', 'value', 'note'), ('id',), schema)


@pytest.mark.parametrize('connections', [1, 3])
def test_copy_upsert_is_idempotent_and_refuses_only_bad_rows(pg_url, pg_schema, connections):
    target = _readings_table(pg_url, pg_schema)
    batches = [
        pa.table({'id': ['a', 'b', 'a'], 'value': [1.0, 2.0, 3.0], 'note': ['x', None, '']}),
        pa.table({'id': ['c', 'd'], 'value': [4.0, -1.0], 'note': ['q"uo,te\n', 'bad']}),
    ]
    for _ in range(2):  # a re-run must leave the same rows
        with TestPipeline() as p:
            result = (
                p
                | beam.Create(batches)
                | WriteToPostgres(pg_url, target, 'test', connections=connections)
            )
            refused = result[DEAD_LETTER] | beam.Map(
                lambda d: (d['stage'], d['error_type'], json.loads(d['payload'])['id'])
            )
            assert_that(refused, equal_to([('sink', 'postgres_rejected', 'd')]), label='Refused')
            total = result[WRITTEN] | beam.CombineGlobally(sum)
            assert_that(total, equal_to([3]), label='Written')
    rows = query(pg_url, f'SELECT id, value, note FROM "{pg_schema}".readings ORDER BY id')
    # In-batch duplicates: the last copy wins; empty string and NULL stay distinct.
    assert rows == [('a', 3.0, ''), ('b', 2.0, None), ('c', 4.0, 'q"uo,te\n')]


def test_a_key_keeps_its_order_across_connections(pg_url, pg_schema):
    """Each batch rewrites every key; three connections load them at once, yet a key always
    takes the same one, so the last batch's value is the one that stays, even though the
    first connection is slow (a key that moved between connections would end on an older
    value)."""
    target = _readings_table(pg_url, pg_schema)
    fn = _WriteFn(pg_url, target, 'test', RetryPolicy(), _slow_first_lane, connections=3)
    fn.setup()
    ids = [f'k{i}' for i in range(300)]
    try:
        fn.start_bundle()
        out = []
        for batch in range(8):
            table = pa.table({'id': ids, 'value': [float(batch)] * 300, 'note': ['n'] * 300})
            out += fn.process(table, GlobalWindow(), MIN_TIMESTAMP)
        out += fn.finish_bundle()
    finally:
        fn.teardown()
    assert sum(o.value for o in out) == 8 * 300
    assert query(pg_url, f'SELECT value, count(*) FROM "{pg_schema}".readings GROUP BY 1') == [
        (7.0, 300)
    ]


def _slow_first_lane(cur, table):
    if threading.current_thread().name.startswith('postgres-readings-0'):
        time.sleep(0.05)


def test_a_connection_waits_after_a_refused_straight_in(pg_url, pg_schema, monkeypatch):
    """After stored keys refuse a straight-in COPY, the next load merges without trying it."""
    tries = []
    straight_in = postgres._copy_straight_in
    monkeypatch.setattr(
        postgres, '_copy_straight_in', lambda *a: tries.append(1) or straight_in(*a)
    )
    target = _readings_table(pg_url, pg_schema)
    fn = _WriteFn(pg_url, target, 'test', RetryPolicy(), None, connections=1)
    fn.setup()
    try:
        fn.start_bundle()
        for ids in (['a'], ['a'], ['b'], ['c']):  # new, stored (refused), waits, tries again
            table = pa.table({'id': ids, 'value': [1.0], 'note': ['n']})
            [*fn.process(table, GlobalWindow(), MIN_TIMESTAMP), *fn.finish_bundle()]
    finally:
        fn.teardown()
    assert len(tries) == 3
    assert query(pg_url, f'SELECT count(*) FROM "{pg_schema}".readings') == [(3,)]


def test_new_keys_go_straight_in_and_stored_ones_are_merged(pg_url, pg_schema):
    target = _readings_table(pg_url, pg_schema)
    first = pa.table({'id': ['a', 'b'], 'value': [1.0, 2.0], 'note': ['x', 'y']})
    mixed = pa.table({'id': ['c', 'a'], 'value': [3.0, 9.0], 'note': ['z', None]})
    went = []
    with psycopg2.connect(pg_url) as conn, conn.cursor() as cur:
        for table in (first, mixed):
            went.append(copy_and_merge(cur, target, table, direct=True))
    conn.close()
    assert went == [True, False]  # 'a' was stored: the try is undone, the merge updates it
    rows = query(pg_url, f'SELECT id, value, note FROM "{pg_schema}".readings ORDER BY id')
    assert rows == [('a', 9.0, None), ('b', 2.0, 'y'), ('c', 3.0, 'z')]


def test_after_a_refusal_the_straight_try_backs_off():
    policy, tries = _StraightIn(), []
    for went_in in [False] * 4 + [True] + [False]:
        while not policy.worth_trying():
            tries.append('-')
        tries.append('try')
        policy.record(went_in)
    # Refused: wait 1, 2, 4 batches; one that went in: back to trying every batch.
    assert ' '.join(tries) == 'try - try - - try - - - - try - - - - - - - - try try'


def test_lanes_follow_the_key_alone():
    """A row's lane depends on its key's values only, whatever else the batch holds; the key's
    numeric or temporal columns decide it when it has any, else its strings (any type)."""
    times = pa.array([10**12 * i for i in range(1000)], pa.timestamp('us', tz='UTC'))
    ids = pa.array([f'e{i}' for i in range(1000)])
    table = pa.table({'event_id': ids, 'event_time': times, 'other': list(range(1000))})
    lanes = lanes_of(table, ('event_id', 'event_time'), 4)
    assert sorted(set(lanes.tolist())) == [0, 1, 2, 3]
    assert min(np.bincount(lanes)) > 150  # spread, not all on one connection
    part = table.take([5, 900, 17]).set_column(2, 'other', pa.array([0, 0, 0]))
    assert lanes_of(part, ('event_id', 'event_time'), 4).tolist() == lanes[[5, 900, 17]].tolist()
    halves = pa.table({'v': [0.5 * i for i in range(1000)]})  # low bits all zero
    assert min(np.bincount(lanes_of(halves, ('v',), 2))) > 400
    decimals = pa.table({'d': pa.array([1, 2, 1, None], pa.decimal128(10, 2))})
    d = lanes_of(decimals, ('d',), 8)
    assert d[0] == d[2] and all(0 <= x < 8 for x in d)
    window = dt.datetime(2024, 5, 1, tzinfo=dt.UTC)
    one_window = pa.table(  # a pane firing: many keys, one window
        {
            'entity_id': [f'u{i}' for i in range(2000)],
            'event_type': ['click'] * 2000,
            'window_start': pa.array([window] * 2000, pa.timestamp('us', 'UTC')),
            'window_end': pa.array([window] * 2000, pa.timestamp('us', 'UTC')),
        }
    )
    key = ('entity_id', 'event_type', 'window_start', 'window_end')
    assert min(np.bincount(lanes_of(one_window, key, 2))) > 800
    as_ms = one_window.set_column(
        2, 'window_start', one_window.column('window_start').cast(pa.timestamp('ms', 'UTC'))
    )
    assert lanes_of(as_ms, key, 8).tolist() == lanes_of(one_window, key, 8).tolist()
    with pytest.raises(ValueError, match='at least 1'):
        _WriteFn(PG_URL, PostgresTarget('t', ('a',), ('a',)), 'test', RetryPolicy(), None, 0)


def test_lost_connection_is_retried(pg_url, pg_schema):
    target = _readings_table(pg_url, pg_schema)
    fn = _WriteFn(pg_url, target, 'test', RetryPolicy(attempts=3, initial_delay_secs=0.05), None)
    fn.setup()
    try:
        assert fn._lanes[0]._conn is None  # opened by the first load, inside the retries
        fn.start_bundle()
        first = pa.table({'id': ['r0'], 'value': [0.0], 'note': ['n']})
        [*fn.process(first, GlobalWindow(), MIN_TIMESTAMP), *fn.finish_bundle()]
        query(pg_url, f'SELECT pg_terminate_backend({fn._lanes[0]._conn.get_backend_pid()})')
        fn.start_bundle()
        table = pa.table({'id': ['r1'], 'value': [1.0], 'note': ['n']})
        out = [*fn.process(table, GlobalWindow(), MIN_TIMESTAMP), *fn.finish_bundle()]
    finally:
        fn.teardown()
    # The load runs on the sink's own thread; its output leaves with the bundle's end.
    assert [(o.value, o.windows) for o in out] == [(1, (GlobalWindow(),))]
    assert query(pg_url, f'SELECT count(*) FROM "{pg_schema}".readings') == [(2,)]


def test_a_database_down_at_setup_fails_the_load_after_the_retries_not_the_setup(pg_schema):
    target = PostgresTarget('readings', ('id', 'value', 'note'), ('id',), schema=pg_schema)
    url = 'postgresql://nobody:secret-pw@127.0.0.1:1/none'  # nothing listens on port 1
    fn = _WriteFn(url, target, 'test', RetryPolicy(attempts=2, initial_delay_secs=0.01), None)
    fn.setup()  # a worker set up while the database is away: no error yet
    try:
        fn.start_bundle()
        table = pa.table({'id': ['r1'], 'value': [1.0], 'note': ['n']})
        with pytest.raises(psycopg2.OperationalError, match='giving up on readings after 2') as e:
            [*fn.process(table, GlobalWindow(), MIN_TIMESTAMP), *fn.finish_bundle()]
        assert 'secret-pw' not in str(e.value)
    finally:
        fn.teardown()


def test_flagship_loads_the_warehouse_idempotently_without_leaking_credentials(
    tmp_path, pg_url, pg_schema
):
    records, _ = generate_records(GeneratorConfig(events=3000, seed=21, entities=50))
    path = tmp_path / 'events.jsonl'
    write_events(records, str(path), 'jsonl')
    url = PG_URL.replace('://', f'://root:{CANARY}@', 1) if '@' not in PG_URL else PG_URL
    out = tmp_path / 'out'
    runs = [
        _flagship(
            '--input', path, '--output_dir', out, '--postgres_url', url, '--pg_schema', pg_schema
        )
        for _ in range(2)
    ]
    for result in runs:
        assert result.returncode == 0, result.stderr
        assert CANARY not in result.stdout + result.stderr
    summary_text = (out / 'run_summary.json').read_text()
    assert CANARY not in summary_text
    counts = json.loads(summary_text)['counts']
    assert counts['postgres_events'] == counts['valid']
    assert counts['postgres_aggregates'] == counts['aggregates']
    assert counts['sink_dead_letter'] == 0
    s = f'"{pg_schema}"'
    assert query(pg_url, f'SELECT count(*), count(DISTINCT event_id) FROM {s}.events') == [
        (counts['valid'], counts['valid'])
    ]
    assert query(pg_url, f'SELECT count(*) FROM {s}.aggregates') == [(counts['aggregates'],)]
    assert query(pg_url, f'SELECT count(*) FROM {s}.dead_letters') == [(counts['dead_letter'],)]
    leaked = query(
        pg_url,
        f'SELECT count(*) FROM {s}.dead_letters WHERE '
        f"payload LIKE '%{CANARY}%' OR error_message LIKE '%{CANARY}%'",
    )
    assert leaked == [(0,)]
    for f in out.rglob('*'):
        if f.is_file():
            assert CANARY.encode() not in f.read_bytes(), f


def test_connection_failures_do_not_leak_the_password(tmp_path):
    path = tmp_path / 'e.jsonl'
    path.write_text('{}\n')
    result = _flagship(
        '--input',
        path,
        '--output_dir',
        tmp_path / 'out',
        '--postgres_url',
        f'postgresql://root:{CANARY}@127.0.0.1:1/test',
    )
    assert result.returncode == 2
    assert CANARY not in result.stdout + result.stderr
    lines = result.stderr.strip().splitlines()
    # The retries at start (a database restarting is not a reason to fail), one line each,
    # then the error, whole on one line.
    *retries, error = lines
    assert retries and all('transient error on postgresql://root:***@' in r for r in retries)
    assert 'postgresql://root:***@127.0.0.1:1/test' in error
    assert 'Connection refused' in error
