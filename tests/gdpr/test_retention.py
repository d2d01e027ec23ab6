"""Retention: expired warehouse partitions and rows, and expired file rows, are removed and
reported; what is within retention stays, row for row."""

from __future__ import annotations

import datetime as dt

import psycopg2
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq
import pytest

from beam_pipelines import event_analytics
from beam_pipelines.gdpr import launcher as gdpr
from beam_pipelines.gdpr.retention import apply_retention
from beam_pipelines.gdpr.retention import parse_retention
from beam_pipelines.generate_events import GeneratorConfig
from beam_pipelines.generate_events import generate_records
from beam_pipelines.generate_events import write_events
from tests.io.test_postgres import pg_schema  # noqa: F401  (fixture)
from tests.io.test_postgres import pg_url  # noqa: F401  (fixture)

START = dt.datetime(2024, 5, 1, tzinfo=dt.UTC)
NOW = START + dt.timedelta(days=3)


def _count(cur, sql, *params):
    cur.execute(sql, params)
    return cur.fetchone()[0]


def test_parse_retention():
    days = parse_retention(30, ['events=7'])
    assert days['events'] == 7.0 and days['dead_letters'] == days['features'] == 30
    assert set(days) >= {'aggregates', 'anomalies', 'quality', 'late', 'retractions'}
    assert parse_retention(None, ['dead_letters=14']) == {'dead_letters': 14.0}
    for bad in (['nope=3'], ['events=x'], ['events=0']):
        with pytest.raises(ValueError):
            parse_retention(None, bad)


def test_expired_partitions_rows_and_file_rows_go(tmp_path, pg_url, pg_schema):  # noqa: F811
    records, _ = generate_records(
        GeneratorConfig(events=3000, seed=5, entities=30, duration_secs=3 * 86400)
    )
    source = tmp_path / 'events.jsonl'
    write_events(records, str(source), 'jsonl')
    out = tmp_path / 'out'
    flags = ['--input', str(source), '--output_dir', str(out)]
    assert event_analytics.run([*flags, '--postgres_url', pg_url, '--pg_schema', pg_schema]) == 0
    cutoff = NOW - dt.timedelta(days=1.5)
    s = f'"{pg_schema}"'
    with psycopg2.connect(pg_url) as conn, conn.cursor() as cur:
        expired = _count(cur, f'SELECT count(*) FROM {s}.events WHERE event_time < %s', cutoff)
        kept = _count(cur, f'SELECT count(*) FROM {s}.events WHERE event_time >= %s', cutoff)
        expired_aggs = _count(
            cur, f'SELECT count(*) FROM {s}.aggregates WHERE window_end < %s', cutoff
        )
        parts = _count(
            cur,
            "SELECT count(*) FROM pg_tables WHERE schemaname = %s AND tablename LIKE 'events_p%%'",
            pg_schema,
        )
    conn.close()
    assert expired and kept and expired_aggs and parts >= 3
    files_before = pq.read_table(out / 'events').num_rows

    days = {'events': 1.5, 'aggregates': 1.5, 'dead_letters': 30}
    conn = psycopg2.connect(pg_url)
    try:
        dry = apply_retention(conn, pg_schema, [str(out)], days, now=NOW, dry_run=True)
        assert dry['postgres']['events'] == expired
        report = apply_retention(conn, pg_schema, [str(out)], days, now=NOW)
    finally:
        conn.close()
    assert report['postgres'] == {'events': expired, 'aggregates': expired_aggs, 'dead_letters': 0}
    with psycopg2.connect(pg_url) as conn, conn.cursor() as cur:
        assert _count(cur, f'SELECT count(*) FROM {s}.events') == kept
        assert _count(cur, f'SELECT count(*) FROM {s}.events WHERE event_time < %s', cutoff) == 0
        # The first day's partition was dropped whole, not emptied.
        assert (
            _count(
                cur,
                'SELECT count(*) FROM pg_tables WHERE schemaname = %s '
                "AND tablename = 'events_p20240501'",
                pg_schema,
            )
            == 0
        )
    conn.close()
    events = pq.read_table(out / 'events')
    assert events.num_rows == files_before - report['files']['events']
    assert pc.min(events.column('timestamp')).as_py() >= cutoff
    aggregates = pq.read_table(out / 'aggregates')
    assert pc.min(aggregates.column('window_end')).as_py() >= cutoff
    assert pa.types.is_timestamp(events.schema.field('timestamp').type)  # schema kept


def test_the_command_reports_and_audits(tmp_path, pg_url, pg_schema, capsys):  # noqa: F811
    base = ['retention', '--postgres_url', pg_url, '--pg_schema', pg_schema]
    assert gdpr.run([*base, '--retention_days', '30', '--requested_by', 'ops']) == 0
    assert '"postgres"' in capsys.readouterr().out
    with psycopg2.connect(pg_url) as conn, conn.cursor() as cur:
        cur.execute(f'SELECT action, requested_by, status FROM "{pg_schema}".gdpr_audit')
        assert cur.fetchall() == [('retention', 'ops', 'succeeded')]
    conn.close()
    from beam_pipelines import cli

    with pytest.raises(cli.UsageError, match='retention_days'):
        gdpr.run(base)
