"""``CleanseEvents``: trim, lower-case, coerce numbers and standardise timestamps, vectorised."""

from __future__ import annotations

import apache_beam as beam

from beam_pipelines.columnar.batch import ParsedBatch
from beam_pipelines.columnar.cleanse import cleanse_table
from beam_pipelines.io import coders  # noqa: F401  (registers the batch coders)
from beam_pipelines.schema import EventSchema

__all__ = ['CleanseEvents']


class CleanseEvents(beam.PTransform):
    """Converts every schema field of parsed batches to its type; failures become row errors
    that :class:`~beam_pipelines.transforms.validate.ValidateEvents` dead-letters.

    Args:
        schema: the compiled event schema.
    """

    def __init__(self, schema: EventSchema):
        super().__init__()
        self._schema = schema

    def expand(self, parsed_batches):
        return parsed_batches | 'CleanseBatches' >> beam.Map(
            _cleanse, self._schema
        ).with_output_types(ParsedBatch)


def _cleanse(batch: ParsedBatch, schema: EventSchema) -> ParsedBatch:
    # Beam elements are immutable once emitted: work on a copy of the row errors.
    errors = {row: dict(fields) for row, fields in batch.errors.items()}
    return batch._replace(table=cleanse_table(batch.table, schema, errors), errors=errors)
