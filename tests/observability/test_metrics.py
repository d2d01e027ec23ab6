"""Labelled metric names, the lag histogram, and their export as Prometheus families, on
metrics from real pipeline runs."""

from __future__ import annotations

import time

import apache_beam as beam
import pyarrow as pa
from apache_beam.metrics import Metrics
from apache_beam.testing.test_pipeline import TestPipeline
from hypothesis import given
from hypothesis import strategies as st
from prometheus_client import CollectorRegistry
from prometheus_client import generate_latest
from prometheus_client.parser import text_string_to_metric_families

from beam_pipelines.columnar.timestamps import TIMESTAMP_TYPE
from beam_pipelines.observability.metrics import NAMESPACE
from beam_pipelines.observability.metrics import LagHistogram
from beam_pipelines.observability.metrics import counter
from beam_pipelines.observability.metrics import metric_name
from beam_pipelines.observability.metrics import parse_metric_name
from beam_pipelines.observability.prometheus import Snapshot
from beam_pipelines.observability.prometheus import beam_families

LABEL = st.from_regex(r'[a-z_][a-z0-9_]{0,8}', fullmatch=True)


@given(st.dictionaries(LABEL, st.text(max_size=12), max_size=3))
def test_labelled_names_round_trip(labels):
    name = metric_name('records_out', **labels)
    assert parse_metric_name(name) == ('records_out', labels)


def test_names_without_labels_stay_as_they_are():
    assert metric_name('duplicates') == 'duplicates'
    assert parse_metric_name('postgres_rows_events') == ('postgres_rows_events', {})


class _Instrumented(beam.DoFn):
    def setup(self):
        self.lag = LagHistogram('validate')
        self.dead = counter('dead_letters', stage='parse', error_type='json_decode_error')
        self.latency = Metrics.distribution(NAMESPACE, 'postgres_write_ms')

    def process(self, seconds_ago):
        now = time.time()
        micros = [round((now - s) * 1e6) for s in seconds_ago]
        self.lag.observe(pa.table({'timestamp': pa.array(micros, pa.int64()).cast(TIMESTAMP_TYPE)}))
        self.dead.inc(2)
        self.latency.update(len(seconds_ago) * 10)
        yield len(seconds_ago)


def exported(families):
    registry = CollectorRegistry()

    class Fixed:
        def collect(self):
            return families

    registry.register(Fixed())
    return {f.name: f for f in text_string_to_metric_families(generate_latest(registry).decode())}


def test_metrics_of_a_run_export_as_prometheus_families():
    pipeline = TestPipeline()
    # Two bundles' worth: 0.05 s, 3 s, 40 s ago; and 2 days ago.
    _ = pipeline | beam.Create([[0.05, 3.0, 40.0], [2 * 86400.0]]) | beam.ParDo(_Instrumented())
    result = pipeline.run()
    result.wait_until_finish()
    families = exported(beam_families(result.metrics()))

    lag = families['beam_pipelines_processing_lag_seconds']
    assert lag.type == 'histogram'
    buckets = {s.labels['le']: s.value for s in lag.samples if s.name.endswith('_bucket')}
    assert buckets['0.1'] == 1 and buckets['5'] == 2 and buckets['60'] == 3
    assert buckets['86400'] == 3 and buckets['604800'] == 4 and buckets['+Inf'] == 4
    (total,) = [s.value for s in lag.samples if s.name.endswith('_sum')]
    assert abs(total - (43.05 + 2 * 86400)) < 5  # seconds, not the milliseconds kept in Beam
    assert all(s.labels['stage'] == 'validate' for s in lag.samples)

    (dead,) = families['beam_pipelines_dead_letters'].samples
    assert dead.labels == {'stage': 'parse', 'error_type': 'json_decode_error'}
    assert dead.value == 4 and dead.name == 'beam_pipelines_dead_letters_total'

    latency = {s.name: s.value for s in families['beam_pipelines_postgres_write_ms'].samples}
    assert latency == {
        'beam_pipelines_postgres_write_ms_count': 2,
        'beam_pipelines_postgres_write_ms_sum': 40,
    }
    assert families['beam_pipelines_postgres_write_ms_max'].samples[0].value == 30
    assert families['beam_pipelines_postgres_write_ms_min'].samples[0].value == 10


def test_counters_keep_counting_across_the_runs_of_a_process():
    snapshots = []
    for _ in range(2):
        pipeline = TestPipeline()
        _ = pipeline | beam.Create([[1.0], [2.0, 3.0]]) | beam.ParDo(_Instrumented())
        result = pipeline.run()
        result.wait_until_finish()
        snapshots.append(Snapshot.of(result.metrics()))
    merged = exported(snapshots[0].merge(snapshots[1]).families())
    assert merged['beam_pipelines_dead_letters'].samples[0].value == 8  # 2 bundles x 2 x 2 runs
    lag = {
        s.name: s.value
        for s in merged['beam_pipelines_processing_lag_seconds'].samples
        if 'le' not in s.labels
    }
    assert lag['beam_pipelines_processing_lag_seconds_count'] == 6
    assert merged['beam_pipelines_postgres_write_ms_max'].samples[0].value == 20
