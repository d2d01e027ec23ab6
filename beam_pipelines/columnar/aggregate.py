"""Windowed aggregation as mergeable partial aggregates over Arrow tables.

``partials_from_events`` turns a batch of clean events into one partial row per
(entity_id, event_type, window) seen in the batch; ``merge_partials`` merges any number of
partial tables (associative and commutative, so Beam may combine them in any order, before or
after a shuffle); ``finalize`` turns merged partials into aggregate rows.

A partial holds ``count`` (all events), ``value_count``, ``sum``, ``min``, ``max``, ``mean``,
``m2`` (sum of squared deviations from the mean, merged with Chan et al.'s parallel formula, which
stays exact where sum-of-squares cancels) and a quantile sketch (bucket keys and counts).

Windows follow Beam's semantics: fixed and sliding windows start at multiples of the size or
period from the epoch; a session is ``[first event, last event + gap)`` and two sessions of a key
merge when their intervals overlap, so per-batch partial sessions merge into the same sessions a
single pass would build.
"""

from __future__ import annotations

import dataclasses

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from beam_pipelines.columnar import sketch
from beam_pipelines.columnar.timestamps import TIMESTAMP_TYPE

__all__ = [
    'AGGREGATE_SCHEMA',
    'PARTIAL_SCHEMA',
    'WindowSpec',
    'finalize',
    'merge_partials',
    'partials_from_events',
]

KEY_COLUMNS = ('entity_id', 'event_type')
_US = 1_000_000

PARTIAL_SCHEMA = pa.schema(
    [
        ('entity_id', pa.string()),
        ('event_type', pa.string()),
        ('window_start', pa.int64()),
        ('window_end', pa.int64()),
        ('count', pa.int64()),
        ('value_count', pa.int64()),
        ('sum', pa.float64()),
        ('min', pa.float64()),
        ('max', pa.float64()),
        ('mean', pa.float64()),
        ('m2', pa.float64()),
        ('sketch_keys', pa.list_(pa.int32())),
        ('sketch_counts', pa.list_(pa.int64())),
    ]
)

AGGREGATE_SCHEMA = pa.schema(
    [
        ('entity_id', pa.string()),
        ('event_type', pa.string()),
        ('window_start', TIMESTAMP_TYPE),
        ('window_end', TIMESTAMP_TYPE),
        ('count', pa.int64()),
        ('value_count', pa.int64()),
        ('sum', pa.float64()),
        ('min', pa.float64()),
        ('max', pa.float64()),
        ('mean', pa.float64()),
        ('stddev', pa.float64()),
        ('p50', pa.float64()),
        ('p95', pa.float64()),
    ]
)


@dataclasses.dataclass(frozen=True)
class WindowSpec:
    """Which windows events are aggregated in.

    Attributes:
        kind: 'fixed', 'sliding' or 'session'.
        size_secs: window size (fixed and sliding).
        period_secs: how often a sliding window starts.
        gap_secs: session gap.
    """

    kind: str = 'fixed'
    size_secs: float = 60.0
    period_secs: float | None = None
    gap_secs: float | None = None

    def __post_init__(self):
        if self.kind not in ('fixed', 'sliding', 'session'):
            raise ValueError(f'window_type must be fixed, sliding or session, got {self.kind!r}')
        if self.kind in ('fixed', 'sliding') and not self.size_secs > 0:
            raise ValueError(f'window_size_secs must be > 0, got {self.size_secs}')
        if self.kind == 'sliding' and (
            self.period_secs is None or not 0 < self.period_secs <= self.size_secs
        ):
            raise ValueError(
                'window_period_secs must be > 0 and <= window_size_secs for sliding windows,'
                f' got {self.period_secs}'
            )
        if self.kind == 'session' and not (self.gap_secs or 0) > 0:
            raise ValueError(f'session_gap_secs must be > 0, got {self.gap_secs}')

    @property
    def size_us(self) -> int:
        return round(self.size_secs * _US)

    @property
    def period_us(self) -> int:
        return round((self.period_secs or self.size_secs) * _US)

    @property
    def gap_us(self) -> int:
        return round((self.gap_secs or 0) * _US)


def _codes(column: pa.ChunkedArray | pa.Array) -> np.ndarray:
    if isinstance(column, pa.ChunkedArray):
        column = column.combine_chunks()
    return np.asarray(
        pc.dictionary_encode(column).indices.to_numpy(zero_copy_only=False), dtype=np.int64
    )


