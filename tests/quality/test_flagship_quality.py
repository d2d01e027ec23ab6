"""End to end: the flagship's quality rows against an independent count of its own outputs,
in Parquet and PostgreSQL, with breaches notified by webhook and by email through a real SMTP
server (aiosmtpd), and undeliverable notifications kept as dead letters."""

from __future__ import annotations

import email
import email.policy
import glob
import json

import psycopg2
import pyarrow.parquet as pq
import pytest
from aiosmtpd.controller import Controller

from beam_pipelines import cli
from beam_pipelines import event_analytics
from beam_pipelines.generate_events import GeneratorConfig
from beam_pipelines.generate_events import generate_records
from beam_pipelines.generate_events import write_events
from tests.conftest import free_port
from tests.io.test_alerts import Hook
from tests.io.test_alerts import webhook
from tests.io.test_postgres import pg_schema  # noqa: F401  (fixture)
from tests.io.test_postgres import pg_url  # noqa: F401  (fixture)

pytestmark = pytest.mark.e2e

SPEC = """
weights: {validity: 2}
rules:
  - {name: value_range, field: value, min: 0, max: 500}
  - {name: known_sources, field: source, allowed: [web, ios, android]}
thresholds: {score: 0.999, validity: 0.5}
"""


class Mailbox:
    def __init__(self):
        self.messages = []

    async def handle_DATA(self, server, session, envelope):
        self.messages.append(
            email.message_from_bytes(envelope.content, policy=email.policy.default)
        )
        return '250 OK'


@pytest.fixture
def smtp_server():
    box = Mailbox()
    controller = Controller(box, hostname='127.0.0.1', port=free_port())
    controller.start()
    try:
        yield f'smtp://127.0.0.1:{controller.port}', box
    finally:
        controller.stop()


def dead_letters(out):
    found = []
    for path in glob.glob(str(out / 'dead_letter' / '*')):
        with open(path) as f:
            found += [json.loads(line) for line in f if line.strip()]
    return found


