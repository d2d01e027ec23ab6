"""``AggregateWindows``: per (entity_id, event_type) aggregates in event-time windows.

Each event table becomes partial aggregates (one row per key and window in the table); partial
tables are sharded by key and merged with a ``CombinePerKey`` whose accumulators are partial
tables, so Beam pre-combines before the shuffle (combiner lifting) and only per-(key, window)
partials cross it. Sliding windows assign each event to every window that covers it; sessions
merge overlapping per-batch sessions, so both stay exact with partials.

When every input table already holds all events of its keys (``complete_keys``, as after a
key-sharded ``DeduplicateEvents``), each table is aggregated on its own and nothing is shuffled:
the flagship uses this, so its events cross exactly one shuffle.
"""

from __future__ import annotations

import apache_beam as beam
import pyarrow as pa
from apache_beam import coders as beam_coders

from beam_pipelines.columnar import aggregate
from beam_pipelines.columnar.aggregate import WindowSpec
from beam_pipelines.io.coders import ArrowTableCoder
from beam_pipelines.transforms.sharding import shard_table

__all__ = ['AggregateWindows', 'MergePartialsFn']

_COMPACT_EVERY = 16


class AggregateWindows(beam.PTransform):
    """Aggregates clean event tables into aggregate tables (``AGGREGATE_SCHEMA``).

    Args:
        window: which windows to aggregate in.
        num_shards: how many shards the partials are merged in.
        complete_keys: each input table already holds every event of the keys in it (as
            ``DeduplicateEvents(shard_by=KEY_COLUMNS)`` produces): aggregates are then final
            per table and no shuffle is needed.
    """

    def __init__(self, window: WindowSpec, num_shards: int = 16, complete_keys: bool = False):
        super().__init__()
        if num_shards < 1:
            raise ValueError(f'num_shards must be >= 1, got {num_shards}')
        self._window = window
        self._num_shards = num_shards
        self._complete_keys = complete_keys

    def expand(self, tables):
        if self._complete_keys:
            return tables | 'AggregateCompleteKeys' >> beam.Map(
                _aggregate_complete, self._window
            ).with_output_types(pa.Table)
        return (
            tables
            | 'ComputePartials' >> beam.Map(aggregate.partials_from_events, self._window)
            | 'ShardByKey'
            >> beam.FlatMap(shard_table, aggregate.KEY_COLUMNS, self._num_shards).with_output_types(
                tuple[int, pa.Table]
            )
            | 'MergePartials' >> beam.CombinePerKey(MergePartialsFn(self._window))
            | 'Finalize'
            >> beam.MapTuple(lambda _, partials: aggregate.finalize(partials)).with_output_types(
                pa.Table
            )
        )


def _aggregate_complete(events: pa.Table, window: WindowSpec) -> pa.Table:
    return aggregate.finalize(aggregate.partials_from_events(events, window))


class MergePartialsFn(beam.CombineFn):
    """Merges partial-aggregate tables; accumulators are lists of partial tables."""

    def __init__(self, window: WindowSpec):
        self._window = window

    def create_accumulator(self):
        return []

    def add_input(self, accumulator, partials):
        accumulator.append(partials)
        if len(accumulator) >= _COMPACT_EVERY:
            return self.compact(accumulator)
        return accumulator

    def merge_accumulators(self, accumulators):
        merged = [t for acc in accumulators for t in acc]
        return self.compact(merged) if len(merged) > 1 else merged

    def compact(self, accumulator):
        if len(accumulator) <= 1:
            return accumulator
        return [aggregate.merge_partials(accumulator, self._window)]

    def extract_output(self, accumulator):
        return aggregate.merge_partials(accumulator, self._window)

    def get_accumulator_coder(self):
        return beam_coders.ListCoder(ArrowTableCoder())
