"""``MeasureQuality``: data quality of a batch run per source, and per source and event-time
window, from the valid events before and after deduplication and the dead letters.

Each batch becomes a small mergeable partial per source (``beam_pipelines.quality.measure``),
so only partials cross the one ``CombinePerKey``; each source's merged partial is scored
against the spec, and its score is also a Beam gauge (``quality_score_ppm{source}``, exported
to Prometheus as ``beam_pipelines_quality_score``).
"""

from __future__ import annotations

import datetime as dt
from typing import NamedTuple

import apache_beam as beam
import orjson
import pyarrow as pa
from apache_beam.metrics import Metrics

from beam_pipelines.columnar.timestamps import TIMESTAMP_TYPE
from beam_pipelines.observability.metrics import NAMESPACE
from beam_pipelines.observability.metrics import metric_name
from beam_pipelines.quality.measure import QualityPartial
from beam_pipelines.quality.measure import measure_dead_letters
from beam_pipelines.quality.measure import measure_events
from beam_pipelines.quality.measure import measure_valid
from beam_pipelines.quality.measure import score
from beam_pipelines.quality.spec import DIMENSIONS
from beam_pipelines.quality.spec import QualitySpec

__all__ = [
    'QUALITY_SCHEMA',
    'QUALITY_WINDOW_SCHEMA',
    'MeasureQuality',
    'Measured',
    'QualityInputs',
    'quality_table',
]

_MEASURES = [
    ('score', pa.float64()),
    *[(d, pa.float64()) for d in DIMENSIONS],
    ('records_read', pa.int64()),
    ('dead_letters', pa.int64()),
    ('duplicates', pa.int64()),
    ('events', pa.int64()),
    ('lag_p50_secs', pa.float64()),
    ('lag_p95_secs', pa.float64()),
    ('lag_max_secs', pa.float64()),
    ('details', pa.string()),  # JSON: null ratios, rule violations, dead letters by type
    ('breaches', pa.string()),  # JSON list of {measure, value, threshold}
]
_RUN_KEY = [('pipeline', pa.string()), ('run_key', pa.string()), ('source', pa.string())]
QUALITY_SCHEMA = pa.schema([*_RUN_KEY, ('measured_at', TIMESTAMP_TYPE), *_MEASURES])
# Per event-time window of a source: the same measures (dead letters only where their event
# time is known).
QUALITY_WINDOW_SCHEMA = pa.schema(
    [
        *_RUN_KEY,
        ('window_start', TIMESTAMP_TYPE),
        ('window_end', TIMESTAMP_TYPE),
        ('measured_at', TIMESTAMP_TYPE),
        *_MEASURES,
    ]
)
WINDOWS = 'windows'
_DETAILS = ('null_ratios', 'rule_violations', 'dead_letters_by_type')


class QualityInputs(NamedTuple):
    valid: beam.PCollection  # event tables before deduplication
    events: beam.PCollection  # event tables after it
    dead_letter: beam.PCollection  # envelopes


class Measured(NamedTuple):
    runs: beam.PCollection  # one row per source for the whole run
    windows: beam.PCollection  # one row per source and event-time window


class MeasureQuality(beam.PTransform):
    """Quality rows (dicts) of a batch run: per source, and per source and window.

    Args:
        spec: the declared expectations.
        fields: the fields whose completeness is measured.
        window_secs: the event-time windows of the per-window rows (None: none).
    """

    def __init__(
        self, spec: QualitySpec, fields: tuple[str, ...], window_secs: float | None = None
    ):
        super().__init__()
        self._spec = spec
        self._fields = tuple(fields)
        self._window_us = round(window_secs * 1_000_000) if window_secs else None

    def expand(self, inputs: QualityInputs) -> Measured:
        spec, fields, w = self._spec, self._fields, self._window_us
        partials = [
            inputs.valid | 'MeasureBeforeDedup' >> beam.FlatMap(_items, measure_valid, window_us=w),
            inputs.events
            | 'MeasureEvents'
            >> beam.FlatMap(_items, measure_events, spec=spec, fields=fields, window_us=w),
            inputs.dead_letter
            | 'BatchDeadLetters' >> beam.BatchElements(min_batch_size=1, max_batch_size=10_000)
            | 'MeasureDeadLetters' >> beam.FlatMap(_items, measure_dead_letters, window_us=w),
        ]
        scored = (
            partials
            | 'AllPartials' >> beam.Flatten()
            | 'MergePerSourceAndWindow' >> beam.CombinePerKey(_MergePartials())
            | 'Score' >> beam.ParDo(_ScoreFn(spec, fields, w)).with_outputs(WINDOWS, main='runs')
        )
        return Measured(scored.runs, scored[WINDOWS])


def _items(element, measure, **kwargs):
    """(source, window) -> partial, and each again under (source, None): the whole run."""
    for (source, window), partial in measure(element, **kwargs).items():
        yield (source, window), partial
        if window is not None:
            yield (source, None), partial


class _MergePartials(beam.CombineFn):
    def create_accumulator(self):
        return QualityPartial()

    def add_input(self, accumulator, partial):
        return accumulator.merge(partial)

    def merge_accumulators(self, accumulators):
        merged = QualityPartial()
        for a in accumulators:
            merged.merge(a)
        return merged

    def extract_output(self, accumulator):
        return accumulator


class _ScoreFn(beam.DoFn):
    def __init__(self, spec, fields, window_us):
        self._spec = spec
        self._fields = fields
        self._window_us = window_us

    def process(self, keyed):
        (source, window), partial = keyed
        row = score(source, partial, self._spec, self._fields)
        if window is not None:
            start = dt.datetime(1970, 1, 1, tzinfo=dt.UTC) + dt.timedelta(microseconds=window)
            row['window_start'] = start
            row['window_end'] = start + dt.timedelta(microseconds=self._window_us)
            yield beam.pvalue.TaggedOutput(WINDOWS, row)
            return
        if row['score'] is not None:
            # Beam gauges hold integers: parts per million, divided back by the exporter.
            gauge = Metrics.gauge(NAMESPACE, metric_name('quality_score_ppm', source=source))
            gauge.set(round(row['score'] * 1_000_000))
        yield row


def quality_table(
    rows: list[dict], pipeline: str, run_key: str, schema: pa.Schema = QUALITY_SCHEMA
) -> pa.Table:
    """Quality rows as a ``QUALITY_SCHEMA`` (or ``QUALITY_WINDOW_SCHEMA``) table."""
    now = dt.datetime.now(dt.UTC)
    columns = {name: [] for name in schema.names}
    for row in sorted(rows, key=lambda r: (r['source'], r.get('window_start') or now)):
        for name in schema.names:
            if name == 'pipeline':
                value = pipeline
            elif name == 'run_key':
                value = run_key
            elif name == 'measured_at':
                value = now
            elif name == 'details':
                value = orjson.dumps({k: row[k] for k in _DETAILS}).decode()
            elif name == 'breaches':
                value = orjson.dumps(row['breaches']).decode()
            else:
                value = row[name]
            columns[name].append(value)
    return pa.table(columns, schema=schema)
