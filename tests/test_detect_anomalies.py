"""End to end: ``detect_anomalies`` on CSV files, and the detectors on real NAB series."""

from __future__ import annotations

import csv
import datetime as dt
import os

import numpy as np
import pytest

from beam_pipelines import cli
from beam_pipelines import detect_anomalies
from beam_pipelines import evaluate_nab
from beam_pipelines.anomaly.nab import best_threshold
from beam_pipelines.anomaly.spec import DEFAULT_SPEC

pytestmark = pytest.mark.e2e

NAB_DIR = os.environ.get(
    'BEAM_PIPELINES_NAB_DIR',
    os.path.join(os.path.dirname(__file__), '..', '..', 'shared', 'datasets', 'nab'),
)


def write_series(path, rows, header=('timestamp', 'value')):
    with open(path, 'w', newline='') as f:
        w = csv.writer(f)
        w.writerow(header)
        w.writerows(rows)


def test_scores_come_back_in_input_order_with_the_spike_flagged(tmp_path):
    rng = np.random.default_rng(3)
    start = dt.datetime(2024, 5, 1)
    rows = [
        ((start + dt.timedelta(hours=i)).strftime('%Y-%m-%d %H:%M:%S'), f'{v:.3f}')
        for i, v in enumerate(rng.normal(50, 2, 600))
    ]
    rows[450] = (rows[450][0], '95.0')
    shuffled = [rows[i] for i in rng.permutation(len(rows))]  # input order is not time order
    write_series(tmp_path / 'in.csv', shuffled)
    out = tmp_path / 'scores.csv'
    assert detect_anomalies.run(['--input', str(tmp_path / 'in.csv'), '--output', str(out)]) == 0
    with open(out) as f:
        got = list(csv.DictReader(f))
    assert [(r['timestamp'], r['value']) for r in got] == shuffled
    assert list(got[0]) == ['timestamp', 'value', 'anomaly_score', 'is_anomaly']
    by_time = {r['timestamp']: r for r in got}
    spike = by_time[rows[450][0]]
    assert spike['is_anomaly'] == '1' and float(spike['anomaly_score']) > 0.9
    warm = [by_time[t]['anomaly_score'] for t, _ in rows[: DEFAULT_SPEC.warmup]]
    assert set(warm) == {'0.000000'}  # no verdict in the warm-up
    assert all(0.0 <= float(r['anomaly_score']) <= 1.0 for r in got)


def test_keyed_series_are_scored_separately(tmp_path):
    rows = [(f'2024-05-01T{h:02d}:00:00Z', k, '1.0') for h in range(24) for k in ('x', 'y')]
    write_series(tmp_path / 'in.csv', rows, header=('ts', 'host', 'load'))
    out = tmp_path / 'o.csv'
    args = ['--input', str(tmp_path / 'in.csv'), '--output', str(out), '--timestamp_field', 'ts']
    assert detect_anomalies.run([*args, '--value_field', 'load', '--key_field', 'host']) == 0
    with open(out) as f:
        assert sum(1 for _ in f) == len(rows) + 1


@pytest.mark.parametrize(
    'rows, extra, match',
    [
        ([('2024-05-01 00:00:00', '1')], ['--value_field', 'v'], "no column 'v'"),
        ([('yesterday', '1')], [], r'in\.csv:2: not a timestamp'),
        ([('2024-05-01 00:00:00', 'n/a')], [], r'in\.csv:2: not a number'),
        ([('2024-05-01 00:00:00', '1')], ['--naive_timezone', 'Mars/Olympus'], 'time zone'),
    ],
)
def test_bad_input_is_a_one_line_usage_error(tmp_path, rows, extra, match):
    write_series(tmp_path / 'in.csv', rows)
    with pytest.raises(cli.UsageError, match=match):
        detect_anomalies.run(['--input', str(tmp_path / 'in.csv'), '--output', 'x', *extra])


def test_a_bad_detector_spec_is_refused(tmp_path):
    (tmp_path / 'spec.yaml').write_text('detectors: [{kind: crystal_ball}]\n')
    write_series(tmp_path / 'in.csv', [('2024-05-01 00:00:00', '1')])
    with pytest.raises(cli.UsageError, match='crystal_ball'):
        detect_anomalies.run(
            [
                '--input',
                str(tmp_path / 'in.csv'),
                '--output',
                'x',
                '--detector_spec',
                str(tmp_path / 'spec.yaml'),
            ]
        )


@pytest.mark.slow
def test_on_real_nab_series_the_detectors_beat_the_windowed_gaussian():
    if not os.path.exists(os.path.join(NAB_DIR, 'labels_windows.json')):
        pytest.skip(f'the NAB dataset is not at {NAB_DIR} (set BEAM_PIPELINES_NAB_DIR)')
    data = [d for d in evaluate_nab.load_nab(NAB_DIR) if d[0].name.startswith(('ec2', 'rogue'))]
    series = [s for s, _, _ in data]
    ours = [detect_anomalies.score_series(m, v, [''] * len(v), DEFAULT_SPEC)[0] for _, m, v in data]
    baseline = [evaluate_nab.windowed_gaussian(v) for _, _, v in data]
    _, our_score = best_threshold(series, ours)
    _, baseline_score = best_threshold(series, baseline)
    assert our_score > baseline_score + 10
