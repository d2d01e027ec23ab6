"""Holding keyed points until the watermark passes them, to process each key in event-time order.

A stateful step that must see each key's points in time order (per-key detectors, rolling
features) cannot rely on arrival order. ``EventTimeBuffer`` keeps arriving tables with the Beam
timestamp of the element that brought them; :meth:`take` returns, once the watermark has passed
those timestamps, the points that came with them, sorted by key and time. Releasing by element
timestamps, not by the points' own times, keeps what the step emits on time for what follows
(window aggregates, for example, arrive stamped with their window's end, long after their start
time is behind the watermark). A point older than its key's last processed point cannot be
processed in order any more, and a point without a time cannot be placed: :meth:`add` returns
both, with the reason, for a ``late`` output.

Plain Arrow and numpy, no pipeline in it.
"""

from __future__ import annotations

import pickle
from collections.abc import Callable

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from beam_pipelines.columnar.timestamps import TIMESTAMP_TYPE

__all__ = ['NO_TIME', 'EventTimeBuffer', 'JobSpecState', 'key_tuples', 'micros']

NO_TIME = np.iinfo(np.int64).min  # "no point processed yet" for a key
BEHIND = 'its key was already processed past it: points are taken in event-time order'


def key_tuples(table: pa.Table, keys: tuple[str, ...]) -> list[tuple]:
    return list(zip(*(table.column(k).to_pylist() for k in keys), strict=True))


def micros(column) -> np.ndarray:
    """A timestamp column as int64 microseconds since the epoch."""
    return pc.cast(pc.cast(column, TIMESTAMP_TYPE), pa.int64()).to_numpy(zero_copy_only=False)


class EventTimeBuffer:
    """Points waiting for the watermark (see the module docstring).

    Args:
        key_columns: the columns that form a key.
        time_column: the points' own time.
        columns: the columns kept (the rest are dropped on arrival).
    """

    def __init__(self, key_columns: tuple[str, ...], time_column: str, columns: tuple[str, ...]):
        self.keys = key_columns
        self.time = time_column
        self.columns = columns
        self.pending: list[tuple[int, pa.Table]] = []  # (element timestamp µs, points)

    def add(
        self,
        table: pa.Table,
        at_us: int,
        last_us: Callable[[list[tuple]], np.ndarray] | None = None,
    ) -> list[tuple[pa.Table, str]]:
        """Holds the points of an element stamped ``at_us``; returns those that cannot be taken
        in order, each with the reason. ``last_us(keys)`` gives each key's last processed time
        (``NO_TIME`` for none); None when no key has been processed yet."""
        table = table.select(list(self.columns))
        refused = []
        untimed = pc.is_null(table.column(self.time))
        if pc.any(untimed).as_py():
            refused.append((table.filter(untimed), 'the point has no time'))
            table = table.filter(pc.invert(untimed))
        if last_us is not None and table.num_rows:
            late = micros(table.column(self.time)) < last_us(key_tuples(table, self.keys))
            if late.any():
                refused.append((table.filter(pa.array(late)), BEHIND))
                table = table.filter(pa.array(~late))
        if table.num_rows:
            self.pending.append((at_us, table))
        return refused

    def pending_range(self) -> tuple[int, int] | None:
        """The earliest and the latest pending element timestamp (µs), if any."""
        if not self.pending:
            return None
        stamps = [at for at, _ in self.pending]
        return min(stamps), max(stamps)

    def waiting_keys(self) -> set[tuple]:
        return {k for _, t in self.pending for k in key_tuples(t, self.keys)}

    def take(self, up_to_us: int) -> pa.Table | None:
        """The pending points of elements stamped at or before ``up_to_us`` (the watermark has
        passed them: nothing earlier can still come), sorted by key and time."""
        due = [t for at, t in self.pending if at <= up_to_us]
        self.pending = [(at, t) for at, t in self.pending if at > up_to_us]
        if not due:
            return None
        ready = pa.concat_tables(due) if len(due) > 1 else due[0]
        order = pc.sort_indices(
            ready, sort_keys=[*((k, 'ascending') for k in self.keys), (self.time, 'ascending')]
        )
        return ready.take(order)


class JobSpecState:
    """A shard state whose ``spec`` is the job's configuration, not part of the state: it is
    left out when pickled and given again on every read (``attach``), so a job updated with a
    new spec uses it. Also keeps a pickled template of an expensive per-key object, copied for
    each new key (``copy_of``)."""

    def attach(self, spec) -> None:
        self.spec = spec
        self._template: bytes | None = None

    def copy_of(self, build: Callable[[], object]):
        """A fresh copy of ``build()``'s object (built once per worker, then unpickled)."""
        if self._template is None:
            self._template = pickle.dumps(build())
        return pickle.loads(self._template)

    def __getstate__(self):
        state = dict(self.__dict__)
        state.pop('spec', None)
        state.pop('_template', None)
        return state

    def __setstate__(self, state):
        self.__dict__.update(state)
        self.spec, self._template = None, None
