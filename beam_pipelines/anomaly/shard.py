"""The anomaly state of one shard of keys: each key's model, and the points waiting for the
watermark so that every key is scored in event-time order.

Points arrive in any order; :meth:`ShardModels.add` holds them (``pending``) and
:meth:`ShardModels.release` scores, once the watermark has passed them, every pending point up to
a time, sorted by key and time. A point older than its key's last scored point cannot be scored
in order any more: it is returned as late (the transform sends it to its ``late`` output, as the
aggregation does). Keys without a point for ``idle_ttl_secs`` of event time are forgotten
(:meth:`expire`), so state stays bounded by the active keys.

Plain Python and Arrow, no pipeline in it.
"""

from __future__ import annotations

import math
import pickle

import numpy as np
import orjson
import pyarrow as pa
import pyarrow.compute as pc

from beam_pipelines.anomaly.model import KeyModel
from beam_pipelines.anomaly.spec import AnomalySpec
from beam_pipelines.columnar.timestamps import TIMESTAMP_TYPE

__all__ = ['SCORE_FIELDS', 'ShardModels', 'score_schema']

_US = 1_000_000
SCORE_FIELDS = [
    pa.field('event_time', TIMESTAMP_TYPE, nullable=False),
    pa.field('value', pa.float64()),
    pa.field('anomaly_score', pa.float64(), nullable=False),
    pa.field('is_anomaly', pa.bool_()),  # null: no verdict yet (warm-up)
    pa.field('detector', pa.string()),
    pa.field('raw_score', pa.float64()),
    pa.field('statistics', pa.string()),  # JSON: what the point was judged against
]


def score_schema(key_columns: tuple[str, ...]) -> pa.Schema:
    """Scored points: the key columns, then ``SCORE_FIELDS``."""
    return pa.schema([pa.field(k, pa.string(), nullable=False) for k in key_columns] + SCORE_FIELDS)


