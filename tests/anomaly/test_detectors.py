"""Detectors against numpy/scipy reference statistics on random series, point by point and in
batches (a batch must give what its points give one at a time)."""

from __future__ import annotations

import math

import numpy as np
import pytest
from apache_beam.ml.anomaly.univariate.stdev import IncSlidingStdevTracker
from apache_beam.ml.anomaly.univariate.stdev import SimpleSlidingStdevTracker
from hypothesis import given
from hypothesis import settings
from hypothesis import strategies as st
from scipy import stats

from beam_pipelines.anomaly.detectors import Detector
from beam_pipelines.anomaly.detectors import DetectorConfig
from beam_pipelines.anomaly.detectors import SlidingMadTracker
from beam_pipelines.anomaly.windows import SeasonalLag
from beam_pipelines.anomaly.windows import SlidingWindow
from beam_pipelines.anomaly.windows import sliding_mean_std

W = 50


@pytest.fixture(scope='module')
def series():
    rng = np.random.default_rng(42)
    x = rng.standard_t(4, 600) * 3 + 100  # heavy tails: outliers happen
    x[300:340] = 100.0  # a flat stretch (sliding Welford's weak spot)
    return x


def verdicts(kind, x, **kw):
    d = Detector(DetectorConfig(kind, window=W, warmup=W, **kw))
    return [d.update(float(i), float(v)) for i, v in enumerate(x)]


def test_zscore_is_the_sample_z_against_the_previous_window(series):
    for i, v in enumerate(verdicts('zscore', series)):
        if i < W:
            assert v.label is None  # the warm-up: no verdict on the first W points
            continue
        w = series[i - W : i]
        assert v.stats['mean'] == pytest.approx(w.mean(), rel=1e-9)
        std = w.std(ddof=1)
        assert v.stats['stddev'] == pytest.approx(std, rel=1e-6, abs=1e-9)
        if std < 1e-9 and series[i] != w.mean():
            assert v.raw == math.inf and v.score == 1.0  # a departure from a flat stretch
        elif std > 1e-9:
            assert v.raw == pytest.approx(abs(series[i] - w.mean()) / std, rel=1e-6)
            assert v.label == (v.raw >= 3.0)
            assert v.score == pytest.approx(v.raw / (v.raw + 3.0))


def test_robust_zscore_uses_the_exact_window_median_and_mad(series):
    for i, v in enumerate(verdicts('robust_zscore', series)):
        if i <= W:
            continue
        w = series[i - W : i]
        med = np.median(w)
        mad = stats.median_abs_deviation(w)
        assert v.stats == pytest.approx({'median': med, 'mad': mad})
        if mad < 1e-9:
            assert v.raw == (math.inf if series[i] != med else 0.0)
        else:
            assert v.raw == pytest.approx(0.6745 * abs(series[i] - med) / mad)


def test_iqr_scores_the_distance_beyond_the_quartiles(series):
    for i, v in enumerate(verdicts('iqr', series)):
        if i <= W:
            continue
        q1, q3 = np.quantile(series[i - W : i], [0.25, 0.75])
        assert v.stats == pytest.approx({'q1': q1, 'q3': q3})
        x, iqr = series[i], q3 - q1
        if iqr < 1e-9:
            assert v.raw == (math.inf if not q1 <= x <= q3 else 0.0)
            continue
        expected = (x - q3) / iqr if x > q3 else (q1 - x) / iqr if x < q1 else 0.0
        assert v.raw == pytest.approx(expected)


def test_relative_change_against_the_recent_mean(series):
    for i, v in enumerate(verdicts('relative_change', series)):
        if i > W:
            ref = series[i - W : i].mean()
            assert v.raw == pytest.approx(abs(series[i] - ref) / abs(ref))


def test_the_sliding_stddev_does_not_drift_where_beams_does():
    rng = np.random.default_rng(7)
    x = np.concatenate([rng.normal(1e6, 1.0, 20_000), np.full(500, 1e6), rng.normal(5, 2, 150)])
    mean, std = sliding_mean_std(np.empty(0), x, 100)
    assert std[20_100:20_500] == pytest.approx(0.0, abs=1e-6)  # the flat stretch, exactly
    assert mean[20_100:20_500] == pytest.approx(1e6)
    assert std[-1] == pytest.approx(x[-101:-1].std(ddof=1), rel=1e-9)
    # Why Beam's incremental tracker is not used: it failed or drifted on the same stream.
    beams, broke = IncSlidingStdevTracker(100), False
    for v in x[:-1]:
        beams.push(float(v))
        try:
            beams.get()
        except ValueError:  # Beam's M2 went negative: math domain error
            broke = True
    assert broke or abs(beams.get() - std[-1]) > 1e-6 * std[-1]


