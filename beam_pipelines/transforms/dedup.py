"""``DeduplicateEvents``: exact deduplication by ``event_id`` with a columnar shuffle.

Tables are split into shards by a stable hash of the ``shard_by`` columns and grouped by shard,
so every copy of an event meets its twins in one place; each shard keeps the first copy
(smallest input position) and counts the rest. Only Arrow tables cross the shuffle
(IPC-encoded), never single events.

Duplicates are exact retransmissions, so any columns of the record can route them: sharding by
``event_id`` (the default) also catches an ``event_id`` reused by a different record; sharding
by the aggregation key (``entity_id``, ``event_type``) lets the same shuffle serve aggregation,
since each output table then holds every event of its keys (see ``AggregateWindows``'
``complete_keys``). With the latter, two different records that share an ``event_id`` but not
the key are both kept: they are an id collision, not a retransmission.
"""

from __future__ import annotations

import os
import uuid
from typing import NamedTuple

import apache_beam as beam
import pyarrow as pa
from apache_beam import pvalue
from apache_beam.metrics import Metrics

from beam_pipelines.columnar.dedup import deduplicate
from beam_pipelines.io import coders  # noqa: F401  (registers the Arrow table coder)
from beam_pipelines.io.coders import pack_table
from beam_pipelines.io.coders import unpack_table
from beam_pipelines.io.files import NAMESPACE
from beam_pipelines.observability.metrics import counter
from beam_pipelines.transforms.sharding import shard_table
from beam_pipelines.transforms.tags import DUPLICATES
from beam_pipelines.transforms.tags import VALID

__all__ = ['DeduplicateEvents', 'Deduplicated']


class Deduplicated(NamedTuple):
    events: beam.PCollection
    duplicates: beam.PCollection  # one int per shard: the copies dropped there


class DeduplicateEvents(beam.PTransform):
    """Keeps the first copy of each ``event_id`` (batch semantics: over the whole input).

    Args:
        num_shards: how many shards the shuffle uses (parallelism of the dedup step).
        shard_by: the string columns that route rows to shards (see the module docstring).
        spill_dir: a local directory, on the DirectRunner only: each shard's packed rows are
            written there and only the file's path crosses the shuffle. The DirectRunner holds
            a batch shuffle in memory, several copies at once when the next stage starts (about
            6.5x the packed size measured); Flink and Dataflow keep shuffles off the heap, and
            their workers do not share a local directory. The caller removes the directory
            after the run (a retried bundle leaves files behind, never reads a missing one).
    """

    def __init__(
        self,
        num_shards: int = 16,
        shard_by: tuple[str, ...] = ('event_id',),
        spill_dir: str | None = None,
    ):
        super().__init__()
        if num_shards < 1:
            raise ValueError(f'num_shards must be >= 1, got {num_shards}')
        if not shard_by:
            raise ValueError('shard_by must name at least one column')
        self._num_shards = num_shards
        self._shard_by = tuple(shard_by)
        self._spill_dir = spill_dir

    def expand(self, tables) -> Deduplicated:
        results = (
            tables
            | 'ShardEvents'
            >> beam.FlatMap(
                _packed_shards, self._shard_by, self._num_shards, self._spill_dir
            ).with_output_types(tuple[int, bytes])
            | 'GroupShards' >> beam.GroupByKey()
            | 'DropDuplicates'
            >> beam.ParDo(_DropDuplicatesFn(self._spill_dir is not None))
            .with_output_types(pa.Table)
            .with_outputs(DUPLICATES, main=VALID)
        )
        return Deduplicated(events=results[VALID], duplicates=results[DUPLICATES])


def _packed_shards(
    table: pa.Table, shard_by: tuple[str, ...], num_shards: int, spill_dir: str | None
):
    """``shard_table``, each shard's rows packed as compressed bytes (see ``pack_table``: the
    DirectRunner then holds the shuffle at about 40% of its size), or, with ``spill_dir``, the
    path of a file holding them."""
    for shard, rows in shard_table(table, shard_by, num_shards):
        packed = pack_table(rows)
        if spill_dir is None:
            yield shard, packed
            continue
        path = os.path.join(spill_dir, f'{shard}-{uuid.uuid4().hex}.arrow')
        with open(path, 'wb') as f:
            f.write(packed)
        yield shard, path.encode()


def _read_spilled(path: bytes) -> bytes:
    with open(path, 'rb') as f:
        return f.read()


class _DropDuplicatesFn(beam.DoFn):
    def __init__(self, spilled: bool = False):
        self._spilled = spilled

    def setup(self):
        self._duplicates = Metrics.counter(NAMESPACE, 'duplicates')
        self._in = counter('records_in', stage='dedup')
        self._out = counter('records_out', stage='dedup')

    def process(self, shard_tables):
        _, packed = shard_tables
        if self._spilled:
            packed = map(_read_spilled, packed)
        tables = [unpack_table(p) for p in packed]
        unique, duplicates = deduplicate(tables)
        self._duplicates.inc(duplicates)
        self._in.inc(sum(t.num_rows for t in tables))
        self._out.inc(unique.num_rows if unique is not None else 0)
        yield pvalue.TaggedOutput(DUPLICATES, duplicates)
        if unique is not None and unique.num_rows:
            yield unique
