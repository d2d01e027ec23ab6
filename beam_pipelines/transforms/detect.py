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

import math
from typing import NamedTuple

import apache_beam as beam
import orjson
import pyarrow as pa
import pyarrow.compute as pc
from apache_beam import pvalue
from apache_beam.coders import PickleCoder
from apache_beam.metrics import Metrics
from apache_beam.transforms.userstate import ReadModifyWriteStateSpec
from apache_beam.transforms.userstate import TimerSpec
from apache_beam.transforms.userstate import on_timer
from apache_beam.utils.timestamp import MAX_TIMESTAMP
from apache_beam.utils.timestamp import MIN_TIMESTAMP
from apache_beam.utils.timestamp import Timestamp

from beam_pipelines.anomaly.shard import ShardModels
from beam_pipelines.anomaly.spec import AnomalySpec
from beam_pipelines.dead_letter import Stage
from beam_pipelines.dead_letter import make_dead_letter
from beam_pipelines.io import coders  # noqa: F401  (registers the Arrow table coder)
from beam_pipelines.transforms.sharding import shard_table
from beam_pipelines.transforms.tags import LATE

__all__ = ['DetectAnomalies', 'Detected']

NAMESPACE = 'beam_pipelines'
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
            | 'ScorePerShard' >> beam.ParDo(self._fn).with_outputs(LATE, main=SCORES)
        )
        anomalies = results[SCORES] | 'KeepAnomalies' >> beam.FlatMap(_anomalies)
        return Detected(scores=results[SCORES], anomalies=anomalies, late=results[LATE])


def _anomalies(table: pa.Table):
    flagged = table.filter(pc.fill_null(table.column('is_anomaly'), False))
    if flagged.num_rows:
        yield flagged


class _DetectFn(beam.DoFn):
    STATE = ReadModifyWriteStateSpec('models', PickleCoder())
    RELEASE = TimerSpec('release', beam.TimeDomain.WATERMARK)
    EXPIRE = TimerSpec('expire', beam.TimeDomain.WATERMARK)

    def __init__(self, spec, keys, time_column, value_column, release_us, idle_ttl_secs, pipeline):
        self._spec = spec
        self._keys = keys
        self._time = time_column
        self._value = value_column
        self._release_us = release_us
        self._idle_ttl_secs = idle_ttl_secs
        self._pipeline = pipeline

    def setup(self):
        self._scored = Metrics.counter(NAMESPACE, 'anomaly_points_scored')
        self._flagged = Metrics.counter(NAMESPACE, 'anomalies')
        self._late = Metrics.counter(NAMESPACE, 'anomaly_late_points')
        self._expired = Metrics.counter(NAMESPACE, 'anomaly_keys_expired')

    def _new(self) -> ShardModels:
        return ShardModels(self._spec, self._keys, self._time, self._value, self._idle_ttl_secs)

    def process(
        self,
        element,
        at=beam.DoFn.TimestampParam,
        state=beam.DoFn.StateParam(STATE),
        release=beam.DoFn.TimerParam(RELEASE),
    ):
        _, table = element
        shard = self._read(state)
        for refused, reason in shard.add(table, _micros(at)):
            self._late.inc(refused.num_rows)
            yield from self._late_envelopes(refused, reason)
        pending = shard.pending_range()
        if pending is not None:  # the earliest: released as soon as the watermark passes it
            release.set(self._tick(pending[0]))
        state.write(shard)

    @on_timer(RELEASE)
    def on_release(
        self,
        fired=beam.DoFn.TimestampParam,
        state=beam.DoFn.StateParam(STATE),
        release=beam.DoFn.TimerParam(RELEASE),
        expire=beam.DoFn.TimerParam(EXPIRE),
    ):
        shard = self._read(state)
        now = _micros(fired)  # the watermark has reached at least this
        scored = shard.release(now)
        if scored is not None:
            self._scored.inc(scored.num_rows)
            flagged = pc.sum(pc.fill_null(scored.column('is_anomaly'), False)).as_py() or 0
            self._flagged.inc(flagged)
            yield scored
        self._expired.inc(shard.expire(now))
        pending = shard.pending_range()
        if pending is not None:
            release.set(self._tick(pending[0]))
        else:
            self._arm_expiry(shard, expire)
        state.write(shard)

    @on_timer(EXPIRE)
    def on_expire(
        self,
        fired=beam.DoFn.TimestampParam,
        state=beam.DoFn.StateParam(STATE),
    ):
        shard = self._read(state)
        self._expired.inc(shard.expire(_micros(fired)))
        if shard.models or shard.pending:
            # Points came in meanwhile: their release re-arms this timer once they are scored.
            state.write(shard)
        else:
            state.clear()  # a shard whose keys all went quiet holds nothing

    def _read(self, state) -> ShardModels:
        shard = state.read()
        if shard is None:
            return self._new()
        shard.attach(self._spec)  # the spec is the job's, not the state's
        return shard

    def _tick(self, micros: int) -> Timestamp:
        tick = math.ceil((micros + 1) / self._release_us) * self._release_us - 1
        return Timestamp(micros=max(min(tick, MAX_TIMESTAMP.micros - 1), MIN_TIMESTAMP.micros))

    def _arm_expiry(self, shard: ShardModels, expire) -> None:
        # Keys idle past the TTL are dropped at each release; this timer frees a shard whose
        # keys have all gone quiet (no release comes then). Armed only with nothing pending, so
        # it never fires again and again for a key that is waiting to be scored.
        until = shard.all_idle_at()
        if until is not None:
            expire.set(Timestamp(micros=min(until, MAX_TIMESTAMP.micros - 1)))

    def _late_envelopes(self, late: pa.Table, reason: str):
        times = late.column(self._time).cast(pa.timestamp('us', 'UTC')).to_pylist()
        for row, at in zip(late.to_pylist(), times, strict=True):
            event_time = at.strftime('%Y-%m-%dT%H:%M:%S.%fZ') if at is not None else None
            yield pvalue.TaggedOutput(
                LATE,
                make_dead_letter(
                    stage=Stage.LATE,
                    error_type='late_point' if at is not None else 'untimed_point',
                    error_message=f'point at {event_time}: {reason}',
                    payload=orjson.dumps(row, default=str),
                    source={},
                    pipeline=self._pipeline,
                    event_time=event_time,
                ),
            )


def _micros(at) -> int:
    return int(at.micros)