@settings(max_examples=60, deadline=None)
@given(
    st.lists(st.floats(-1e3, 1e3), min_size=1, max_size=120),
    st.integers(1, 30),
    st.lists(st.integers(0, 120), max_size=4),
)
def test_sliding_stats_are_beams_simple_trackers_in_any_batches(values, window, cuts):
    x = np.array(values)
    mean = SimpleSlidingStdevTracker(window)  # np.nanvar of the window, recomputed each time
    expected_mean, expected_std = [], []
    for v in x:
        expected_mean.append(np.mean(mean._queue) if len(mean._queue) else np.nan)
        expected_std.append(mean.get())
        mean.push(float(v))
    got_mean, got_std, tracker = [], [], SlidingWindow(window)
    for part in np.split(x, sorted(c for c in cuts if c < len(x))):
        m, s = tracker.judge(part)
        got_mean.append(m)
        got_std.append(s)
    np.testing.assert_allclose(np.concatenate(got_mean), expected_mean, rtol=1e-9, atol=1e-9)
    np.testing.assert_allclose(np.concatenate(got_std), expected_std, rtol=1e-7, atol=1e-7)


_SERIES_KINDS = [
    dict(kind='zscore', window=7),
    dict(kind='relative_change', window=5),
    dict(kind='robust_zscore', window=6),
    dict(kind='iqr', window=8),
    dict(kind='zscore', window=5, seasonal_period_secs=10.0),
]


@settings(max_examples=40, deadline=None)
@given(
    st.sampled_from(_SERIES_KINDS),
    st.lists(st.one_of(st.none(), st.sampled_from([1.0, 2.0]), st.floats(-50, 50)), max_size=80),
    st.lists(st.integers(0, 80), max_size=4),
)
def test_a_batch_gives_what_its_points_give_one_at_a_time(config, values, cuts):
    times = np.arange(len(values)) * 1.0
    x = np.array([np.nan if v is None else v for v in values])
    one = Detector(DetectorConfig(**config, warmup=3))
    singles = [one.update(t, v) for t, v in zip(times.tolist(), values, strict=True)]
    batched = Detector(DetectorConfig(**config, warmup=3))
    cuts = sorted(c for c in cuts if c < len(values))
    got = []
    for t, v in zip(np.split(times, cuts), np.split(x, cuts), strict=True):
        verdicts = batched.update_many(t, v)
        got += [verdicts.at(i) for i in range(len(v))]
    assert batched.seen == one.seen
    for a, b in zip(singles, got, strict=True):
        assert a.label == b.label
        assert a.score == pytest.approx(b.score, rel=1e-9, abs=1e-12)
        known = {k: v for k, v in a.stats.items() if v is not None}  # a missing value: none
        assert known == pytest.approx({k: v for k, v in b.stats.items() if v is not None})


def test_the_sliding_mad_tracker_is_exact():
    rng = np.random.default_rng(3)
    t = SlidingMadTracker(31)
    values = rng.normal(0, 1, 200)
    for i, v in enumerate(values):
        t.push(float(v))
        w = values[max(0, i - 30) : i + 1]
        assert t.get_median() == pytest.approx(np.median(w))
        assert t.get() == pytest.approx(stats.median_abs_deviation(w))


def test_missing_values_get_no_verdict_and_are_not_learnt():
    d = Detector(DetectorConfig('zscore', window=10, warmup=2))
    for i in range(5):
        d.update(float(i), 1.0 + i % 2)
    v = d.update(5.0, None)
    assert v.label is None and v.score == 0.0
    v = d.update(6.0, float('nan'))
    assert v.label is None and d.seen == 5


def test_seasonal_detectors_score_the_change_against_one_period_ago():
    day = 86_400.0
    d = Detector(DetectorConfig('zscore', window=48, warmup=1, seasonal_period_secs=day))
    times = np.arange(0, 5 * day, 1800.0)
    daily = 10 + 5 * np.sin(2 * math.pi * times / day)  # a pure daily pattern
    out = [d.update(float(t), float(v)) for t, v in zip(times, daily, strict=True)]
    assert all(v.label is None for v in out[:48])  # the first day has nothing to compare with
    assert all(v.raw == pytest.approx(0.0, abs=1e-6) for v in out[96:])  # the pattern is normal
    spike = d.update(5 * day, 30.0)  # 20 above the same time yesterday
    assert spike.label and spike.score > 0.99


def test_seasonal_lag_tolerates_jitter_and_refuses_gaps():
    lag = SeasonalLag(100.0)
    assert np.isnan(lag.lags(np.array([0.0, 10.0, 14.0, 30.0]), np.array([0.0, 20, 28, 60]))).all()
    got = lag.lags(np.array([110.5, 112.0, 131.0, 200.0]), np.array([1.0, 2, 3, 4]))
    # Nearest to 10.5: 10; to 12: a tie, the earlier; to 31: 30; nothing within 2 s of 100.
    np.testing.assert_array_equal(got, [20.0, 20.0, 60.0, np.nan])
    # A point's lag may be a point of the same batch; never the point itself.
    np.testing.assert_array_equal(lag.lags(np.array([300.0]), np.array([9.0])), [4.0])


@pytest.mark.parametrize(
    'kwargs, match',
    [
        (dict(kind='nope'), 'kind'),
        (dict(kind='zscore', window=0), 'window'),
        (dict(kind='zscore', threshold=-1), 'threshold'),
        (dict(kind='zscore', seasonal_period_secs=0), 'seasonal'),
    ],
)
def test_bad_configs_say_what_is_wrong(kwargs, match):
    with pytest.raises(ValueError, match=match):
        DetectorConfig(**kwargs)
