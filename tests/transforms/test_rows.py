"""The per-element API: TableToRows and RowsToTable."""

from __future__ import annotations

import apache_beam as beam
from apache_beam.testing.test_pipeline import TestPipeline
from apache_beam.testing.util import assert_that
from apache_beam.testing.util import equal_to

from beam_pipelines.transforms.rows import RowsToTable
from beam_pipelines.transforms.rows import TableToRows
from tests.conftest import events_table

ROWS = [('a', 'x', 0.0, 1.0), ('a', 'x', 10.0, 3.0), ('a', 'x', 61.0, 5.0), ('b', 'x', 5.0, 2.0)]


def test_rows_round_trip_with_event_timestamps():
    table = events_table(ROWS)
    with TestPipeline() as p:
        rows = p | beam.Create([table]) | 'ToRows' >> TableToRows()
        stamped = rows | beam.Map(lambda r, t=beam.DoFn.TimestampParam: (r['event_id'], float(t)))
        assert_that(
            stamped,
            equal_to([('e0', 0.0), ('e1', 10.0), ('e2', 61.0), ('e3', 5.0)]),
            label='Timestamps',
        )
        back = rows | 'ToTable' >> RowsToTable(table.schema, max_rows=2)
        count = back | beam.Map(lambda t: t.num_rows) | beam.CombineGlobally(sum)
        assert_that(count, equal_to([4]), label='RoundTrip')
