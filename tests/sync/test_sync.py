"""PostgreSQL to PostgreSQL syncs against the real server: convergence, idempotent re-runs,
failed rows, retries after a killed connection, and the sync_jobs record."""

from __future__ import annotations

import datetime as dt
import itertools
import json
import time

import pyarrow as pa
import pyarrow.compute as pc
import pytest

from beam_pipelines import cli
from beam_pipelines.sync import Mapping
from beam_pipelines.sync import SyncConfig
from beam_pipelines.sync import sync_once
from beam_pipelines.sync.launcher import PROG
from beam_pipelines.sync.launcher import run
from beam_pipelines.sync.retry import RetryPolicy
from tests.sync.conftest import load_events
from tests.sync.conftest import sql
from tests.sync.conftest import sync

CANARY = 'canary-Sy7vQ2'
FAST_RETRY = RetryPolicy(attempts=4, initial_delay_secs=0.05)


def rows(url: str, table: str, order: str) -> list[tuple]:
    return sql(url, f'SELECT * FROM {table} ORDER BY {order}')


def jobs(url: str, schema: str, name: str) -> list[dict]:
    found = sql(
        url,
        'SELECT row_to_json(j) FROM (SELECT * FROM '
        f'"{schema}".sync_jobs WHERE name = %s ORDER BY started_at) j',
        (name,),
    )
    return [r[0] for r in found]


def _aggregates_to_pg(name, warehouse, dest_schema, url, **options) -> SyncConfig:
    return SyncConfig(
        name=name,
        source_url=url,
        source_schema=warehouse,
        source_table='aggregates',
        dest_url=url,
        dest_schema=dest_schema,
        create_table=True,
        **options,
    )


def _sync_until_caught_up(args, url: str, src: str, schema: str, name: str) -> None:
    """Runs the sync until its watermark passes the newest source row. A run leaves out what a
    transaction open elsewhere might still write (by design); other tests on the shared server
    can hold such transactions, so catching up may take more than one run."""
    newest = sql(url, f'SELECT max(loaded_at) FROM {src}')[0][0]
    for _ in range(20):
        assert sync(*args) == 0
        if dt.datetime.fromisoformat(jobs(url, schema, name)[-1]['watermark_to']) >= newest:
            return
        time.sleep(0.2)
    pytest.fail('the sync did not catch up within 20 runs')


def test_events_watermark_sync_converges_and_reruns_change_nothing(
    tmp_path, pg_url, warehouse, dest_schema
):
    name = f'events_{dest_schema}'
    args = [
        '--name', name, '--source_url', pg_url, '--source_schema', warehouse,
        '--source_table', 'events', '--dest_url', pg_url, '--dest_schema', dest_schema,
        '--create_table', '--batch_rows', 700,
    ]  # fmt: skip
    src, dst, order = f'"{warehouse}".events', f'"{dest_schema}".events', 'event_id, event_time'
    _sync_until_caught_up(args, pg_url, src, warehouse, name)
    first = rows(pg_url, src, order)
    assert len(first) > 1000 and rows(pg_url, dst, order) == first
    done = len(jobs(pg_url, warehouse, name))
    watermark = jobs(pg_url, warehouse, name)[-1]['watermark_to']

    load_events(tmp_path, pg_url, warehouse, 600, seed=6)  # new rows
    sql(pg_url, f"UPDATE {src} SET value = -1, source = 'edited' WHERE entity_id LIKE '%%1'")
    _sync_until_caught_up(args, pg_url, src, warehouse, name)
    second = rows(pg_url, src, order)
    assert len(second) > len(first)
    assert rows(pg_url, dst, order) == second  # row for row, loaded_at included

    assert sync(*args) == 0  # nothing new
    assert rows(pg_url, dst, order) == second

    runs = jobs(pg_url, warehouse, name)
    assert {r['status'] for r in runs} == {'succeeded'}
    assert all(r['rows_read'] == r['rows_written'] and r['rows_failed'] == 0 for r in runs)
    assert sum(r['rows_read'] for r in runs[:done]) == len(first)
    changed = sql(pg_url, f'SELECT count(*) FROM {src} WHERE loaded_at > %s', (watermark,))[0][0]
    assert changed > len(second) - len(first)  # the new rows and the edited ones
    assert sum(r['rows_read'] for r in runs[done:]) == changed
    assert runs[0]['watermark_from'] is None
    for before, after in itertools.pairwise(runs):
        assert after['watermark_from'] == before['watermark_to']
    assert (runs[-1]['rows_read'], runs[-1]['rows_written'], runs[-1]['lag_secs']) == (0, 0, 0)
    assert 0 < max(r['lag_secs'] for r in runs[done:]) < 300
    assert runs[0]['mode'] == 'watermark' and runs[0]['finished_at'] >= runs[0]['started_at']


