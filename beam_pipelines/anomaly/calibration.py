"""Turning a detector's raw statistic into a score in [0, 1] that means the same on every key.

A fixed cutoff on |z| treats a noisy key and a quiet one alike, and one global threshold cannot
serve both (on NAB's series, raw z-scores alone score no better than the null detector: their
scale differs by orders of magnitude between series). ``RankCalibration`` scores a raw value by
how rare it is in the key's own recent history of raw values: the tail probability ``p`` of a
value at least this large among the last ``history`` ones, as ``-log10(p) / log10(n + 1)``.
That is 0 for a typical value and 1 for the largest seen in the whole history, so a threshold of
0.8 means "rarer than about one in n^0.8" on every key.

The history is a ring buffer of float32 values (grown by doubling, so a key with few points
holds little), and a score is one vectorised count over it (exact, O(history) in C, compact to
keep in state: 4 bytes a value). Plain Python and numpy.
"""

from __future__ import annotations

import math

import numpy as np

__all__ = ['RankCalibration']


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
        tail = (at_least + 1) / (n + 1)
        return -math.log10(tail) / math.log10(n + 1)

    def push(self, raw: float) -> None:
        if self._filled == len(self._ring) < self._history:  # full but may grow: not wrapped yet
            grown = np.zeros(min(2 * len(self._ring), self._history), np.float32)
            grown[: self._filled] = self._ring
            self._ring, self._next = grown, self._filled
        self._ring[self._next] = raw
        self._next = (self._next + 1) % len(self._ring)
        self._filled = min(self._filled + 1, len(self._ring))
