"""``ValidateEvents``: vectorised schema checks; invalid rows become dead letters."""

from __future__ import annotations

import functools
from typing import NamedTuple

import apache_beam as beam
import pyarrow as pa

from beam_pipelines.columnar.validate import split_valid
from beam_pipelines.io import coders  # noqa: F401  (registers the Arrow table coder)
from beam_pipelines.schema import EventSchema
from beam_pipelines.transforms.counting import num_rows
from beam_pipelines.transforms.dead_letters import SplitDeadLettersFn
from beam_pipelines.transforms.dead_letters import split_dead_letters

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
        self._step = functools.partial(split_valid, schema=schema, pipeline=pipeline_name)

    def expand(self, cleansed_batches) -> Validated:
        fn = SplitDeadLettersFn(self._step, num_rows, stage='validate', lag_column='timestamp')
        valid, dead = split_dead_letters(cleansed_batches, 'CheckSchema', fn, pa.Table)
        return Validated(valid=valid, dead_letter=dead)
