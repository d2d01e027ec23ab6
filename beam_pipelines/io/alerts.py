"""Anomaly alerts to a webhook: Slack-compatible or generic JSON, with retries and a per-key
cooldown so that a sustained anomaly raises one alert, not thousands.

``SendAlerts`` takes the anomalies (score tables from ``DetectAnomalies``), keys them by their
key columns, and in a stateful DoFn per key lets an anomaly through only if the key's previous
alert is at least ``cooldown_secs`` of event time older (the last alert time is the key's state,
so the cooldown holds across bundles, restarts and workers). Each alert is POSTed:

* ``slack``: ``{"text": ..., "blocks": [...]}`` (Slack incoming webhooks, and the many tools
  that accept their format: Mattermost, Rocket.Chat, Teams' Slack-compatible connectors);
* ``json``: the anomaly itself (key, time, value, score, detector, statistics, pipeline).

Connection errors, timeouts, 429 and 5xx are retried with the ``RetryPolicy`` (waiting at least
any ``Retry-After``, up to a minute); an alert that still cannot be delivered is not lost: it
becomes a dead letter (stage ``sink``, error type ``alert_failed``) with the alert as its
payload. Delivery is at least once: a bundle the runner retries posts its alerts again. Values
from the data are escaped in Slack's markup, so an entity id cannot mention ``@channel`` or
forge a link. A key's cooldown state is cleared by a timer once the cooldown is over.
"""

from __future__ import annotations

import time
from typing import NamedTuple

import apache_beam as beam
import orjson
import pyarrow as pa
import requests
from apache_beam import pvalue
from apache_beam.coders import PickleCoder
from apache_beam.metrics import Metrics
from apache_beam.transforms.userstate import ReadModifyWriteStateSpec
from apache_beam.transforms.userstate import TimerSpec
from apache_beam.transforms.userstate import on_timer
from apache_beam.utils.timestamp import MAX_TIMESTAMP
from apache_beam.utils.timestamp import Timestamp

from beam_pipelines.dead_letter import Stage
from beam_pipelines.dead_letter import make_dead_letter
from beam_pipelines.redaction import redact
from beam_pipelines.redaction import scrub
from beam_pipelines.redaction import url_secrets
from beam_pipelines.throttling import RetryPolicy
from beam_pipelines.throttling import retry_after_secs

__all__ = ['FORMATS', 'AlertsSent', 'SendAlerts', 'alert_body', 'in_cooldown', 'post_json']

FORMATS = ('slack', 'json')
NAMESPACE = 'beam_pipelines'
DEAD_LETTER = 'dead_letter'


class AlertsSent(NamedTuple):
    sent: beam.PCollection  # the alert bodies delivered (dicts)
    dead_letter: beam.PCollection  # envelopes of alerts that could not be delivered


def in_cooldown(last_alert_us: int | None, at_us: int, cooldown_us: int) -> bool:
    """Whether an anomaly at ``at_us`` falls within the cooldown of the key's last alert (on
    either side: an older anomaly arriving late is its episode too, unless a cooldown older)."""
    return last_alert_us is not None and abs(at_us - last_alert_us) < cooldown_us


def slack_escape(text) -> str:
    # Slack's mrkdwn: values from the data (entity ids) must not become mentions or links.
    return str(text).replace('&', '&amp;').replace('<', '&lt;').replace('>', '&gt;')


def alert_body(anomaly: dict, keys: tuple[str, ...], fmt: str, pipeline: str) -> dict:
    """The webhook body for one anomaly (a row of a score table)."""
    when = anomaly['event_time'].strftime('%Y-%m-%dT%H:%M:%S.%fZ')
    key = {k: anomaly[k] for k in keys}
    stats = orjson.loads(anomaly['statistics']) if anomaly.get('statistics') else {}
    generic = {
        'alert': 'anomaly',
        'pipeline': pipeline,
        **key,
        'event_time': when,
        'value': anomaly['value'],
        'score': anomaly['anomaly_score'],
        'detector': anomaly['detector'],
        'statistics': stats,
    }
    if fmt == 'json':
        return generic
    who = ' / '.join(slack_escape(v) for v in key.values())
    context = ', '.join(f'{k} {v:.4g}' for k, v in stats.items() if isinstance(v, int | float))
    text = (
        f':rotating_light: Anomaly in {who} at {when}: value {anomaly["value"]:.6g}, '
        f'score {anomaly["anomaly_score"]:.2f} ({slack_escape(anomaly["detector"])}'
        + (f'; {context}' if context else '')
        + ')'
    )
    fields = [{'type': 'mrkdwn', 'text': f'*{k}*\n{slack_escape(v)}'} for k, v in key.items()]
    fields += [
        {'type': 'mrkdwn', 'text': f'*value*\n{anomaly["value"]:.6g}'},
        {'type': 'mrkdwn', 'text': f'*score*\n{anomaly["anomaly_score"]:.2f}'},
    ]
    return {
        'text': text,
        'blocks': [
            {'type': 'section', 'text': {'type': 'mrkdwn', 'text': text}},
            {'type': 'section', 'fields': fields[:10]},
        ],
    }


