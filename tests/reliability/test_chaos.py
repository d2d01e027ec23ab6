"""Fault injection on private servers: each fault type once, end to end (``make chaos`` runs
20 of each), and the checks it relies on, shown able to fail."""

from __future__ import annotations

import json
import shutil

import psycopg2
import pytest
import redis

from beam_pipelines.reliability import chaos
from beam_pipelines.reliability.servers import PrivatePostgres
from beam_pipelines.reliability.servers import PrivateRedis
from tests.conftest import service_unavailable


@pytest.fixture(scope='module')
def servers():
    if shutil.which('redis-server') is None:
        service_unavailable('redis-server', FileNotFoundError('redis-server'))
    try:
        with PrivatePostgres() as pg, PrivateRedis() as rd:
            yield pg, rd
    except (RuntimeError, OSError) as exc:  # no PostgreSQL server binaries here
        service_unavailable('a private PostgreSQL', exc)


def test_every_fault_type_ends_complete_with_nothing_lost_or_duplicated(tmp_path):
    out = tmp_path / 'chaos'
    assert chaos.main(['--faults', '1', '--events', '4000', '--out', str(out)]) == 0
    report = json.loads((out / 'chaos.json').read_text())
    assert [r['fault'] for r in report['summary']] == list(chaos.FAULTS)
    for row in report['summary']:
        assert chaos.passed(row), row
    # The injected bundle failures and the kill fail the first run, loudly; a rerun completes.
    for kind in ('bundle_failure_pg', 'bundle_failure_redis', 'sigkill'):
        (run,) = report['runs'][kind]
        assert run['first_exit'] != 0 and run['reruns'] >= 1 and run['final_exit'] == 0, run


def test_the_state_checks_see_a_changed_row_and_a_missing_key(servers):
    pg, rd = servers
    with psycopg2.connect(pg.url) as conn, conn.cursor() as cur:
        for schema in ('a', 'b'):
            cur.execute(f'CREATE SCHEMA {schema}')
            cur.execute(
                f'CREATE TABLE {schema}.events (event_id text, n int, loaded_at timestamptz '
                'DEFAULT clock_timestamp())'
            )
            cur.execute(f"INSERT INTO {schema}.events (event_id, n) VALUES ('e1', 1), ('e2', 2)")
    assert chaos.pg_state_diff(pg.url, 'a', 'b') == 0  # load times differ: not counted
    with psycopg2.connect(pg.url) as conn, conn.cursor() as cur:
        cur.execute("UPDATE b.events SET n = 3 WHERE event_id = 'e2'")
        cur.execute("INSERT INTO b.events (event_id, n) VALUES ('e1', 1)")
    assert chaos.pg_state_diff(pg.url, 'a', 'b') == 3  # e2 either way, and e1's copy
    client = redis.Redis.from_url(rd.url)
    client.set('x:k1', 'v')
    client.hset('x:k2', mapping={'f': 1})
    reference = chaos.redis_dump(rd.url, 'x:')
    assert chaos.redis_drift(reference, chaos.redis_dump(rd.url, 'x:')) == 0
    client.delete('x:k2')
    client.set('x:k1', 'w')
    assert chaos.redis_drift(reference, chaos.redis_dump(rd.url, 'x:')) == 2


def test_a_redis_restart_changes_the_run_id_the_launcher_checks(servers):
    from beam_pipelines.io.redis_sink import server_run_id

    _, rd = servers
    before = server_run_id(rd.url)
    assert server_run_id(rd.url) == before
    rd.kill()
    rd.start()
    assert server_run_id(rd.url) != before
