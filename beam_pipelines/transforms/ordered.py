"""``OrderedShardFn``: the stateful DoFn behind the per-key, event-time-ordered steps (anomaly
detection, rolling features).

Elements are ``(shard, table)``; the shard's state is one object (``PickleCoder``) that holds
its keys' state and an ``EventTimeBuffer`` of pending points, and that a subclass creates
(:meth:`new_shard`). The DoFn only drives it:

* ``process``: the shard takes the points (``add``, with the element's timestamp); points it
  refuses (behind their key, or untimed) become ``late`` envelopes; a release timer is set at
  the earliest pending element, rounded up to ``release_us``.
* release timer: the shard processes what the watermark has passed (``release``) and drops keys
  idle for its TTL (``expire``); the timer is re-armed at the earliest remaining element, or,
  with nothing pending, an expiry timer is armed for when every key will be idle.
* expiry timer: idle keys are dropped; an empty shard clears its state.

The shard object provides ``add(table, at_us)``, ``release(up_to_us)``, ``expire(now_us)``,
``pending_range()``, ``all_idle_at()``, ``pending`` and ``models`` (truthy while it holds
keys), and ``attach(job_config)`` (configuration that is the job's, not the state's).

Each subclass has timers of its own, named after its ``metric`` (``feature_release``,
``anomaly_expire``): Beam's FnApiRunner, which the DirectRunner runs bounded pipelines on,
buffers the timers a fused stage sets by timer family id alone (apache/beam#21995). Two steps
fused into one stage with the same timer ids (the flagship's features and anomaly detection
both follow its deduplication) shared one buffer: the step read first took every timer, and the
other's never fired, so it released nothing, silently. The timer methods are therefore made per
subclass (``__init_subclass__``), around the shared logic in ``_add``, ``_release`` and
``_expire``.
"""

from __future__ import annotations

import math

import apache_beam as beam
import orjson
import pyarrow as pa
from apache_beam import pvalue
from apache_beam.coders import PickleCoder
from apache_beam.metrics import Metrics
from apache_beam.transforms.userstate import ReadModifyWriteStateSpec
from apache_beam.transforms.userstate import TimerSpec
from apache_beam.transforms.userstate import on_timer
from apache_beam.utils.timestamp import MAX_TIMESTAMP
from apache_beam.utils.timestamp import MIN_TIMESTAMP
from apache_beam.utils.timestamp import Timestamp

from beam_pipelines.dead_letter import Stage
from beam_pipelines.dead_letter import make_dead_letter
from beam_pipelines.io import coders  # noqa: F401  (registers the Arrow table coder)
from beam_pipelines.transforms.tags import LATE

__all__ = ['NAMESPACE', 'OrderedShardFn']

NAMESPACE = 'beam_pipelines'


class OrderedShardFn(beam.DoFn):
    """Drives a shard object (see the module docstring); subclasses give ``new_shard``,
    ``job_config`` and ``metric`` (the counters' name prefix and the timers' names, so one of
    their own)."""

    STATE = ReadModifyWriteStateSpec('shard', PickleCoder())
    metric = 'ordered'

    def __init_subclass__(cls, **kwargs):
        super().__init_subclass__(**kwargs)
        if 'metric' not in cls.__dict__:
            raise TypeError(
                f'{cls.__qualname__} must set its own metric (its timers are named after it)'
            )
        _define_timers(cls)

    def __init__(self, time_column: str, release_us: int, pipeline: str):
        self._time = time_column
        self._release_us = release_us
        self._pipeline = pipeline

    def new_shard(self):
        raise NotImplementedError

    def job_config(self):
        return None

    def setup(self):
        self._released = Metrics.counter(NAMESPACE, f'{self.metric}_points')
        self._late = Metrics.counter(NAMESPACE, f'{self.metric}_late_points')
        self._expired = Metrics.counter(NAMESPACE, f'{self.metric}_keys_expired')

    def _add(self, element, at, state, release):
        _, table = element
        shard = self._read(state)
        for refused, reason in shard.add(table, int(at.micros)):
            self._late.inc(refused.num_rows)
            yield from self._late_envelopes(refused, reason)
        pending = shard.pending_range()
        if pending is not None:  # the earliest: released as soon as the watermark passes it
            release.set(self._tick(pending[0]))
        state.write(shard)

    def _release(self, fired, state, release, expire):
        shard = self._read(state)
        now = int(fired.micros)  # the watermark has reached at least this
        out = shard.release(now)
        if out is not None:
            self._released.inc(out.num_rows)
            yield from self.released(out)
        self._expired.inc(shard.expire(now))
        pending = shard.pending_range()
        if pending is not None:
            release.set(self._tick(pending[0]))
        else:
            # Keys idle past the TTL are dropped at each release; this timer frees a shard whose
            # keys have all gone quiet. Armed only with nothing pending, so it never fires again
            # and again for a key that is waiting.
            until = shard.all_idle_at()
            if until is not None:
                expire.set(Timestamp(micros=min(until, MAX_TIMESTAMP.micros - 1)))
        state.write(shard)

    def _expire(self, fired, state):
        shard = self._read(state)
        self._expired.inc(shard.expire(int(fired.micros)))
        if shard.models or shard.pending:
            state.write(shard)  # points came meanwhile: their release re-arms this timer
        else:
            state.clear()  # a shard whose keys all went quiet holds nothing

    def released(self, table: pa.Table):
        """The outputs of a released, processed table (override to count or split)."""
        yield table

    def _read(self, state):
        shard = state.read()
        if shard is None:
            return self.new_shard()
        shard.attach(self.job_config())  # configuration is the job's, not the state's
        return shard

    def _tick(self, micros: int) -> Timestamp:
        tick = math.ceil((micros + 1) / self._release_us) * self._release_us - 1
        return Timestamp(micros=max(min(tick, MAX_TIMESTAMP.micros - 1), MIN_TIMESTAMP.micros))

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


def _define_timers(cls) -> None:
    """Gives ``cls`` its timers (``<metric>_release``, ``<metric>_expire``) and the DoFn methods
    that use them: Beam finds a DoFn's timers in its methods' default arguments."""
    state_spec = OrderedShardFn.STATE
    release_spec = TimerSpec(f'{cls.metric}_release', beam.TimeDomain.WATERMARK)
    expire_spec = TimerSpec(f'{cls.metric}_expire', beam.TimeDomain.WATERMARK)

    def process(
        self,
        element,
        at=beam.DoFn.TimestampParam,
        state=beam.DoFn.StateParam(state_spec),
        release=beam.DoFn.TimerParam(release_spec),
    ):
        yield from self._add(element, at, state, release)

    @on_timer(release_spec)
    def on_release(
        self,
        fired=beam.DoFn.TimestampParam,
        state=beam.DoFn.StateParam(state_spec),
        release=beam.DoFn.TimerParam(release_spec),
        expire=beam.DoFn.TimerParam(expire_spec),
    ):
        yield from self._release(fired, state, release, expire)

    @on_timer(expire_spec)
    def on_expire(self, fired=beam.DoFn.TimestampParam, state=beam.DoFn.StateParam(state_spec)):
        self._expire(fired, state)

    for method in (process, on_release, on_expire):
        method.__module__ = cls.__module__  # found where the class is, as if written there
        method.__qualname__ = f'{cls.__qualname__}.{method.__name__}'
        setattr(cls, method.__name__, method)
    cls.RELEASE, cls.EXPIRE = release_spec, expire_spec
