"""The per-element API: step out of the columnar path for custom logic, and back in.

``TableToRows`` turns event tables into one dict per event, timestamped with its event time, so
users can apply ordinary Beam transforms (``WindowInto``, ``Map``, stateful ``DoFn``s);
``RowsToTable`` batches dicts back into Arrow tables for the columnar transforms and sinks.
"""

from __future__ import annotations

import apache_beam as beam
import pyarrow as pa
from apache_beam.transforms.window import TimestampedValue

__all__ = ['RowsToTable', 'TableToRows']


class TableToRows(beam.PTransform):
    """Explodes tables into dict rows, each timestamped with its ``timestamp_field``."""

    def __init__(self, timestamp_field: str | None = 'timestamp'):
        super().__init__()
        self._timestamp_field = timestamp_field

    def expand(self, tables):
        return tables | 'ExplodeRows' >> beam.FlatMap(_rows, self._timestamp_field)


def _rows(table: pa.Table, timestamp_field: str | None):
    for row in table.to_pylist():
        ts = row.get(timestamp_field) if timestamp_field else None
        yield TimestampedValue(row, ts.timestamp()) if ts is not None else row


class RowsToTable(beam.PTransform):
    """Batches dict rows into tables of ``schema`` (between ``min_rows`` and ``max_rows``)."""

    def __init__(self, schema: pa.Schema, min_rows: int = 1, max_rows: int = 50_000):
        super().__init__()
        if not 1 <= min_rows <= max_rows:
            raise ValueError(f'need 1 <= min_rows <= max_rows, got {min_rows}, {max_rows}')
        self._schema = schema
        self._min_rows = min_rows
        self._max_rows = max_rows

    def expand(self, rows):
        return (
            rows
            | 'BatchRows'
            >> beam.BatchElements(min_batch_size=self._min_rows, max_batch_size=self._max_rows)
            | 'RowsToArrow'
            >> beam.Map(
                lambda batch, schema: pa.Table.from_pylist(batch, schema=schema), self._schema
            )
        )
