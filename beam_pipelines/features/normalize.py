"""Normalisation of feature columns with statistics computed once and saved with the features.

Training and serving must scale features alike, so the statistics are data, not code: a batch
run computes them over its offline features (:class:`StatsCombineFn`, mergeable, so Beam
combines them in parallel) and writes them next to the features as JSON
(:meth:`NormalizationStats.to_json`); any later run (a stream, the online store) loads that file
and applies exactly the same numbers (:func:`normalize`), adding ``<column>_norm`` columns:

* ``minmax``: ``(x - min) / (max - min)`` (0 where the column is constant);
* ``zscore``: ``(x - mean) / stddev`` (0 where the stddev is 0).

Nulls stay null. Plain Python, Arrow and numpy (the CombineFn is Beam's interface only).
"""

from __future__ import annotations

import dataclasses
import math

import apache_beam as beam
import numpy as np
import orjson
import pyarrow as pa
import pyarrow.compute as pc

__all__ = ['METHODS', 'NormalizationStats', 'StatsCombineFn', 'normalize']

METHODS = ('minmax', 'zscore')


@dataclasses.dataclass
class _Moments:
    n: int = 0
    mean: float = 0.0
    m2: float = 0.0
    lo: float = math.inf
    hi: float = -math.inf

    def merge(self, other: _Moments) -> _Moments:
        if other.n == 0:
            return self
        if self.n == 0:
            return other
        n = self.n + other.n
        delta = other.mean - self.mean
        mean = self.mean + delta * other.n / n
        m2 = self.m2 + other.m2 + delta * delta * self.n * other.n / n  # Chan et al.
        return _Moments(n, mean, m2, min(self.lo, other.lo), max(self.hi, other.hi))

    @classmethod
    def of(cls, values: np.ndarray) -> _Moments:
        values = values[~np.isnan(values)]
        if not len(values):
            return cls()
        mean = float(values.mean())
        return cls(
            len(values),
            mean,
            float(((values - mean) ** 2).sum()),
            float(values.min()),
            float(values.max()),
        )


@dataclasses.dataclass(frozen=True)
class NormalizationStats:
    """Per column: count, min, max, mean and stddev (sample) of its non-null values."""

    columns: dict[str, dict[str, float | int | None]]

    def to_json(self) -> bytes:
        return orjson.dumps({'columns': self.columns}, option=orjson.OPT_SORT_KEYS)

    @classmethod
    def from_json(cls, data: bytes) -> NormalizationStats:
        return cls(orjson.loads(data)['columns'])


class StatsCombineFn(beam.CombineFn):
    """:class:`NormalizationStats` of the given columns over feature tables."""

    def __init__(self, columns: list[str]):
        self._columns = list(columns)

    def create_accumulator(self):
        return {c: _Moments() for c in self._columns}

    def add_input(self, acc, table: pa.Table):
        for c in self._columns:
            values = (
                table.column(c).cast(pa.float64()).fill_null(np.nan).to_numpy(zero_copy_only=False)
            )
            acc[c] = acc[c].merge(_Moments.of(values))
        return acc

    def merge_accumulators(self, accs):
        accs = list(accs)
        out = accs[0]
        for a in accs[1:]:
            out = {c: out[c].merge(a[c]) for c in self._columns}
        return out

    def extract_output(self, acc) -> NormalizationStats:
        cols = {}
        for c, m in acc.items():
            cols[c] = {
                'count': m.n,
                'min': m.lo if m.n else None,
                'max': m.hi if m.n else None,
                'mean': m.mean if m.n else None,
                'stddev': math.sqrt(m.m2 / (m.n - 1)) if m.n > 1 else None,
            }
        return NormalizationStats(cols)


def normalize(table: pa.Table, stats: NormalizationStats, method: str) -> pa.Table:
    """Adds ``<column>_norm`` for every column the statistics cover."""
    if method not in METHODS:
        raise ValueError(f'method must be one of {METHODS}, got {method!r}')
    for c, s in stats.columns.items():
        x = table.column(c).cast(pa.float64())
        if method == 'minmax':
            lo, hi = s['min'], s['max']
            if lo is None or hi == lo:
                scaled = pc.multiply(x, 0.0)
            else:
                scaled = pc.divide(pc.subtract(x, lo), hi - lo)
        else:
            mean, std = s['mean'], s['stddev']
            if mean is None or not std:
                scaled = pc.multiply(x, 0.0)
            else:
                scaled = pc.divide(pc.subtract(x, mean), std)
        table = table.append_column(f'{c}_norm', scaled)
    return table
