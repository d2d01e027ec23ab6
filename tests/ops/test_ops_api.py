"""The ops API against a real warehouse loaded by a flagship run: bearer tokens, runs, dead
letters browsed and filtered with bound parameters, allow-listed queries through a read-only
role, one-line JSON errors; and schemathesis against its own OpenAPI document."""

from __future__ import annotations

import json
import os
import sys
import urllib.error
import urllib.parse
import urllib.request
import uuid

import psycopg2
import pytest
import schemathesis
from hypothesis import HealthCheck
from hypothesis import given
from hypothesis import settings

from beam_pipelines import event_analytics
from beam_pipelines import warehouse
from beam_pipelines.generate_events import GeneratorConfig
from beam_pipelines.generate_events import generate_records
from beam_pipelines.generate_events import write_events
from tests.conftest import local_server
from tests.io.test_postgres import PG_URL
from tests.io.test_postgres import pg_url  # noqa: F401  (fixture)

pytestmark = pytest.mark.e2e

TOKEN = 'ops-token-' + 'x' * 16
AUTH = {'Authorization': f'Bearer {TOKEN}'}


@pytest.fixture(scope='module')
def loaded(tmp_path_factory, pg_url):  # noqa: F811
    tmp = tmp_path_factory.mktemp('ops')
    schema, role = f't_{uuid.uuid4().hex[:12]}', f'bp_reader_{uuid.uuid4().hex[:8]}'
    records, _ = generate_records(GeneratorConfig(events=2000, seed=21, entities=12))
    write_events(records, str(tmp / 'events.jsonl'), 'jsonl')
    out = tmp / 'out-1'
    argv = ['--input', str(tmp / 'events.jsonl'), '--output_dir', str(out), '--quality']
    argv += ['--postgres_url', pg_url, '--pg_schema', schema, '--detect_anomalies']
    assert event_analytics.run(argv) == 0
    assert (
        warehouse.main(
            ['grant-readonly', '--postgres_url', pg_url, '--pg_schema', schema, '--role', role]
        )
        == 0
    )
    host = pg_url.split('@')[-1].split('//')[-1]
    reader = f'postgresql://{role}@{host}' if '/' in host else f'postgresql://{role}@127.0.0.1/test'
    try:
        yield {
            'schema': schema,
            'role': role,
            'reader': reader,
            'root': str(tmp / 'out-*'),
            'out': out,
        }
    finally:
        with psycopg2.connect(pg_url) as conn, conn.cursor() as cur:
            cur.execute(f'DROP SCHEMA IF EXISTS "{schema}" CASCADE')
            cur.execute(f'DROP OWNED BY "{role}"')
            cur.execute(f'DROP ROLE IF EXISTS "{role}"')
        conn.close()


@pytest.fixture(scope='module')
def service(loaded):
    env = {**os.environ, 'BEAM_PIPELINES_OPS_TOKENS': TOKEN}
    args = ['--runs_root', loaded['root'], '--postgres_url', loaded['reader']]
    args += ['--pg_schema', loaded['schema'], '--replay_postgres_url', PG_URL]
    module = 'beam_pipelines.ops'
    with local_server(
        lambda port: [sys.executable, '-m', module, 'serve', '--port', str(port), *args], env=env
    ) as port:
        yield f'http://127.0.0.1:{port}'


def get(url, headers=None):
    request = urllib.request.Request(url, headers=headers or {})
    try:
        with urllib.request.urlopen(request, timeout=30) as r:
            return r.status, json.loads(r.read())
    except urllib.error.HTTPError as e:
        return e.code, json.loads(e.read())


def test_health_needs_no_token_and_everything_else_does(service):
    assert get(f'{service}/health') == (200, {'status': 'ok', 'postgres': 'ok'})
    for path in ('/runs', '/dead-letters', '/queries', '/metrics'):
        status, body = get(f'{service}{path}') if path != '/metrics' else (None, None)
        if path == '/metrics':
            with pytest.raises(urllib.error.HTTPError) as e:
                urllib.request.urlopen(f'{service}/metrics', timeout=30)
            assert e.value.code == 401
            continue
        assert (status, body) == (401, {'error': 'missing or wrong bearer token'})
    wrong = {'Authorization': 'Bearer ' + 'y' * 26}
    assert get(f'{service}/runs', wrong)[0] == 401


