"""Scoring anomaly scores against labelled windows, as the Numenta Anomaly Benchmark does.

Our own implementation of NAB's published scoring rules (Lavin & Ahmad, 2015, and the NAB
repository's documentation), so that detectors here are measured with the benchmark's own
yardstick:

* The first 15% of a series (at most 750 points) is a probationary period: not scored.
* A detection is a point whose score is at or above the threshold. Inside a labelled window,
  only the best (earliest) detection counts, weighted by a scaled sigmoid of its position: 1.0
  at the window's start, falling to about 0 at its end. A window without a detection costs
  ``fn_weight``.
* A detection outside every window costs ``fp_weight`` times a sigmoid of its distance past the
  previous window (full cost before the first window or far after one; less just after one).
* The threshold is one for all series (the one that maximises the total), and the total is
  normalised: 0 is the null detector (no detections), 100 the perfect one (every window
  detected at its start).

Also the plain window measures: recall (windows with a detection) and precision (detection
events inside windows over all events; consecutive detections form one event).

Profiles: ``standard`` (tp 1.0, fp 0.11, fn 1.0), ``reward_low_fp`` (fp 0.22) and
``reward_low_fn`` (fn 2.0), as NAB defines them.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Sequence

import numpy as np

__all__ = ['PROFILES', 'Labelled', 'best_threshold', 'nab_score', 'sweep_weights', 'window_metrics']

PROFILES = {
    'standard': {'tp': 1.0, 'fp': 0.11, 'fn': 1.0},
    'reward_low_fp': {'tp': 1.0, 'fp': 0.22, 'fn': 1.0},
    'reward_low_fn': {'tp': 1.0, 'fp': 0.11, 'fn': 2.0},
}
PROBATION_FRACTION = 0.15


@dataclasses.dataclass(frozen=True)
class Labelled:
    """A series' point times (epoch seconds, ascending) and its labelled windows."""

    name: str
    times: np.ndarray
    windows: tuple[tuple[float, float], ...]

    def window_index(self) -> list[tuple[int, int]]:
        """Each window as the (first, last) indices of its points."""
        out = []
        for start, end in self.windows:
            first = int(np.searchsorted(self.times, start, 'left'))
            last = int(np.searchsorted(self.times, end, 'right')) - 1
            if first <= last:
                out.append((first, last))
        return out


def _scaled_sigmoid(position: float) -> float:
    if position >= 3.0:
        return -1.0
    return 2.0 / (1.0 + math.exp(5.0 * position)) - 1.0


def sweep_weights(series: Labelled, profile: str = 'standard'):
    """Per point: the weight it scores if detected, and the window it belongs to (-1: none).
    Probationary points get window -2 (never scored)."""
    w = PROFILES[profile]
    n = len(series.times)
    probation = min(math.floor(PROBATION_FRACTION * n), PROBATION_FRACTION * 5000)
    weight = np.zeros(n)
    window_of = np.full(n, -1)
    max_tp = _scaled_sigmoid(-1.0)
    windows = series.window_index()
    prev_end = prev_width = None
    k = 0
    for i in range(n):
        if k < len(windows) and windows[k][0] <= i <= windows[k][1]:
            first, last = windows[k]
            width = last - first + 1
            weight[i] = _scaled_sigmoid(-(last - i + 1) / width) * w['tp'] / max_tp
            window_of[i] = k
            if i == last:
                prev_end, prev_width, k = last, width, k + 1
        else:
            if prev_end is None or prev_width <= 1:
                position = 3.0
            else:
                position = abs(prev_end - i) / (prev_width - 1)
            weight[i] = _scaled_sigmoid(position) * w['fp']
        if i < probation:
            window_of[i] = -2
    scored_windows = {int(x) for x in window_of[window_of >= 0]}
    return weight, window_of, scored_windows


