"""Webhook alerts against a real local HTTP server: formats, the per-key cooldown, retries,
undeliverable alerts as dead letters."""

from __future__ import annotations

import contextlib
import datetime as dt
import http.server
import json
import threading

import apache_beam as beam
import pyarrow as pa
import pytest
import requests
from apache_beam.testing.test_pipeline import TestPipeline
from apache_beam.testing.util import assert_that
from apache_beam.testing.util import equal_to

from beam_pipelines.anomaly.shard import score_schema
from beam_pipelines.io.alerts import SendAlerts
from beam_pipelines.io.alerts import alert_body
from beam_pipelines.io.alerts import in_cooldown
from beam_pipelines.io.alerts import post_json
from beam_pipelines.throttling import RetryPolicy

KEYS = ('entity_id', 'event_type')
T0 = dt.datetime(2024, 5, 1, tzinfo=dt.UTC)


class Hook:
    def __init__(self):
        self.bodies: list[dict] = []
        self.failures: list[int] = []  # statuses to answer first
        self.echo = False  # a failure's body quotes the path asked for, as real servers do
        self.lock = threading.Lock()


@contextlib.contextmanager
def webhook(hook: Hook):
    class Handler(http.server.BaseHTTPRequestHandler):
        def log_message(self, *args):
            pass

        def do_POST(self):
            body = self.rfile.read(int(self.headers['Content-Length']))
            with hook.lock:
                status = hook.failures.pop(0) if hook.failures else 200
                if status == 200:
                    hook.bodies.append(json.loads(body))
            status, retry_after = status if isinstance(status, tuple) else (status, None)
            self.send_response(status)
            if retry_after:
                self.send_header('Retry-After', retry_after)
            self.end_headers()
            if status != 200 and hook.echo:
                self.wfile.write(f'no such hook: {self.path}'.encode())

    server = http.server.ThreadingHTTPServer(('127.0.0.1', 0), Handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        yield f'http://127.0.0.1:{server.server_address[1]}/hook'
    finally:
        server.shutdown()
        server.server_close()


def anomalies(rows) -> pa.Table:
    """(entity, minutes after T0, value) rows as flagged score rows."""
    n = len(rows)
    return pa.table(
        {
            'entity_id': [r[0] for r in rows],
            'event_type': ['click'] * n,
            'event_time': [T0 + dt.timedelta(minutes=r[1]) for r in rows],
            'value': [float(r[2]) for r in rows],
            'anomaly_score': [0.97] * n,
            'is_anomaly': [True] * n,
            'detector': ['zscore_100'] * n,
            'raw_score': [12.0] * n,
            'statistics': ['{"mean":10.0,"stddev":1.5}'] * n,
        },
        schema=score_schema(KEYS),
    )


def test_cooldown_in_event_time():
    assert not in_cooldown(None, 0, 10)
    assert in_cooldown(0, 9, 10) and not in_cooldown(0, 10, 10)


def test_slack_and_generic_bodies():
    row = anomalies([('u1', 5, 99.0)]).to_pylist()[0]
    slack = alert_body(row, KEYS, 'slack', 'p')
    assert 'u1 / click' in slack['text'] and 'value 99' in slack['text']
    assert slack['blocks'][0]['text']['text'] == slack['text']
    generic = alert_body(row, KEYS, 'json', 'p')
    assert generic == {
        'alert': 'anomaly',
        'pipeline': 'p',
        'entity_id': 'u1',
        'event_type': 'click',
        'event_time': '2024-05-01T00:05:00.000000Z',
        'value': 99.0,
        'score': 0.97,
        'detector': 'zscore_100',
        'statistics': {'mean': 10.0, 'stddev': 1.5},
    }


def test_a_sustained_anomaly_raises_one_alert_per_key_and_cooldown():
    hook = Hook()
    hook.failures = [503, 429]  # transient: retried, then delivered once
    sustained = [('u1', m, 50.0) for m in range(0, 30)]  # 30 minutes of anomalies
    later = [('u1', 90, 60.0), ('u2', 10, 70.0)]
    with webhook(hook) as url, TestPipeline() as p:
        sent = (
            p
            | beam.Create([anomalies(sustained), anomalies(later)])
            | SendAlerts(url, KEYS, 'json', cooldown_secs=3600, retry=RetryPolicy(4, 0.01))
        )
        assert_that(
            sent.sent | beam.Map(lambda b: (b['entity_id'], b['event_time'][11:16])),
            equal_to([('u1', '00:00'), ('u1', '01:30'), ('u2', '00:10')]),
        )
        assert_that(sent.dead_letter, equal_to([]), label='NothingFailed')
    assert sorted((b['entity_id'], b['value']) for b in hook.bodies) == [
        ('u1', 50.0),
        ('u1', 60.0),
        ('u2', 70.0),
    ]


def test_undeliverable_alerts_become_dead_letters():
    hook = Hook()
    hook.failures = [500] * 10
    with webhook(hook) as url, TestPipeline() as p:
        sent = (
            p
            | beam.Create([anomalies([('u1', 0, 50.0)])])
            | SendAlerts(url, KEYS, 'slack', retry=RetryPolicy(3, 0.0))
        )
        assert_that(
            sent.dead_letter
            | beam.Map(
                lambda e: (e['stage'], e['error_type'], e['error_message'].split(': ', 1)[1])
            ),
            equal_to([('sink', 'alert_failed', 'HTTP 500 after 3 attempts')]),
        )
    assert hook.bodies == []


def test_a_refusal_quoting_the_webhook_path_does_not_leak_its_token():
    token = 'T0KEN0f0rTheHook1234'
    hook = Hook()
    hook.failures, hook.echo = [404], True
    with webhook(hook) as url, requests.Session() as session:
        error = post_json(session, f'{url}/{token}?sig=s1gnature9', {}, RetryPolicy(1, 0.0), 5)
    assert error.startswith('HTTP 404: no such hook: /hook/')
    assert token not in error and 's1gnature9' not in error


@pytest.mark.parametrize('kwargs', [dict(url='ftp://x'), dict(url='http://x', fmt='xml')])
def test_bad_arguments(kwargs):
    with pytest.raises(ValueError):
        SendAlerts(**kwargs)


def test_data_cannot_mention_channels_or_forge_links_in_slack():
    row = anomalies([('<!channel> <http://evil|click me>', 5, 99.0)]).to_pylist()[0]
    slack = alert_body(row, KEYS, 'slack', 'p')
    assert '<' not in slack['text'] and '&lt;!channel&gt;' in slack['text']
    assert all('<' not in f['text'] for f in slack['blocks'][1]['fields'])


def test_an_older_anomaly_arriving_late_shares_the_cooldown_unless_far_older():
    hour = 3_600_000_000
    assert in_cooldown(10 * hour, 9 * hour + 1, hour)  # within an hour before: same episode
    assert not in_cooldown(10 * hour, 8 * hour, hour)


def test_a_retry_after_beyond_a_minute_is_not_waited_for_in_a_worker():
    hook = Hook()
    hook.failures = [(429, '3600')]
    with webhook(hook) as url, TestPipeline() as p:
        sent = (
            p
            | beam.Create([anomalies([('u1', 0, 50.0)])])
            | SendAlerts(url, KEYS, 'json', retry=RetryPolicy(3, 0.0))
        )
        assert_that(
            sent.dead_letter | beam.Map(lambda e: e['error_message'].split(': ', 1)[1]),
            equal_to(['HTTP 429, and asked to retry after 3600 s']),
        )
