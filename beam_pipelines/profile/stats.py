"""Mergeable dataset profiles: per field its types, nulls, distinct values, extremes, quantiles
and a histogram. Plain Python and numpy, no Beam: a profile of each batch, merged in any order,
equals (up to the sketches' stated errors) the profile of the whole input.

- Types are counted per value as JSON knows them (``string``, ``integer``, ``number``,
  ``boolean``, ``object``, ``array``), so a field that is sometimes a number and sometimes a
  string shows both.
- Distinct values: a K-minimum-values sketch (the ``k`` smallest 64-bit hashes; exact below
  ``k`` distinct values, about ``1/sqrt(k)`` relative error above; Bar-Yossef et al. 2002).
- Numbers: exact count, min, max and mean; quantiles and the histogram from the project's
  DDSketch buckets (within 1% in value).
- Strings: the shortest and longest length, and the most frequent values (exact while there are
  at most ``TOP_CAPACITY`` distinct ones, else approximate, Misra-Gries).
"""

from __future__ import annotations

import collections
import hashlib
import math
from typing import Any

import numpy as np
import pyarrow as pa

from beam_pipelines.columnar.sketch import bucket_keys
from beam_pipelines.columnar.sketch import bucket_values
from beam_pipelines.columnar.sketch import counter_quantiles

__all__ = ['KMV_K', 'DatasetProfile', 'FieldProfile']

KMV_K = 1024
TOP_CAPACITY = 256
HISTOGRAM_BINS = 10
_MAX_HASH = float(2**64)


def _type_of(value: Any) -> str:
    if isinstance(value, bool):
        return 'boolean'
    if isinstance(value, int):
        return 'integer'
    if isinstance(value, float):
        return 'number'
    if isinstance(value, str):
        return 'string'
    if isinstance(value, dict):
        return 'object'
    if isinstance(value, list | tuple):
        return 'array'
    return type(value).__name__


def _hash(value: Any) -> int:
    text = repr(value).encode('utf-8', 'surrogatepass')
    return int.from_bytes(hashlib.blake2b(text, digest_size=8).digest(), 'little')


