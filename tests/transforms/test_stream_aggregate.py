"""``AggregateStream`` under ``TestStream`` in streaming mode: panes, lateness, sessions, holds."""

from __future__ import annotations

import apache_beam as beam
import pyarrow as pa
import pytest
from apache_beam.options.pipeline_options import PipelineOptions
from apache_beam.options.pipeline_options import StandardOptions
from apache_beam.testing.test_pipeline import TestPipeline
from apache_beam.testing.test_stream import TestStream
from apache_beam.testing.util import assert_that
from apache_beam.testing.util import equal_to
from apache_beam.transforms.window import TimestampedValue

from beam_pipelines.columnar.aggregate import WindowSpec
from beam_pipelines.columnar.aggregate import finalize
from beam_pipelines.columnar.aggregate import partials_from_events
from beam_pipelines.columnar.batch import POS
from beam_pipelines.columnar.batch import URI
from beam_pipelines.columnar.panes import TriggerSpec
from beam_pipelines.transforms.stream_aggregate import AggregateStream
from tests.conftest import events_table

FIXED = WindowSpec('fixed', size_secs=60)


def stream_clock() -> float:
    """TestStream's processing-time clock starts at 0."""
    return 0.0


def batch(*rows, ids=None) -> pa.Table:
    """Clean events from (entity, type, seconds, value) rows, with ids and meta columns."""
    table = events_table(list(rows))
    ids = ids or [f'{r[0]}-{r[2]}-{r[3]}' for r in rows]
    table = table.set_column(0, 'event_id', pa.array(ids, pa.string()))
    return table.append_column(URI, pa.array(['mem://s'] * len(rows))).append_column(
        POS, pa.array(range(len(rows)), pa.int64())
    )


def at(table: pa.Table, seconds: float):
    return TimestampedValue(table, seconds)


def streaming_pipeline() -> TestPipeline:
    options = PipelineOptions()
    options.view_as(StandardOptions).streaming = True
    return TestPipeline(options=options)


def pane_tuples(table: pa.Table):
    """(entity, window start s, count, sum, timing, index, final) per pane row."""
    return [
        (
            r['entity_id'],
            r['window_start'].timestamp(),
            r['count'],
            r['sum'],
            r['pane_timing'],
            r['pane_index'],
            r['is_final'],
        )
        for r in table.to_pylist()
    ]


def four_panes() -> TestStream:
    return (
        TestStream()
        .add_elements([at(batch(('a', 'click', 5, 1.0), ('a', 'click', 15, 2.0)), 15)])
        .advance_processing_time(11)  # early pane
        .add_elements([at(batch(('a', 'click', 20, 4.0)), 20)])
        .advance_watermark_to(60)  # on-time pane
        .add_elements([at(batch(('a', 'click', 30, 8.0)), 30)])  # late, within lateness
        .advance_watermark_to(120)  # window closes: final pane
        .add_elements([at(batch(('a', 'click', 40, 16.0)), 40)])  # too late: the late output
        .advance_watermark_to_infinity()
    )


TRIGGER = dict(allowed_lateness_secs=60, early_firing_secs=10)


@pytest.mark.parametrize(
    'accumulating,expected',
    [
        (
            True,
            [
                ('a', 0.0, 2, 3.0, 'early', 0, False),
                ('a', 0.0, 3, 7.0, 'on_time', 1, False),
                ('a', 0.0, 4, 15.0, 'late', 2, False),
                ('a', 0.0, 4, 15.0, 'late', 3, True),
            ],
        ),
        (
            False,
            [
                ('a', 0.0, 2, 3.0, 'early', 0, False),
                ('a', 0.0, 1, 4.0, 'on_time', 1, False),
                ('a', 0.0, 1, 8.0, 'late', 2, False),
                ('a', 0.0, 0, None, 'late', 3, True),
            ],
        ),
    ],
    ids=['accumulating', 'discarding'],
)
def test_early_on_time_late_and_final_panes(accumulating, expected):
    trigger = TriggerSpec(**TRIGGER, accumulating=accumulating)
    with streaming_pipeline() as p:
        out = p | four_panes() | AggregateStream(FIXED, trigger, num_shards=2, clock=stream_clock)
        assert_that(out.panes | beam.FlatMap(pane_tuples), equal_to(expected), label='CheckPanes')
        assert_that(
            out.late | beam.Map(lambda e: (e['stage'], e['error_type'], e['event_time'])),
            equal_to([('late', 'late_event', '1970-01-01T00:00:40.000000Z')]),
            label='CheckLate',
        )
        assert_that(
            out.events | beam.FlatMap(lambda t: t.column('event_id').to_pylist()),
            equal_to(['a-5-1.0', 'a-15-2.0', 'a-20-4.0', 'a-30-8.0']),
            label='CheckAccepted',
        )


def test_out_of_order_events_give_the_batch_aggregates():
    rows = [
        ('a', 'click', 119, 5.0),
        ('b', 'view', 61, 1.0),
        ('a', 'click', 3, 2.0),
        ('a', 'click', 70, 7.0),
        ('b', 'view', 59, 3.0),
        ('a', 'click', 1, 4.0),
    ]
    stream = TestStream()
    for i, row in enumerate(rows):  # one event per batch, in scrambled event-time order
        stream = stream.add_elements([at(batch(row), row[2])])
        if i == 2:
            stream = stream.advance_watermark_to(1)  # still before every window's end
    stream = stream.advance_watermark_to(200).advance_watermark_to_infinity()
    expected_rows = finalize(partials_from_events(batch(*rows), FIXED)).to_pylist()
    expected = [
        (r['entity_id'], r['window_start'].timestamp(), r['count'], r['sum'], 'on_time', 0, True)
        for r in expected_rows
    ]
    with streaming_pipeline() as p:
        out = p | stream | AggregateStream(FIXED, TriggerSpec(), num_shards=2, clock=stream_clock)
        assert_that(out.panes | beam.FlatMap(pane_tuples), equal_to(expected))