def test_rejected_rows_are_counted_and_dead_lettered(pg_url, warehouse, dest_schema):
    name = f'rejects_{dest_schema}'
    src = f'"{warehouse}".aggregates'
    sql(pg_url, f'CREATE SCHEMA "{dest_schema}"')
    # The destination refuses big windows: a data error of those rows only.
    sql(
        pg_url,
        f'CREATE TABLE "{dest_schema}".aggregates (LIKE {src}, CHECK (count < 3), '
        'PRIMARY KEY (entity_id, event_type, window_start, window_end))',
    )
    code = sync(
        '--name', name, '--source_url', pg_url, '--source_schema', warehouse,
        '--source_table', 'aggregates', '--dest_url', pg_url, '--dest_schema', dest_schema,
        '--transform', 'tests.sync.transforms:reject_logins', '--batch_rows', 300,
    )  # fmt: skip
    assert code == 0
    (job,) = jobs(pg_url, warehouse, name)
    logins, big, total = sql(
        pg_url,
        "SELECT count(*) FILTER (WHERE event_type = 'login'), "
        "count(*) FILTER (WHERE event_type <> 'login' AND count >= 3), count(*) FROM " + src,
    )[0]
    assert logins > 0 and big > 0
    assert job['rows_read'] == total == job['rows_written'] + job['rows_failed']
    assert job['rows_failed'] == logins + big
    dead = sql(
        pg_url,
        f'SELECT error_type, payload, stage, source FROM "{warehouse}".dead_letters '
        'WHERE pipeline = %s',
        (f'sync:{name}',),
    )
    kinds = [d[0] for d in dead]
    assert kinds.count('transform_rejected') == logins
    assert kinds.count('destination_rejected') == big
    assert {d[2] for d in dead} == {'sync'} and all(d[3]['sync'] == name for d in dead)
    payloads = [json.loads(d[1]) for d in dead if d[0] == 'destination_rejected']
    assert all(p['count'] >= 3 for p in payloads)
    assert sql(pg_url, f'SELECT count(*) FROM "{dest_schema}".aggregates')[0][0] == (
        total - logins - big
    )


def test_a_transform_that_raises_fails_only_the_rows_it_raises_on(
    tmp_path, pg_url, warehouse, dest_schema
):
    def no_purchases(table: pa.Table) -> pa.Table:
        if pc.any(pc.equal(table.column('event_type'), 'purchase')).as_py():
            raise ValueError('purchases are private')
        return table

    dead_file = tmp_path / 'dead.jsonl'
    job = sync_once(
        _aggregates_to_pg(
            f'raises_{dest_schema}',
            warehouse,
            dest_schema,
            pg_url,
            mapping=Mapping(transform=no_purchases),
            dead_letter_file=str(dead_file),
        )
    )
    purchases = sql(
        pg_url,
        f'SELECT count(*) FROM "{warehouse}".aggregates WHERE event_type = \'purchase\'',
    )[0][0]
    assert job.rows_failed == purchases > 0
    assert job.rows_read == job.rows_written + job.rows_failed
    dead = [json.loads(line) for line in dead_file.read_text().splitlines()]
    assert len(dead) == purchases
    assert {d['error_type'] for d in dead} == {'transform_raised'}
    assert all('purchases are private' in d['error_message'] for d in dead)