class SendAlerts(beam.PTransform):
    """Sends one alert per anomaly episode and key to a webhook (see the module docstring).

    Args:
        url: the webhook URL.
        key_columns: the columns that form a key.
        fmt: ``slack`` or ``json``.
        cooldown_secs: event time after an alert in which the key raises no other.
        pipeline: the pipeline's name (in bodies and dead letters).
        retry: backoff for transient failures.
        timeout_secs: per request.
    """

    def __init__(
        self,
        url: str,
        key_columns: tuple[str, ...] = ('entity_id', 'event_type'),
        fmt: str = 'slack',
        cooldown_secs: float = 3600.0,
        pipeline: str = 'beam_pipelines',
        retry: RetryPolicy | None = None,
        timeout_secs: float = 10.0,
    ):
        super().__init__()
        if not url.startswith(('http://', 'https://')):
            raise ValueError(f'the webhook url must be http(s)://..., got {redact(url)!r}')
        if fmt not in FORMATS:
            raise ValueError(f'fmt must be one of {FORMATS}, got {fmt!r}')
        if cooldown_secs < 0:
            raise ValueError(f'cooldown_secs must be >= 0, got {cooldown_secs}')
        self._keys = tuple(key_columns)
        self._fn = _AlertFn(
            url,
            self._keys,
            fmt,
            round(cooldown_secs * 1e6),
            pipeline,
            retry or RetryPolicy(),
            timeout_secs,
        )

    def expand(self, anomalies) -> AlertsSent:
        results = (
            anomalies
            | 'RowsByKey'
            >> beam.FlatMap(_rows_by_key, self._keys).with_output_types(tuple[str, dict])
            | 'CooldownAndSend' >> beam.ParDo(self._fn).with_outputs(DEAD_LETTER, main='sent')
        )
        return AlertsSent(sent=results.sent, dead_letter=results[DEAD_LETTER])


def _rows_by_key(table: pa.Table, keys: tuple[str, ...]):
    rows = table.sort_by([(k, 'ascending') for k in (*keys, 'event_time')]).to_pylist()
    for row in rows:
        yield orjson.dumps([row[k] for k in keys]).decode(), row


class _AlertFn(beam.DoFn):
    LAST = ReadModifyWriteStateSpec('last_alert_us', PickleCoder())
    FORGET = TimerSpec('forget', beam.TimeDomain.WATERMARK)

    def __init__(self, url, keys, fmt, cooldown_us, pipeline, retry, timeout_secs):
        self._url = url
        self._keys = keys
        self._fmt = fmt
        self._cooldown_us = cooldown_us
        self._pipeline = pipeline
        self._retry = retry
        self._timeout = timeout_secs

    def setup(self):
        self._session = requests.Session()
        self._sent = Metrics.counter(NAMESPACE, 'alerts_sent')
        self._suppressed = Metrics.counter(NAMESPACE, 'alerts_suppressed_by_cooldown')
        self._failed = Metrics.counter(NAMESPACE, 'alerts_failed')
        self._retries = Metrics.counter(NAMESPACE, 'alert_retries')

    def teardown(self):
        self._session.close()

    def process(
        self,
        element,
        last=beam.DoFn.StateParam(LAST),
        forget=beam.DoFn.TimerParam(FORGET),
    ):
        _, row = element
        at_us = int(row['event_time'].timestamp() * 1_000_000)
        if in_cooldown(last.read(), at_us, self._cooldown_us):
            self._suppressed.inc()
            return
        last.write(at_us)  # the episode has alerted (or dead-lettered): the cooldown starts
        # The key's state is cleared once the cooldown is over (it holds nothing useful then).
        forget.set(Timestamp(micros=min(at_us + self._cooldown_us, MAX_TIMESTAMP.micros - 1)))
        body = alert_body(row, self._keys, self._fmt, self._pipeline)
        error = self._post(body)
        if error is None:
            self._sent.inc()
            yield body
            return
        self._failed.inc()
        yield pvalue.TaggedOutput(
            DEAD_LETTER,
            make_dead_letter(
                stage=Stage.SINK,
                error_type='alert_failed',
                error_message=f'webhook {redact(self._url)}: {error}',
                payload=orjson.dumps(body),
                source={'uri': redact(self._url)},
                pipeline=self._pipeline,
                event_time=row['event_time'].strftime('%Y-%m-%dT%H:%M:%S.%fZ'),
            ),
        )

    @on_timer(FORGET)
    def on_forget(self, last=beam.DoFn.StateParam(LAST)):
        last.clear()

    def _post(self, body: dict) -> str | None:
        """Delivers one alert; returns None, or why it could not be delivered."""
        return post_json(
            self._session, self._url, body, self._retry, self._timeout, self._retries.inc
        )


MAX_WAIT_SECS = 60.0  # a longer Retry-After is not waited for in a worker: dead letter


def post_json(session, url: str, body: dict, retry: RetryPolicy, timeout: float, on_retry=None):
    """POSTs ``body`` as JSON, retrying connection errors, timeouts, 429 and 5xx (honouring
    ``Retry-After`` up to a minute). Returns None when delivered, else why not."""
    delays = retry.delays()
    data = orjson.dumps(body)
    while True:
        try:
            response = session.post(
                url, data=data, headers={'Content-Type': 'application/json'}, timeout=timeout
            )
            if response.status_code < 300:
                return None
            if response.status_code != 429 and response.status_code < 500:
                # The body may quote the path asked for, and a webhook's path is its secret.
                text = scrub(response.text[:200], url_secrets(url, capability=True))
                return f'HTTP {response.status_code}: {text}'
            problem, wait = (
                f'HTTP {response.status_code}',
                retry_after_secs(response.headers.get('Retry-After')),
            )
        except (requests.ConnectionError, requests.Timeout) as exc:
            problem, wait = type(exc).__name__, 0.0
        delay = next(delays, None)
        if delay is None:
            return f'{problem} after {retry.attempts} attempts'
        if wait > MAX_WAIT_SECS:
            return f'{problem}, and asked to retry after {wait:.0f} s'
        if on_retry is not None:
            on_retry()
        time.sleep(max(delay, wait))