class FieldProfile:
    """One field's profile; ``add`` values, ``merge`` other profiles of the same field."""

    def __init__(self):
        self.present = 0
        self.nulls = 0
        self.types: collections.Counter = collections.Counter()
        self.hashes: set[int] = set()  # the KMV_K smallest
        self.numbers = 0
        self.num_min = math.inf
        self.num_max = -math.inf
        self.num_sum = 0.0
        self.buckets: collections.Counter = collections.Counter()
        self.len_min = math.inf
        self.len_max = 0
        self.top: collections.Counter = collections.Counter()

    def add(self, values: list) -> None:
        """Adds a field's values of a batch (``None``: null)."""
        numeric = []
        for v in values:
            if v is None:
                self.nulls += 1
                continue
            self.present += 1
            kind = _type_of(v)
            self.types[kind] += 1
            self.hashes.add(_hash(v))
            if kind in ('integer', 'number'):
                numeric.append(float(v))
            elif kind == 'string':
                self.len_min = min(self.len_min, len(v))
                self.len_max = max(self.len_max, len(v))
                self._count_top(v, 1)
            elif kind == 'boolean':
                self._count_top(v, 1)
        self._trim_hashes()
        if numeric:
            self._add_numbers(np.array(numeric, dtype=np.float64))

    def add_nulls(self, n: int) -> None:
        self.nulls += n

    def _add_numbers(self, arr: np.ndarray) -> None:
        finite = arr[np.isfinite(arr)]
        self.numbers += len(arr)
        if not len(finite):
            return
        self.num_min = min(self.num_min, float(finite.min()))
        self.num_max = max(self.num_max, float(finite.max()))
        self.num_sum += float(finite.sum())
        keys, counts = np.unique(bucket_keys(finite), return_counts=True)
        self.buckets.update(dict(zip(keys.tolist(), counts.tolist())))

    def _count_top(self, value, n: int) -> None:
        self.top[value] += n
        if len(self.top) > TOP_CAPACITY:
            # Misra-Gries: take the smallest count off every value; the zeros go.
            floor = min(self.top.values())
            self.top = collections.Counter({k: c - floor for k, c in self.top.items() if c > floor})

    def _trim_hashes(self) -> None:
        if len(self.hashes) > KMV_K:
            self.hashes = set(sorted(self.hashes)[:KMV_K])

    def merge(self, other: FieldProfile) -> FieldProfile:
        self.present += other.present
        self.nulls += other.nulls
        self.types.update(other.types)
        self.hashes |= other.hashes
        self._trim_hashes()
        self.numbers += other.numbers
        self.num_min = min(self.num_min, other.num_min)
        self.num_max = max(self.num_max, other.num_max)
        self.num_sum += other.num_sum
        self.buckets.update(other.buckets)
        self.len_min = min(self.len_min, other.len_min)
        self.len_max = max(self.len_max, other.len_max)
        for value, n in other.top.items():
            self._count_top(value, n)
        return self

    def distinct(self) -> int:
        """Estimated distinct non-null values (exact below ``KMV_K``)."""
        if len(self.hashes) < KMV_K:
            return len(self.hashes)
        kth = max(self.hashes) / _MAX_HASH
        return round((KMV_K - 1) / kth)

    def numeric_summary(self) -> dict | None:
        if not self.buckets:
            return None
        keys = np.array(sorted(self.buckets), dtype=np.int64)
        counts = np.array([self.buckets[k] for k in keys], dtype=np.int64)
        cum = np.cumsum(counts)
        finite = int(cum[-1])
        qs = (0.01, 0.05, 0.25, 0.5, 0.75, 0.95, 0.99)
        quantiles = {
            f'p{round(q * 100)}': min(max(v, self.num_min), self.num_max)
            for q, v in zip(qs, counter_quantiles(self.buckets, qs))
        }
        values = np.clip(bucket_values(keys), self.num_min, self.num_max)
        edges = np.linspace(self.num_min, self.num_max, HISTOGRAM_BINS + 1)
        if self.num_min == self.num_max:
            hist = [finite]
        else:
            where = np.clip(np.searchsorted(edges, values, side='right') - 1, 0, HISTOGRAM_BINS - 1)
            hist = np.bincount(where, weights=counts, minlength=HISTOGRAM_BINS).astype(int).tolist()
        return {
            'count': self.numbers,
            'non_finite': self.numbers - finite,
            'min': self.num_min,
            'max': self.num_max,
            'mean': self.num_sum / finite,
            **quantiles,
            'histogram': {'edges': edges.tolist(), 'counts': hist},
        }

    def to_dict(self, rows: int) -> dict:
        out: dict[str, Any] = {
            'present': self.present,
            'nulls': self.nulls,
            'null_ratio': self.nulls / rows if rows else 0.0,
            'types': dict(self.types.most_common()),
            'distinct_estimate': self.distinct(),
        }
        numeric = self.numeric_summary()
        if numeric:
            out['numeric'] = numeric
        if self.len_max or self.len_min != math.inf:
            out['string_length'] = {'min': int(self.len_min), 'max': self.len_max}
        if self.top:
            # Ties in a stable order (by value), whatever order the batches merged in.
            ranked = sorted(self.top.items(), key=lambda kv: (-kv[1], str(kv[0])))
            out['top_values'] = [[str(v), n] for v, n in ranked[:5]]
        return out


class DatasetProfile:
    """A dataset's profile: rows, records that could not be decoded, and each field's profile
    (a field missing from a record counts as a null there)."""

    def __init__(self):
        self.rows = 0
        self.undecodable = 0
        self.fields: dict[str, FieldProfile] = {}
        self.errors: collections.Counter = collections.Counter()

    def _field(self, name: str) -> FieldProfile:
        if name not in self.fields:
            self.fields[name] = FieldProfile()
            # Rows seen before the field first appeared did not have it.
            self.fields[name].add_nulls(self.rows)
        return self.fields[name]

    def add_records(self, records: list[dict]) -> None:
        names = {k for r in records for k in r}
        for name in sorted(names):
            self._field(name).add([r.get(name) for r in records])
        for name, profile in self.fields.items():
            if name not in names:
                profile.add_nulls(len(records))
        self.rows += len(records)

    def add_table(self, table: pa.Table) -> None:
        self.add_records(table.to_pylist())

    def add_undecodable(self, error_type: str, n: int = 1) -> None:
        self.undecodable += n
        self.errors[error_type] += n

    def merge(self, other: DatasetProfile) -> DatasetProfile:
        for name in other.fields:
            self._field(name)
        for name, profile in self.fields.items():
            if name in other.fields:
                profile.merge(other.fields[name])
            else:
                profile.add_nulls(other.rows)
        self.rows += other.rows
        self.undecodable += other.undecodable
        self.errors.update(other.errors)
        return self

    def to_dict(self) -> dict:
        return {
            'rows': self.rows,
            'undecodable': self.undecodable,
            'undecodable_by_error': dict(self.errors.most_common()),
            'fields': {n: p.to_dict(self.rows) for n, p in sorted(self.fields.items())},
        }