class ShardModels:
    """A shard's key models and pending points (see the module docstring).

    Args:
        spec: the detectors.
        key_columns, time_column, value_column: where the points are in the input tables.
        idle_ttl_secs: forget a key this long (event time) after its last point.
    """

    def __init__(
        self,
        spec: AnomalySpec,
        key_columns: tuple[str, ...],
        time_column: str,
        value_column: str,
        idle_ttl_secs: float,
    ):
        self.spec = spec
        self.keys = key_columns
        self.time = time_column
        self.value = value_column
        self.idle_ttl_us = round(idle_ttl_secs * _US)
        self.models: dict[tuple, KeyModel] = {}
        self.pending: list[pa.Table] = []
        self._template: bytes | None = None

    def new_model(self) -> KeyModel:
        """A fresh model for a new key: a copy of a pickled template, because building one runs
        Beam's ``Specifiable`` constructors (an ``inspect.signature`` per object, ~0.3 ms a
        key: most of the cost of a series with few points)."""
        if self._template is None:
            self._template = pickle.dumps(KeyModel(self.spec))
        return pickle.loads(self._template)

    def add(self, table: pa.Table) -> pa.Table:
        """Holds the points for release; returns those already too late for their key."""
        table = table.select([*self.keys, self.time, self.value])
        if not self.models or table.num_rows == 0:
            self.pending.append(table)
            return table.slice(0, 0)
        times = _micros(table.column(self.time))
        last = np.array(
            [_last_us(self.models.get(k)) for k in _key_tuples(table, self.keys)], np.int64
        )
        late = times < last
        if late.any():
            self.pending.append(table.filter(pa.array(~late)))
            return table.filter(pa.array(late))
        self.pending.append(table)
        return table.slice(0, 0)

    def pending_range(self) -> tuple[int, int] | None:
        """The earliest and the latest pending point's time (µs), if any."""
        lows = [pc.min(t.column(self.time)) for t in self.pending if t.num_rows]
        highs = [pc.max(t.column(self.time)) for t in self.pending if t.num_rows]
        if not lows:
            return None
        return min(_scalar_us(t) for t in lows), max(_scalar_us(t) for t in highs)

    def all_idle_at(self) -> int | None:
        """When (µs of event time) every key will have been idle ``idle_ttl``, if any key."""
        lasts = [m.last_time for m in self.models.values() if m.last_time is not None]
        if not lasts:
            return None
        return round(max(lasts) * _US) + self.idle_ttl_us

    def release(self, up_to_us: int) -> pa.Table | None:
        """Scores the pending points at or before ``up_to_us``, by key and time."""
        if not self.pending:
            return None
        pending = pa.concat_tables(self.pending) if len(self.pending) > 1 else self.pending[0]
        times = _micros(pending.column(self.time))
        due = times <= up_to_us
        self.pending = [pending.filter(pa.array(~due))] if not due.all() else []
        if not due.any():
            return None
        ready = pending.filter(pa.array(due))
        order = pc.sort_indices(
            ready, sort_keys=[*((k, 'ascending') for k in self.keys), (self.time, 'ascending')]
        )
        return self._score(ready.take(order))

    def expire(self, now_us: int) -> int:
        """Forgets keys idle for ``idle_ttl`` at ``now_us``; returns how many."""
        cutoff = (now_us - self.idle_ttl_us) / _US
        # A key with points still pending is not idle, however old its last scored point (a
        # bounded run's watermark jumps past every expiry before the last points are released).
        waiting = {k for t in self.pending for k in _key_tuples(t, self.keys)}
        idle = [
            k
            for k, m in self.models.items()
            if (m.last_time or math.inf) <= cutoff and k not in waiting
        ]
        for k in idle:
            del self.models[k]
        return len(idle)

    def _score(self, rows: pa.Table) -> pa.Table:
        keys = _key_tuples(rows, self.keys)
        times = _micros(rows.column(self.time))
        values = rows.column(self.value).to_pylist()
        out = {c: [] for c in ('score', 'label', 'detector', 'raw', 'stats')}
        for key, t_us, value in zip(keys, times.tolist(), values, strict=True):
            model = self.models.get(key)
            if model is None:
                model = self.models[key] = self.new_model()
            v = None if value is None or (isinstance(value, float) and math.isnan(value)) else value
            scored = model.update(t_us / _US, None if v is None else float(v))
            out['score'].append(scored.score)
            out['label'].append(scored.label)
            out['detector'].append(scored.detector)
            out['raw'].append(scored.raw)
            out['stats'].append(orjson.dumps(scored.stats).decode() if scored.stats else None)
        columns = {k: rows.column(k).cast(pa.string()) for k in self.keys}
        columns.update(
            event_time=rows.column(self.time).cast(TIMESTAMP_TYPE),
            value=rows.column(self.value).cast(pa.float64()),
            anomaly_score=pa.array(out['score'], pa.float64()),
            is_anomaly=pa.array(out['label'], pa.bool_()),
            detector=pa.array(out['detector'], pa.string()),
            raw_score=pa.array(_finite(out['raw']), pa.float64()),
            statistics=pa.array(out['stats'], pa.string()),
        )
        return pa.table(columns, schema=score_schema(self.keys))


def _key_tuples(table: pa.Table, keys: tuple[str, ...]) -> list[tuple]:
    return list(zip(*(table.column(k).to_pylist() for k in keys), strict=True))


def _micros(column) -> np.ndarray:
    return pc.cast(pc.cast(column, TIMESTAMP_TYPE), pa.int64()).to_numpy(zero_copy_only=False)


def _scalar_us(scalar) -> int:
    return pc.cast(pc.cast(scalar, TIMESTAMP_TYPE), pa.int64()).as_py()


def _last_us(model: KeyModel | None) -> int:
    if model is None or model.last_time is None:
        return np.iinfo(np.int64).min
    return round(model.last_time * _US)


def _finite(values):
    return [None if v is None or math.isinf(v) else v for v in values]