def test_a_killed_destination_connection_is_retried_and_the_sync_converges(
    pg_url, warehouse, dest_schema
):
    name = f'kill_{dest_schema}'
    batches = []

    def kill_destination_on_second_batch(table: pa.Table) -> pa.Table:
        batches.append(table.num_rows)
        if len(batches) == 2:
            killed = sql(
                pg_url,
                'SELECT pg_terminate_backend(pid) FROM pg_stat_activity '
                'WHERE application_name = %s',
                (f'bp_sync:{name}:dest',),
            )
            assert killed == [(True,)]
        return table

    job = sync_once(
        _aggregates_to_pg(
            name,
            warehouse,
            dest_schema,
            pg_url,
            batch_rows=200,
            mapping=Mapping(transform=kill_destination_on_second_batch),
            retry=FAST_RETRY,
        )
    )
    assert len(batches) > 2 and job.retries >= 1
    assert job.rows_written == job.rows_read and job.rows_failed == 0
    order = 'entity_id, event_type, window_start'
    assert rows(pg_url, f'"{dest_schema}".aggregates', order) == rows(
        pg_url, f'"{warehouse}".aggregates', order
    )


def test_a_failed_run_is_recorded_with_masked_urls_and_commits_nothing(
    pg_url, warehouse, dest_schema
):
    if '@' in pg_url:
        pytest.skip('the canary needs a URL without credentials')
    url = pg_url.replace('://', f'://root:{CANARY}@', 1)  # trust auth ignores the password
    name = f'fails_{dest_schema}'

    def kill_destination(table: pa.Table) -> pa.Table:
        sql(
            pg_url,
            'SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE application_name = %s',
            (f'bp_sync:{name}:dest',),
        )
        return table

    flaky = _aggregates_to_pg(
        name,
        warehouse,
        dest_schema,
        url=url,
        mapping=Mapping(transform=kill_destination),
        retry=RetryPolicy(attempts=1),
    )
    with pytest.raises(Exception, match=r'terminat|closed'):
        sync_once(flaky)
    assert sync_once(_aggregates_to_pg(name, warehouse, dest_schema, url=url)).status == 'succeeded'
    failed, succeeded = jobs(pg_url, warehouse, name)
    assert failed['status'] == 'failed' and failed['watermark_to'] is None and failed['error']
    # The failed run moved nothing forward: the next one read everything again.
    assert succeeded['watermark_from'] is None
    assert (
        succeeded['rows_read']
        == sql(pg_url, f'SELECT count(*) FROM "{warehouse}".aggregates')[0][0]
    )
    text = json.dumps([failed, succeeded])
    assert CANARY not in text and 'root:***@' in failed['source'] + failed['destination']


def test_usage_errors_exit_2(pg_url, warehouse, dest_schema, capsys):
    common = ['--source_url', pg_url, '--source_schema', warehouse, '--dest_url', pg_url]

    def main(*args):
        return cli.main(PROG, run, [str(a) for a in args])

    assert main('--name', 'x', *common, '--source_table', 'nope') == 2
    assert 'no table' in capsys.readouterr().err
    assert (
        main('--name', 'x', *common, '--source_table', 'events', '--dest_schema', dest_schema) == 2
    )
    assert '--create_table' in capsys.readouterr().err
    assert main('--name', 'x', *common, '--source_table', 'events', '--jobs_schema', 'absent') == 2
    assert 'sync_jobs' in capsys.readouterr().err
    assert main('--name', 'x', *common, '--source_table', 'events', '--rename', 'oops') == 2
    assert main('--name', 'bad name', *common, '--source_table', 'events') == 2
