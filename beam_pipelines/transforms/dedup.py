"""``DeduplicateEvents``: exact deduplication by ``event_id`` with a columnar shuffle.

Tables are split into shards by a stable hash of ``event_id`` and grouped by shard, so every copy
of an event meets its twins in one place; each shard keeps the first copy (smallest input
position) and counts the rest. Only Arrow tables cross the shuffle (IPC-encoded), never single
events.
"""

from __future__ import annotations

from typing import NamedTuple

import apache_beam as beam
import pyarrow as pa
from apache_beam import pvalue
from apache_beam.metrics import Metrics

from beam_pipelines.columnar.dedup import deduplicate
from beam_pipelines.io import coders  # noqa: F401  (registers the Arrow table coder)
from beam_pipelines.io.files import NAMESPACE
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
    """

    def __init__(self, num_shards: int = 16):
        super().__init__()
        if num_shards < 1:
            raise ValueError(f'num_shards must be >= 1, got {num_shards}')
        self._num_shards = num_shards

    def expand(self, tables) -> Deduplicated:
        results = (
            tables
            | 'ShardByEventId'
            >> beam.FlatMap(shard_table, ('event_id',), self._num_shards).with_output_types(
                tuple[int, pa.Table]
            )
            | 'GroupShards' >> beam.GroupByKey()
            | 'DropDuplicates'
            >> beam.ParDo(_DropDuplicatesFn()).with_outputs(DUPLICATES, main=VALID)
        )
        return Deduplicated(events=results[VALID], duplicates=results[DUPLICATES])


class _DropDuplicatesFn(beam.DoFn):
    def setup(self):
        self._duplicates = Metrics.counter(NAMESPACE, 'duplicates')

    def process(self, shard_tables):
        _, tables = shard_tables
        unique, duplicates = deduplicate(list(tables))
        self._duplicates.inc(duplicates)
        yield pvalue.TaggedOutput(DUPLICATES, duplicates)
        if unique is not None and unique.num_rows:
            yield unique
