"""End to end: the backfill reruns the flagship over date partitions in parallel, records what
finished, resumes only what did not, and a forced rerun changes nothing (idempotent)."""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
import time

import psycopg2
import pyarrow.parquet as pq
import pytest

from beam_pipelines.generate_events import GeneratorConfig
from beam_pipelines.generate_events import generate_records
from beam_pipelines.generate_events import write_events
from tests.io.test_postgres import pg_schema  # noqa: F401  (fixture)
from tests.io.test_postgres import pg_url  # noqa: F401  (fixture)

pytestmark = pytest.mark.e2e

DAYS = ['2026-11-01', '2026-11-02', '2026-11-03']


def make_day(root, day, seed):
    records, _ = generate_records(GeneratorConfig(events=600, seed=seed, entities=12))
    folder = root / f'dt={day}'
    folder.mkdir(parents=True)
    write_events(records, str(folder / 'events.jsonl'), 'jsonl')


def backfill(tmp_path, pg_url, schema, *extra):  # noqa: F811
    argv = [sys.executable, '-m', 'beam_pipelines.backfill', '--pipeline', 'event_analytics']
    argv += ['--from', DAYS[0], '--to', DAYS[-1], '--parallelism', '2', '--retries', '0']
    argv += ['--record', str(tmp_path / 'record.jsonl'), '--logs_dir', str(tmp_path / 'logs')]
    argv += [*extra, '--', f'--input={tmp_path}/in/dt={{date}}/*.jsonl']
    argv += [f'--output_dir={tmp_path}/out/dt={{date}}', '--num_shards=2']
    argv += [f'--postgres_url={pg_url}', f'--pg_schema={schema}']
    return subprocess.run(argv, capture_output=True, text=True, timeout=600)


def warehouse(url, schema):
    with psycopg2.connect(url) as conn, conn.cursor() as cur:
        cur.execute(f'SELECT count(*), count(DISTINCT event_id) FROM "{schema}".events')
        events = cur.fetchone()
        cur.execute(f'SELECT count(*) FROM "{schema}".aggregates')
        aggregates = cur.fetchone()[0]
    conn.close()
    return events, aggregates


def outputs(tmp_path, out=None):
    out = out or tmp_path / 'out'
    return {
        day: sorted(
            tuple(map(str, r.values()))
            for r in pq.read_table(out / f'dt={day}' / 'aggregates').to_pylist()
        )
        for day in DAYS
    }


def test_backfill_resumes_what_failed_and_reruns_idempotently(tmp_path, pg_url, pg_schema):  # noqa: F811
    make_day(tmp_path / 'in', DAYS[0], 1)
    make_day(tmp_path / 'in', DAYS[2], 3)  # the second day's files are not there yet

    first = backfill(tmp_path, pg_url, pg_schema)
    assert first.returncode == 1, first.stderr
    assert f'1 of 3 partition(s) failed: {DAYS[1]} (exit 2)' in first.stderr
    assert 'partition' in first.stderr  # the progress bar
    with open(tmp_path / 'record.jsonl') as f:
        attempts = {e['partition']: e for e in map(json.loads, f)}
    assert {d: attempts[d]['status'] for d in DAYS} == {
        DAYS[0]: 'succeeded',
        DAYS[1]: 'failed',
        DAYS[2]: 'succeeded',
    }
    assert 'matched no files' in (tmp_path / 'logs' / f'{DAYS[1]}.log').read_text()

    make_day(tmp_path / 'in', DAYS[1], 2)
    second = backfill(tmp_path, pg_url, pg_schema)
    assert second.returncode == 0, second.stderr
    assert '2 already done, 1 to run' in second.stdout
    for day in DAYS:
        summary = json.loads((tmp_path / 'out' / f'dt={day}' / 'run_summary.json').read_text())
        assert summary['balanced']
    before, files = warehouse(pg_url, pg_schema), outputs(tmp_path)
    (total, distinct), _ = before
    assert total == distinct > 0

    forced = backfill(tmp_path, pg_url, pg_schema, '--force')
    assert forced.returncode == 0, forced.stderr
    assert '0 already done, 3 to run' in forced.stdout
    assert warehouse(pg_url, pg_schema) == before  # upserts: nothing twice
    assert outputs(tmp_path) == files  # each partition's files replaced, not added to

    nothing = backfill(tmp_path, pg_url, pg_schema)
    assert '3 already done, 0 to run' in nothing.stdout and nothing.returncode == 0


def test_bad_backfills_are_one_line_errors(tmp_path):
    argv = [sys.executable, '-m', 'beam_pipelines.backfill', '--pipeline', 'event_analytics']
    argv += ['--from', '2026-11-05', '--to', '2026-11-01', '--', '--input=x/{date}']
    run = subprocess.run(argv, capture_output=True, text=True, cwd=tmp_path)
    assert run.returncode == 2
    assert run.stderr.strip().splitlines() == [
        'backfill: error: --to 2026-11-01 00:00 is before --from 2026-11-05 00:00'
    ]


def _backfill_argv(tmp_path, pg_url, schema, out, record):  # noqa: F811
    argv = [sys.executable, '-m', 'beam_pipelines.backfill', '--pipeline', 'event_analytics']
    argv += ['--from', DAYS[0], '--to', DAYS[-1], '--parallelism', '1']
    argv += ['--record', str(record), '--logs_dir', str(tmp_path / 'logs')]
    argv += ['--', f'--input={tmp_path}/in/dt={{date}}/*.jsonl', '--num_shards=2']
    argv += [f'--output_dir={out}/dt={{date}}']
    return [*argv, f'--postgres_url={pg_url}', f'--pg_schema={schema}']


def test_a_killed_backfill_resumes_to_the_state_of_a_clean_run(tmp_path, pg_url, pg_schema):  # noqa: F811
    for i, day in enumerate(DAYS):
        make_day(tmp_path / 'in', day, i)
    record = tmp_path / 'record.jsonl'
    argv = _backfill_argv(tmp_path, pg_url, pg_schema, tmp_path / 'out', record)
    # Killed (with its running partition) once the first partition is recorded.
    proc = subprocess.Popen(
        argv, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True
    )
    deadline = time.monotonic() + 300
    while not (record.exists() and record.read_text().strip()):
        assert proc.poll() is None and time.monotonic() < deadline, 'the backfill did not run'
        time.sleep(0.2)
    os.killpg(proc.pid, signal.SIGKILL)
    proc.wait()
    with open(record) as f:
        assert 1 <= len(f.readlines()) < 3

    resumed = subprocess.run(argv, capture_output=True, text=True, timeout=600)
    assert resumed.returncode == 0, resumed.stderr
    assert re.search(r'[12] already done, [12] to run', resumed.stdout), resumed.stdout

    clean_schema = f'{pg_schema}_clean'
    clean_out = tmp_path / 'clean'
    try:
        argv = _backfill_argv(tmp_path, pg_url, clean_schema, clean_out, tmp_path / 'r2.jsonl')
        assert subprocess.run(argv, capture_output=True, timeout=600).returncode == 0
        assert warehouse(pg_url, pg_schema) == warehouse(pg_url, clean_schema)
        assert outputs(tmp_path) == outputs(tmp_path, clean_out)
    finally:
        with psycopg2.connect(pg_url) as conn, conn.cursor() as cur:
            cur.execute(f'DROP SCHEMA IF EXISTS "{clean_schema}" CASCADE')
        conn.close()
