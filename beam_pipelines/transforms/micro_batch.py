"""``AggregateMicroBatch``: the streaming panes of ``AggregateStream``, one bounded run at a time.

Each run is one arrival: its events are deduplicated against the ids remembered by earlier
runs, checked for lateness against the watermark the earlier runs reached, added to the open
windows, and then the watermark moves to what this run's data shows (the largest event time
seen, minus ``out_of_orderness_secs``), firing on-time, late and final panes as
``columnar.panes`` decides. With ``early_firing`` every run also emits early panes for the
windows that took data, so a run every N seconds is an early firing every N seconds.

Between runs the state of each shard (open windows, remembered ids, the watermark) is kept
under ``state_dir`` (any Beam filesystem). A run writes its state to new files, and
``commit_state`` puts them in place only after the run's outputs are written, so a failed run
leaves the previous state and a re-run of the same input gives the same outputs. Without a
``state_dir`` a run is complete on its own: at the end the watermark goes to infinity and every
window fires its final pane.

Why not Beam timers here: event-time timers jump to the end of time when a bounded input ends,
which would close every window at the end of each run; and Beam's Python DirectRunner does not
hold the watermark for user timers, so panes fired then can miss the sinks' final bundles. This
driver fires panes from ``process`` with the watermark computed from the data, which works the
same on every runner.
"""

from __future__ import annotations

import pickle
import time
import uuid
from typing import NamedTuple

import apache_beam as beam
import numpy as np
import pyarrow as pa
from apache_beam import pvalue
from apache_beam.io.filesystems import FileSystems

from beam_pipelines.columnar.aggregate import KEY_COLUMNS
from beam_pipelines.columnar.aggregate import WindowSpec
from beam_pipelines.columnar.panes import TriggerSpec
from beam_pipelines.columnar.panes import WindowPanes
from beam_pipelines.columnar.panes import event_micros
from beam_pipelines.columnar.stream_dedup import SeenIds
from beam_pipelines.transforms.sharding import shard_table
from beam_pipelines.transforms.stream_aggregate import PANES
from beam_pipelines.transforms.stream_aggregate import ShardCounters
from beam_pipelines.transforms.stream_aggregate import ShardState
from beam_pipelines.transforms.stream_aggregate import retractions_out
from beam_pipelines.transforms.stream_aggregate import take_events
from beam_pipelines.transforms.tags import DUPLICATES
from beam_pipelines.transforms.tags import LATE
from beam_pipelines.transforms.tags import RETRACTIONS
from beam_pipelines.transforms.tags import VALID

__all__ = ['AggregateMicroBatch', 'MicroBatchAggregates', 'commit_state']

_US = 1_000_000
END_OF_TIME = 2**62
FUTURE_SKEW_SECS = 300
STATE = 'state'


class MicroBatchAggregates(NamedTuple):
    panes: beam.PCollection
    events: beam.PCollection
    late: beam.PCollection
    duplicates: beam.PCollection
    retractions: beam.PCollection
    state: beam.PCollection  # (pending path, final path) per shard: pass to commit_state


