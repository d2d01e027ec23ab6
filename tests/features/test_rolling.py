"""Rolling features against a plain brute-force reference: point-in-time correct (no event after
t is used), and the same in one pass as in chunks with the history carried."""

from __future__ import annotations

import math

import numpy as np
import pyarrow as pa
import pytest

from beam_pipelines.columnar.timestamps import TIMESTAMP_TYPE
from beam_pipelines.features.normalize import NormalizationStats
from beam_pipelines.features.normalize import StatsCombineFn
from beam_pipelines.features.normalize import normalize
from beam_pipelines.features.rolling import EntityHistory
from beam_pipelines.features.rolling import FeatureSpec
from beam_pipelines.features.rolling import horizon_name
from beam_pipelines.features.rolling import rolling_features

SPEC = FeatureSpec(horizons_secs=(60.0, 600.0), lags=2, event_types=('buy',))


def events(rows) -> pa.Table:
    """(seconds, type, value) rows of one entity."""
    return pa.table(
        {
            'entity_id': ['u'] * len(rows),
            'event_type': [r[1] for r in rows],
            'timestamp': pa.array([round(r[0] * 1e6) for r in rows], pa.int64()).cast(
                TIMESTAMP_TYPE
            ),
            'value': pa.array([r[2] for r in rows], pa.float64()),
            'event_id': [f'e{i}' for i in range(len(rows))],
        }
    )


def reference(rows, spec=SPEC):
    """For each event: what a person computing by hand from events at or before its time gets."""
    out = []
    for i, (t, typ, _) in enumerate(rows):
        seen = [r for r in rows if r[0] <= t]  # never anything later than t
        f = {}
        for h in spec.horizons_secs:
            n = horizon_name(h)
            win = [r for r in seen if r[0] > t - h]
            vals = [r[2] for r in win if r[2] is not None]
            f[f'count_{n}'] = float(len(win))
            f[f'sum_{n}'] = sum(vals) if vals else None
            f[f'mean_{n}'] = sum(vals) / len(vals) if vals else None
            f[f'stddev_{n}'] = float(np.std(vals, ddof=1)) if len(vals) > 1 else None
        f['secs_since_prev'] = t - rows[i - 1][0] if i else None
        longest = [r for r in seen if r[0] > t - spec.longest]
        L = horizon_name(spec.longest)
        f[f'type_ratio_{L}'] = sum(1 for r in longest if r[1] == typ) / len(longest)
        for typ2 in spec.event_types:
            f[f'ratio_{typ2}_{L}'] = sum(1 for r in longest if r[1] == typ2) / len(longest)
        for k in range(1, spec.lags + 1):
            f[f'lag_{k}'] = rows[i - k][2] if i - k >= 0 else None
        out.append(f)
    return out


def random_rows(n=300, seed=0):
    rng = np.random.default_rng(seed)
    t = np.cumsum(rng.exponential(20.0, n))
    t[50:53] = t[50]  # events at the very same time
    rows = []
    for i in range(n):
        v = None if rng.random() < 0.05 else float(rng.normal(100, 15))
        rows.append((float(round(t[i], 3)), 'buy' if rng.random() < 0.3 else 'view', v))
    return rows


def assert_matches(table: pa.Table, expected: list[dict]):
    got = table.to_pylist()
    assert len(got) == len(expected)
    for g, e in zip(got, expected, strict=True):
        for k, v in e.items():
            if v is None:
                assert g[k] is None, k
            else:
                assert g[k] == pytest.approx(v, rel=1e-9, abs=1e-9), k


def _as_expected(table: pa.Table) -> list[dict]:
    return [{k: v for k, v in r.items() if k in SPEC.numeric_columns()} for r in table.to_pylist()]


def test_features_equal_the_brute_force_reference():
    rows = random_rows()
    features, _ = rolling_features(EntityHistory.empty(), events(rows), SPEC)
    assert_matches(features, reference(rows))


def test_chunks_with_the_carried_history_equal_one_pass():
    rows = random_rows(seed=4)
    one, _ = rolling_features(EntityHistory.empty(), events(rows), SPEC)
    history, parts = EntityHistory.empty(), []
    for start in range(0, len(rows), 37):
        part, history = rolling_features(history, events(rows)[start : start + 37], SPEC)
        parts.append(part)
        assert history.times[0] >= history.times[-1] - 600 * 1e6 or len(history.times) <= SPEC.lags
    assert_matches(pa.concat_tables(parts), _as_expected(one))


def test_a_features_row_never_sees_later_events():
    rows = random_rows(seed=9)
    full, _ = rolling_features(EntityHistory.empty(), events(rows), SPEC)
    cut, _ = rolling_features(EntityHistory.empty(), events(rows[:150]), SPEC)
    assert_matches(cut, _as_expected(full.slice(0, 150)))  # adding the future changes nothing


def test_normalisation_statistics_merge_and_apply():
    rows = random_rows(seed=2)
    features, _ = rolling_features(EntityHistory.empty(), events(rows), SPEC)
    columns = ['count_1m', 'mean_10m']
    fn = StatsCombineFn(columns)
    halves = [fn.add_input(fn.create_accumulator(), features.slice(s, 150)) for s in (0, 150)]
    stats = fn.extract_output(fn.merge_accumulators(halves))
    for c in columns:
        x = np.array([v for v in features.column(c).to_pylist() if v is not None])
        assert stats.columns[c]['mean'] == pytest.approx(x.mean())
        assert stats.columns[c]['stddev'] == pytest.approx(x.std(ddof=1))
        assert (stats.columns[c]['min'], stats.columns[c]['max']) == (x.min(), x.max())
    again = NormalizationStats.from_json(stats.to_json())
    z = normalize(features, again, 'zscore').column('mean_10m_norm').to_pylist()
    s = stats.columns['mean_10m']
    raw = features.column('mean_10m').to_pylist()
    assert all(
        (a is None and b is None) or b == pytest.approx((a - s['mean']) / s['stddev'])
        for a, b in zip(raw, z, strict=True)
    )
    mm = normalize(features, again, 'minmax').column('count_1m_norm').to_pylist()
    assert min(mm) == 0.0 and max(mm) == 1.0


def test_horizon_names_and_bad_specs():
    assert [horizon_name(h) for h in (300, 3600, 86400, 90)] == ['5m', '1h', '24h', '90s']
    for bad in (dict(horizons_secs=()), dict(horizons_secs=(60, 60)), dict(lags=-1)):
        with pytest.raises(ValueError):
            FeatureSpec(**bad)
    assert not math.isnan(FeatureSpec().longest)


def test_the_stddev_stays_exact_for_large_values():
    rng = np.random.default_rng(1)
    rows = [(float(i), 'view', 1e9 + float(rng.normal())) for i in range(200)]
    features, _ = rolling_features(EntityHistory.empty(), events(rows), SPEC)
    last = features.to_pylist()[-1]
    window = [r[2] for r in rows if r[0] > rows[-1][0] - 600]
    assert last['stddev_10m'] == pytest.approx(np.std(window, ddof=1), rel=1e-6)
