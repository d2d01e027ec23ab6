"""``ParseEvents``: raw batches to parsed Arrow batches; undecodable records to dead letters."""

from __future__ import annotations

import functools
from typing import NamedTuple

import apache_beam as beam

from beam_pipelines.columnar.batch import ParsedBatch
from beam_pipelines.columnar.parse import parse_raw_batch
from beam_pipelines.io import coders  # noqa: F401  (registers the batch coders)
from beam_pipelines.schema import EventSchema
from beam_pipelines.transforms.dead_letters import SplitDeadLettersFn
from beam_pipelines.transforms.dead_letters import split_dead_letters

__all__ = ['ParseEvents', 'Parsed', 'parsed_rows']


class Parsed(NamedTuple):
    batches: beam.PCollection
    dead_letter: beam.PCollection


def parsed_rows(batch: ParsedBatch) -> int:
    """Rows in a parsed batch (for counting)."""
    return batch.table.num_rows


class ParseEvents(beam.PTransform):
    """Parses :class:`RawBatch` elements into :class:`ParsedBatch` elements.

    Args:
        schema: the compiled event schema.
        pipeline_name: names the pipeline in dead letters.
    """

    def __init__(self, schema: EventSchema, pipeline_name: str):
        super().__init__()
        self._step = functools.partial(parse_raw_batch, schema=schema, pipeline=pipeline_name)

    def expand(self, raw_batches) -> Parsed:
        fn = SplitDeadLettersFn(self._step, parsed_rows, stage='parse')
        batches, dead = split_dead_letters(raw_batches, 'ParseBatches', fn, ParsedBatch)
        return Parsed(batches=batches, dead_letter=dead)