class AggregateMicroBatch(beam.PTransform):
    """Runs one micro-batch of the streaming aggregation (see the module docstring).

    Args:
        window, trigger, num_shards, dedup_horizon_secs, pipeline: as for ``AggregateStream``.
        state_dir: where shard states live between runs; None for a self-contained run.
        out_of_orderness_secs: how far behind the latest event time the watermark stays.
    """

    def __init__(
        self,
        window: WindowSpec,
        trigger: TriggerSpec,
        num_shards: int = 16,
        dedup_horizon_secs: float = 3600.0,
        pipeline: str = 'beam_pipelines',
        state_dir: str | None = None,
        out_of_orderness_secs: float = 0.0,
    ):
        super().__init__()
        if num_shards < 1:
            raise ValueError(f'num_shards must be >= 1, got {num_shards}')
        if out_of_orderness_secs < 0:
            raise ValueError(f'out_of_orderness_secs must be >= 0, got {out_of_orderness_secs}')
        WindowPanes(window, trigger)
        SeenIds(round(dedup_horizon_secs * _US))
        self._num_shards = num_shards
        self._fn = _MicroBatchFn(
            window,
            trigger,
            round(dedup_horizon_secs * _US),
            pipeline,
            state_dir,
            round(out_of_orderness_secs * _US),
        )

    def expand(self, tables) -> MicroBatchAggregates:
        p = tables.pipeline
        sharded = tables | 'ShardByKey' >> beam.FlatMap(
            shard_table, KEY_COLUMNS, self._num_shards
        ).with_output_types(tuple[int, pa.Table])
        # Every shard runs every time, with data or not: its windows may be due anyway.
        every_shard = p | 'EveryShard' >> beam.Create(
            [(s, None) for s in range(self._num_shards)]
        ).with_output_types(tuple[int, object])
        latest = (
            tables
            | 'LatestEventTime' >> beam.Map(_latest_event_time)
            | 'Max' >> beam.CombineGlobally(max).without_defaults()
        )
        results = (
            (sharded, every_shard)
            | 'WithEveryShard' >> beam.Flatten()
            | 'GroupShards' >> beam.GroupByKey()
            | 'PanesPerShard'
            >> beam.ParDo(
                self._fn, latest=pvalue.AsSingleton(latest, default_value=None)
            ).with_outputs(VALID, LATE, DUPLICATES, RETRACTIONS, STATE, main=PANES)
        )
        return MicroBatchAggregates(
            panes=results[PANES],
            events=results[VALID],
            late=results[LATE],
            duplicates=results[DUPLICATES],
            retractions=results[RETRACTIONS],
            state=results[STATE],
        )


def _latest_event_time(events: pa.Table) -> int:
    ts = event_micros(events)
    # An event stamped in the future (a device with a wrong clock) must not close every window:
    # only event times up to FUTURE_SKEW_SECS past the wall clock move the watermark.
    ts = ts[ts <= time.time_ns() // 1000 + FUTURE_SKEW_SECS * _US]
    return int(ts.max()) if len(ts) else -END_OF_TIME


def state_path(state_dir: str, shard: int) -> str:
    return FileSystems.join(state_dir, f'shard-{shard:05d}.pickle')


def load_state(path: str):
    if not FileSystems.exists(path):
        return None
    with FileSystems.open(path) as f:
        return pickle.loads(f.read())


def commit_state(pending: list[tuple[str, str]]) -> int:
    """Moves pending state files into place (call once the run's outputs are written)."""
    pending = [p for p in pending if p]
    if pending:
        FileSystems.rename([src for src, _ in pending], [dst for _, dst in pending])
    return len(pending)


class _MicroBatchFn(beam.DoFn):
    def __init__(self, window, trigger, horizon_us, pipeline, state_dir, lag_us):
        self._window = window
        self._trigger = trigger
        self._horizon_us = horizon_us
        self._pipeline = pipeline
        self._state_dir = state_dir
        self._lag_us = lag_us

    def setup(self):
        self._counters = ShardCounters()

    def process(self, shard_tables, latest):
        shard, tables = shard_tables
        tables = [t for t in tables if t is not None and t.num_rows]
        st = None
        if self._state_dir is not None:
            st = load_state(state_path(self._state_dir, shard))
        st = st or ShardState.new(self._window, self._trigger, self._horizon_us)
        panes = st.panes
        if tables:
            events = pa.concat_tables(tables).combine_chunks() if len(tables) > 1 else tables[0]
            yield from take_events(st, events, self._pipeline, self._counters)
        if self._state_dir is None:
            watermark = END_OF_TIME
        elif latest is None:
            watermark = panes.watermark
        else:
            watermark = latest - self._lag_us
        out = []
        if watermark is not None:
            out.append(panes.advance(int(np.int64(watermark))))
            st.seen.forget(watermark)
        out.append(panes.late_panes())
        if self._trigger.early_firing_secs is not None:
            out.append(panes.processing_time_panes())
        for table in out:
            yield from self._counters.panes_out(table)
        yield from retractions_out(st)
        if self._state_dir is not None:
            final = state_path(self._state_dir, shard)
            pending = f'{final}.{uuid.uuid4().hex}.pending'  # this attempt's own file
            with FileSystems.create(pending) as f:
                f.write(pickle.dumps(st, protocol=pickle.HIGHEST_PROTOCOL))
            yield pvalue.TaggedOutput(STATE, (pending, final))