def test_runs_list_the_summaries(service, loaded):
    status, body = get(f'{service}/runs', AUTH)
    assert status == 200
    (run,) = body['runs']
    summary = json.loads((loaded['out'] / 'run_summary.json').read_text())
    assert run['counts'] == summary['counts'] and run['balanced']
    assert run['report'].endswith('report.html')
    assert get(f'{service}/runs/{run["id"]}', AUTH) == (200, run)
    assert get(f'{service}/runs/nope', AUTH)[0] == 404


def test_dead_letters_are_filtered_and_paged(service, loaded, pg_url):  # noqa: F811
    with psycopg2.connect(pg_url) as conn, conn.cursor() as cur:
        cur.execute(
            f'SELECT error_type, count(*) FROM "{loaded["schema"]}".dead_letters GROUP BY 1'
        )
        by_type = dict(cur.fetchall())
    conn.close()
    status, body = get(f'{service}/dead-letters?error_type=json_decode_error&limit=1000', AUTH)
    assert status == 200 and len(body['dead_letters']) == by_type['json_decode_error']
    assert {d['error_type'] for d in body['dead_letters']} == {'json_decode_error'}
    first = get(f'{service}/dead-letters?limit=5', AUTH)[1]['dead_letters']
    second = get(f'{service}/dead-letters?limit=5&offset=5', AUTH)[1]['dead_letters']
    assert len(first) == 5 and not {d['id'] for d in first} & {d['id'] for d in second}
    # Values are bound parameters: an injection attempt is just a type that matches nothing.
    hostile = urllib.parse.quote("x' OR '1'='1; DROP TABLE dead_letters; --")
    assert get(f'{service}/dead-letters?error_type={hostile}', AUTH) == (200, {'dead_letters': []})
    assert get(f'{service}/dead-letters?since=2000-01-01T00:00:00Z&limit=1', AUTH)[0] == 200


def test_bad_parameters_are_one_line_errors(service):
    for query in ('limit=0', 'limit=abc', 'offset=-1', 'since=yesterday'):
        status, body = get(f'{service}/dead-letters?{query}', AUTH)
        assert status == 400 and set(body) == {'error'} and '\n' not in body['error'], query
    assert get(f'{service}/queries/entity_aggregates?entity_id=a', AUTH)[0] == 400
    assert get(f'{service}/queries/drop_everything', AUTH)[0] == 404


def test_named_queries_run_read_only(service, loaded, pg_url):  # noqa: F811
    status, body = get(f'{service}/queries/dead_letters_by_type?since=2000-01-01T00:00:00Z', AUTH)
    assert status == 200 and sum(r['count'] for r in body['rows']) > 0
    assert get(f'{service}/queries/quality_by_source', AUTH)[1]['rows'][0]['score'] > 0
    # The service's role reads in read-only transactions, and has no right to write anyway.
    conn = psycopg2.connect(loaded['reader'])
    conn.autocommit = True
    delete = f'DELETE FROM "{loaded["schema"]}".dead_letters'
    try:
        with pytest.raises(psycopg2.errors.ReadOnlySqlTransaction), conn.cursor() as cur:
            cur.execute(delete)
        with conn.cursor() as cur:
            cur.execute('SET default_transaction_read_only = off')
        with pytest.raises(psycopg2.errors.InsufficientPrivilege), conn.cursor() as cur:
            cur.execute(delete)
    finally:
        conn.close()


