"""End to end: the flagship with ``--detect_anomalies``: a burst in one entity's per-minute
counts reaches ``anomalies/``, the PostgreSQL ``anomalies`` table (real server) and a webhook
(a real local HTTP server), once; with ``--features`` (and the other steps) too, each gives what
it gives alone; bad flag combinations are one-line errors."""

from __future__ import annotations

import datetime as dt
import json

import apache_beam as beam
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
from tests.transforms.test_ordered import shared_timer_ids

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


def run_flagship(tmp_path, name: str, flags: list[str]):
    """Runs the flagship on ``tmp_path/events.jsonl`` into ``tmp_path/name``: (output dir,
    counts)."""
    out = tmp_path / name
    assert (
        event_analytics.run(
            ['--input', str(tmp_path / 'events.jsonl'), '--output_dir', str(out), *flags]
        )
        == 0
    )
    return out, json.loads((out / 'run_summary.json').read_text())['counts']


def rows_of(out, table: str, key: list[str]):
    return pq.read_table(out / table).sort_by([(k, 'ascending') for k in key]).to_pylist()


@pytest.mark.slow
@pytest.mark.parametrize(
    'quality, resample',
    [([], []), (['--quality'], ['--resample_secs', '300'])],
    ids=['features_and_anomalies', 'with_quality_and_resampling'],
)
def test_features_and_anomalies_together_give_what_each_gives_alone(tmp_path, quality, resample):
    # Both are event-time-ordered stateful steps; on the FnApiRunner they are fused into one
    # stage, where timers of the same name were shared and one step got none (which one
    # depended on PYTHONHASHSEED): zero feature rows, or no anomalies, silently.
    burst_events(tmp_path / 'events.jsonl')
    (tmp_path / 'spec.yaml').write_text(SPEC)
    detect = ['--detect_anomalies', '--detector_spec', str(tmp_path / 'spec.yaml')]
    features, feature_counts = run_flagship(
        tmp_path, 'features', ['--features', *resample, *quality]
    )
    anomalies, anomaly_counts = run_flagship(tmp_path, 'anomalies', [*detect, *quality])
    both, counts = run_flagship(tmp_path, 'both', ['--features', *resample, *detect, *quality])
    assert counts == {**feature_counts, **anomaly_counts}
    assert counts['features'] == counts['valid'] and counts['anomalies'] == 1
    assert rows_of(both, 'features', ['event_id']) == rows_of(features, 'features', ['event_id'])
    key = ['entity_id', 'event_type', 'event_time']
    assert rows_of(both, 'anomalies', key) == rows_of(anomalies, 'anomalies', key)
    if resample:
        key = ['entity_id', 'bucket_start']
        assert rows_of(both, 'timeseries', key) == rows_of(features, 'timeseries', key)


def test_no_two_steps_of_the_flagship_share_a_timer(tmp_path):
    burst_events(tmp_path / 'events.jsonl')
    argv = ['--input', str(tmp_path / 'events.jsonl'), '--output_dir', str(tmp_path / 'out')]
    argv += ['--features', '--feature_anomaly_score', '--resample_secs', '300', '--quality']
    argv += ['--detect_anomalies', '--alert_webhook_url', 'http://127.0.0.1:9/hook']
    options = cli.parse_pipeline_args(argv)
    p = beam.Pipeline(options=options)
    event_analytics.build_pipeline(p, event_analytics.Config.from_options(options))
    assert shared_timer_ids(p) == {}


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
