"""``OrderedShardFn``: every event-time-ordered step (``ExtractFeatures``, ``DetectAnomalies``)
has timers of its own, so two of them in one fused stage each get their own timers and
outputs."""

from __future__ import annotations

import collections

import apache_beam as beam
import pyarrow as pa
from apache_beam.pipeline import PipelineVisitor
from apache_beam.testing.test_pipeline import TestPipeline
from apache_beam.testing.util import assert_that
from apache_beam.testing.util import equal_to
from apache_beam.transforms import userstate

from beam_pipelines.anomaly.model import KeyModel
from beam_pipelines.features.rolling import EntityHistory
from beam_pipelines.features.rolling import rolling_features
from beam_pipelines.transforms.detect import DetectAnomalies
from beam_pipelines.transforms.features import ExtractFeatures
from tests.features.test_feature_pipeline import SPEC as FEATURE_SPEC
from tests.features.test_feature_pipeline import T0
from tests.features.test_feature_pipeline import events
from tests.features.test_feature_pipeline import rounded
from tests.features.test_feature_pipeline import rows
from tests.transforms.test_detect import SPEC as ANOMALY_SPEC


class _TimerIds(PipelineVisitor):
    """The timer family ids of each stateful ParDo of a pipeline, by the step's label."""

    def __init__(self):
        self.by_step = {}

    def visit_transform(self, applied):
        transform = applied.transform
        if isinstance(transform, beam.ParDo) and userstate.is_stateful_dofn(transform.dofn):
            _, timers = userstate.get_dofn_specs(transform.dofn)
            self.by_step[applied.full_label] = sorted(t.name for t in timers)


def shared_timer_ids(pipeline: beam.Pipeline) -> dict[str, list[str]]:
    """Timer family ids that more than one step of ``pipeline`` uses, with those steps.

    Beam's FnApiRunner (what the DirectRunner runs a bounded pipeline on) buffers the timers a
    fused stage sets by timer family id alone (apache/beam#21995): two steps of one stage with
    the same ids share one buffer, the first step read takes all the timers, the other's never
    fire. So a pipeline must not reuse a timer family id.
    """
    visitor = _TimerIds()
    pipeline.visit(visitor)
    steps = collections.defaultdict(list)
    for step, ids in visitor.by_step.items():
        for timer_id in ids:
            steps[timer_id].append(step)
    return {timer_id: found for timer_id, found in steps.items() if len(found) > 1}


def anomaly_points(table: pa.Table) -> pa.Table:
    """The events as points: the value of each (entity, type) in time order."""
    return table.select(['entity_id', 'event_type', 'timestamp', 'value'])


def expected_features(data):
    out = []
    for entity in sorted({r[0] for r in data}):
        mine = sorted((r for r in data if r[0] == entity), key=lambda r: r[1])
        table, _ = rolling_features(EntityHistory.empty(), events(mine), FEATURE_SPEC)
        out += list(rounded(table))
    return out


def expected_scores(data):
    out = []
    for key in sorted({(r[0], r[2]) for r in data}):
        model = KeyModel(ANOMALY_SPEC)
        for _, t, _, v in sorted((r for r in data if (r[0], r[2]) == key), key=lambda r: r[1]):
            s = model.update(float(T0 + t), v)
            out.append((*key, t, round(s.score, 12), s.label))
    return out


def score_tuples(table: pa.Table):
    times = table.column('event_time').cast(pa.int64()).to_pylist()
    for entity, typ, us, score, label in zip(
        table.column('entity_id').to_pylist(),
        table.column('event_type').to_pylist(),
        times,
        table.column('anomaly_score').to_pylist(),
        table.column('is_anomaly').to_pylist(),
        strict=True,
    ):
        yield entity, typ, us // 1_000_000 - T0, round(score, 12), label


def both_steps(p: beam.Pipeline, data):
    tables = p | beam.Create([events(data[i : i + 40]) for i in range(0, len(data), 40)])
    extracted = tables | 'ExtractFeatures' >> ExtractFeatures(FEATURE_SPEC, num_shards=4)
    detected = (
        tables
        | 'Points' >> beam.Map(anomaly_points)
        | 'DetectAnomalies'
        >> DetectAnomalies(
            ANOMALY_SPEC, ('entity_id', 'event_type'), 'timestamp', 'value', num_shards=4
        )
    )
    return extracted, detected


def test_no_two_ordered_steps_share_a_timer():
    p = beam.Pipeline()
    both_steps(p, rows(5))
    assert shared_timer_ids(p) == {}


def test_two_ordered_steps_in_one_stage_each_release_all_their_points():
    # Both steps read the same tables, so the FnApiRunner fuses them into one stage. With
    # shared timer ids one of them (which one depends on the set order, so on PYTHONHASHSEED)
    # got no timer and released nothing.
    data = rows()
    with TestPipeline() as p:
        extracted, detected = both_steps(p, data)
        assert_that(
            extracted.features | 'FeatureRows' >> beam.FlatMap(rounded),
            equal_to(expected_features(data)),
            label='Features',
        )
        assert_that(
            detected.scores | 'ScoreRows' >> beam.FlatMap(score_tuples),
            equal_to(expected_scores(data)),
            label='Scores',
        )
