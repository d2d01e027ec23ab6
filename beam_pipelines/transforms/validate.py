"""``ValidateEvents``: vectorised schema checks; invalid rows become dead letters."""

from __future__ import annotations

from typing import NamedTuple

import apache_beam as beam
import pyarrow as pa
from apache_beam import pvalue
from apache_beam.metrics import Metrics

from beam_pipelines.columnar.validate import split_valid
from beam_pipelines.io import coders  # noqa: F401  (registers the Arrow table coder)
from beam_pipelines.io.files import NAMESPACE
from beam_pipelines.schema import EventSchema
from beam_pipelines.transforms.tags import DEAD_LETTER
from beam_pipelines.transforms.tags import VALID

__all__ = ['ValidateEvents', 'Validated']


class Validated(NamedTuple):
    valid: beam.PCollection
    dead_letter: beam.PCollection


class ValidateEvents(beam.PTransform):
    """Splits cleansed batches into clean event tables and dead letters.

    Args:
        schema: the compiled event schema.
        pipeline_name: names the pipeline in dead letters.
    """

    def __init__(self, schema: EventSchema, pipeline_name: str):
        super().__init__()
        self._schema = schema
        self._pipeline_name = pipeline_name

    def expand(self, cleansed_batches) -> Validated:
        results = cleansed_batches | 'CheckSchema' >> beam.ParDo(
            _ValidateFn(self._schema, self._pipeline_name)
        ).with_output_types(pa.Table).with_outputs(DEAD_LETTER, main=VALID)
        return Validated(valid=results[VALID], dead_letter=results[DEAD_LETTER])


class _ValidateFn(beam.DoFn):
    def __init__(self, schema: EventSchema, pipeline_name: str):
        self._schema = schema
        self._pipeline_name = pipeline_name

    def setup(self):
        self._valid = Metrics.counter(NAMESPACE, 'valid_records')
        self._invalid = Metrics.counter(NAMESPACE, 'dead_letter_validate')

    def process(self, batch):
        valid, dead = split_valid(batch, self._schema, self._pipeline_name)
        if dead:
            self._invalid.inc(len(dead))
        for envelope in dead:
            yield pvalue.TaggedOutput(DEAD_LETTER, envelope)
        if valid.num_rows:
            self._valid.inc(valid.num_rows)
            yield valid
