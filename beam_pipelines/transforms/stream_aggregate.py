"""``AggregateStream``: streaming dedup and windowed aggregates with panes and a late output.

Clean event tables are sharded by the aggregation key; one stateful DoFn per shard drops
duplicate ids (within an event-time horizon, ``columnar.stream_dedup``), splits off events whose
window has closed (the ``late`` output: dead-letter envelopes, stage ``late``) and fires panes
(``columnar.panes``) from event-time and processing-time timers. Events cross one shuffle, as in
batch, and every event ends up in exactly one of: accepted (``events``), ``duplicates``,
``late``.

State is one pickled ``ShardState`` per shard (``ReadModifyWriteStateSpec``): open windows as
partial aggregates and the remembered ids; both shrink as the watermark passes.
"""

from __future__ import annotations

import dataclasses
import time
from collections.abc import Callable
from typing import NamedTuple

import apache_beam as beam
import orjson
import pyarrow as pa
from apache_beam import pvalue
from apache_beam.coders import PickleCoder
from apache_beam.metrics import Metrics
from apache_beam.transforms.userstate import ReadModifyWriteStateSpec
from apache_beam.transforms.userstate import TimerSpec
from apache_beam.transforms.userstate import on_timer
from apache_beam.utils.timestamp import Timestamp

from beam_pipelines.columnar.aggregate import KEY_COLUMNS
from beam_pipelines.columnar.aggregate import WindowSpec
from beam_pipelines.columnar.batch import META_COLUMNS
from beam_pipelines.columnar.batch import POS
from beam_pipelines.columnar.batch import URI
from beam_pipelines.columnar.panes import TriggerSpec
from beam_pipelines.columnar.panes import WindowPanes
from beam_pipelines.columnar.panes import event_micros
from beam_pipelines.columnar.stream_dedup import SeenIds
from beam_pipelines.dead_letter import Stage
from beam_pipelines.dead_letter import make_dead_letter
from beam_pipelines.io import coders  # noqa: F401  (registers the Arrow table coder)
from beam_pipelines.io.files import NAMESPACE
from beam_pipelines.transforms.sharding import shard_table
from beam_pipelines.transforms.tags import DUPLICATES
from beam_pipelines.transforms.tags import LATE
from beam_pipelines.transforms.tags import RETRACTIONS
from beam_pipelines.transforms.tags import VALID

__all__ = ['AggregateStream', 'StreamAggregates']

_US = 1_000_000
PANES = 'panes'


class StreamAggregates(NamedTuple):
    panes: beam.PCollection  # pa.Table, PANE_SCHEMA
    events: beam.PCollection  # pa.Table: accepted, deduplicated events
    late: beam.PCollection  # dead-letter envelopes, stage 'late'
    duplicates: beam.PCollection  # int per batch
    retractions: beam.PCollection  # pa.Table, RETRACTION_SCHEMA: merged-away sessions


class AggregateStream(beam.PTransform):
    """Deduplicates and aggregates clean event tables with triggers (see the module docstring).

    Args:
        window: which windows to aggregate in.
        trigger: pane firing, allowed lateness and accumulation.
        num_shards: how many shards of keys hold state (the parallelism of this step).
        dedup_horizon_secs: how long (event time) an id is remembered.
        pipeline: the pipeline's name, for late envelopes.
        clock: processing time in seconds (tests pass the TestStream clock's start, 0.0).
    """

    def __init__(
        self,
        window: WindowSpec,
        trigger: TriggerSpec,
        num_shards: int = 16,
        dedup_horizon_secs: float = 3600.0,
        pipeline: str = 'beam_pipelines',
        clock: Callable[[], float] = time.time,
    ):
        super().__init__()
        if num_shards < 1:
            raise ValueError(f'num_shards must be >= 1, got {num_shards}')
        WindowPanes(window, trigger)  # fails early on a combination it cannot serve
        SeenIds(round(dedup_horizon_secs * _US))
        self._fn = _ShardWindowsFn(
            window, trigger, round(dedup_horizon_secs * _US), pipeline, clock
        )
        self._num_shards = num_shards

    def expand(self, tables) -> StreamAggregates:
        results = (
            tables
            | 'ShardByKey'
            >> beam.FlatMap(shard_table, KEY_COLUMNS, self._num_shards).with_output_types(
                tuple[int, pa.Table]
            )
            | 'PanesPerShard'
            >> beam.ParDo(self._fn).with_outputs(VALID, LATE, DUPLICATES, RETRACTIONS, main=PANES)
        )
        return StreamAggregates(
            panes=results[PANES],
            events=results[VALID],
            late=results[LATE],
            duplicates=results[DUPLICATES],
            retractions=results[RETRACTIONS],
        )


@dataclasses.dataclass
class ShardState:
    panes: WindowPanes
    seen: SeenIds
    event_timer: int | None = None
    processing_timer: float | None = None
    processing_now: float = 0.0  # the latest processing time a timer reported

    @classmethod
    def new(cls, window: WindowSpec, trigger: TriggerSpec, horizon_us: int) -> ShardState:
        return cls(WindowPanes(window, trigger), SeenIds(horizon_us))


class ShardCounters:
    """The metrics both drivers keep (create in ``DoFn.setup``)."""

    def __init__(self):
        self.late = Metrics.counter(NAMESPACE, 'late_records')
        self.duplicates = Metrics.counter(NAMESPACE, 'duplicates')
        self.panes = {
            t: Metrics.counter(NAMESPACE, f'panes_{t}') for t in ('early', 'on_time', 'late')
        }

    def panes_out(self, panes: pa.Table):
        """Yields a pane table (if not empty), counting its panes by timing."""
        if panes.num_rows:
            for timing, n in zip(*_value_counts(panes.column('pane_timing')), strict=True):
                self.panes[timing].inc(n)
            yield panes