def test_quality_rows_notifications_and_warehouse(tmp_path, pg_url, pg_schema, smtp_server):  # noqa: F811
    records, _ = generate_records(GeneratorConfig(events=3000, seed=12, entities=25))
    path = tmp_path / 'events.jsonl'
    write_events(records, str(path), 'jsonl')
    (tmp_path / 'spec.yaml').write_text(SPEC)
    smtp_url, mailbox = smtp_server
    out = tmp_path / 'out'
    hook = Hook()
    with webhook(hook) as url:
        argv = ['--input', str(path), '--output_dir', str(out), '--num_shards', '3']
        argv += ['--quality_spec', str(tmp_path / 'spec.yaml'), '--quality_webhook_url', url]
        argv += ['--smtp_url', smtp_url, '--alert_email_from', 'beam@example.org']
        argv += ['--alert_email_to', 'oncall@example.org,data@example.org']
        argv += ['--postgres_url', pg_url, '--pg_schema', pg_schema]
        assert event_analytics.run(argv) == 0

    (row,) = pq.read_table(out / 'quality').to_pylist()
    summary = json.loads((out / 'run_summary.json').read_text())
    c = summary['counts']
    events = pq.read_table(out / 'events').to_pylist()
    dead = [d for d in dead_letters(out) if d['stage'] in ('parse', 'validate')]
    assert row['source'] == str(path)
    assert row['records_read'] == c['read'] and row['events'] == c['valid']
    assert row['dead_letters'] == c['dead_letter'] and row['duplicates'] == c['duplicates']
    assert row['validity'] == pytest.approx(1 - c['dead_letter'] / c['read'])
    assert row['uniqueness'] == pytest.approx(c['valid'] / (c['valid'] + c['duplicates']))
    inconsistent = sum(
        d['error_type'] in ('type_error', 'invalid_timestamp', 'invalid_value') for d in dead
    )
    assert row['consistency'] == pytest.approx(1 - inconsistent / c['read'])
    nulls = sum(e['value'] is None for e in events) + sum(e['source'] is None for e in events)
    assert row['completeness'] == pytest.approx(1 - nulls / (2 * len(events)))

    def fails(e):
        bad_value = e['value'] is not None and not 0 <= e['value'] <= 500
        bad_source = e['source'] is not None and e['source'] not in ('web', 'ios', 'android')
        return bad_value or bad_source

    assert row['accuracy'] == pytest.approx(1 - sum(map(fails, events)) / len(events))
    details = json.loads(row['details'])
    assert details['rule_violations']['known_sources'] == sum(
        e['source'] is not None and e['source'] not in ('web', 'ios', 'android') for e in events
    )
    assert row['timeliness'] is None  # no lag limit declared
    # Per hour of event time: the windows add up to the run (dead letters only where their
    # event time is known).
    windows = pq.read_table(out / 'quality_windows').to_pylist()
    assert len(windows) > 1 and {w['source'] for w in windows} == {str(path)}
    assert sum(w['events'] for w in windows) == row['events']
    assert sum(w['duplicates'] for w in windows) == row['duplicates']
    assert sum(w['dead_letters'] for w in windows) <= row['dead_letters']
    assert all((w['window_end'] - w['window_start']).total_seconds() == 3600 for w in windows)
    breaches = json.loads(row['breaches'])
    assert [b['measure'] for b in breaches] == ['score']

    # Notified once by webhook and once by email (to both recipients).
    (body,) = hook.bodies
    assert body['source'] == str(path) and body['breaches'] == breaches
    assert 'Data quality breach' in body['text']
    (mail,) = mailbox.messages
    assert mail['To'] == 'oncall@example.org, data@example.org'
    assert str(path) in mail['Subject'] and 'score' in mail.get_content()
    assert c['quality_alerts_sent'] == 2 and c['quality_breached_sources'] == 1

    with psycopg2.connect(pg_url) as conn, conn.cursor() as cur:
        cur.execute(f'SELECT source, score, accuracy, breaches FROM "{pg_schema}".quality')
        ((source, stored_score, accuracy, stored_breaches),) = cur.fetchall()
    conn.close()
    assert source == str(path) and stored_score == pytest.approx(row['score'])
    assert accuracy == pytest.approx(row['accuracy']) and stored_breaches == breaches


def test_an_undeliverable_notification_is_a_dead_letter(tmp_path):
    records, _ = generate_records(GeneratorConfig(events=300, seed=3, entities=5))
    write_events(records, str(tmp_path / 'e.jsonl'), 'jsonl')
    (tmp_path / 'spec.yaml').write_text('thresholds: {score: 1.0}\n')
    out = tmp_path / 'out'
    argv = ['--input', str(tmp_path / 'e.jsonl'), '--output_dir', str(out)]
    argv += ['--quality_spec', str(tmp_path / 'spec.yaml')]
    argv += ['--quality_webhook_url', f'http://127.0.0.1:{free_port()}/nobody']
    assert event_analytics.run(argv) == 0
    (failed,) = [d for d in dead_letters(out) if d['error_type'] == 'alert_failed']
    assert failed['stage'] == 'sink' and json.loads(failed['payload'])['breaches']


@pytest.mark.parametrize(
    ('extra', 'fragment'),
    [
        (['--quality_spec', 'missing.yaml'], '--quality_spec missing.yaml'),
        (['--quality_webhook_url', 'http://x'], 'need --quality_spec'),
        (['--quality', '--smtp_url', 'mail.example.org'], '--smtp_url'),
        (['--quality', '--state_dir', 'st'], 'batch runs for now'),
    ],
)
def test_bad_quality_flags_are_one_line_errors(tmp_path, extra, fragment):
    records, _ = generate_records(GeneratorConfig(events=10, seed=3, entities=2))
    write_events(records, str(tmp_path / 'e.jsonl'), 'jsonl')
    argv = ['--input', str(tmp_path / 'e.jsonl'), '--output_dir', str(tmp_path / 'o'), *extra]
    with pytest.raises(cli.UsageError, match=fragment.replace('-', r'\-')):
        event_analytics.run(argv)
