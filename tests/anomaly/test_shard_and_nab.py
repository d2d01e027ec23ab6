"""A shard's models without Beam (order, late points, expiry), and the NAB scoring rules on
hand-computed cases."""

from __future__ import annotations

import math

import numpy as np
import pyarrow as pa
import pytest

from beam_pipelines.anomaly.nab import Labelled
from beam_pipelines.anomaly.nab import best_threshold
from beam_pipelines.anomaly.nab import nab_score
from beam_pipelines.anomaly.nab import window_metrics
from beam_pipelines.anomaly.shard import ShardModels
from beam_pipelines.anomaly.spec import parse_spec
from beam_pipelines.columnar.timestamps import TIMESTAMP_TYPE

SPEC = parse_spec(
    {'warmup': 0, 'detectors': [{'kind': 'zscore', 'window': 5}], 'calibration': {'kind': 'fixed'}}
)


def pts(rows):
    return pa.table(
        {
            'k': [r[0] for r in rows],
            'ts': pa.array([r[1] * 1_000_000 for r in rows], pa.int64()).cast(TIMESTAMP_TYPE),
            'v': pa.array([r[2] for r in rows], pa.float64()),
        }
    )


def shard(ttl=100.0):
    return ShardModels(SPEC, ('k',), 'ts', 'v', idle_ttl_secs=ttl)


def test_points_are_released_by_element_time_in_point_order_and_late_ones_returned():
    s = shard()
    assert s.add(pts([('a', 30, 3.0), ('a', 10, 1.0), ('b', 20, 2.0)]), at_us=100) == []
    s.add(pts([('a', 20, 2.0)]), at_us=200)
    assert s.pending_range() == (100, 200)
    out = s.release(150)  # the watermark has passed the first element only
    assert out.column('k').to_pylist() == ['a', 'a', 'b']
    assert out.column('event_time').cast(pa.int64()).to_pylist() == [10e6, 30e6, 20e6]
    refused = s.add(pts([('a', 15, 9.0), ('b', 25, 1.0), ('c', 1, 1.0)]), at_us=300)
    assert [(t.column('k').to_pylist(), 'processed past it' in why) for t, why in refused] == [
        (['a'], True)  # behind a's scored 30; b and c are in order for their keys
    ]
    # a's point at 20 (element 200) is behind a's 30 too, but it was pending, not refused.
    assert s.release(10**12).column('k').to_pylist() == ['a', 'b', 'c']


def test_points_without_a_time_are_refused_not_held():
    table = pts([('a', 1, 1.0)]).set_column(1, 'ts', pa.nulls(1, TIMESTAMP_TYPE))
    refused = shard().add(table, at_us=0)
    assert [(t.num_rows, why) for t, why in refused] == [(1, 'the point has no time')]


def test_idle_keys_expire_but_not_while_they_have_points_pending():
    s = shard(ttl=100.0)
    s.add(pts([('a', 0, 1.0), ('b', 50, 1.0)]), at_us=0)
    s.release(0)
    s.add(pts([('a', 500, 1.0)]), at_us=500)  # a has a point waiting
    assert s.all_idle_at() == 150_000_000
    assert s.expire(150_000_000) == 1  # b only: a is not idle, its next point is pending
    assert list(s.models) == [('a',)]
    s.release(500)
    assert s.expire(600_000_001) == 1 and not s.models


def test_the_spec_is_not_part_of_the_state():
    import pickle

    s = shard()
    s.add(pts([('a', 0, 1.0)]), at_us=0)
    s.release(0)
    restored = pickle.loads(pickle.dumps(s))
    assert restored.spec is None and list(restored.models) == [('a',)]
    restored.attach(SPEC)
    restored.add(pts([('b', 1, 1.0)]), at_us=1)
    assert restored.release(1).num_rows == 1


def labelled(n, windows):
    return Labelled('s', np.arange(n, dtype=float), tuple((float(a), float(b)) for a, b in windows))


def test_nab_detection_at_a_windows_start_is_perfect_and_none_is_null():
    series = labelled(1000, [(500, 599)])  # 100-point window, after the 150-point probation
    scores = np.zeros(1000)
    assert nab_score([series], [scores], 0.5)[0] == pytest.approx(0.0)  # the null detector
    scores[500] = 1.0
    assert nab_score([series], [scores], 0.5)[0] == pytest.approx(100.0)
    # Halfway into the window: 2 sigmoid(5 * 0.5) - 1, scaled by the earliest possible.
    half = np.zeros(1000)
    half[549] = 1.0
    expected_tp = (2 / (1 + math.exp(-5 * 0.51)) - 1) / (2 / (1 + math.exp(-5)) - 1)
    assert nab_score([series], [half], 0.5)[0] == pytest.approx(100 * (expected_tp + 1) / 2)


def test_nab_false_positives_cost_fp_weight_and_the_probation_is_free():
    series = labelled(1000, [(500, 599)])
    scores = np.zeros(1000)
    scores[500] = 1.0
    scores[100] = 1.0  # in the probationary period (first 150 points): not scored
    scores[300] = 1.0  # before any window: the full cost, 0.11
    raw = nab_score([series], [scores], 0.5)[1][0]
    assert raw == pytest.approx(1.0 - 0.11)
    scores[601] = 1.0  # just after the window: a small cost
    assert nab_score([series], [scores], 0.5)[1][0] > raw - 0.11


def test_the_best_threshold_matches_scoring_every_candidate():
    rng = np.random.default_rng(0)
    series = [labelled(800, [(300, 379)]), labelled(600, [(200, 259), (450, 509)])]
    scores = [rng.random(800) ** 8, rng.random(600) ** 8]
    threshold, best = best_threshold(series, scores)
    brute = max(nab_score(series, scores, float(t))[0] for t in np.unique(np.concatenate(scores)))
    assert best == pytest.approx(brute)
    assert nab_score(series, scores, threshold)[0] == pytest.approx(best)


def test_window_metrics_count_events_and_detected_windows():
    series = labelled(1000, [(500, 599), (800, 849)])
    scores = np.zeros(1000)
    scores[[300, 301, 302]] = 1.0  # one false-positive event of three points
    scores[510] = 1.0
    m = window_metrics(series, scores, 0.5)
    assert m == {
        'windows': 2,
        'detected_windows': 1,
        'recall': 0.5,
        'events': 2,
        'events_in_windows': 1,
        'precision': 0.5,
        'false_positive_events': 1,
    }
