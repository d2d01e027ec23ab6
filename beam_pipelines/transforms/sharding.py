"""Splitting Arrow tables into shards by a stable hash, for columnar shuffles."""

from __future__ import annotations

from collections.abc import Iterator

import numpy as np
import pyarrow as pa

from beam_pipelines.columnar.hashing import partition_ids

__all__ = ['shard_table']


def shard_table(
    table: pa.Table, columns: tuple[str, ...], num_shards: int
) -> Iterator[tuple[int, pa.Table]]:
    """Yields ``(shard, rows)`` for each non-empty shard; rows of one key share a shard."""
    if table.num_rows == 0:
        return
    shard = partition_ids(*(table.column(c) for c in columns), num_partitions=num_shards)
    order = np.argsort(shard, kind='stable')
    ordered = table.take(pa.array(order))
    bounds = np.concatenate(([0], np.cumsum(np.bincount(shard, minlength=num_shards))))
    for s in range(num_shards):
        lo, hi = int(bounds[s]), int(bounds[s + 1])
        if hi > lo:
            yield s, ordered.slice(lo, hi - lo)
