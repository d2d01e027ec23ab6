"""Quality breach notifications: a webhook POST (Slack-compatible ``text`` plus the breach as
JSON fields) and/or an email through an SMTP server, with retries; a notification that cannot
be delivered becomes a dead letter (stage ``sink``, ``alert_failed``), never a log line.

SMTP is given as a URL: ``smtp://[user:password@]host[:port]`` (``?starttls=1`` to upgrade the
connection) or ``smtps://...`` (TLS from the start).
"""

from __future__ import annotations

import email.message
import smtplib
import ssl
import time
import urllib.parse
from typing import NamedTuple

import apache_beam as beam
import orjson
import requests
from apache_beam import pvalue

from beam_pipelines.dead_letter import Stage
from beam_pipelines.dead_letter import make_dead_letter
from beam_pipelines.io.alerts import post_json
from beam_pipelines.io.alerts import slack_escape
from beam_pipelines.observability.metrics import counter
from beam_pipelines.redaction import redact
from beam_pipelines.throttling import RetryPolicy

__all__ = ['Notified', 'NotifyBreaches', 'SmtpTarget', 'breach_message']

DEAD_LETTER = 'dead_letter'


class Notified(NamedTuple):
    sent: beam.PCollection  # the messages delivered (dicts)
    dead_letter: beam.PCollection


class SmtpTarget(NamedTuple):
    url: str
    sender: str
    recipients: tuple[str, ...]

    @classmethod
    def parse(cls, url: str, sender: str, recipients: str) -> SmtpTarget:
        """Raises ValueError naming what is wrong."""
        parts = urllib.parse.urlsplit(url)
        if parts.scheme not in ('smtp', 'smtps') or not parts.hostname:
            raise ValueError(f'{redact(url)}: expected smtp://host[:port] or smtps://host[:port]')
        to = tuple(r.strip() for r in recipients.split(',') if r.strip())
        if not to or not sender:
            raise ValueError('an email needs a sender and at least one recipient')
        return cls(url, sender, to)

    def send(self, subject: str, text: str, timeout: float) -> None:
        parts = urllib.parse.urlsplit(self.url)
        port = parts.port or (465 if parts.scheme == 'smtps' else 25)
        message = email.message.EmailMessage()
        message['From'], message['To'], message['Subject'] = (
            self.sender,
            ', '.join(self.recipients),
            subject,
        )
        message.set_content(text)
        if parts.scheme == 'smtps':
            server = smtplib.SMTP_SSL(parts.hostname, port, timeout=timeout)
        else:
            server = smtplib.SMTP(parts.hostname, port, timeout=timeout)
        with server:
            if 'starttls=1' in parts.query:
                server.starttls(context=ssl.create_default_context())
            if parts.username:
                server.login(
                    urllib.parse.unquote(parts.username), urllib.parse.unquote(parts.password or '')
                )
            server.send_message(message)


def breach_message(row: dict, pipeline: str) -> dict:
    """The notification of a quality row's breaches."""
    lines = [
        f'{b["measure"]} {b["value"]:.4f} is below its threshold {b["threshold"]:.4f}'
        for b in row['breaches']
    ]
    where = f'`{slack_escape(pipeline)}`, source `{slack_escape(row["source"])}`'
    text = f'*Data quality breach* in {where} (score {row["score"]:.4f}):\n' + '\n'.join(
        f'• {line}' for line in lines
    )
    return {
        'text': text,
        'pipeline': pipeline,
        'source': row['source'],
        'score': row['score'],
        'breaches': row['breaches'],
        'records_read': row['records_read'],
    }


class NotifyBreaches(beam.PTransform):
    """Sends a notification per quality row that has breaches.

    Args:
        pipeline_name: names the pipeline in messages and dead letters.
        webhook_url: POST target (None: no webhook).
        smtp: email target (None: no email).
        retry: retry policy for both.
        timeout_secs: per attempt.
    """

    def __init__(
        self,
        pipeline_name: str,
        webhook_url: str | None = None,
        smtp: SmtpTarget | None = None,
        retry: RetryPolicy | None = None,
        timeout_secs: float = 10.0,
    ):
        super().__init__()
        if webhook_url is None and smtp is None:
            raise ValueError('give webhook_url, smtp or both')
        self._fn = _NotifyFn(pipeline_name, webhook_url, smtp, retry or RetryPolicy(), timeout_secs)

    def expand(self, rows) -> Notified:
        results = (
            rows
            | 'OnlyBreaches' >> beam.Filter(lambda row: bool(row['breaches']))
            | 'Notify' >> beam.ParDo(self._fn).with_outputs(DEAD_LETTER, main='sent')
        )
        return Notified(results.sent, results[DEAD_LETTER])


class _NotifyFn(beam.DoFn):
    def __init__(self, pipeline, webhook_url, smtp, retry, timeout_secs):
        self._pipeline = pipeline
        self._url = webhook_url
        self._smtp = smtp
        self._retry = retry
        self._timeout = timeout_secs

    def setup(self):
        self._session = requests.Session()
        self._sent = counter('quality_alerts_sent')
        self._failed = counter('quality_alerts_failed')

    def teardown(self):
        self._session.close()

    def process(self, row):
        message = breach_message(row, self._pipeline)
        targets = []
        if self._url is not None:
            error = post_json(self._session, self._url, message, self._retry, self._timeout)
            targets.append((f'webhook {redact(self._url)}', error))
        if self._smtp is not None:
            targets.append((f'smtp {redact(self._smtp.url)}', self._email(message)))
        for target, error in targets:
            if error is None:
                self._sent.inc()
                yield {**message, 'target': target}
                continue
            self._failed.inc()
            yield pvalue.TaggedOutput(
                DEAD_LETTER,
                make_dead_letter(
                    stage=Stage.SINK,
                    error_type='alert_failed',
                    error_message=f'{target}: {error}',
                    payload=orjson.dumps(message),
                    source={'uri': target},
                    pipeline=self._pipeline,
                ),
            )

    def _email(self, message: dict) -> str | None:
        subject = f'[{self._pipeline}] data quality breach: {message["source"]}'
        text = message['text'].replace('*', '').replace('`', '')
        delays = self._retry.delays()
        while True:
            try:
                self._smtp.send(subject, text, self._timeout)
                return None
            except (OSError, smtplib.SMTPException) as exc:
                problem = f'{type(exc).__name__}: {redact(str(exc))}'
                # A refused sender or recipient will not change on a retry.
                if isinstance(exc, smtplib.SMTPRecipientsRefused | smtplib.SMTPSenderRefused):
                    return problem
            delay = next(delays, None)
            if delay is None:
                return f'{problem} after {self._retry.attempts} attempts'
            time.sleep(delay)
