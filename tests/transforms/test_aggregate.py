"""AggregateWindows in a TestPipeline, per window type, both shuffle modes."""

from __future__ import annotations

import apache_beam as beam
import pyarrow as pa
import pytest
from apache_beam.testing.test_pipeline import TestPipeline
from apache_beam.testing.util import assert_that
from apache_beam.testing.util import equal_to

from beam_pipelines.columnar.aggregate import WindowSpec
from beam_pipelines.columnar.aggregate import finalize
from beam_pipelines.columnar.aggregate import partials_from_events
from beam_pipelines.transforms.aggregate import AggregateWindows
from beam_pipelines.transforms.dedup import DeduplicateEvents
from tests.conftest import events_table
from tests.conftest import ts

ROWS = [('a', 'x', 0.0, 1.0), ('a', 'x', 10.0, 3.0), ('a', 'x', 61.0, 5.0), ('b', 'x', 5.0, 2.0)]


@pytest.mark.parametrize(
    'spec, expected',
    [
        (
            WindowSpec('fixed', 60),
            [
                ('a', ts(0), ts(60), 2, 4.0),
                ('a', ts(60), ts(120), 1, 5.0),
                ('b', ts(0), ts(60), 1, 2.0),
            ],
        ),
        (
            WindowSpec('sliding', 60, 30),
            [
                ('a', ts(-30), ts(30), 2, 4.0),
                ('a', ts(0), ts(60), 2, 4.0),
                ('a', ts(30), ts(90), 1, 5.0),
                ('a', ts(60), ts(120), 1, 5.0),
                ('b', ts(-30), ts(30), 1, 2.0),
                ('b', ts(0), ts(60), 1, 2.0),
            ],
        ),
        (
            WindowSpec('session', gap_secs=30),
            [
                ('a', ts(0), ts(40), 2, 4.0),
                ('a', ts(61), ts(91), 1, 5.0),
                ('b', ts(5), ts(35), 1, 2.0),
            ],
        ),
    ],
)
def test_aggregate_windows_hand_computed(spec, expected):
    # One event per table: every window is built by merging partials across bundles.
    tables = [events_table([row]) for row in ROWS]
    with TestPipeline() as p:
        out = (
            p
            | beam.Create(tables)
            | 'Aggregate' >> AggregateWindows(spec, num_shards=2)
            | beam.FlatMap(
                lambda t: [
                    (r['entity_id'], r['window_start'], r['window_end'], r['count'], r['sum'])
                    for r in t.to_pylist()
                ]
            )
        )
        assert_that(out, equal_to(expected))


def test_key_sharded_dedup_feeds_complete_key_aggregation():
    """Sharding dedup by the aggregation key makes each table hold whole keys: the aggregates
    computed per table equal the ones merged through the partials shuffle."""
    rows = [(f'u{i % 7}', 'xy'[i % 2], float(i * 7 % 300), float(i)) for i in range(200)]
    table = events_table(rows)
    table = table.append_column('_uri', pa.array(['f'] * len(rows))).append_column(
        '_pos', pa.array(range(len(rows)), pa.int64())
    )
    batches = [table.slice(i, 30) for i in range(0, len(rows), 30)]

    def summarise(t):
        return [
            (r['entity_id'], r['event_type'], r['window_start'], r['count'], r['sum'])
            for r in t.to_pylist()
        ]

    spec = WindowSpec('fixed', 60)
    with TestPipeline() as p:
        tables = p | beam.Create(batches)
        events = (
            tables
            | 'Dedup' >> DeduplicateEvents(num_shards=4, shard_by=('entity_id', 'event_type'))
        ).events
        local = (
            events
            | 'Complete' >> AggregateWindows(spec, complete_keys=True)
            | 'FlatLocal' >> beam.FlatMap(summarise)
        )
        shuffled = (
            tables
            | 'Shuffled' >> AggregateWindows(spec, num_shards=3)
            | 'FlatShuffled' >> beam.FlatMap(summarise)
        )
        expected = summarise(finalize(partials_from_events(table, spec)))
        assert_that(local, equal_to(expected), label='Local')
        assert_that(shuffled, equal_to(expected), label='Shuffled')
