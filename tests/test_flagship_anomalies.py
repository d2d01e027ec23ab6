"""End to end: the flagship with ``--detect_anomalies``: a burst in one entity's per-minute
counts reaches ``anomalies/``, the PostgreSQL ``anomalies`` table (real server) and a webhook
(a real local HTTP server), once; bad flag combinations are one-line errors."""

from __future__ import annotations

import datetime as dt
import json

import orjson
import psycopg2
import pyarrow.parquet as pq
import pytest

from beam_pipelines import cli
from beam_pipelines import event_analytics
from tests.io.test_alerts import Hook
from tests.io.test_alerts import webhook
from tests.io.test_postgres import pg_schema  # noqa: F401  (fixture)
from tests.io.test_postgres import pg_url  # noqa: F401  (fixture)

pytestmark = pytest.mark.e2e

START = dt.datetime(2024, 5, 1, tzinfo=dt.UTC)
SPEC = """
warmup: 30
detectors: [{kind: zscore, window: 60, threshold: 4}]
calibration: {kind: fixed}
refractory_points: 5
"""


def burst_events(path):
    """240 minutes of 5 clicks a minute for u1 and u2; at minute 200, u1 clicks 60 times."""
    n = 0
    with open(path, 'wb') as f:
        for minute in range(240):
            for entity in ('u1', 'u2'):
                count = 60 if (entity, minute) == ('u1', 200) else 5 + (minute % 3 == 0)
                for i in range(count):
                    at = START + dt.timedelta(minutes=minute, seconds=i % 60)
                    event = {
                        'event_id': f'e{n}',
                        'event_type': 'click',
                        'entity_id': entity,
                        'timestamp': at.isoformat(),
                        'value': 1.0,
                    }
                    f.write(orjson.dumps(event) + b'\n')
                    n += 1


def test_a_burst_is_one_anomaly_in_files_warehouse_and_alerts(tmp_path, pg_url, pg_schema):  # noqa: F811
    burst_events(tmp_path / 'events.jsonl')
    (tmp_path / 'spec.yaml').write_text(SPEC)
    hook = Hook()
    out = tmp_path / 'out'
    with webhook(hook) as url:
        code = event_analytics.run(
            [
                '--input',
                str(tmp_path / 'events.jsonl'),
                '--output_dir',
                str(out),
                '--detect_anomalies',
                '--detector_spec',
                str(tmp_path / 'spec.yaml'),
                '--alert_webhook_url',
                url,
                '--alert_format',
                'json',
                '--postgres_url',
                pg_url,
                '--pg_schema',
                pg_schema,
            ]
        )
    assert code == 0
    summary = json.loads((out / 'run_summary.json').read_text())
    assert summary['counts']['anomalies'] == 1 and summary['counts']['alerts_sent'] == 1
    assert summary['balanced'] and summary['anomaly_detection']['value'] == 'count'
    rows = pq.read_table(out / 'anomalies').to_pylist()
    assert [(r['entity_id'], r['event_time'], r['value']) for r in rows] == [
        ('u1', START + dt.timedelta(minutes=200), 60.0)
    ]
    stats = json.loads(rows[0]['statistics'])
    assert 5.0 < stats['mean'] < 6.0 and rows[0]['detector'] == 'zscore_60'
    with psycopg2.connect(pg_url) as conn, conn.cursor() as cur:
        columns = 'entity_id, event_time, value, is_anomaly, statistics'
        cur.execute(f'SELECT {columns} FROM {pg_schema}.anomalies')
        loaded = cur.fetchall()
    assert [(e, t, v, a) for e, t, v, a, _ in loaded] == [
        ('u1', START + dt.timedelta(minutes=200), 60.0, True)
    ]
    assert loaded[0][4]['mean'] == pytest.approx(stats['mean'])
    assert [(b['entity_id'], b['value']) for b in hook.bodies] == [('u1', 60.0)]


@pytest.mark.parametrize(
    'extra, fragment',
    [
        (['--detector_spec', 'x.yaml'], 'need --detect_anomalies'),
        (['--detect_anomalies', '--state_dir', '/tmp/s'], 'incrementally'),
        (['--detect_anomalies', '--detector_spec', '/nonexistent.yaml'], 'nonexistent'),
        (['--detect_anomalies', '--alert_webhook_url', 'smtp://x'], 'http'),
    ],
)
def test_bad_anomaly_flags_are_one_line_errors(tmp_path, extra, fragment):
    (tmp_path / 'e.jsonl').write_text('{}\n')
    with pytest.raises(cli.UsageError, match=fragment):
        event_analytics.run(
            ['--input', str(tmp_path / 'e.jsonl'), '--output_dir', str(tmp_path), *extra]
        )
