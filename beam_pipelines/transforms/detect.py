"""``DetectAnomalies``: stateful per-key anomaly scoring of keyed values, in event-time order.

Tables of points (key columns, a time, a value: raw event values, or window aggregates such as
per-minute counts) are sharded by key; one stateful DoFn per shard keeps each key's model
(``anomaly.model``) and holds arriving points until the watermark passes the timestamp of the
element that brought them, then scores them sorted by key and time (``anomaly.shard``). So
results do not depend on arrival order: a bounded run (where the watermark jumps to the end)
and a stream scored as it arrives give the same scores for the same points, and the scores are
stamped no earlier than their inputs, so windowed sinks downstream take them. A point behind
its key's last scored point (or without a time) is sent to ``late`` (the dead-letter envelope,
stage ``late``), not scored out of order and not dropped.

Timers: a release timer at the earliest pending element's timestamp, rounded up to
``release_secs`` (so a shard fires at most once per that much event time, not once per
element); keys idle for ``idle_ttl_secs`` of event time are dropped at each release, and an
expiry timer frees a shard once all its keys are idle, so state holds only active keys. The
spec is the job's, not part of the state: a job updated with a new spec builds new keys from it.

Why not Beam's ``AnomalyDetection`` transform (``apache_beam.ml.anomaly.transforms``): it
scores in arrival order, keeps one cloudpickled model per key and detector (pickled on every
element), and labels its steps with random ids (which breaks streaming updates on Dataflow).
The detectors themselves are Beam's (see ``anomaly.detectors``).
"""

from __future__ import annotations

from typing import NamedTuple

import apache_beam as beam
import pyarrow as pa
import pyarrow.compute as pc
from apache_beam.metrics import Metrics

from beam_pipelines.anomaly.shard import ShardModels
from beam_pipelines.anomaly.spec import AnomalySpec
from beam_pipelines.io import coders  # noqa: F401  (registers the Arrow table coder)
from beam_pipelines.transforms.ordered import NAMESPACE
from beam_pipelines.transforms.ordered import OrderedShardFn
from beam_pipelines.transforms.sharding import shard_table
from beam_pipelines.transforms.tags import LATE

__all__ = ['DetectAnomalies', 'Detected']

SCORES = 'scores'
_US = 1_000_000


class Detected(NamedTuple):
    scores: beam.PCollection  # pa.Table, anomaly.shard.score_schema(key_columns): every point
    anomalies: beam.PCollection  # pa.Table, same schema: the points labelled anomalous
    late: beam.PCollection  # dead-letter envelopes, stage 'late'


class DetectAnomalies(beam.PTransform):
    """Scores keyed values with per-key detectors (see the module docstring).

    Args:
        spec: the detectors (``anomaly.spec``).
        key_columns: the columns that form a key (one model per key).
        time_column: the points' event time (a timestamp column).
        value_column: the value scored (numeric; nulls get no verdict).
        num_shards: how many shards of keys hold state.
        release_secs: event-time granularity of releases.
        idle_ttl_secs: forget a key this long after its last point.
        pipeline: the pipeline's name, for late envelopes.
    """

    def __init__(
        self,
        spec: AnomalySpec,
        key_columns: tuple[str, ...] = ('entity_id', 'event_type'),
        time_column: str = 'timestamp',
        value_column: str = 'value',
        num_shards: int = 16,
        release_secs: float = 1.0,
        idle_ttl_secs: float = 7 * 24 * 3600,
        pipeline: str = 'beam_pipelines',
    ):
        super().__init__()
        if not key_columns:
            raise ValueError('key_columns must not be empty')
        if num_shards < 1:
            raise ValueError(f'num_shards must be >= 1, got {num_shards}')
        if not release_secs > 0 or not idle_ttl_secs > 0:
            raise ValueError('release_secs and idle_ttl_secs must be > 0')
        self._keys = tuple(key_columns)
        self._num_shards = num_shards
        self._fn = _DetectFn(
            spec,
            self._keys,
            time_column,
            value_column,
            round(release_secs * _US),
            idle_ttl_secs,
            pipeline,
        )

    def expand(self, tables) -> Detected:
        results = (
            tables
            | 'ShardByKey'
            >> beam.FlatMap(shard_table, self._keys, self._num_shards).with_output_types(
                tuple[int, pa.Table]
            )
            | 'ScorePerShard'
            >> beam.ParDo(self._fn).with_output_types(pa.Table).with_outputs(LATE, main=SCORES)
        )
        anomalies = results[SCORES] | 'KeepAnomalies' >> beam.FlatMap(_anomalies).with_output_types(
            pa.Table
        )
        return Detected(scores=results[SCORES], anomalies=anomalies, late=results[LATE])


def _anomalies(table: pa.Table):
    flagged = table.filter(pc.fill_null(table.column('is_anomaly'), False))
    if flagged.num_rows:
        yield flagged


class _DetectFn(OrderedShardFn):
    metric = 'anomaly'

    def __init__(self, spec, keys, time_column, value_column, release_us, idle_ttl_secs, pipeline):
        super().__init__(time_column, release_us, pipeline)
        self._spec = spec
        self._keys = keys
        self._value = value_column
        self._idle_ttl_secs = idle_ttl_secs

    def setup(self):
        super().setup()
        self._flagged = Metrics.counter(NAMESPACE, 'anomalies')

    def new_shard(self) -> ShardModels:
        return ShardModels(self._spec, self._keys, self._time, self._value, self._idle_ttl_secs)

    def job_config(self):
        return self._spec

    def released(self, scored: pa.Table):
        self._flagged.inc(pc.sum(pc.fill_null(scored.column('is_anomaly'), False)).as_py() or 0)
        yield scored
