"""Secrets canaries: the real components run with unique secrets, in runs that also hit errors,
and no secret may appear in anything they show or write.

Each secret is a canary (``CANARY-<uuid hex>``): the PostgreSQL and Redis passwords, the
webhook tokens (in the path and the query of ``--alert_webhook_url`` and
``--quality_webhook_url``), the lineage endpoint's token, the ingestion service's bearer secrets
and HMAC key, the ops API's token, the MQTT password. Everything is grepped for each canary, as
written, percent-encoded and base64-encoded: stdout, stderr and log records, every file under
the output directory (run summary, report.html, dead letters, Parquet, metrics, lineage events,
the Mermaid graph), the warehouse tables and Redis keys the run wrote, and every HTTP answer.

The services are the real ones (PostgreSQL with trust authentication, which takes any password;
Redis without ``requirepass``, where a named user with a password fails; Mosquitto with
anonymous access). Errors come from the real thing: a webhook that answers 404 quoting the path
it was asked for, unreachable servers, a refused Redis login, malformed and invalid events,
rejected requests.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import datetime as dt
import http.server
import json
import logging
import os
import subprocess
import sys
import threading
import time
import urllib.parse
import uuid
from pathlib import Path

import orjson
import paho.mqtt.client as mqtt
import psycopg2
import pytest
from aiohttp.test_utils import TestClient
from aiohttp.test_utils import TestServer
from psycopg2 import sql

from beam_pipelines import cli
from beam_pipelines import event_analytics
from beam_pipelines.event_analytics.config import PIPELINE_NAME
from beam_pipelines.ingest import launcher as ingest_launcher
from beam_pipelines.ingest.auth import sign
from beam_pipelines.ingest.mqtt_bridge import BrokerAddress
from beam_pipelines.ops.app import OpsConfig
from beam_pipelines.ops.app import make_app as make_ops_app
from beam_pipelines.redaction import redact
from beam_pipelines.redaction import redact_capability_url
from beam_pipelines.redaction import scrub
from beam_pipelines.redaction import url_secrets
from tests.conftest import free_port
from tests.conftest import wait_for_port
from tests.ingest.test_mqtt_bridge import MQTT_URL
from tests.ingest.test_mqtt_bridge import broker  # noqa: F401  (fixture)
from tests.io.test_postgres import pg_url  # noqa: F401  (fixture)
from tests.io.test_redis import REDIS_URL
from tests.io.test_redis import client  # noqa: F401  (fixture)
from tests.io.test_redis import prefix  # noqa: F401  (fixture)
from tests.test_flagship_anomalies import SPEC
from tests.test_flagship_anomalies import burst_events


def canary(name: str) -> str:
    return f'CANARY-{name}-{uuid.uuid4().hex}'


CANARIES = {
    name: canary(name)
    for name in (
        'pg',
        'pg2',
        'redis',
        'redis2',
        'hook',
        'hookq',
        'quality',
        'lineage',
        'token1',
        'token2',
        'hmac',
        'ops',
        'mqtt',
    )
}


def forms(secret: str) -> set[bytes]:
    """A secret as it could be written: as is, percent-encoded, base64-encoded."""
    return {
        secret.encode(),
        urllib.parse.quote(secret, safe='').encode(),
        base64.b64encode(secret.encode()),
    }


class Evidence:
    """Everything a component showed or wrote, by where it came from."""

    def __init__(self):
        self.items: dict[str, bytes] = {}

    def add(self, where: str, data) -> None:
        if isinstance(data, str):
            data = data.encode('utf-8', 'surrogateescape')
        self.items[where] = self.items.get(where, b'') + data

    def add_tree(self, root: Path, label: str) -> int:
        files = [p for p in sorted(root.rglob('*')) if p.is_file()]
        for path in files:
            self.add(f'{label}/{path.relative_to(root)}', path.read_bytes())
        return len(files)

    def assert_clean(self) -> None:
        leaks = [
            f'{name}: {data[max(0, data.find(form) - 80) : data.find(form) + 80]!r}'
            for secret in CANARIES.values()
            for form in forms(secret)
            for name, data in self.items.items()
            if form in data
        ]
        assert not leaks, '\n'.join(leaks)


def run_cli(argv: list[str]) -> int:
    """The flagship as its command runs it: errors become one line on stderr."""
    return cli.main(PIPELINE_NAME, event_analytics.run, argv)


@contextlib.contextmanager
def echoing_webhook():
    """A webhook that answers 404 quoting the path it was asked for (a failing sink whose error
    body carries the URL's token); yields (base URL, paths asked for)."""
    asked: list[str] = []

    class Handler(http.server.BaseHTTPRequestHandler):
        def log_message(self, *args):
            pass

        def do_POST(self):
            self.rfile.read(int(self.headers.get('Content-Length') or 0))
            asked.append(self.path)
            body = f'no such hook: {self.path}'.encode()
            self.send_response(404)
            self.send_header('Content-Length', str(len(body)))
            self.end_headers()
            self.wfile.write(body)

    server = http.server.ThreadingHTTPServer(('127.0.0.1', 0), Handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        yield f'http://127.0.0.1:{server.server_address[1]}', asked
    finally:
        server.shutdown()
        server.server_close()


def _with_password(url: str, user: str, password: str) -> str:
    if '@' in url:
        pytest.skip('the canary needs a URL without credentials')
    return url.replace('://', f'://{user}:{password}@', 1)


def _warehouse_dump(url: str, schema: str) -> bytes:
    """Every row of every table of the schema, as JSON text."""
    out = []
    with psycopg2.connect(url) as conn, conn.cursor() as cur:
        cur.execute('SELECT tablename FROM pg_tables WHERE schemaname = %s', (schema,))
        for (table,) in cur.fetchall():
            cur.execute(
                sql.SQL('SELECT row_to_json(t)::text FROM {} t').format(
                    sql.Identifier(schema, table)
                )
            )
            out += [f'{table}: {row[0]}' for row in cur.fetchall()]
    conn.close()
    return '\n'.join(out).encode()


def _drop_schema(url: str, schema: str) -> None:
    with psycopg2.connect(url) as conn, conn.cursor() as cur:
        cur.execute(sql.SQL('DROP SCHEMA IF EXISTS {} CASCADE').format(sql.Identifier(schema)))
    conn.close()


# -- the flagship ----------------------------------------------------------------------------


def test_a_flagship_run_with_failing_sinks_and_bad_events_leaks_no_secret(
    tmp_path,
    pg_url,  # noqa: F811
    client,  # noqa: F811
    prefix,  # noqa: F811
    capfd,
    caplog,
):
    caplog.set_level(logging.INFO)
    c = CANARIES
    data = tmp_path / 'events.jsonl'
    burst_events(data)
    with open(data, 'ab') as f:  # a malformed line and an invalid event: dead letters
        f.write(b'{"event_id": "broken\n{"event_id": "x1", "entity_id": "u1"}\n')
    (tmp_path / 'spec.yaml').write_text(SPEC)
    (tmp_path / 'quality.yaml').write_text('thresholds: {score: 1.0}\n')  # always breached
    out = tmp_path / 'out'
    schema = f't_{uuid.uuid4().hex[:12]}'
    evidence = Evidence()
    with echoing_webhook() as (base, asked):
        argv = ['--input', str(data), '--output_dir', str(out)]
        argv += ['--postgres_url', _with_password(pg_url, 'root', c['pg']), '--pg_schema', schema]
        argv += ['--redis_url', _with_password(REDIS_URL, '', c['redis']), '--redis_prefix', prefix]
        argv += ['--detect_anomalies', '--detector_spec', str(tmp_path / 'spec.yaml')]
        argv += ['--alert_webhook_url', f'{base}/services/{c["hook"]}/x?token={c["hookq"]}']
        argv += ['--quality_spec', str(tmp_path / 'quality.yaml')]
        argv += ['--quality_webhook_url', f'{base}/hooks/{c["quality"]}']
        argv += ['--metrics_file', str(out / 'metrics.prom')]
        argv += ['--lineage_file', str(out / 'lineage.jsonl')]
        try:
            assert run_cli(argv) == 0
            evidence.add('warehouse', _warehouse_dump(pg_url, schema))
        finally:
            _drop_schema(pg_url, schema)
    # The errors did happen: alerts and notifications were refused, events were dead-lettered.
    assert any(c['hook'] in p for p in asked) and any(c['quality'] in p for p in asked)
    summary = json.loads((out / 'run_summary.json').read_text())
    assert summary['counts']['alert_dead_letter'] == 1 and summary['counts']['dead_letter'] >= 2
    assert summary['anomaly_detection']['alerts'] == f'{base}/***'
    files = evidence.add_tree(out, 'output')
    assert {'run_summary.json', 'report.html', 'metrics.prom', 'lineage.jsonl'} <= {
        p.name for p in out.iterdir()
    }
    for key in client.scan_iter(f'{prefix}*'):
        evidence.add(f'redis/{key!r}', key + b'=' + (client.dump(key) or b''))
    captured = capfd.readouterr()
    evidence.add('stdout', captured.out)
    evidence.add('stderr', captured.err)
    evidence.add('log records', caplog.text)
    assert files >= 8 and len(evidence.items) > files
    evidence.assert_clean()


@pytest.mark.parametrize(
    'case',
    [
        'redis refuses the password',
        'postgres unreachable',
        'dsn password quoted with a space',
        'password not percent-encoded',
        'lineage endpoint down',
        'webhook not http',
    ],
)
def test_failed_flagship_runs_leak_no_secret(tmp_path, capfd, caplog, case):
    caplog.set_level(logging.INFO)
    c = CANARIES
    data = tmp_path / 'events.jsonl'
    data.write_bytes(
        b'{"event_id":"e1","event_type":"click","entity_id":"u1","timestamp":1714521600}\n'
        b'{"broken\n'
    )
    out = tmp_path / 'out'
    argv = ['--input', str(data), '--output_dir', str(out), '--lineage_file', str(out / 'l.jsonl')]
    flags, status = {
        'redis refuses the password': (
            ['--redis_url', _with_password(REDIS_URL, 'no_such_user', c['redis2'])],
            1,
        ),
        'postgres unreachable': (
            ['--postgres_url', f'postgresql://root:{c["pg2"]}@127.0.0.1:1/test'],
            2,
        ),
        'dsn password quoted with a space': (
            ['--postgres_url', f"host=127.0.0.1 port=1 password='{c['pg']} {c['pg2']}'"],
            2,
        ),
        'password not percent-encoded': (
            ['--postgres_url', f'postgresql://root:{c["pg"]}%zz@127.0.0.1:5432/test'],
            2,
        ),
        'lineage endpoint down': (
            ['--lineage_url', f'http://127.0.0.1:1/t/{c["lineage"]}/?api_key={c["lineage"]}'],
            1,
        ),
        'webhook not http': (
            ['--detect_anomalies', '--alert_webhook_url', f'ftp://hooks/{c["hook"]}'],
            2,
        ),
    }[case]
    assert run_cli([*argv, *flags]) == status
    captured = capfd.readouterr()
    assert 'error' in captured.err  # it failed, and said so
    evidence = Evidence()
    evidence.add('stdout', captured.out)
    evidence.add('stderr', captured.err)
    evidence.add('log records', caplog.text)
    if out.exists():
        evidence.add_tree(out, 'output')  # the lineage FAIL event holds the error and its trace
    evidence.assert_clean()


# -- the ingestion service and the MQTT bridge -----------------------------------------------


def _http(port: int, method: str, path: str, body: bytes = b'', headers=None) -> bytes:
    import http.client

    conn = http.client.HTTPConnection('127.0.0.1', port, timeout=10)
    try:
        conn.request(method, path, body=body, headers=headers or {})
        r = conn.getresponse()
        return f'{r.status} {r.getheaders()}\n'.encode() + r.read()
    finally:
        conn.close()


@contextlib.contextmanager
def ingest_service(argv: list[str], env: dict):
    port = free_port()
    proc = subprocess.Popen(
        [sys.executable, '-m', 'beam_pipelines.ingest', 'serve', '--port', str(port), *argv],
        env={**os.environ, 'PYTHONASYNCIODEBUG': '1', **env},
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
    )
    output = {}
    try:
        assert wait_for_port(port, 30), proc.stderr.read()
        yield port, output
    finally:
        proc.terminate()
        out, err = proc.communicate(timeout=30)
        output['stdout'], output['stderr'] = out, err


def _requests(port: int, secret: str) -> dict[str, bytes]:
    """Accepted and refused requests of every kind; their answers."""
    now = int(time.time())
    event = b'{"event_id":"e1","entity_id":"u1","event_type":"click"}'
    good = {'Authorization': f'Bearer {secret}', 'Content-Type': 'application/json'}
    signed = {'X-Signature-Timestamp': str(now), 'X-Signature': sign(secret.encode(), now, event)}
    return {
        'accepted': _http(port, 'POST', '/v1/events', event, good),
        'batch': _http(port, 'POST', '/v1/events/batch', b'[' + event + b']', good),
        'signed': _http(port, 'POST', '/v1/events', event, signed),
        'wrong token': _http(
            port, 'POST', '/v1/events', event, {'Authorization': f'Bearer {secret}x'}
        ),
        'wrong signature': _http(
            port, 'POST', '/v1/events', event + b' ', {**signed, 'Content-Type': 'application/json'}
        ),
        'stale signature': _http(
            port,
            'POST',
            '/v1/events',
            event,
            {
                'X-Signature-Timestamp': str(now - 3600),
                'X-Signature': sign(secret.encode(), now - 3600, event),
            },
        ),
        'huge timestamp': _http(
            port,
            'POST',
            '/v1/events',
            event,
            {'X-Signature-Timestamp': '9' * 400, 'X-Signature': 'sha256=00'},
        ),
        'malformed': _http(port, 'POST', '/v1/events', b'{"broken":', good),
        'too large': _http(port, 'POST', '/v1/events/batch', b'[' + b' ' * 70_000 + b']', good),
        'wrong type': _http(
            port, 'POST', '/v1/events', event, {**good, 'Content-Type': 'text/html'}
        ),
        'health': _http(port, 'GET', '/health'),
        'metrics': _http(port, 'GET', '/metrics'),
        'not found': _http(port, 'GET', f'/{secret}', headers=good),
    }


def test_the_ingestion_service_leaks_no_secret(tmp_path, prefix):  # noqa: F811
    c = CANARIES
    evidence = Evidence()
    stream = f'{prefix}events'
    # Secrets from the environment (two, as while rotating); Redis with a password it accepts.
    argv = ['--redis_url', _with_password(REDIS_URL, '', c['redis']), '--stream_name', stream]
    argv += ['--max_body_bytes', '65536']
    env = {'BEAM_PIPELINES_INGEST_SECRETS': f'{c["token1"]},{c["token2"]}'}
    with ingest_service(argv, env) as (port, output):
        answers = _requests(port, c['token2'])
    assert answers['accepted'].startswith(b'202') and answers['signed'].startswith(b'202')
    assert answers['huge timestamp'].startswith(b'401')
    for name, answer in answers.items():
        evidence.add(f'env secrets: {name}', answer)
    evidence.add('env secrets: stdout', output['stdout'])
    evidence.add('env secrets: stderr', output['stderr'])
    # Secrets from a file, HMAC only; Redis refusing the login: every append fails (503).
    secrets = tmp_path / 'secrets.txt'
    secrets.write_text(f'# the HMAC key\n{c["hmac"]}\n')
    argv = ['--redis_url', _with_password(REDIS_URL, 'no_such_user', c['redis2'])]
    argv += ['--stream_name', stream, '--secret_file', str(secrets), '--auth', 'hmac']
    argv += ['--max_body_bytes', '65536']
    with ingest_service(argv, {}) as (port, output):
        answers = _requests(port, c['hmac'])
    assert answers['signed'].startswith(b'503') and answers['health'].startswith(b'503')
    for name, answer in answers.items():
        evidence.add(f'file secrets: {name}', answer)
    evidence.add('file secrets: stdout', output['stdout'])
    evidence.add('file secrets: stderr', output['stderr'])
    assert b'unavailable' in evidence.items['file secrets: signed']
    evidence.assert_clean()


def test_bad_secret_configuration_is_refused_without_echoing_it(tmp_path, monkeypatch):
    c = CANARIES
    secrets = tmp_path / 'secrets.txt'
    secrets.write_text(f'{c["token1"]}\nshort\n')
    messages = []
    for argv, env in (
        (['--secret_file', str(secrets)], None),
        ([], f'{c["token2"]},short'),
        (['--secret_file', str(tmp_path / 'missing.txt')], None),
    ):
        if env is None:
            monkeypatch.delenv('BEAM_PIPELINES_INGEST_SECRETS', raising=False)
        else:
            monkeypatch.setenv('BEAM_PIPELINES_INGEST_SECRETS', env)
        with pytest.raises(cli.UsageError) as err:
            ingest_launcher.run(['serve', '--stream_name', 's', *argv])
        messages.append(str(err.value))
    assert 'at least 16 bytes' in messages[0] and 'at least 16 bytes' in messages[1]
    evidence = Evidence()
    evidence.add('usage errors', '\n'.join(messages))
    evidence.assert_clean()


def test_the_mqtt_bridge_leaks_no_secret(prefix, broker):  # noqa: F811
    c = CANARIES
    topic = f'test/{uuid.uuid4().hex[:10]}'
    mqtt_url = MQTT_URL.replace('://', f'://bridge:{c["mqtt"]}@', 1)
    assert c['mqtt'] not in repr(BrokerAddress.from_url(mqtt_url))
    argv = [sys.executable, '-m', 'beam_pipelines.ingest', 'mqtt', '--mqtt_url', mqtt_url]
    argv += ['--topic', f'{topic}/#', '--client_id', f'bridge-{topic[5:]}']
    argv += ['--redis_url', _with_password(REDIS_URL, 'no_such_user', c['redis2'])]
    argv += ['--stream_name', f'{prefix}events']
    proc = subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    try:
        # Publish until the bridge takes a message, fails to append it (Redis refuses the
        # login) and stops.
        publisher = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id=f'pub-{topic[5:]}')
        broker_address = BrokerAddress.from_url(MQTT_URL)
        publisher.connect(broker_address.host, broker_address.port)
        publisher.loop_start()
        deadline = time.monotonic() + 20
        while proc.poll() is None and time.monotonic() < deadline:
            publisher.publish(f'{topic}/d1', orjson.dumps({'event_id': 'e1'}), qos=1)
            time.sleep(0.3)
        publisher.disconnect()
        publisher.loop_stop()
    finally:
        if proc.poll() is None:
            proc.terminate()
        out, err = proc.communicate(timeout=30)
        # The session the bridge left on the broker.
        cleanup = mqtt.Client(
            mqtt.CallbackAPIVersion.VERSION2, client_id=f'bridge-{topic[5:]}', clean_session=True
        )
        cleanup.connect(broker_address.host, broker_address.port)
        cleanup.disconnect()
    assert proc.returncode not in (0, None) and b'AuthenticationError' in err
    evidence = Evidence()
    evidence.add('stdout', out)
    evidence.add('stderr', err)
    evidence.assert_clean()


# -- the ops API -----------------------------------------------------------------------------


def test_the_ops_api_leaks_no_secret(tmp_path, caplog):
    caplog.set_level(logging.INFO)
    c = CANARIES
    run = tmp_path / 'out-1'
    run.mkdir()
    (run / 'run_summary.json').write_text(
        json.dumps(
            {
                'pipeline': 'event_analytics',
                'input': f'postgresql://root:{c["pg"]}@db/x',
                'finished_at': dt.datetime.now(dt.UTC).isoformat(),
                'counts': {'read': 1},
            }
        )
    )
    url = f'postgresql://root:{c["pg2"]}@127.0.0.1:1/test'
    app = make_ops_app(OpsConfig([c['ops']], str(tmp_path / 'out-*'), url, 'public', url))
    good = {'Authorization': f'Bearer {c["ops"]}', 'Content-Type': 'application/json'}
    answers = []

    async def main():
        async with TestClient(TestServer(app)) as http_:
            for method, path, headers, body in (
                ('GET', '/health', {}, None),
                ('GET', '/runs', {'Authorization': f'Bearer {c["ops"]}x'}, None),
                ('GET', '/runs', good, None),
                ('GET', '/dead-letters', good, None),
                ('GET', '/queries/recent_anomalies?limit=1', good, None),
                ('POST', '/dead-letters/replay', good, b'{"ids": ["a"]}'),
                ('GET', '/metrics', good, None),
            ):
                r = await http_.request(method, path, headers=headers, data=body)
                answers.append(f'{method} {path} {r.status} {dict(r.headers)}\n'.encode())
                answers.append(await r.read())

    asyncio.run(main())
    assert answers[0].split()[2] == b'503' and answers[2].split()[2] == b'401'
    evidence = Evidence()
    evidence.add('answers', b''.join(answers))
    evidence.add('log records', caplog.text)
    evidence.assert_clean()


# -- redaction at the boundaries -------------------------------------------------------------

S = CANARIES['pg']


@pytest.mark.parametrize(
    'text, kept',
    [
        (f'postgresql://root:{S}@db.internal:5432/warehouse', 'db.internal:5432/warehouse'),
        (f'postgres://root:{S}@h1,h2/db?sslmode=require', 'h1,h2/db'),
        (f'redis://:{S}@cache:6379/0', 'cache:6379/0'),
        (f'rediss://default:{S}@cache:6380/1', 'cache:6380/1'),
        (f'mqtts://device:{S}@broker:8883', 'broker:8883'),
        (f'smtp://alerts:{S}@mail:587', 'mail:587'),
        (f'amqp://u:{urllib.parse.quote(S)}@mq/vhost', 'mq/vhost'),
        (f'host=db port=5432 password={S} dbname=w', 'dbname=w'),
        (f"host=db password='{S} {S}' dbname=w", 'dbname=w'),
        (f"host=db password='it\\'s {S}' dbname=w", 'dbname=w'),
        (f'PASSWORD = {S}', 'PASSWORD'),
        (f'https://hooks.slack.com/services/T0123ABCD/B0123ABCD/{S}', 'hooks.slack.com'),
        (f'https://discord.com/api/webhooks/123456789012345678/{S}', 'discord.com/api/webhooks'),
        (f'https://api.telegram.org/bot123456789:{S}/sendMessage', 'sendMessage'),
        (f'https://example.com/hook?token={S}&channel=ops', 'channel=ops'),
        (f'https://example.com/v1/events?api_key={S}', 'example.com/v1/events'),
        (f'https://b.s3.amazonaws.com/k?X-Amz-Signature={S}&X-Amz-Expires=60', 'X-Amz-Expires=60'),
        (f'https://acct.blob.core.windows.net/c/b?sv=2024&sig={S}', 'sv=2024'),
        (f'https://example.com/cb#access_token={S}', 'example.com/cb'),
        (f'error: POST https://h.example/x/{S} failed; retrying', 'failed; retrying'),
        (f'{{"uri": "https://h.example/{S}?key={S}"}}', '"uri"'),
    ],
    ids=lambda v: v.replace(S, 'SECRET') if isinstance(v, str) else v,  # same on every worker
)
def test_redact_hides_the_secret_and_keeps_where(text, kept):
    shown = redact(text)
    assert S not in shown and urllib.parse.quote(S) not in shown, shown
    assert kept in shown


def test_plain_urls_and_messages_are_shown_as_they_are():
    for text in (
        'postgresql://h/db',
        'redis://127.0.0.1:6379/0#events',
        'https://api.example.com/v1/events?page=2&per_page=100',
        's3://bucket/out/part-00000-of-00001.parquet',
        'password authentication failed for user "root"',
        'https://h.example/2024-05-01/report',
    ):
        assert redact(text) == text


def test_capability_urls_show_their_origin_only():
    assert redact_capability_url(f'https://hooks.slack.com/services/T0/B0/{S}') == (
        'https://hooks.slack.com/***'
    )
    assert redact_capability_url(f'http://u:{S}@127.0.0.1:8080/h?x={S}') == (
        'http://127.0.0.1:8080/***'
    )
    assert redact_capability_url('https://example.com') == 'https://example.com'
    assert redact_capability_url('not a url') == '***'


def test_scrub_takes_every_form_of_a_urls_secrets_out_of_a_record():
    url = f'https://hooks.example/services/{S}/x?token=short1'
    envelope = {
        'error_message': f'webhook {redact(url)}: HTTP 404: no such hook: /services/{S}/x?token='
        f'short1 ({urllib.parse.quote(S, safe="")})',
        'source': {'uri': redact(url), 'offset': 3},
        'payload': 'untouched',
    }
    clean = scrub(envelope, url_secrets(url, capability=True), ('error_message', 'source'))
    text = json.dumps(clean)
    assert S not in text and 'short1' not in text
    assert clean['payload'] == 'untouched' and clean['source']['offset'] == 3
    assert url_secrets(f'postgresql://u:{S}@h/db') == [S]


@pytest.mark.parametrize('error', [cli.UsageError, RuntimeError])
def test_the_cli_masks_a_url_an_error_quotes(capsys, error):
    """A driver's or library's message may quote the URL it failed on, password and all."""

    def run(argv):
        raise error(f'could not reach\npostgresql://root:{S}@db:5432/x')

    code = cli.main('prog', run, [])
    err = capsys.readouterr().err
    assert code != 0 and S not in err
    assert 'could not reach postgresql://root:***@db:5432/x' in err
