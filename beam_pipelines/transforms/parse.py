"""``ParseEvents``: raw batches to parsed Arrow batches; undecodable records to dead letters."""

from __future__ import annotations

from typing import NamedTuple

import apache_beam as beam
from apache_beam import pvalue
from apache_beam.metrics import Metrics

from beam_pipelines.columnar.batch import ParsedBatch
from beam_pipelines.columnar.parse import parse_raw_batch
from beam_pipelines.io import coders  # noqa: F401  (registers the batch coders)
from beam_pipelines.io.files import NAMESPACE
from beam_pipelines.schema import EventSchema
from beam_pipelines.transforms.tags import DEAD_LETTER
from beam_pipelines.transforms.tags import VALID

__all__ = ['ParseEvents', 'Parsed']


class Parsed(NamedTuple):
    batches: beam.PCollection
    dead_letter: beam.PCollection


class ParseEvents(beam.PTransform):
    """Parses :class:`RawBatch` elements into :class:`ParsedBatch` elements.

    Args:
        schema: the compiled event schema.
        pipeline_name: names the pipeline in dead letters.
    """

    def __init__(self, schema: EventSchema, pipeline_name: str):
        super().__init__()
        self._schema = schema
        self._pipeline_name = pipeline_name

    def expand(self, raw_batches) -> Parsed:
        results = raw_batches | 'ParseBatches' >> beam.ParDo(
            _ParseFn(self._schema, self._pipeline_name)
        ).with_output_types(ParsedBatch).with_outputs(DEAD_LETTER, main=VALID)
        return Parsed(batches=results[VALID], dead_letter=results[DEAD_LETTER])


class _ParseFn(beam.DoFn):
    def __init__(self, schema: EventSchema, pipeline_name: str):
        self._schema = schema
        self._pipeline_name = pipeline_name

    def setup(self):
        self._parsed = Metrics.counter(NAMESPACE, 'parsed_records')
        self._failed = Metrics.counter(NAMESPACE, 'dead_letter_parse')

    def process(self, raw_batch):
        parsed, dead = parse_raw_batch(raw_batch, self._schema, self._pipeline_name)
        if dead:
            self._failed.inc(len(dead))
        for envelope in dead:
            yield pvalue.TaggedOutput(DEAD_LETTER, envelope)
        if parsed is not None:
            self._parsed.inc(parsed.table.num_rows)
            yield parsed
