"""Vectorised cleansing: trim strings, lower-case where the schema says so, coerce numeric
strings, standardise timestamps to ``timestamp[us, UTC]``.

Every value that cannot be converted becomes null and gets a row error naming the field, so
validation can dead-letter the row with a precise message.
"""

from __future__ import annotations

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from beam_pipelines.columnar import timestamps
from beam_pipelines.columnar.batch import RowErrors
from beam_pipelines.columnar.render import shown_value
from beam_pipelines.schema import EventSchema
from beam_pipelines.schema import FieldSpec

__all__ = ['cleanse_table']

_INTEGER_RE = r'^[+-]?\d+$'
_END_SECONDS = timestamps.MAX_TIMESTAMP_US / 1e6  # the first second out of range
_TRUE = ('true', '1', 'yes')
_FALSE = ('false', '0', 'no')


def cleanse_table(table: pa.Table, schema: EventSchema, errors: RowErrors) -> pa.Table:
    """Returns the table with every schema field converted to its Arrow type.

    Args:
        table: parsed columns (see :mod:`beam_pipelines.columnar.parse`).
        schema: the compiled schema.
        errors: row errors; conversion failures are added to it.
    """
    for spec in schema.fields:
        index = table.schema.get_field_index(spec.name)
        column = table.column(index).combine_chunks()
        converted = _convert(column, spec, errors)
        table = table.set_column(index, pa.field(spec.name, converted.type), converted)
    return table


def _convert(column: pa.Array, spec: FieldSpec, errors: RowErrors) -> pa.Array:
    if spec.kind == 'timestamp':
        if pa.types.is_timestamp(column.type):
            column = _epoch_seconds(column)
        result, ts_errors = timestamps.normalise_timestamps(column)
        for i, message in ts_errors.items():
            category = 'missing_field' if message == timestamps.MSG_MISSING else 'invalid_timestamp'
            if category == 'missing_field' and spec.name in errors.get(i, {}):
                continue  # already explained (a type error nulled it)
            errors.setdefault(i, {}).setdefault(spec.name, (category, message))
        return result
    if pa.types.is_null(column.type):
        return pa.nulls(len(column), spec.arrow_type)
    if pa.types.is_string(column.type):
        if spec.strip or spec.kind != 'string':
            column = pc.utf8_trim_whitespace(column)
        if spec.kind == 'string':
            return _lower(column) if spec.lower else column
        return _from_text(column, spec, errors)
    if spec.kind in ('float', 'int') and (
        pa.types.is_integer(column.type)
        or pa.types.is_floating(column.type)
        or pa.types.is_decimal(column.type)
    ):
        # Unsafe: an integer beyond 2**53 (a JSON number, a uint64 column) becomes the nearest
        # float, as it does for the model; a safe cast would fail the whole batch.
        return _to_number(column.cast(pa.float64(), safe=False), spec, errors)
    if spec.kind == 'bool' and pa.types.is_boolean(column.type):
        return column
    return column.cast(spec.arrow_type)


def _epoch_seconds(column: pa.Array) -> pa.Array:
    """A timestamp column as epoch seconds, from its raw integers: a cast to microseconds would
    overflow int64 for a second or millisecond value past the year 294,000 (fail the whole
    batch) and refuse nanoseconds it must truncate; such a value is out of range like any other.
    """
    raw = column.cast(pa.int64())
    unit = column.type.unit
    if unit in ('us', 'ns'):
        micros = raw if unit == 'us' else pc.divide(raw, 1000)  # truncated, as RFC 3339 text is
        seconds = pc.divide(micros.cast(pa.float64(), safe=False), 1e6)
    else:
        seconds = pc.divide(raw.cast(pa.float64(), safe=False), 1.0 if unit == 's' else 1e3)
    # These are seconds, not a guess: clamp to just out of range, or the seconds-or-milliseconds
    # rule downstream would read an instant past 1e11 s (year 5138) as milliseconds.
    return pc.min_element_wise(pc.max_element_wise(seconds, -1.0), _END_SECONDS)


def _lower(column: pa.Array) -> pa.Array:
    """Lower case as Python's ``str.lower`` (the model's ``to_lower``): Arrow's utf8_lower maps
    code points one to one, which differs for a few (U+0130 to "i", not "i" + U+0307; a final
    sigma). ASCII rows, nearly all, stay vectorised; the others go through Python."""
    lowered = pc.ascii_lower(column)
    other = ~_np(pc.string_is_ascii(column).fill_null(True))
    if not other.any():
        return lowered
    python = [v.lower() for v in column.filter(pa.array(other)).to_pylist()]
    return pc.replace_with_mask(lowered, pa.array(other), pa.array(python, pa.string()))


def _from_text(text: pa.Array, spec: FieldSpec, errors: RowErrors) -> pa.Array:
    present = _np(text.is_valid()) & _np(pc.not_equal(text, ''))
    text = pc.if_else(pa.array(present), text, None)
    if spec.kind == 'bool':
        lowered = pc.utf8_lower(text)
        is_true = _np(pc.is_in(lowered, pa.array(_TRUE)))
        is_false = _np(pc.is_in(lowered, pa.array(_FALSE)))
        bad = present & ~is_true & ~is_false
        _add(errors, spec, bad, text, 'is not a boolean')
        return pa.array(is_true, mask=~(is_true | is_false))
    ok = _np(pc.match_substring_regex(text, timestamps.NUMBER_RE)) & present
    _add(errors, spec, present & ~ok, text, 'is not a number')
    numbers = pc.cast(pc.if_else(pa.array(ok), text, None), pa.float64())
    return _to_number(numbers, spec, errors)


def _to_number(numbers: pa.Array, spec: FieldSpec, errors: RowErrors) -> pa.Array:
    if spec.kind == 'float':
        return numbers
    values = _np(numbers.fill_null(0.0))
    present = _np(numbers.is_valid())
    whole = present & np.isfinite(values) & (np.floor(values) == values) & (np.abs(values) < 2**63)
    _add(errors, spec, present & ~whole, numbers, 'is not an integer')
    return pa.array(np.where(whole, values, 0).astype(np.int64), mask=~whole)


def _add(errors: RowErrors, spec: FieldSpec, bad: np.ndarray, values: pa.Array, what: str):
    for i in np.flatnonzero(bad):
        shown = shown_value(values, int(i))
        errors.setdefault(int(i), {}).setdefault(
            spec.name, ('invalid_value', f'{spec.name}: {shown} {what}')
        )


def _np(array: pa.Array) -> np.ndarray:
    if pa.types.is_boolean(array.type):
        array = array.fill_null(False)
    return np.asarray(array.to_numpy(zero_copy_only=False))
