"""Exact deduplication by ``event_id`` over Arrow tables: the first copy is kept.

"First" is the earliest position in the input: the smallest (file URI, byte offset or record
index), so the surviving copy does not depend on how the runner split or ordered the work.
"""

from __future__ import annotations

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from beam_pipelines.columnar.batch import POS
from beam_pipelines.columnar.batch import URI

__all__ = ['deduplicate']


def deduplicate(tables: list[pa.Table], key: str = 'event_id') -> tuple[pa.Table, int]:
    """Keeps the first row per key across tables.

    Args:
        tables: event tables with the key and the meta columns ``_uri`` and ``_pos``.
        key: the column that identifies an event.

    Returns:
        ``(unique, duplicates)``: the kept rows (in input order) and how many were dropped.
    """
    tables = [t for t in tables if t.num_rows]
    if not tables:
        return None, 0
    table = pa.concat_tables(tables).combine_chunks() if len(tables) > 1 else tables[0]
    n = table.num_rows
    if n < 2:
        return table, 0
    order = pc.sort_indices(
        pa.table(
            {key: table.column(key), URI: _uri_rank(table.column(URI)), POS: table.column(POS)}
        ),
        sort_keys=[(key, 'ascending'), (URI, 'ascending'), (POS, 'ascending')],
    )
    ids = table.column(key).take(order).combine_chunks()
    first = np.ones(n, dtype=bool)
    first[1:] = np.asarray(
        pc.not_equal(ids.slice(1), ids.slice(0, n - 1))
        .fill_null(True)
        .to_numpy(zero_copy_only=False),
        dtype=bool,
    )
    duplicates = int(n - first.sum())
    if not duplicates:
        return table, 0
    keep = np.sort(np.asarray(order.to_numpy(zero_copy_only=False))[first])
    return table.take(pa.array(keep)), duplicates


def _uri_rank(uris: pa.ChunkedArray | pa.Array) -> pa.Array:
    """Each row's file URI as its rank among the URIs, so files sort by name."""
    if isinstance(uris, pa.ChunkedArray):
        uris = uris.combine_chunks()
    if not pa.types.is_dictionary(uris.type):
        uris = pc.dictionary_encode(uris)
    names = uris.dictionary.to_pylist()
    rank = np.empty(len(names), dtype=np.int64)
    rank[np.argsort(np.array(names, dtype=object), kind='stable')] = np.arange(len(names))
    indices = np.asarray(uris.indices.to_numpy(zero_copy_only=False), dtype=np.int64)
    return pa.array(rank[indices])
