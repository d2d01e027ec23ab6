"""Event-time window panes for streams: triggers, allowed lateness and a late output.

``WindowPanes`` holds the open windows of one shard of keys (as mergeable partial aggregates,
see ``columnar.aggregate``) and decides, from the same state, which events are accepted, which
are too late, and which panes to emit:

- early panes every ``early_firing_secs`` of processing time while the watermark has not
  reached the end of the window;
- the on-time pane when the watermark reaches the window's end;
- late panes for data that arrives after that but before ``end + allowed_lateness``: at once
  (``late_firing_secs == 0``), or batched every ``late_firing_secs`` of processing time;
- a final pane (``is_final``) when the window closes at ``end + allowed_lateness``;
- events whose window has closed are returned as late, never dropped.

Why not Beam's ``WindowInto`` + trigger + ``GroupByKey``: the runner drops expired data inside
the ``GroupByKey`` and user code never sees it, so a late output built next to it cannot be
exact (a DoFn cannot read the watermark, and the drop decision races with it). Here lateness and
panes come from one state, driven by the runner's event-time timers, so every event is either in
a pane or in the late output, on every runner.

Panes follow Beam's ``PaneInfo``: ``pane_index`` counts the panes of a window from 0,
``pane_timing`` is ``early``, ``on_time`` or ``late``, and a window whose first data arrives after
the watermark passed its end gets a ``late`` pane first, as Beam does. In accumulating mode each
pane holds everything the window has seen (a sink replaces the previous pane); in discarding mode
it holds what arrived since the previous pane (a sink adds it). Session windows merge across
panes; a merged-away window that was already emitted is reported by ``take_retractions`` so sinks
can delete it. Sessions need accumulating mode: a discarding pane of a merged session cannot be
added to rows stored under the sessions it replaced.

Times are integer microseconds since the epoch, as in the event tables.
"""

from __future__ import annotations

import dataclasses

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from beam_pipelines.columnar.aggregate import AGGREGATE_SCHEMA
from beam_pipelines.columnar.aggregate import PARTIAL_SCHEMA
from beam_pipelines.columnar.aggregate import WindowSpec
from beam_pipelines.columnar.aggregate import finalize
from beam_pipelines.columnar.aggregate import merge_partials
from beam_pipelines.columnar.aggregate import partials_from_events

__all__ = [
    'EARLY',
    'LATE',
    'ON_TIME',
    'PANE_SCHEMA',
    'RETRACTION_SCHEMA',
    'TriggerSpec',
    'WindowPanes',
    'event_micros',
]

_US = 1_000_000
EARLY, ON_TIME, LATE = 'early', 'on_time', 'late'

PANE_SCHEMA = (
    AGGREGATE_SCHEMA.append(pa.field('pane_timing', pa.string()))
    .append(pa.field('pane_index', pa.int64()))
    .append(pa.field('is_final', pa.bool_()))
)
RETRACTION_SCHEMA = pa.schema([AGGREGATE_SCHEMA.field(i) for i in range(4)])

# (entity_id, event_type, window_start_us, window_end_us)
WindowKey = tuple[str, str, int, int]


@dataclasses.dataclass(frozen=True)
class TriggerSpec:
    """When panes fire, how long windows stay open, and what each pane holds.

    Attributes:
        allowed_lateness_secs: how long after its end a window still takes data.
        early_firing_secs: emit early panes this often (processing time); None for none.
        late_firing_secs: 0 fires a late pane for each late arrival; N batches them every N s.
        accumulating: panes hold the whole window (True) or only what is new (False).
    """

    allowed_lateness_secs: float = 0.0
    early_firing_secs: float | None = None
    late_firing_secs: float = 0.0
    accumulating: bool = True

    def __post_init__(self):
        if not self.allowed_lateness_secs >= 0:
            raise ValueError(
                f'allowed_lateness_secs must be >= 0, got {self.allowed_lateness_secs}'
            )
        if self.early_firing_secs is not None and not self.early_firing_secs > 0:
            raise ValueError(f'early_firing_secs must be > 0, got {self.early_firing_secs}')
        if not self.late_firing_secs >= 0:
            raise ValueError(f'late_firing_secs must be >= 0, got {self.late_firing_secs}')

    @property
    def lateness_us(self) -> int:
        return round(self.allowed_lateness_secs * _US)


def event_micros(events: pa.Table) -> np.ndarray:
    """The ``timestamp`` column as int64 microseconds."""
    column = events.column('timestamp').combine_chunks().cast(pa.int64())
    return np.asarray(column.to_numpy(zero_copy_only=False), dtype=np.int64)


