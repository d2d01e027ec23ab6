"""``CountRows``: the total number of rows in a PCollection of tables (0 when empty)."""

from __future__ import annotations

import apache_beam as beam

__all__ = ['CountRows']


class CountRows(beam.PTransform):
    """Sums the rows of table (or table-carrying) elements into a single int.

    Args:
        rows_of: how many rows an element holds (default: ``element.num_rows``).
    """

    def __init__(self, rows_of=None):
        super().__init__()
        self._rows_of = rows_of or _num_rows

    def expand(self, tables):
        return (
            tables
            | 'RowsPerTable' >> beam.Map(self._rows_of)
            | 'SumRows' >> beam.CombineGlobally(sum)
        )


def _num_rows(table) -> int:
    return table.num_rows