def test_the_service_keeps_its_openapi_contract(service):
    # Every operation of the document, with inputs generated from it by schemathesis (through
    # hypothesis directly: its pytest plugin does not run on this pytest): no server error,
    # every response as documented.
    schema = schemathesis.openapi.from_url(f'{service}/openapi.json')
    operations = [result.ok() for result in schema.get_all_operations()]
    assert len(operations) >= 10

    for operation in operations:

        @given(case=operation.as_strategy())
        @settings(max_examples=15, deadline=None, suppress_health_check=list(HealthCheck))
        def check(case):
            case.call_and_validate(headers=AUTH)

        check()


def post(url, body, headers=AUTH):
    request = urllib.request.Request(
        url, data=json.dumps(body).encode(), headers={**headers, 'Content-Type': 'application/json'}
    )
    try:
        with urllib.request.urlopen(request, timeout=120) as r:
            return r.status, json.loads(r.read())
    except urllib.error.HTTPError as e:
        return e.code, json.loads(e.read())


def test_replay_after_a_schema_fix_recovers_what_now_passes(tmp_path, pg_url):  # noqa: F811
    # A too strict schema sent every event to the dead letters; the fixed (default) one takes
    # those that are fine. A run with the default schema says which those are.
    records, _ = generate_records(GeneratorConfig(events=1500, seed=31, entities=8))
    write_events(records, str(tmp_path / 'e.jsonl'), 'jsonl')
    reference = tmp_path / 'reference'
    argv = ['--input', str(tmp_path / 'e.jsonl'), '--num_shards', '2']
    assert event_analytics.run([*argv, '--output_dir', str(reference)]) == 0
    expected = json.loads((reference / 'run_summary.json').read_text())['counts']
    schema = f't_{uuid.uuid4().hex[:12]}'
    strict = [*argv, '--output_dir', str(tmp_path / 'strict'), '--schema', 'tests.schemas:Reading']
    assert event_analytics.run([*strict, '--postgres_url', pg_url, '--pg_schema', schema]) == 0

    def db(query):
        with psycopg2.connect(pg_url) as conn, conn.cursor() as cur:
            cur.execute(query)
            rows = cur.fetchall()
        conn.close()
        return rows

    env = {**os.environ, 'BEAM_PIPELINES_OPS_TOKENS': TOKEN}
    args = ['--runs_root', str(tmp_path / 'none'), '--pg_schema', schema]
    args += ['--replay_postgres_url', pg_url, '--postgres_url', pg_url]
    try:
        with local_server(
            lambda port: [
                sys.executable,
                '-m',
                'beam_pipelines.ops',
                'serve',
                '--port',
                str(port),
                *args,
            ],
            env=env,
        ) as port:
            url = f'http://127.0.0.1:{port}/dead-letters/replay'
            assert post(url, {'filter': {'stage': 'validate'}}, headers={})[0] == 401
            assert post(url, {'limit': 5})[0] == 400  # neither ids nor a filter
            status, result = post(url, {'filter': {'stage': 'validate'}, 'limit': 10000})
            assert status == 200, result
            assert len(result['recovered']) == expected['valid'] + expected['duplicates']
            assert db(f'SELECT count(*) FROM "{schema}".events') == [(expected['valid'],)]
            left = db(f'SELECT attempts, count(*) FROM "{schema}".dead_letters GROUP BY 1')
            failed = len(result['failed_again'])
            assert (
                failed
                == expected['dead_letter']
                - db(f'SELECT count(*) FROM "{schema}".dead_letters WHERE stage = \'parse\'')[0][0]
            )
            assert dict(left).get(2, 0) == failed  # those that failed again, counted
            # Malformed JSON cannot be fixed by a schema: it fails again, and says so.
            status, again = post(url, {'filter': {'stage': 'parse'}, 'limit': 10000})
            assert status == 200 and again['recovered'] == [] and again['failed_again']
            assert {f['error_type'] for f in again['failed_again']} <= {
                'json_decode_error',
                'invalid_utf8',
                'not_an_object',
            }
    finally:
        db(f'DROP SCHEMA IF EXISTS "{schema}" CASCADE; SELECT 1')