def _groups(*keys: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Sorts rows by the keys (first key most significant).

    Returns:
        ``(order, starts)``: the sorting permutation and the first sorted position of each group.
    """
    order = np.lexsort(keys[::-1])
    if len(order) == 0:
        return order, np.zeros(0, dtype=np.int64)
    change = np.zeros(len(order), dtype=bool)
    change[0] = True
    for key in keys:
        k = key[order]
        change[1:] |= k[1:] != k[:-1]
    return order, np.flatnonzero(change)


def _assign(ts: np.ndarray, key: np.ndarray, spec: WindowSpec):
    """Window bounds per (row, window): returns (row index, start, end)."""
    rows = np.arange(len(ts))
    if spec.kind == 'fixed':
        start = ts - np.mod(ts, spec.size_us)
        return rows, start, start + spec.size_us
    if spec.kind == 'sliding':
        last = ts - np.mod(ts, spec.period_us)
        copies = -(-spec.size_us // spec.period_us)
        starts = [last - j * spec.period_us for j in range(copies)]
        start = np.concatenate(starts)
        row = np.tile(rows, copies)
        keep = ts[row] < start + spec.size_us
        return row[keep], start[keep], start[keep] + spec.size_us
    # Sessions: sort by key and time; a new session starts at a new key or a gap >= gap_us.
    order = np.lexsort((ts, key))
    k, t = key[order], ts[order]
    new = np.ones(len(t), dtype=bool)
    new[1:] = (k[1:] != k[:-1]) | (t[1:] - t[:-1] >= spec.gap_us)
    session = np.cumsum(new) - 1
    first = np.flatnonzero(new)
    last_ts = np.maximum.reduceat(t, first) if len(first) else t
    start = np.empty(len(t), dtype=np.int64)
    end = np.empty(len(t), dtype=np.int64)
    start[order] = t[first][session]
    end[order] = last_ts[session] + spec.gap_us
    return rows, start, end


def partials_from_events(events: pa.Table, spec: WindowSpec) -> pa.Table:
    """One partial aggregate row per (entity_id, event_type, window) in a batch of events."""
    if events.num_rows == 0:
        return PARTIAL_SCHEMA.empty_table()
    entity = _codes(events.column('entity_id'))
    etype = _codes(events.column('event_type'))
    ts = np.asarray(
        events.column('timestamp').combine_chunks().cast(pa.int64()).to_numpy(zero_copy_only=False),
        dtype=np.int64,
    )
    # Unsafe: an integer value beyond 2**53 counts as its nearest float (a safe cast would fail).
    values = events.column('value').combine_chunks().cast(pa.float64(), safe=False)
    has_value = np.asarray(values.is_valid().to_numpy(zero_copy_only=False), dtype=bool)
    x = np.asarray(values.fill_null(0.0).to_numpy(zero_copy_only=False), dtype=np.float64)
    key = entity * (int(etype.max()) + 1) + etype
    row, start, end = _assign(ts, key, spec)
    order, starts = _groups(key[row], start, end)
    row_sorted = row[order]
    n = np.add.reduceat(has_value[row_sorted].astype(np.int64), starts)
    count = np.diff(np.append(starts, len(order)))
    xs = x[row_sorted]
    hv = has_value[row_sorted]
    total = np.add.reduceat(np.where(hv, xs, 0.0), starts)
    with np.errstate(invalid='ignore', divide='ignore'):
        mean = np.where(n > 0, total / np.maximum(n, 1), np.nan)
        group_of = np.repeat(np.arange(len(starts)), count)
        dev = np.where(hv, xs - mean[group_of], 0.0)
    m2 = np.add.reduceat(dev * dev, starts)
    lo = np.fmin.reduceat(np.where(hv, xs, np.nan), starts)
    hi = np.fmax.reduceat(np.where(hv, xs, np.nan), starts)
    sk_group = group_of[hv]
    sk_keys = sketch.bucket_keys(xs[hv])
    keys_list, counts_list = _sketch_lists(
        sk_group, sk_keys, np.ones(len(sk_keys), np.int64), len(starts)
    )
    first_row = row_sorted[starts]
    return _partial_table(
        events.column('entity_id').take(pa.array(first_row)),
        events.column('event_type').take(pa.array(first_row)),
        start[order][starts],
        end[order][starts],
        count,
        n,
        total,
        lo,
        hi,
        mean,
        m2,
        keys_list,
        counts_list,
    )


def _sketch_lists(group: np.ndarray, keys: np.ndarray, counts: np.ndarray, n_groups: int):
    """Compresses (group, key, count) triples into one sorted (keys, counts) list per group."""
    if len(keys):
        order, starts = _groups(group, keys.astype(np.int64))
        g = group[order][starts]
        k = keys[order][starts].astype(np.int32)
        c = np.add.reduceat(counts[order], starts).astype(np.int64)
    else:
        g = np.zeros(0, np.int64)
        k = np.zeros(0, np.int32)
        c = np.zeros(0, np.int64)
    offsets = np.zeros(n_groups + 1, dtype=np.int32)
    np.cumsum(np.bincount(g, minlength=n_groups), out=offsets[1:])
    return (
        pa.ListArray.from_arrays(pa.array(offsets), pa.array(k, pa.int32())),
        pa.ListArray.from_arrays(pa.array(offsets), pa.array(c, pa.int64())),
    )


def _partial_table(entity, etype, start, end, count, n, total, lo, hi, mean, m2, keys, counts):
    empty = n == 0
    return pa.table(
        [
            entity,
            etype,
            pa.array(start, pa.int64()),
            pa.array(end, pa.int64()),
            pa.array(count, pa.int64()),
            pa.array(n, pa.int64()),
            pa.array(total, pa.float64()),
            pa.array(lo, pa.float64(), mask=empty),
            pa.array(hi, pa.float64(), mask=empty),
            pa.array(mean, pa.float64(), mask=empty),
            pa.array(m2, pa.float64()),
            keys,
            counts,
        ],
        schema=PARTIAL_SCHEMA,
    )


def _merge_sessions(key: np.ndarray, start: np.ndarray, end: np.ndarray):
    """Merges overlapping session intervals per key; returns the merged (start, end) per row."""
    order = np.lexsort((start, key))
    k, s, e = key[order], start[order], end[order]
    n = len(order)
    new = np.ones(n, dtype=bool)
    if n > 1:
        # Running max of `end` within each key: a session continues while start < that max.
        key_start = np.ones(n, dtype=bool)
        key_start[1:] = k[1:] != k[:-1]
        group = np.cumsum(key_start) - 1
        base = s.min()
        span = int(e.max() - base) + 1
        if span * (int(group[-1]) + 1) < 2**62:
            run_max = np.maximum.accumulate(group * span + (e - base)) - group * span + base
        else:  # astronomically wide spans: do it the slow, obvious way
            run_max = e.copy()
            for i in range(1, n):
                if not key_start[i]:
                    run_max[i] = max(run_max[i - 1], e[i])
        new[1:] = key_start[1:] | (s[1:] >= run_max[:-1])
    session = np.cumsum(new) - 1
    first = np.flatnonzero(new)
    merged_start = s[first][session]
    merged_end = np.maximum.reduceat(e, first)[session] if n else e
    out_start = np.empty(n, dtype=np.int64)
    out_end = np.empty(n, dtype=np.int64)
    out_start[order] = merged_start
    out_end[order] = merged_end
    return out_start, out_end


def merge_partials(tables: list[pa.Table], spec: WindowSpec) -> pa.Table:
    """Merges partial tables into one partial row per (entity_id, event_type, window)."""
    tables = [t for t in tables if t.num_rows]
    if not tables:
        return PARTIAL_SCHEMA.empty_table()
    table = pa.concat_tables(tables).combine_chunks()
    entity = _codes(table.column('entity_id'))
    etype = _codes(table.column('event_type'))
    key = entity * (int(etype.max()) + 1) + etype
    start = _np(table, 'window_start', np.int64)
    end = _np(table, 'window_end', np.int64)
    if spec.kind == 'session':
        start, end = _merge_sessions(key, start, end)
    order, starts = _groups(key, start, end)
    count = np.add.reduceat(_np(table, 'count', np.int64)[order], starts)
    n_i = _np(table, 'value_count', np.int64)[order]
    sum_i = _np(table, 'sum', np.float64)[order]
    m2_i = _np(table, 'm2', np.float64)[order]
    mean_i = np.nan_to_num(_np(table, 'mean', np.float64)[order])
    n = np.add.reduceat(n_i, starts)
    total = np.add.reduceat(sum_i, starts)
    sizes = np.diff(np.append(starts, len(order)))
    group_of = np.repeat(np.arange(len(starts)), sizes)
    with np.errstate(invalid='ignore', divide='ignore'):
        mean = np.where(n > 0, total / np.maximum(n, 1), np.nan)
        shift = np.where(n_i > 0, mean_i - mean[group_of], 0.0)
    m2 = np.add.reduceat(m2_i + n_i * shift * shift, starts)
    lo = np.fmin.reduceat(_np(table, 'min', np.float64)[order], starts)
    hi = np.fmax.reduceat(_np(table, 'max', np.float64)[order], starts)
    # Sketches: flatten every partial's buckets, tag them with the merged group, re-count.
    keys_col = table.column('sketch_keys').combine_chunks()
    counts_col = table.column('sketch_counts').combine_chunks()
    parent = np.asarray(pc.list_parent_indices(keys_col).to_numpy(zero_copy_only=False))
    rank = np.empty(len(order), dtype=np.int64)
    rank[order] = group_of
    flat_keys = np.asarray(pc.list_flatten(keys_col).to_numpy(zero_copy_only=False))
    flat_counts = np.asarray(pc.list_flatten(counts_col).to_numpy(zero_copy_only=False))
    keys_list, counts_list = _sketch_lists(rank[parent], flat_keys, flat_counts, len(starts))
    first_row = pa.array(order[starts])
    return _partial_table(
        table.column('entity_id').take(first_row),
        table.column('event_type').take(first_row),
        start[order][starts],
        end[order][starts],
        count,
        n,
        total,
        lo,
        hi,
        mean,
        m2,
        keys_list,
        counts_list,
    )


def _np(table: pa.Table, name: str, dtype) -> np.ndarray:
    column = table.column(name).combine_chunks()
    if column.null_count:
        column = column.fill_null(np.nan if dtype is np.float64 else 0)
    return np.asarray(column.to_numpy(zero_copy_only=False), dtype=dtype)


def finalize(partials: pa.Table) -> pa.Table:
    """Turns merged partials into aggregate rows (``AGGREGATE_SCHEMA``), sorted by key/window."""
    if partials.num_rows == 0:
        return AGGREGATE_SCHEMA.empty_table()
    partials = partials.sort_by(
        [('entity_id', 'ascending'), ('event_type', 'ascending'), ('window_start', 'ascending')]
    )
    n = _np(partials, 'value_count', np.int64)
    m2 = _np(partials, 'm2', np.float64)
    empty = n == 0
    with np.errstate(invalid='ignore', divide='ignore'):
        stddev = np.sqrt(np.maximum(m2, 0.0) / (n - 1))
    keys_col = partials.column('sketch_keys').combine_chunks()
    counts_col = partials.column('sketch_counts').combine_chunks()
    offsets = np.asarray(keys_col.offsets.to_numpy(zero_copy_only=False), dtype=np.int64)
    flat_keys = np.asarray(pc.list_flatten(keys_col).to_numpy(zero_copy_only=False))
    flat_counts = np.asarray(pc.list_flatten(counts_col).to_numpy(zero_copy_only=False))
    p50, _ = sketch.quantiles(flat_keys, flat_counts, offsets - offsets[0], 0.50)
    p95, _ = sketch.quantiles(flat_keys, flat_counts, offsets - offsets[0], 0.95)
    # The true quantile lies in [min, max]: clamping keeps the error bound and makes the
    # answer exact for single-valued windows.
    lo = _np(partials, 'min', np.float64)
    hi = _np(partials, 'max', np.float64)
    p50 = np.clip(p50, lo, hi)
    p95 = np.clip(p95, lo, hi)
    total = partials.column('sum').combine_chunks()
    return pa.table(
        [
            partials.column('entity_id'),
            partials.column('event_type'),
            partials.column('window_start').cast(TIMESTAMP_TYPE),
            partials.column('window_end').cast(TIMESTAMP_TYPE),
            partials.column('count'),
            partials.column('value_count'),
            pa.array(total.to_numpy(zero_copy_only=False), pa.float64(), mask=empty),
            # No values in the window: no min, max or mean (null, not NaN).
            pa.array(lo, pa.float64(), mask=empty),
            pa.array(hi, pa.float64(), mask=empty),
            pa.array(_np(partials, 'mean', np.float64), pa.float64(), mask=empty),
            pa.array(stddev, pa.float64(), mask=n < 2),
            pa.array(p50, pa.float64(), mask=empty),
            pa.array(p95, pa.float64(), mask=empty),
        ],
        schema=AGGREGATE_SCHEMA,
    )
