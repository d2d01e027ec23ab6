"""The feature state of one shard of entities: each entity's retained history, and the events
waiting for the watermark, so that every entity's features are computed in event-time order.

The shape ``transforms.ordered.OrderedShardFn`` drives (as ``anomaly.shard`` is for the
detectors). An entity without an event for ``idle_ttl_secs`` (at least the longest horizon, so
no feature can still need its past) is forgotten.

Plain Arrow and numpy, no pipeline in it.
"""

from __future__ import annotations

import numpy as np
import pyarrow as pa

from beam_pipelines.anomaly.model import KeyModel
from beam_pipelines.columnar.ordering import NO_TIME
from beam_pipelines.columnar.ordering import EventTimeBuffer
from beam_pipelines.columnar.ordering import JobSpecState
from beam_pipelines.columnar.ordering import micros
from beam_pipelines.features.rolling import EntityHistory
from beam_pipelines.features.rolling import FeatureSpec
from beam_pipelines.features.rolling import rolling_features

__all__ = ['EVENT_COLUMNS', 'FeatureShard']

_US = 1_000_000
EVENT_COLUMNS = ('entity_id', 'event_type', 'timestamp', 'value', 'event_id')


class FeatureShard(JobSpecState):
    """A shard's entity histories and pending events.

    Args:
        spec: which features.
        idle_ttl_secs: forget an entity this long (event time) after its last event; raised to
            the longest horizon if shorter.
    """

    def __init__(self, spec: FeatureSpec, idle_ttl_secs: float):
        self.idle_ttl_us = round(max(idle_ttl_secs, spec.longest) * _US)
        self.models: dict[tuple, EntityHistory] = {}  # 'models' is the driver's name for keys
        self.scorers: dict[tuple, KeyModel] = {}  # with an anomaly spec: each entity's model
        self.buffer = EventTimeBuffer(('entity_id',), 'timestamp', EVENT_COLUMNS)
        self.attach(spec)

    def _scorer(self, key: tuple) -> KeyModel:
        if key not in self.scorers:  # as in anomaly.shard: Beam's constructors are slow
            self.scorers[key] = self.copy_of(lambda: KeyModel(self.spec.anomaly))
        return self.scorers[key]

    def _anomaly_scores(self, key: tuple, features: pa.Table) -> pa.Table:
        model = self._scorer(key)
        times = micros(features.column('event_time'))
        scores = [
            model.update(t / _US, None if v is None else float(v)).score
            for t, v in zip(times.tolist(), features.column('value').to_pylist(), strict=True)
        ]
        i = features.schema.get_field_index('anomaly_score')
        return features.set_column(i, 'anomaly_score', pa.array(scores, pa.float64()))

    @property
    def pending(self) -> bool:
        return bool(self.buffer.pending)

    def add(self, table: pa.Table, at_us: int) -> list[tuple[pa.Table, str]]:
        return self.buffer.add(table, at_us, self._last_us if self.models else None)

    def _last_us(self, keys: list[tuple]) -> np.ndarray:
        def last(k):
            h = self.models.get(k)
            return NO_TIME if h is None or h.last_us is None else h.last_us

        return np.array([last(k) for k in keys], np.int64)

    def pending_range(self) -> tuple[int, int] | None:
        return self.buffer.pending_range()

    def all_idle_at(self) -> int | None:
        lasts = [h.last_us for h in self.models.values() if h.last_us is not None]
        return max(lasts) + self.idle_ttl_us if lasts else None

    def release(self, up_to_us: int) -> pa.Table | None:
        """The features of the pending events the watermark has passed."""
        ready = self.buffer.take(up_to_us)
        if ready is None:
            return None
        entities = ready.column('entity_id').to_pylist()
        out, start = [], 0
        for i in range(1, len(entities) + 1):
            if i == len(entities) or entities[i] != entities[start]:
                key = (entities[start],)
                history = self.models.get(key) or EntityHistory.empty()
                features, self.models[key] = rolling_features(
                    history, ready.slice(start, i - start), self.spec
                )
                if self.spec.anomaly is not None:
                    features = self._anomaly_scores(key, features)
                out.append(features)
                start = i
        return pa.concat_tables(out)

    def expire(self, now_us: int) -> int:
        cutoff = now_us - self.idle_ttl_us
        waiting = self.buffer.waiting_keys()
        idle = [
            k
            for k, h in self.models.items()
            if h.last_us is not None and h.last_us <= cutoff and k not in waiting
        ]
        for k in idle:
            del self.models[k]
            self.scorers.pop(k, None)
        return len(idle)