def _window_keys(table: pa.Table) -> list[WindowKey]:
    cols = [
        table.column(c).cast(pa.int64()) if c.startswith('window') else table.column(c)
        for c in ('entity_id', 'event_type', 'window_start', 'window_end')
    ]
    return list(zip(*(c.to_pylist() for c in cols), strict=True))


class WindowPanes:
    """The open windows of one shard, and the panes they fire (see the module docstring)."""

    def __init__(self, window: WindowSpec, trigger: TriggerSpec):
        if window.kind == 'session' and not trigger.accumulating:
            raise ValueError(
                'session windows need accumulating panes: a discarding pane of a merged session '
                'cannot be added to the sessions it replaced'
            )
        self.window = window
        self.trigger = trigger
        # Accumulating: all a window has seen. Discarding: what arrived since its last pane.
        self.values = PARTIAL_SCHEMA.empty_table()
        # Per open window: [next pane index, whether the watermark has passed its end].
        self.meta: dict[WindowKey, list] = {}
        self.dirty: set[WindowKey] = set()
        # A lower bound of the input watermark: the latest event-time timer that fired.
        self.watermark: int | None = None
        self._retracted: list[WindowKey] = []

    # -- arrivals ---------------------------------------------------------------------------

    def closes_at(self, ts: np.ndarray) -> np.ndarray:
        """Per event: when the earliest window it belongs to closes (end + allowed lateness)."""
        spec = self.window
        if spec.kind == 'session':
            end = ts + spec.gap_us
        else:
            # The earliest window holding ts starts at the first period multiple > ts - size.
            start = (ts - spec.size_us) // spec.period_us * spec.period_us + spec.period_us
            end = start + spec.size_us
        return end + self.trigger.lateness_us

    def split_late(self, events: pa.Table) -> tuple[pa.Table, pa.Table]:
        """Splits events into (accepted, late): late ones belong to a window already closed."""
        if self.watermark is None or events.num_rows == 0:
            return events, events.slice(0, 0)
        late = self.closes_at(event_micros(events)) <= self.watermark
        if not late.any():
            return events, events.slice(0, 0)
        mask = pa.array(late)
        return events.filter(pc.invert(mask)), events.filter(mask)

    def add(self, events: pa.Table) -> None:
        """Adds accepted events to their windows (see :meth:`split_late`)."""
        if events.num_rows == 0:
            return
        partials = partials_from_events(events, self.window)
        before = set(self.meta)
        self.values = merge_partials([self.values, partials], self.window)
        if self.window.kind == 'session':
            self._remap_merged_sessions(before)
            touched = self._containing(set(_window_keys(partials)))
        else:
            touched = set(_window_keys(partials))
        for key in touched:
            meta = self.meta.setdefault(key, [0, False])
            if not meta[1] and self.watermark is not None and key[3] <= self.watermark:
                meta[1] = True  # born after the watermark passed its end: its panes are late
            self.dirty.add(key)

    def _containing(self, keys: set[WindowKey]) -> set[WindowKey]:
        """Maps windows of new partials to the (possibly merged) sessions now holding them."""
        by_key: dict[tuple[str, str], list[WindowKey]] = {}
        for k in self.meta.keys() | set(_window_keys(self.values)):
            by_key.setdefault(k[:2], []).append(k)
        out = set()
        for k in keys:
            out.update(c for c in by_key.get(k[:2], ()) if c[2] <= k[2] and k[3] <= c[3])
        return out

    def _remap_merged_sessions(self, before: set[WindowKey]) -> None:
        now = set(_window_keys(self.values))
        gone = before - now
        if not gone:
            return
        for old in gone:
            meta = self.meta.pop(old)
            was_dirty = old in self.dirty
            self.dirty.discard(old)
            if meta[0] > 0:
                self._retracted.append(old)
            (new,) = (c for c in self._containing({old}) if c in now)
            merged = self.meta.setdefault(new, [0, False])
            merged[0] = max(merged[0], meta[0])
            merged[1] = merged[1] or meta[1]
            if was_dirty:
                self.dirty.add(new)
        for key, meta in self.meta.items():
            # A merge can move a window's end past the watermark again: its on-time pane is due.
            if meta[1] and (self.watermark is None or key[3] > self.watermark):
                meta[1] = False

    # -- firing -----------------------------------------------------------------------------

    def late_panes(self) -> pa.Table:
        """Late panes for windows that took late data (per-arrival late firing)."""
        keys = [k for k in self.dirty if self.meta[k][1]]
        return self._emit({k: LATE for k in keys}, set())

    def processing_time_panes(self) -> pa.Table:
        """Early panes (and batched late panes) for every window with new data."""
        timing = {k: (LATE if self.meta[k][1] else EARLY) for k in self.dirty}
        if self.trigger.late_firing_secs == 0:
            timing = {k: t for k, t in timing.items() if t == EARLY}
        return self._emit(timing, set())

    def advance(self, watermark: int) -> pa.Table:
        """The watermark reached ``watermark``: on-time panes, then final panes; closes windows."""
        if self.watermark is None or watermark > self.watermark:
            self.watermark = watermark
        lateness = self.trigger.lateness_us
        timing: dict[WindowKey, str] = {}
        closing: set[WindowKey] = set()
        for key, (_, on_time_passed) in self.meta.items():
            if not on_time_passed and key[3] <= watermark:
                timing[key] = ON_TIME
            if key[3] + lateness <= watermark:
                closing.add(key)
                timing.setdefault(key, LATE)
        panes = self._emit(timing, closing)
        for key in closing:
            del self.meta[key]
            self.dirty.discard(key)
        if closing:
            self.values = self._drop(self.values, closing)
        return panes

    def next_timer(self) -> int | None:
        """When the watermark next matters: the next window end or window close."""
        lateness = self.trigger.lateness_us
        due = [k[3] + (lateness if passed else 0) for k, (_, passed) in self.meta.items()]
        return min(due) if due else None

    def wants_processing_timer(self) -> bool:
        if self.trigger.early_firing_secs is not None and any(
            not self.meta[k][1] for k in self.dirty
        ):
            return True
        return self.trigger.late_firing_secs > 0 and any(self.meta[k][1] for k in self.dirty)

    def take_retractions(self) -> pa.Table:
        """Windows merged into others after they were emitted; sinks should delete them."""
        keys, self._retracted = self._retracted, []
        if not keys:
            return RETRACTION_SCHEMA.empty_table()
        cols = list(zip(*keys, strict=True))
        return pa.table(
            [
                pa.array(cols[0], pa.string()),
                pa.array(cols[1], pa.string()),
                pa.array(cols[2], pa.int64()).cast(RETRACTION_SCHEMA.field(2).type),
                pa.array(cols[3], pa.int64()).cast(RETRACTION_SCHEMA.field(3).type),
            ],
            schema=RETRACTION_SCHEMA,
        )

    # -- internals --------------------------------------------------------------------------

    def _emit(self, timing: dict[WindowKey, str], final: set[WindowKey]) -> pa.Table:
        if not timing:
            return PANE_SCHEMA.empty_table()
        keys = _window_keys(self.values)
        mask = np.fromiter((k in timing for k in keys), dtype=bool, count=len(keys))
        chosen = self.values.filter(pa.array(mask))
        missing = timing.keys() - set(_window_keys(chosen))
        if missing:  # discarding mode, nothing new since the last pane: an empty pane
            chosen = pa.concat_tables([chosen, _empty_partials(missing)])
        rows = finalize(chosen)
        out_keys = _window_keys(rows)
        indices = []
        for key in out_keys:
            meta = self.meta[key]
            indices.append(meta[0])
            meta[0] += 1
            if timing[key] == ON_TIME:
                meta[1] = True
            self.dirty.discard(key)
        if not self.trigger.accumulating:
            self.values = self.values.filter(pa.array(~mask))
        return pa.Table.from_arrays(
            [
                *rows.columns,
                pa.array([timing[k] for k in out_keys], pa.string()),
                pa.array(indices, pa.int64()),
                pa.array([k in final for k in out_keys], pa.bool_()),
            ],
            schema=PANE_SCHEMA,
        )

    @staticmethod
    def _drop(values: pa.Table, keys: set[WindowKey]) -> pa.Table:
        mask = [k not in keys for k in _window_keys(values)]
        return values.filter(pa.array(mask, pa.bool_()))


def _empty_partials(keys) -> pa.Table:
    keys = sorted(keys)
    n = len(keys)
    cols = list(zip(*keys, strict=True))
    nan = pa.array([float('nan')] * n, pa.float64())
    return pa.table(
        {
            'entity_id': pa.array(cols[0], pa.string()),
            'event_type': pa.array(cols[1], pa.string()),
            'window_start': pa.array(cols[2], pa.int64()),
            'window_end': pa.array(cols[3], pa.int64()),
            'count': pa.array([0] * n, pa.int64()),
            'value_count': pa.array([0] * n, pa.int64()),
            'sum': pa.array([0.0] * n, pa.float64()),
            'min': nan,
            'max': nan,
            'mean': nan,
            'm2': pa.array([0.0] * n, pa.float64()),
            'sketch_keys': pa.array([[]] * n, pa.list_(pa.int32())),
            'sketch_counts': pa.array([[]] * n, pa.list_(pa.int64())),
        },
        schema=PARTIAL_SCHEMA,
    )
