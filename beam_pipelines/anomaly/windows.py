"""Sliding-window statistics over a key's batch of points, vectorised with numpy.

A detector scores each point against the ``window`` values learnt before it, then learns it.
Doing that one point at a time through Beam's tracker objects (``IncSlidingStdevTracker`` and
friends) costs ~10 µs of Python per point and detector, most of the anomaly stage's time; here a
key's whole batch is judged at once:

* :func:`sliding_mean_std`: the mean and sample standard deviation (``ddof=1``) of the
  ``window`` values before each point, computed exactly from the window (two passes over a
  strided view, no running sums: nothing drifts over a long stream, and a flat stretch has a
  spread of exactly 0, where Beam's incremental Welford tracker goes negative). It is what
  Beam's ``SimpleSlidingStdevTracker`` (``np.nanvar`` of the window) returns, and is tested
  against it.
* :class:`SeasonalLag`: the value one period before each point, by time.

Plain numpy, no pipeline in it.
"""

from __future__ import annotations

import math

import numpy as np
from numpy.lib.stride_tricks import sliding_window_view

__all__ = ['SeasonalLag', 'SlidingWindow', 'sliding_mean_std']

_ROWS = 4096  # windows judged per step: bounds the temporary matrix (rows x window floats)


class _Tail:
    """The last values of a series in a buffer appended to in place (amortised O(1) a value,
    where re-concatenating the kept values on every append would be O(kept))."""

    def __init__(self):
        self._buf = np.empty(0)
        self._start = 0
        self._end = 0

    def __len__(self) -> int:
        return self._end - self._start

    @property
    def values(self) -> np.ndarray:
        return self._buf[self._start : self._end]

    def append(self, values: np.ndarray, keep: int) -> None:
        """Appends ``values``, then keeps only the last ``keep``."""
        if self._end + len(values) > len(self._buf) or len(self._buf) > 4 * max(keep, 16):
            # Full (or far too big after a large batch): a buffer twice what is kept.
            kept = min(keep, len(self) + len(values))
            buf = np.empty(max(16, 2 * kept))
            buf[:kept] = np.concatenate([self.values, values])[len(self) + len(values) - kept :]
            self._buf, self._start, self._end = buf, 0, kept
            return
        self._buf[self._end : self._end + len(values)] = values
        self._end += len(values)
        self._start = max(self._start, self._end - keep)

    def append_one(self, value: float, keep: int) -> None:
        if self._end < len(self._buf):
            self._buf[self._end] = value
            self._end += 1
            self._start = max(self._start, self._end - keep)
        else:
            self.append(np.array([value]), keep)

    def __getstate__(self):
        return {'values': self.values.copy()}

    def __setstate__(self, state):
        self._buf, self._start, self._end = state['values'], 0, len(state['values'])


