"""Turning a detector's raw statistic into a score in [0, 1] that means the same on every key.

A fixed cutoff on |z| treats a noisy key and a quiet one alike, and one global threshold cannot
serve both (on NAB's series, raw z-scores alone score no better than the null detector: their
scale differs by orders of magnitude between series). ``RankCalibration`` scores a raw value by
how rare it is in the key's own recent history of raw values: the tail probability ``p`` of a
value at least this large among the last ``history`` ones, as ``-log10(p) / log10(n + 1)``.
That is 0 for a typical value and 1 for the largest seen in the whole history, so a threshold of
0.8 means "rarer than about one in n^0.8" on every key.

The history is a ring buffer of float32 values (grown by doubling, so a key with few points
holds little). A few values are scored one at a time, each a vectorised count over the history
(exact, O(history) in C). A key's larger batch is scored at once, each value against the values
before it: per chunk of values, the part of the history all their windows share is sorted once
and searched, and the values at the chunk's edges are compared directly (exact, ~1 µs a value
where counting through 8,000 values took ~4 µs). Plain numpy.
"""

from __future__ import annotations

import math

import numpy as np

__all__ = ['RankCalibration']

_FEW = 8  # batches this small are scored value by value
_CHUNK = 512  # values per sort of the shared history


class RankCalibration:
    """The rarity of raw values among the last ``history`` ones (see the module docstring).

    Args:
        history: how many raw values are remembered.
        min_history: no score until this many are.
    """

    def __init__(self, history: int = 8000, min_history: int = 200):
        if history < 2 or not 1 <= min_history <= history:
            raise ValueError('history must be >= 2 and 1 <= min_history <= history')
        # Grown by doubling up to ``history``: a key with few points holds a small array.
        self._ring = np.zeros(min(64, history), np.float32)
        self._history = history
        self._filled = 0
        self._next = 0
        self._min = min_history

    def score(self, raw: float) -> float | None:
        """The score of ``raw`` against the history (None until ``min_history`` values)."""
        n = self._filled
        if n < self._min:
            return None
        at_least = int(np.count_nonzero(self._ring[:n] >= np.float32(raw)))
        # -log10(tail) / log10(n + 1), tail = (at_least + 1) / (n + 1); written so that the
        # largest value scores exactly 1 (ties between detectors then break the same way on
        # every path).
        return 1.0 - math.log10(at_least + 1) / math.log10(n + 1)

    def push(self, raw: float) -> None:
        if self._filled == len(self._ring) < self._history:  # full but may grow: not wrapped yet
            grown = np.zeros(min(2 * len(self._ring), self._history), np.float32)
            grown[: self._filled] = self._ring
            self._ring, self._next = grown, self._filled
        self._ring[self._next] = raw
        self._next = (self._next + 1) % len(self._ring)
        self._filled = min(self._filled + 1, len(self._ring))

    def score_many(self, raws: np.ndarray) -> np.ndarray:
        """Scores each raw value against the history before it, then remembers it, in order.

        Returns:
            The scores; NaN where the history held fewer than ``min_history`` values.
        """
        if len(raws) <= _FEW:
            scores = np.empty(len(raws))
            for i, raw in enumerate(raws.tolist()):
                s = self.score(raw)
                scores[i] = math.nan if s is None else s
                self.push(raw)
            return scores
        x = np.asarray(raws, np.float32)
        h = np.concatenate([self._oldest_first(), x])
        done = len(h) - len(x)
        scores = np.empty(len(x))
        chunk = max(1, min(_CHUNK, self._history // 2))  # so a chunk's windows overlap
        for c0 in range(0, len(x), chunk):
            q = x[c0 : c0 + chunk]
            p = np.arange(done + c0, done + c0 + len(q))  # value i is scored on h[a_i : p_i]
            a = np.maximum(p - self._history, 0)
            shared = np.sort(h[a[-1] : p[0]])
            count = len(shared) - np.searchsorted(shared, q, side='left')
            # The edges: h[a_0 : a_last] (in value i's window from a_i) and h[p_0 : p_last]
            # (in it before p_i).
            head, tail = np.arange(a[0], a[-1]), np.arange(p[0], p[-1])
            count += ((head >= a[:, None]) & (h[head] >= q[:, None])).sum(axis=1)
            count += ((tail < p[:, None]) & (h[tail] >= q[:, None])).sum(axis=1)
            n = p - a
            scored = n >= self._min
            score = 1.0 - np.log10(count + 1) / np.log10(np.where(scored, n + 1, 2))
            scores[c0 : c0 + len(q)] = np.where(scored, score, np.nan)
        kept = h[-self._history :]
        self._ring = kept.copy()  # oldest first: the next value overwrites the oldest
        self._filled = len(kept)
        self._next = 0 if len(kept) == self._history else len(kept)
        return scores

    def _oldest_first(self) -> np.ndarray:
        if self._filled < len(self._ring):
            return self._ring[: self._filled]
        return np.concatenate([self._ring[self._next :], self._ring[: self._next]])
