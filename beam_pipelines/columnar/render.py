"""Arrow values as Python values for messages and dead letters, whatever the input held.

Decoded columns (Parquet above all) can hold what Python's types cannot: a timestamp past the
year 9999, a string of 100 MB that an error message would copy whole. Converting them must not
fail a batch or its memory. Plain pyarrow, no Beam.
"""

from __future__ import annotations

import pyarrow as pa
import pyarrow.compute as pc

__all__ = ['python_rows', 'python_values', 'shown_value']

_SHOWN_CHARS = 80


def python_values(column: pa.Array | pa.ChunkedArray) -> list:
    """``column.to_pylist()``, except that a value Python's types cannot hold (a timestamp past
    the year 9999, which Parquet holds easily) becomes its raw integer (None if it has none)
    instead of failing the whole batch."""
    try:
        return column.to_pylist()
    except (OverflowError, ValueError):
        pass
    try:
        raw = column.cast(pa.int64())
    except (pa.ArrowInvalid, pa.ArrowNotImplementedError):
        raw = None
    out = []
    for i in range(len(column)):
        try:
            out.append(column[i].as_py())
        except (OverflowError, ValueError):
            out.append(raw[i].as_py() if raw is not None else None)
    return out


def python_rows(table: pa.Table) -> list[dict]:
    """``table.to_pylist()``, with :func:`python_values`' tolerance."""
    if table.num_columns == 0:
        return [{} for _ in range(table.num_rows)]
    columns = [python_values(c) for c in table.columns]
    return [dict(zip(table.column_names, values)) for values in zip(*columns)]


def shown_value(column: pa.Array, i: int) -> str:
    """Value ``i`` of a column as an error message shows it: its repr, cut to 80 characters
    (and a long string cut in Arrow first, not copied whole into Python)."""
    value = column.slice(i, 1)
    if pa.types.is_string(value.type) or pa.types.is_large_string(value.type):
        value = pc.utf8_slice_codeunits(value, 0, _SHOWN_CHARS + 1)
    shown = repr(python_values(value)[0])
    return shown if len(shown) <= _SHOWN_CHARS else shown[: _SHOWN_CHARS - 3] + '...'