class SlidingWindow:
    """The last ``window`` values learnt, and the mean and sample stddev each new value is
    judged against (see :func:`sliding_mean_std`)."""

    def __init__(self, window: int):
        self.window = window
        self._tail = _Tail()

    def judge(self, values: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Per value, the window's mean and stddev before it; then learns the values."""
        mean, std = sliding_mean_std(self._tail.values, values, self.window)
        self._tail.append(values, self.window)
        return mean, std

    def judge_one(self, value: float) -> tuple[float, float]:
        """:meth:`judge` for one value (NaN: not known)."""
        win = self._tail.values[-self.window :]
        n = len(win)
        mean = std = math.nan
        if n:
            mean = float(win.sum()) / n
            if n > 1:
                dev = win - mean
                std = math.sqrt(max(float(dev @ dev) / (n - 1), 0.0))
        self._tail.append_one(value, self.window)
        return mean, std


def sliding_mean_std(
    history: np.ndarray, values: np.ndarray, window: int
) -> tuple[np.ndarray, np.ndarray]:
    """The mean and sample stddev of the ``window`` values before each of ``values``.

    Args:
        history: the values learnt before (only the last ``window`` matter).
        values: the new values, in order; each is judged, then learnt.
        window: how many previous values a point is judged against.

    Returns:
        ``(mean, std)``: per value, the window's mean (NaN with no previous value) and stddev
        (NaN with fewer than two).
    """
    history = history[-window:]
    learnt = np.concatenate([history, values])
    mean = np.full(len(values), np.nan)
    std = np.full(len(values), np.nan)
    # Left-padded with zeros so that every point has a full-width row: the padding adds nothing
    # to a young key's sums, and is masked out of its deviations.
    padded = np.concatenate([np.zeros(window), learnt])
    rows = sliding_window_view(padded, window)
    columns = np.arange(window)
    for start in range(0, len(values), _ROWS):
        stop = min(start + _ROWS, len(values))
        first = len(history) + start
        win = rows[first : len(history) + stop]  # row p = learnt[p - window : p]
        n = np.minimum(np.arange(first, first + len(win)), window)
        with np.errstate(invalid='ignore', divide='ignore'):
            m = win.sum(axis=1) / n
            dev = win - m[:, None]
            if n[0] < window:  # a young key: its rows start with padding, not values
                dev = np.where(columns >= (window - n)[:, None], dev, 0.0)
            var = np.einsum('ij,ij->i', dev, dev) / (n - 1)
        mean[start:stop] = np.where(n > 0, m, np.nan)
        std[start:stop] = np.where(n > 1, np.sqrt(np.maximum(var, 0.0)), np.nan)
    return mean, std


class SeasonalLag:
    """The value one period ago, by time: the point nearest to ``t - period`` if it lies within
    2% of the period of it (irregular series and gaps give no lag rather than a wrong one; ties
    go to the earlier point). Keeps what later points can still need, at most ``max_points``.
    """

    def __init__(self, period_secs: float, max_points: int = 100_000):
        self._period = period_secs
        self._tolerance = 0.02 * period_secs
        self._max = max_points
        self._times = _Tail()
        self._values = _Tail()

    def lags(self, times: np.ndarray, values: np.ndarray) -> np.ndarray:
        """For each point (times not decreasing, also from call to call), the value one period
        before it (NaN if none lies within the tolerance); then remembers the points."""
        if not len(times):
            return np.empty(0)
        old_t, old_v = self._times.values, self._values.values
        held = len(old_t)
        # The points before each are the kept ones, then the batch's: indices run over both
        # (no copy of what is kept: a period of points, for one new point).
        targets = times - self._period
        before = np.searchsorted(old_t, targets, side='right')
        before += np.searchsorted(times, targets, side='right')
        before = np.maximum(before - 1, 0)
        after = before + 1
        own = held + np.arange(len(times))  # a point sees only the points before it

        d_before = np.where(before < own, np.abs(_take(before, old_t, times) - targets), np.inf)
        d_after = np.where(after < own, np.abs(_take(after, old_t, times) - targets), np.inf)
        nearest = np.where(d_after < d_before, after, before)
        found = np.minimum(d_before, d_after) <= self._tolerance
        lag = np.where(found, _take(nearest, old_v, values), np.nan)
        # Later targets are later: keep from the last point at or before this batch's last one.
        last_target = times[-1] - self._period
        first_needed = int(np.searchsorted(old_t, last_target, side='right'))
        first_needed += int(np.searchsorted(times, last_target, side='right'))
        keep = min(held + len(times) - max(first_needed - 1, 0), self._max)
        self._times.append(times, keep)
        self._values.append(values, keep)
        return lag

    def lag_one(self, t: float, value: float) -> float | None:
        """:meth:`lags` for one point (None: no lag)."""
        times = self._times.values
        target = t - self._period
        i = int(np.searchsorted(times, target, side='right'))
        best = None
        for j in (i - 1, i) if i else (0, 1):  # the last point at or before, the next one
            near = j < len(times) and abs(times[j] - target) <= self._tolerance
            if near and (best is None or abs(times[j] - target) < abs(times[best] - target)):
                best = j
        lag = None if best is None else float(self._values.values[best])
        first_needed = max(i - 1, 0)
        keep = min(len(times) + 1 - first_needed, self._max)
        self._times.append_one(t, keep)
        self._values.append_one(value, keep)
        return lag


def _take(i: np.ndarray, old: np.ndarray, new: np.ndarray) -> np.ndarray:
    """``concatenate([old, new])[i]`` without the concatenation."""
    held = len(old)
    from_old = old[np.minimum(i, held - 1)] if held else np.zeros(len(i))
    return np.where(i < held, from_old, new[np.minimum(np.maximum(i - held, 0), len(new) - 1)])
