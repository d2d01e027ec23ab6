"""Rank calibration, detector specs and the per-key model (ensembles, warm-up, refractory)."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest

from beam_pipelines.anomaly.calibration import RankCalibration
from beam_pipelines.anomaly.model import KeyModel
from beam_pipelines.anomaly.spec import DEFAULT_SPEC
from beam_pipelines.anomaly.spec import SpecError
from beam_pipelines.anomaly.spec import load_spec
from beam_pipelines.anomaly.spec import parse_spec


def test_rank_calibration_scores_rarity_in_the_recent_history():
    cal = RankCalibration(history=4, min_history=3)
    for raw in (1.0, 2.0):
        assert cal.score(raw) is None
        cal.push(raw)
    cal.push(3.0)
    # n = 3; p = (count >= raw + 1) / (n + 1); score = -log10(p) / log10(n + 1)
    assert cal.score(10.0) == pytest.approx(1.0)  # larger than all: p = 1/4
    assert cal.score(2.0) == pytest.approx(-math.log10(3 / 4) / math.log10(4))
    assert cal.score(0.0) == pytest.approx(0.0)
    for raw in (4.0, 5.0):
        cal.push(raw)  # the ring keeps the last 4: 2, 3, 4, 5
    assert cal.score(1.5) == pytest.approx(0.0)


def test_rank_calibration_agrees_with_a_brute_force_count():
    rng = np.random.default_rng(5)
    cal, seen = RankCalibration(history=50, min_history=1), []
    for raw in rng.exponential(1.0, 300):
        if seen:
            window = np.array(seen[-50:], np.float32)
            p = (np.count_nonzero(window >= np.float32(raw)) + 1) / (len(window) + 1)
            assert cal.score(raw) == pytest.approx(-math.log10(p) / math.log10(len(window) + 1))
        cal.push(raw)
        seen.append(raw)


SPEC_YAML = """
warmup: 5
detectors:
  - {kind: zscore, window: 20}
  - {kind: iqr, window: 30, threshold: 2.0}