def take_events(st: ShardState, events: pa.Table, pipeline: str, counters: ShardCounters):
    """Drops seen ids, splits off late events and adds the rest to their windows.

    Yields the tagged outputs: the duplicates count, late envelopes, the accepted events.
    """
    unique, duplicates = st.seen.drop_seen(events, event_micros(events))
    if duplicates:
        counters.duplicates.inc(duplicates)
        yield pvalue.TaggedOutput(DUPLICATES, duplicates)
    accepted, late = st.panes.split_late(unique)
    if late.num_rows:
        counters.late.inc(late.num_rows)
        for envelope in late_envelopes(late, st.panes, pipeline):
            yield pvalue.TaggedOutput(LATE, envelope)
    if accepted.num_rows:
        st.panes.add(accepted)
        yield pvalue.TaggedOutput(VALID, accepted)


def retractions_out(st: ShardState):
    retracted = st.panes.take_retractions()
    if retracted.num_rows:
        yield pvalue.TaggedOutput(RETRACTIONS, retracted)


class _ShardWindowsFn(beam.DoFn):
    STATE = ReadModifyWriteStateSpec('shard', PickleCoder())
    WATERMARK = TimerSpec('watermark', beam.TimeDomain.WATERMARK)
    PROCESSING = TimerSpec('processing', beam.TimeDomain.REAL_TIME)

    def __init__(self, window, trigger, horizon_us, pipeline, clock):
        self._window = window
        self._trigger = trigger
        self._horizon_us = horizon_us
        self._pipeline = pipeline
        self._clock = clock

    def setup(self):
        self._counters = ShardCounters()

    def process(
        self,
        element,
        state=beam.DoFn.StateParam(STATE),
        watermark_timer=beam.DoFn.TimerParam(WATERMARK),
        processing_timer=beam.DoFn.TimerParam(PROCESSING),
    ):
        _, events = element
        st = state.read() or ShardState.new(self._window, self._trigger, self._horizon_us)
        yield from take_events(st, events, self._pipeline, self._counters)
        if self._trigger.late_firing_secs == 0:
            yield from self._counters.panes_out(st.panes.late_panes())
        yield from retractions_out(st)
        self._arm(st, watermark_timer, processing_timer)
        state.write(st)

    @on_timer(WATERMARK)
    def on_watermark(
        self,
        fired=beam.DoFn.TimestampParam,
        state=beam.DoFn.StateParam(STATE),
        watermark_timer=beam.DoFn.TimerParam(WATERMARK),
        processing_timer=beam.DoFn.TimerParam(PROCESSING),
    ):
        st = state.read()
        if st is None:
            return
        st.event_timer = None
        # Timers fire at a window's last microsecond (its max_timestamp), so panes carry the
        # timestamp of the window they describe, as a GroupByKey's panes do.
        yield from self._counters.panes_out(st.panes.advance(fired.micros + 1))
        st.seen.forget(fired.micros + 1)
        self._arm(st, watermark_timer, processing_timer)
        state.write(st)

    @on_timer(PROCESSING)
    def on_processing_time(
        self,
        fired=beam.DoFn.TimestampParam,
        state=beam.DoFn.StateParam(STATE),
        watermark_timer=beam.DoFn.TimerParam(WATERMARK),
        processing_timer=beam.DoFn.TimerParam(PROCESSING),
    ):
        st = state.read()
        if st is None:
            return
        st.processing_timer = None
        st.processing_now = max(st.processing_now, float(fired))
        yield from self._counters.panes_out(st.panes.processing_time_panes())
        self._arm(st, watermark_timer, processing_timer)
        state.write(st)

    def _arm(self, st: ShardState, watermark_timer, processing_timer) -> None:
        due = [t for t in (st.panes.next_timer(), st.seen.next_forget) if t is not None]
        if due and min(due) != st.event_timer:
            st.event_timer = min(due)
            watermark_timer.set(Timestamp(micros=st.event_timer - 1))
        if st.processing_timer is None and st.panes.wants_processing_timer():
            early = any(not st.panes.meta[k][1] for k in st.panes.dirty)
            delay = self._trigger.early_firing_secs if early else self._trigger.late_firing_secs
            now = max(self._clock(), st.processing_now)
            st.processing_timer = now + delay
            processing_timer.set(Timestamp(st.processing_timer))


def _value_counts(column):
    counts = column.value_counts()
    return counts.field('values').to_pylist(), counts.field('counts').to_pylist()


def late_envelopes(late: pa.Table, panes: WindowPanes, pipeline: str):
    lateness = panes.trigger.allowed_lateness_secs
    watermark = Timestamp(micros=panes.watermark).to_rfc3339()
    data = late.drop_columns([c for c in META_COLUMNS if c in late.column_names])
    meta = late.select([URI, POS]).to_pylist() if URI in late.column_names else None
    for i, row in enumerate(data.to_pylist()):
        ts = row['timestamp']
        event_time = ts.strftime('%Y-%m-%dT%H:%M:%S.%fZ')
        yield make_dead_letter(
            stage=Stage.LATE,
            error_type='late_event',
            error_message=(
                f'event time {event_time} is past its window and the allowed lateness '
                f'({lateness:g} s): the watermark had reached {watermark}'
            ),
            payload=orjson.dumps(row, default=str),
            source={'uri': meta[i][URI], 'position': meta[i][POS]} if meta else {},
            pipeline=pipeline,
            event_time=event_time,
        )
