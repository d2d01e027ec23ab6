"""Deduplication by ``event_id`` on a stream: ids are remembered for an event-time horizon.

A stream has no end to deduplicate over, so each id is remembered until the watermark passes
its event time plus ``horizon``; a copy arriving later than that is taken as a new event. Set the
horizon to at least the window size plus the allowed lateness, so that no copy can reach a window
still open after its first copy was forgotten.

Beam's ``apache_beam.transforms.deduplicate.Deduplicate`` does the same per element (a state cell
and a timer per id); this keeps one id map per shard so whole Arrow batches are checked at once.
"""

from __future__ import annotations

import numpy as np
import pyarrow as pa

from beam_pipelines.columnar.dedup import deduplicate

__all__ = ['SeenIds']


class SeenIds:
    """The ids seen in the last ``horizon_us`` of event time, for one shard."""

    def __init__(self, horizon_us: int):
        if horizon_us <= 0:
            raise ValueError(f'the dedup horizon must be > 0, got {horizon_us} us')
        self.horizon_us = horizon_us
        self._forget_at: dict[str, int] = {}
        self.next_forget: int | None = None  # the earliest time an id is due to be forgotten

    def __len__(self) -> int:
        return len(self._forget_at)

    def drop_seen(self, events: pa.Table, ts: np.ndarray) -> tuple[pa.Table, int]:
        """Returns ``(new events, duplicates)`` and remembers the new ids.

        Args:
            events: a table with ``event_id`` and the meta columns (the first copy in a batch
                is the one with the smallest input position, as in batch deduplication).
            ts: the events' timestamps in microseconds.
        """
        if events.num_rows == 0:
            return events, 0
        events = events.append_column('_ts', pa.array(ts, pa.int64()))
        unique, in_batch = deduplicate([events])
        ids = unique.column('event_id').to_pylist()
        seen = self._forget_at
        new = np.fromiter((i not in seen for i in ids), dtype=bool, count=len(ids))
        kept = unique.filter(pa.array(new)) if not new.all() else unique
        forget = kept.column('_ts').to_numpy() + self.horizon_us
        seen.update(zip(kept.column('event_id').to_pylist(), forget.tolist(), strict=True))
        if len(forget):
            earliest = int(forget.min())
            self.next_forget = min(earliest, self.next_forget or earliest)
        return kept.drop_columns(['_ts']), in_batch + int((~new).sum())

    def forget(self, watermark: int) -> None:
        """Forgets the ids whose horizon the watermark has passed."""
        if self.next_forget is None or watermark < self.next_forget:
            return
        self._forget_at = {i: t for i, t in self._forget_at.items() if t > watermark}
        self.next_forget = min(self._forget_at.values(), default=None)
