"""``DetectAnomalies`` in batch and under ``TestStream`` in streaming mode: event-time order,
batch/stream equality, the late output, idle keys expired by timers."""

from __future__ import annotations

import apache_beam as beam
import numpy as np
import pyarrow as pa
from apache_beam.options.pipeline_options import PipelineOptions
from apache_beam.options.pipeline_options import StandardOptions
from apache_beam.testing.test_pipeline import TestPipeline
from apache_beam.testing.test_stream import TestStream
from apache_beam.testing.util import assert_that
from apache_beam.testing.util import equal_to
from apache_beam.transforms.window import TimestampedValue

from beam_pipelines.anomaly.model import KeyModel
from beam_pipelines.anomaly.spec import parse_spec
from beam_pipelines.columnar.timestamps import TIMESTAMP_TYPE
from beam_pipelines.transforms.detect import DetectAnomalies

SPEC = parse_spec(
    {
        'warmup': 5,
        'detectors': [{'kind': 'zscore', 'window': 10}],
        'calibration': {'kind': 'fixed'},
        'refractory_points': 2,
    }
)
T0 = 1_700_000_000
MINUTE = 60


def points(rows) -> pa.Table:
    """(key, seconds after T0, value) rows as a points table."""
    return pa.table(
        {
            'series': [r[0] for r in rows],
            'timestamp': pa.array([(T0 + r[1]) * 1_000_000 for r in rows], pa.int64()).cast(
                TIMESTAMP_TYPE
            ),
            'value': pa.array([r[2] for r in rows], pa.float64()),
        }
    )


def series_rows():
    rng = np.random.default_rng(11)
    rows = []
    for key in ('a', 'b'):
        values = rng.normal(10, 1, 60)
        values[40] = 25.0  # an anomaly in each series
        rows += [(key, i * MINUTE, float(v)) for i, v in enumerate(values)]
    return rows


def expected(rows, spec=SPEC):
    """What the plain per-key models say, point by point in time order (no Beam)."""
    out = []
    for key in sorted({r[0] for r in rows}):
        model = KeyModel(spec)
        for _, t, v in sorted((r for r in rows if r[0] == key), key=lambda r: r[1]):
            s = model.update(float(T0 + t), v)
            out.append((key, t, round(s.score, 12), s.label))
    return out


def tuples(table: pa.Table):
    times = table.column('event_time').cast(pa.int64()).to_pylist()
    for key, us, score, label in zip(
        table.column('series').to_pylist(),
        times,
        table.column('anomaly_score').to_pylist(),
        table.column('is_anomaly').to_pylist(),
        strict=True,
    ):
        yield key, us // 1_000_000 - T0, round(score, 12), label


def detect(**kw):
    return DetectAnomalies(SPEC, key_columns=('series',), num_shards=2, release_secs=1.0, **kw)


def streaming() -> TestPipeline:
    options = PipelineOptions()
    options.view_as(StandardOptions).streaming = True
    return TestPipeline(options=options)


def test_a_bounded_run_scores_shuffled_points_in_event_time_order():
    rows = series_rows()
    order = np.random.default_rng(1).permutation(len(rows))
    chunks = [points([rows[i] for i in order[j : j + 25]]) for j in range(0, len(rows), 25)]
    with TestPipeline() as p:
        detected = p | beam.Create(chunks) | detect()
        assert_that(detected.scores | beam.FlatMap(tuples), equal_to(expected(rows)))
        flagged = detected.anomalies | 'AnomalyTuples' >> beam.FlatMap(tuples)
        want = [r for r in expected(rows) if r[3]]
        assert len(want) >= 2  # both injected anomalies at least
        assert_that(flagged, equal_to(want), label='OnlyAnomalies')


def test_a_stream_out_of_order_within_the_watermark_equals_the_batch_run():
    rows = series_rows()
    stream = TestStream()
    for start in range(0, 60 * MINUTE, 15 * MINUTE):
        part = [r for r in rows if start <= r[1] < start + 15 * MINUTE]
        part.reverse()  # newest first: the transform must put them back in order
        stream = stream.add_elements(
            [
                TimestampedValue(points(part[i : i + 10]), T0 + start)
                for i in range(0, len(part), 10)
            ]
        )
        stream = stream.advance_watermark_to(T0 + start + 15 * MINUTE)
    stream = stream.advance_watermark_to_infinity()
    with streaming() as p:
        detected = p | stream | detect()
        assert_that(detected.scores | beam.FlatMap(tuples), equal_to(expected(rows)))