def test_sessions_merge_across_a_late_arrival_and_retract_the_old_sessions():
    sessions = WindowSpec('session', gap_secs=10)
    stream = (
        TestStream()
        .add_elements([at(batch(('a', 'click', 0, 1.0), ('a', 'click', 18, 2.0)), 18)])
        .advance_watermark_to(40)  # on time: [0, 10) and [18, 28)
        .add_elements([at(batch(('a', 'click', 9, 4.0)), 9)])  # bridges them: [0, 28)
        .advance_watermark_to(400)
        .advance_watermark_to_infinity()
    )
    trigger = TriggerSpec(allowed_lateness_secs=300)
    with streaming_pipeline() as p:
        out = p | stream | AggregateStream(sessions, trigger, num_shards=1, clock=stream_clock)
        assert_that(
            out.panes
            | beam.FlatMap(
                lambda t: [(*row, end) for row, end in zip(pane_tuples(t), _ends(t), strict=True)]
            ),
            equal_to(
                [
                    ('a', 0.0, 1, 1.0, 'on_time', 0, False, 10.0),
                    ('a', 18.0, 1, 2.0, 'on_time', 0, False, 28.0),
                    ('a', 0.0, 3, 7.0, 'late', 1, False, 28.0),
                    ('a', 0.0, 3, 7.0, 'late', 2, True, 28.0),
                ]
            ),
            label='CheckPanes',
        )
        assert_that(
            out.retractions
            | beam.FlatMap(
                lambda t: [
                    (r['window_start'].timestamp(), r['window_end'].timestamp())
                    for r in t.to_pylist()
                ]
            ),
            equal_to([(0.0, 10.0), (18.0, 28.0)]),
            label='CheckRetractions',
        )


def _ends(table: pa.Table):
    return [r.timestamp() for r in table.column('window_end').to_pylist()]


def test_panes_carry_their_window_timestamp_for_downstream_windowing():
    """On-time panes are stamped with their window's last microsecond (as a GroupByKey's are),
    so a downstream FixedWindows aggregation of the panes sees each in the window it describes.

    Runners that honour timer watermark holds (Flink, Dataflow) also hold the output watermark
    at pending timers; Beam's Python DirectRunner does not implement holds for user timers, so
    this test steps the watermark through the window ends instead of jumping over them.
    """
    stream = (
        TestStream()
        .add_elements(
            [at(batch(('a', 'click', 10, 1.0), ('a', 'click', 70, 2.0), ('b', 'x', 130, 3.0)), 10)]
        )
        .advance_watermark_to(60)
        .advance_watermark_to(120)
        .advance_watermark_to(180)
        .advance_watermark_to_infinity()
    )
    with streaming_pipeline() as p:
        out = p | stream | AggregateStream(FIXED, TriggerSpec(), num_shards=1, clock=stream_clock)
        downstream = (
            out.panes
            | beam.FlatMap(pane_tuples)
            | beam.WindowInto(beam.window.FixedWindows(60))
            | beam.Map(lambda row: ('all', row[1]))
            | beam.GroupByKey()
            | beam.MapTuple(lambda _, starts: sorted(starts))
            | beam.ParDo(_WithWindowStart())
        )
        assert_that(downstream, equal_to([(0.0, [0.0]), (60.0, [60.0]), (120.0, [120.0])]))


class _WithWindowStart(beam.DoFn):
    def process(self, starts, window=beam.DoFn.WindowParam):
        yield float(window.start), starts


def test_duplicates_are_dropped_within_the_horizon_and_counted():
    first = batch(('a', 'click', 5, 1.0), ids=['x'])
    copy = batch(('a', 'click', 5, 1.0), ids=['x'])
    stream = (
        TestStream()
        .add_elements([at(first, 5)])
        .add_elements([at(copy, 5)])  # within the horizon: a duplicate
        .advance_watermark_to(200)  # horizon (100 s) passed: 'x' is forgotten
        .add_elements([at(batch(('a', 'click', 150, 1.0), ids=['x']), 150)])
        .advance_watermark_to_infinity()
    )
    trigger = TriggerSpec(allowed_lateness_secs=60)
    with streaming_pipeline() as p:
        out = (
            p
            | stream
            | AggregateStream(
                FIXED, trigger, num_shards=1, dedup_horizon_secs=100, clock=stream_clock
            )
        )
        assert_that(
            out.duplicates,
            equal_to([1]),
            label='Dups',
        )
        assert_that(
            out.events | beam.FlatMap(lambda t: t.column('event_id').to_pylist()),
            equal_to(['x', 'x']),
            label='Accepted',
        )


def test_sessions_with_discarding_panes_are_refused():
    with pytest.raises(ValueError, match='accumulating'):
        AggregateStream(
            WindowSpec('session', gap_secs=10), TriggerSpec(accumulating=False), clock=stream_clock
        )