def _raw_score(scores, weight, window_of, scored_windows, threshold, fn_weight) -> float:
    hit = (scores >= threshold) & (window_of != -2)
    total = float(weight[hit & (window_of == -1)].sum())
    for k in scored_windows:
        inside = hit & (window_of == k)
        total += float(weight[inside].max()) if inside.any() else -fn_weight
    return total


def nab_score(
    series: Sequence[Labelled],
    scores: Sequence[np.ndarray],
    threshold: float,
    profile: str = 'standard',
) -> tuple[float, list[float]]:
    """The normalised NAB score of all series at one threshold, and each series' raw score."""
    fn = PROFILES[profile]['fn']
    tp = PROFILES[profile]['tp']
    raws, windows = [], 0
    for s, sc in zip(series, scores, strict=True):
        weight, window_of, scored = sweep_weights(s, profile)
        raws.append(_raw_score(np.asarray(sc), weight, window_of, scored, threshold, fn))
        windows += len(scored)
    null, perfect = -fn * windows, tp * windows
    return 100.0 * (sum(raws) - null) / (perfect - null), raws


def best_threshold(
    series: Sequence[Labelled], scores: Sequence[np.ndarray], profile: str = 'standard'
) -> tuple[float, float]:
    """The threshold that maximises the normalised score over all series (as NAB's optimiser
    does), tried at every distinct score at once; returns (threshold, score)."""
    fn, tp = PROFILES[profile]['fn'], PROFILES[profile]['tp']
    candidates = np.unique(np.concatenate([np.asarray(s, float) for s in scores]))
    candidates = np.append(candidates[candidates > 0], 1.1)
    total = np.zeros(len(candidates))
    windows = 0
    for s, sc in zip(series, scores, strict=True):
        sc = np.asarray(sc, float)
        weight, window_of, scored = sweep_weights(s, profile)
        windows += len(scored)
        outside = window_of == -1
        total += _sum_at_or_above(sc[outside], weight[outside], candidates)
        for k in scored:
            inside = window_of == k
            total += _max_at_or_above(sc[inside], weight[inside], candidates, -fn)
    null, perfect = -fn * windows, tp * windows
    normalised = 100.0 * (total - null) / (perfect - null)
    best = int(np.argmax(normalised))
    return float(candidates[best]), float(normalised[best])


def _sum_at_or_above(values, weights, thresholds):
    """For each threshold, the sum of ``weights`` whose value is at or above it."""
    order = np.argsort(values)
    values, cum = values[order], np.concatenate([[0.0], np.cumsum(weights[order][::-1])])
    above = len(values) - np.searchsorted(values, thresholds, 'left')
    return cum[above]


def _max_at_or_above(values, weights, thresholds, empty):
    """For each threshold, the largest weight whose value is at or above it (``empty`` if none)."""
    order = np.argsort(-values, kind='stable')
    running = np.concatenate([[empty], np.maximum.accumulate(weights[order])])
    above = len(values) - np.searchsorted(np.sort(values), thresholds, 'left')
    return running[above]


def window_metrics(series: Labelled, scores: np.ndarray, threshold: float) -> dict:
    """Window recall, event precision and counts for one series at a threshold (probationary
    points excluded)."""
    _, window_of, scored = sweep_weights(series)
    hit = (np.asarray(scores) >= threshold) & (window_of != -2)
    events = []  # runs of consecutive detections
    i = 0
    while i < len(hit):
        if hit[i]:
            j = i
            while j + 1 < len(hit) and hit[j + 1]:
                j += 1
            events.append((i, j))
            i = j + 1
        else:
            i += 1
    inside = sum(1 for a, b in events if (window_of[a : b + 1] >= 0).any())
    detected = {int(k) for k in window_of[hit] if k >= 0}
    return {
        'windows': len(scored),
        'detected_windows': len(detected),
        'recall': len(detected) / len(scored) if scored else None,
        'events': len(events),
        'events_in_windows': inside,
        'precision': inside / len(events) if events else None,
        'false_positive_events': len(events) - inside,
    }