def test_a_point_behind_its_keys_scored_points_goes_to_late():
    early = [('a', i * MINUTE, 10.0 + i % 2) for i in range(20)]
    stream = (
        TestStream()
        .add_elements([TimestampedValue(points(early), T0)])
        .advance_watermark_to(T0 + 30 * MINUTE)  # key 'a' is scored up to minute 19
        .add_elements([TimestampedValue(points([('a', 5 * MINUTE, 99.0)]), T0 + 30 * MINUTE)])
        .add_elements([TimestampedValue(points([('c', 5 * MINUTE, 1.0)]), T0 + 30 * MINUTE)])
        .advance_watermark_to(T0 + 31 * MINUTE)  # before the end: see the idle-key test
        .advance_watermark_to_infinity()
    )
    with streaming() as p:
        detected = p | stream | detect()
        late = detected.late | beam.Map(lambda e: (e['stage'], e['error_type'], e['event_time']))
        assert_that(late, equal_to([('late', 'late_point', '2023-11-14T22:18:20.000000Z')]))
        keys = detected.scores | beam.FlatMap(lambda t: t.column('series').to_pylist())
        # 'c' has no scored points yet, so its old point is still in order for it
        assert_that(keys, equal_to(['a'] * 20 + ['c']), label='Keys')


def test_idle_keys_are_forgotten_after_the_ttl():
    first = [('a', i * MINUTE, 10.0 + i % 2) for i in range(20)]
    later = [('a', 10 * 3600, 10.0), ('b', 10 * 3600, 1.0)]
    stream = (
        TestStream()
        .add_elements([TimestampedValue(points(first), T0)])
        .advance_watermark_to(T0 + 3600)
        .advance_watermark_to(T0 + 3 * 3600)  # 'a' idle for over 2 hours: the expiry timer
        .add_elements([TimestampedValue(points(later), T0 + 10 * 3600)])
        # Stepped past the points before the end: the DirectRunner holds no watermark for
        # user timers, so what a timer emits at the very end can miss a downstream grouping.
        .advance_watermark_to(T0 + 10 * 3600 + 60)
        .advance_watermark_to_infinity()
    )
    with streaming() as p:
        detected = p | stream | detect(idle_ttl_secs=2 * 3600)
        back = (
            detected.scores
            | beam.FlatMap(tuples)
            | beam.Filter(lambda r: r[1] == 10 * 3600)
            | beam.Map(lambda r: (r[0], r[3]))
        )
        # 'a' starts again from nothing: its point is in the warm-up (no verdict), as 'b''s is.
        assert_that(back, equal_to([('a', None), ('b', None)]))


class _Stamp(beam.DoFn):
    def process(self, table, at=beam.DoFn.TimestampParam):
        for t in tuples(table):
            yield t[0], t[1], float(at)


DAY = 86_400


def test_outputs_are_on_time_downstream_and_released_as_soon_as_the_watermark_allows():
    # Points whose own times lag their elements' timestamps by two days, as window aggregates
    # lag (stamped with the window's end). Each is released when the watermark passes its
    # element's timestamp and stamped there, so a downstream windowing of the scores still
    # takes them; a far later element holds nothing back.
    stream = (
        TestStream()
        .add_elements([TimestampedValue(points([('a', 0, 1.0)]), T0 + 2 * DAY)])
        .advance_watermark_to(T0 + 2 * DAY + 1)
        .add_elements([TimestampedValue(points([('a', 2 * DAY, 1.0)]), T0 + 4 * DAY)])
        .add_elements([TimestampedValue(points([('a', 9 * DAY, 1.0)]), T0 + 10 * DAY)])
        .advance_watermark_to(T0 + 4 * DAY + 1)  # the 4-day element is released here
        .advance_watermark_to(T0 + 10 * DAY + 1)
        .advance_watermark_to_infinity()
    )
    with streaming() as p:
        scores = (p | stream | detect(idle_ttl_secs=30 * DAY)).scores
        stamps = scores | beam.ParDo(_Stamp())
        assert_that(
            stamps,
            equal_to(
                [
                    ('a', 0, T0 + 2 * DAY + 0.999999),
                    ('a', 2 * DAY, T0 + 4 * DAY + 0.999999),
                    ('a', 9 * DAY, T0 + 10 * DAY + 0.999999),
                ]
            ),
        )
        per_window = (
            scores
            | beam.WindowInto(beam.window.FixedWindows(DAY))
            | beam.FlatMap(lambda t: [('n', 1)] * t.num_rows)
            | beam.CombinePerKey(sum)
            | beam.Values()
        )
        assert_that(per_window, equal_to([1, 1, 1]), label='WindowedDownstream')
