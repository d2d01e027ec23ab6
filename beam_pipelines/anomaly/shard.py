"""The anomaly state of one shard of keys: each key's model, and the points waiting for the
watermark so that every key is scored in event-time order.

Points arrive in any order; :meth:`ShardModels.add` holds them in an ``EventTimeBuffer``
(``columnar.ordering``) and :meth:`ShardModels.release` scores, once the watermark has passed
the timestamps of the elements that brought them, those points sorted by key and time. Points
that cannot be scored in order (behind their key, or without a time) are returned with the
reason (the transform sends them to its ``late`` output). Keys without a
point for ``idle_ttl_secs`` of event time are forgotten (:meth:`expire`), so state stays bounded
by the active keys.

Plain Python and Arrow, no pipeline in it.
"""

from __future__ import annotations

import math

import numpy as np
import orjson
import pyarrow as pa

from beam_pipelines.anomaly.detectors import FEW_POINTS
from beam_pipelines.anomaly.model import KeyModel
from beam_pipelines.anomaly.model import Scored
from beam_pipelines.anomaly.model import ScoredBatch
from beam_pipelines.anomaly.spec import AnomalySpec
from beam_pipelines.columnar.ordering import NO_TIME
from beam_pipelines.columnar.ordering import EventTimeBuffer
from beam_pipelines.columnar.ordering import JobSpecState
from beam_pipelines.columnar.ordering import key_tuples
from beam_pipelines.columnar.ordering import micros
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


class ShardModels(JobSpecState):
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
        self.keys = key_columns
        self.time = time_column
        self.value = value_column
        self.idle_ttl_us = round(idle_ttl_secs * _US)
        self.models: dict[tuple, KeyModel] = {}
        self.buffer = EventTimeBuffer(
            key_columns, time_column, (*key_columns, time_column, value_column)
        )
        self.attach(spec)

    def new_model(self) -> KeyModel:
        """A fresh model for a new key: a copy of a pickled template, because building one runs
        Beam's ``Specifiable`` constructors (an ``inspect.signature`` per object, ~0.3 ms a
        key: most of the cost of a series with few points)."""
        return self.copy_of(lambda: KeyModel(self.spec))

    @property
    def pending(self) -> bool:
        return bool(self.buffer.pending)

    def add(self, table: pa.Table, at_us: int) -> list[tuple[pa.Table, str]]:
        """Holds the points (an element stamped ``at_us``) for release once the watermark passes
        ``at_us``; returns the points that cannot be scored in order, each with the reason."""
        return self.buffer.add(table, at_us, self._last_us if self.models else None)

    def _last_us(self, keys: list[tuple]) -> np.ndarray:
        return np.array([_last_us(self.models.get(k)) for k in keys], np.int64)

    def pending_range(self) -> tuple[int, int] | None:
        return self.buffer.pending_range()

    def waiting_keys(self) -> set[tuple]:
        return self.buffer.waiting_keys()

    def all_idle_at(self) -> int | None:
        """When (µs of event time) every key will have been idle ``idle_ttl``, if any key."""
        lasts = [m.last_time for m in self.models.values() if m.last_time is not None]
        if not lasts:
            return None
        return round(max(lasts) * _US) + self.idle_ttl_us

    def release(self, up_to_us: int) -> pa.Table | None:
        """Scores the pending points of elements stamped at or before ``up_to_us``."""
        ready = self.buffer.take(up_to_us)
        return None if ready is None else self._score(ready)

    def expire(self, now_us: int) -> int:
        """Forgets keys idle for ``idle_ttl`` at ``now_us``; returns how many."""
        cutoff = (now_us - self.idle_ttl_us) / _US
        # A key with points still pending is not idle, however old its last scored point (a
        # bounded run's watermark jumps past every expiry before the last points are released).
        waiting = self.waiting_keys()
        idle = [
            k
            for k, m in self.models.items()
            if m.last_time is not None and m.last_time <= cutoff and k not in waiting
        ]
        for k in idle:
            del self.models[k]
        return len(idle)

    def _score(self, rows: pa.Table) -> pa.Table:
        """Scores rows sorted by key then time: each key's run of rows in one batch."""
        keys = key_tuples(rows, self.keys)
        seconds = micros(rows.column(self.time)) / _US
        values = rows.column(self.value).cast(pa.float64()).to_numpy(zero_copy_only=False)
        out = _Columns()
        starts = [i for i in range(len(keys)) if i == 0 or keys[i] != keys[i - 1]]
        for start, stop in zip(starts, [*starts[1:], len(keys)], strict=True):
            model = self.models.get(keys[start])
            if model is None:
                model = self.models[keys[start]] = self.new_model()
            if stop - start > FEW_POINTS:
                out.add_batch(model.update_many(seconds[start:stop], values[start:stop]))
                continue
            for t, v in zip(seconds[start:stop].tolist(), values[start:stop].tolist()):
                out.add(model.update(t, v))  # a streaming release: few points per key
        columns = {k: rows.column(k).cast(pa.string()) for k in self.keys}
        columns.update(
            event_time=rows.column(self.time).cast(TIMESTAMP_TYPE),
            value=rows.column(self.value).cast(pa.float64()),
            anomaly_score=pa.array(out.score, pa.float64()),
            is_anomaly=pa.array(out.label, pa.bool_()),
            detector=pa.array(out.detector, pa.string()),
            raw_score=pa.array(out.raw, pa.float64()),
            statistics=pa.array(out.statistics, pa.string()),
        )
        return pa.table(columns, schema=score_schema(self.keys))


class _Columns:
    """The scored columns, gathered from single verdicts and from batches."""

    def __init__(self):
        self.score, self.label, self.detector, self.raw, self.statistics = [], [], [], [], []

    def add(self, scored: Scored) -> None:
        self.score.append(scored.score)
        self.label.append(scored.label)
        self.detector.append(scored.detector)
        raw = scored.raw
        self.raw.append(None if raw is None or math.isinf(raw) else raw)
        self.statistics.append(orjson.dumps(scored.stats).decode() if scored.stats else None)

    def add_batch(self, scored: ScoredBatch) -> None:
        self.score += scored.score.tolist()
        self.label += scored.labels()
        self.detector += scored.detectors()
        # A raw statistic is null without a verdict, and where it is infinite.
        self.raw += [None if math.isinf(r) or r != r else r for r in scored.raw().tolist()]
        self.statistics += scored.statistics()


def _last_us(model: KeyModel | None) -> int:
    if model is None or model.last_time is None:
        return NO_TIME
    return round(model.last_time * _US)