calibration: {kind: fixed}
ensemble: {aggregation: majority}
refractory_points: 3
"""


def test_specs_load_from_yaml_and_json(tmp_path):
    (tmp_path / 'spec.yaml').write_text(SPEC_YAML)
    spec = load_spec(str(tmp_path / 'spec.yaml'))
    assert [d.name for d in spec.detectors] == ['zscore_20', 'iqr_30']
    assert (spec.calibration, spec.aggregation, spec.refractory_points) == ('fixed', 'majority', 3)
    (tmp_path / 'spec.json').write_text(json.dumps(spec.to_dict()))
    assert load_spec(str(tmp_path / 'spec.json')) == spec
    assert parse_spec(DEFAULT_SPEC.to_dict()) == DEFAULT_SPEC


@pytest.mark.parametrize(
    'spec, match',
    [
        ({}, 'detectors'),
        ({'detectors': [{'kind': 'zscore'}], 'colour': 'red'}, 'colour: unknown key'),
        ({'detectors': [{'kind': 'zscore', 'windw': 3}]}, r'detectors\[0\]\.windw: unknown key'),
        ({'detectors': [{'kind': 'prophet'}]}, r'detectors\[0\]: detector kind'),
        ({'detectors': [{'kind': 'zscore'}], 'ensemble': {'aggregation': 'sum'}}, 'aggregation'),
        ({'detectors': [{'kind': 'zscore'}], 'ensemble': {'threshold': 1.5}}, 'threshold'),
        ({'detectors': [{'kind': 'zscore'}, {'kind': 'zscore'}]}, 'the same'),
        ({'detectors': [{'kind': 'zscore'}], 'calibration': {'kind': 'magic'}}, 'calibration'),
    ],
)
def test_bad_specs_name_the_path(spec, match):
    with pytest.raises(SpecError, match=match):
        parse_spec(spec)


def test_unreadable_spec_files_are_spec_errors(tmp_path):
    with pytest.raises(SpecError, match=r'nope\.yaml'):
        load_spec(str(tmp_path / 'nope.yaml'))
    (tmp_path / 'bad.json').write_text('{')
    with pytest.raises(SpecError, match=r'bad\.json'):
        load_spec(str(tmp_path / 'bad.json'))


def spec(**overrides):
    base = {
        'warmup': 10,
        'detectors': [{'kind': 'zscore', 'window': 10}],
        'calibration': {'kind': 'fixed'},
        'refractory_points': 0,
    }
    return parse_spec({**base, **overrides})


def test_warm_up_then_verdicts_then_one_detection_per_sustained_anomaly():
    model = KeyModel(spec(refractory_points=3))
    values = [10.0, 11.0] * 10 + [50.0, 50.0, 50.0, 50.0, 10.0]
    out = [model.update(float(i), v) for i, v in enumerate(values)]
    assert all(s.label is None for s in out[:10])  # the warm-up
    assert all(s.label is False for s in out[10:20])
    assert out[20].label and out[20].detector == 'zscore_10' and out[20].stats['mean'] == 10.5
    # Refractory: the next 3 points score 0 and are not anomalies, even though they would be.
    assert [(s.score, s.label, s.refractory) for s in out[21:24]] == [(0.0, False, True)] * 3
    assert out[24].refractory is False


def test_ensembles_combine_with_beams_aggregations():
    detectors = [
        {'kind': 'zscore', 'window': 10, 'threshold': 3.0},
        {'kind': 'robust_zscore', 'window': 10, 'threshold': 100.0},
        {'kind': 'iqr', 'window': 10, 'threshold': 100.0},
    ]
    values = [10.0, 11.0, 12.0] * 6 + [20.0]
    results = {}
    for aggregation in ('max', 'mean', 'majority', 'any', 'all'):
        model = KeyModel(spec(detectors=detectors, ensemble={'aggregation': aggregation}))
        results[aggregation] = [model.update(float(i), v) for i, v in enumerate(values)][-1]
    # The z-score says anomaly; the others, with huge thresholds, do not.
    assert results['max'].label and results['any'].label
    assert not results['majority'].label and not results['all'].label
    each = _scores(detectors, values)
    assert results['max'].score == pytest.approx(max(each))
    assert results['mean'].score == pytest.approx(np.mean(each))


def _scores(detectors, values):
    from beam_pipelines.anomaly.detectors import Detector
    from beam_pipelines.anomaly.detectors import DetectorConfig

    out = []
    for d in detectors:
        det = Detector(DetectorConfig(**d, warmup=1))
        out.append([det.update(float(i), v) for i, v in enumerate(values)][-1].score)
    return out


def test_the_refractory_starts_at_its_own_level_so_scores_do_not_depend_on_the_threshold():
    values = [10.0, 11.0] * 10 + [50.0, 50.0, 10.0, 10.0]
    runs = []
    for threshold in (0.6, 0.99):  # one labels the burst, one does not
        model = KeyModel(
            spec(refractory_points=2, refractory_level=0.9, ensemble={'threshold': threshold})
        )
        runs.append([model.update(float(i), v) for i, v in enumerate(values)])
    assert [s.score for s in runs[0]] == [s.score for s in runs[1]]
    assert runs[0][20].label and not runs[1][20].label
    assert runs[0][21].refractory and runs[1][21].refractory


def test_votes_score_the_fraction_of_detectors_voting_anomaly():
    detectors = [
        {'kind': 'zscore', 'window': 10, 'threshold': 3.0},
        {'kind': 'robust_zscore', 'window': 10, 'threshold': 100.0},
        {'kind': 'iqr', 'window': 10, 'threshold': 100.0},
    ]
    values = [10.0, 11.0, 12.0] * 6 + [20.0]
    model = KeyModel(spec(detectors=detectors, ensemble={'aggregation': 'any'}))
    last = [model.update(float(i), v) for i, v in enumerate(values)][-1]
    assert last.label and last.score == pytest.approx(1 / 3)


def test_the_threshold_defaults_by_calibration():
    assert (
        parse_spec({'detectors': [{'kind': 'zscore'}], 'calibration': {'kind': 'fixed'}}).threshold
        == 0.5
    )
    assert parse_spec({'detectors': [{'kind': 'zscore'}]}).threshold == 0.78


def test_rank_calibration_scores_a_batch_as_its_values_one_at_a_time():
    rng = np.random.default_rng(11)
    raws = rng.exponential(1.0, 2_500)
    raws[::89] = math.inf  # departures from a flat stretch
    for history, min_history in ((8000, 200), (50, 1), (3, 2), (2, 1)):
        one, batched = RankCalibration(history, min_history), RankCalibration(history, min_history)
        expected = []
        for raw in raws:
            s = one.score(raw)
            one.push(raw)
            expected.append(math.nan if s is None else s)
        got = np.concatenate(
            [batched.score_many(part) for part in np.split(raws, [700, 701, 1900])]
        )
        np.testing.assert_allclose(got, expected, rtol=1e-12, atol=1e-15, equal_nan=True)


@pytest.mark.parametrize('aggregation', ['max', 'mean', 'majority', 'any', 'all'])
@pytest.mark.parametrize('calibration', ['rank', 'fixed'])
def test_a_batch_of_points_scores_as_its_points_one_at_a_time(aggregation, calibration):
    rng = np.random.default_rng(4)
    values = rng.normal(10, 1, 900)
    values[rng.random(900) < 0.02] = 40.0  # bursts: refractory periods, across batch edges too
    values[rng.random(900) < 0.02] = np.nan  # missing values
    times = np.arange(900) * 60.0
    the_spec = parse_spec(
        {
            'warmup': 20,
            'detectors': [
                {'kind': 'zscore', 'window': 30},
                {'kind': 'robust_zscore', 'window': 20},
                {'kind': 'zscore', 'window': 10, 'seasonal_period_secs': 600},
            ],
            'calibration': {'kind': calibration, 'history': 300},
            'ensemble': {'aggregation': aggregation},
            'refractory_points': 7,
            'refractory_level': 0.6,
        }
    )
    one = KeyModel(the_spec)
    singles = [
        one.update(t, None if math.isnan(v) else v)
        for t, v in zip(times.tolist(), values.tolist(), strict=True)
    ]
    batched = KeyModel(the_spec)
    got = []
    for t, v in zip(np.split(times, [5, 250, 251, 600]), np.split(values, [5, 250, 251, 600])):
        scored = batched.update_many(t, v)
        got += [scored.at(i) for i in range(len(v))]
    assert any(s.refractory for s in singles) and any(s.label for s in singles)
    for a, b in zip(singles, got, strict=True):
        assert (a.label, a.detector, a.refractory) == (b.label, b.detector, b.refractory)
        assert a.score == pytest.approx(b.score, rel=1e-9)


def test_a_model_pickled_between_batches_scores_on_as_if_it_had_not_been():
    import pickle

    rng = np.random.default_rng(8)
    values = rng.normal(10, 1, 700)
    times = np.arange(700) * 60.0
    kept = KeyModel(DEFAULT_SPEC)
    kept.update_many(times[:400], values[:400])
    restored = pickle.loads(pickle.dumps(kept))  # as Beam state stores it
    a = kept.update_many(times[400:], values[400:])
    b = restored.update_many(times[400:], values[400:])
    np.testing.assert_array_equal(a.score, b.score)
    assert a.statistics() == b.statistics()
    # The state is what the windows need, not the history of everything seen.
    assert len(pickle.dumps(restored)) < 150_000
