"""Parsing raw batches into loosely typed Arrow columns, one per schema field.

JSON Lines are decoded with orjson one line at a time: pyarrow's JSON reader is faster but
rejects a whole block for one malformed line or one column of mixed JSON types (a timestamp
that is a string in one row and a number in the next), which is exactly the input we must
handle. Columns are then built in bulk; the per-element fallback runs only for a column whose
values do not share a type.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
import orjson
import pyarrow as pa

from beam_pipelines.columnar.batch import POS
from beam_pipelines.columnar.batch import URI
from beam_pipelines.columnar.batch import ParsedBatch
from beam_pipelines.columnar.batch import RawBatch
from beam_pipelines.columnar.batch import RowErrors
from beam_pipelines.dead_letter import Stage
from beam_pipelines.dead_letter import make_dead_letter
from beam_pipelines.schema import ATTRIBUTES
from beam_pipelines.schema import EventSchema
from beam_pipelines.schema import FieldSpec

__all__ = ['PAYLOAD', 'parse_raw_batch', 'type_name']

PAYLOAD = 'payload'
TYPE_ERROR = 'type_error'


def type_name(value: Any) -> str:
    return {
        bool: 'a boolean',
        int: 'an integer',
        float: 'a number',
        str: 'a string',
        list: 'an array',
        dict: 'an object',
    }.get(type(value), type(value).__name__)


def parse_raw_batch(
    batch: RawBatch, schema: EventSchema, pipeline: str
) -> tuple[ParsedBatch | None, list[dict]]:
    """Parses one raw batch.

    Args:
        batch: what a reader produced.
        schema: the compiled event schema.
        pipeline: pipeline name for dead letters.

    Returns:
        ``(parsed, dead_letters)``; ``parsed`` is None when no row could be parsed.
    """
    dead = [
        make_dead_letter(
            stage=Stage.PARSE if error_type != 'corrupt_file' else Stage.READ,
            error_type=error_type,
            error_message=message,
            payload=payload,
            source={'uri': batch.uri, batch.position_key: position},
            pipeline=pipeline,
            payload_format=batch.fmt,
        )
        for error_type, message, payload, position in batch.failures
    ]
    if batch.lines is not None:
        records, positions, payloads, failed = _decode_json_lines(batch.lines, batch.positions)
        dead.extend(
            make_dead_letter(
                stage=Stage.PARSE,
                error_type=error_type,
                error_message=message,
                payload=line,
                source={'uri': batch.uri, 'offset': offset},
                pipeline=pipeline,
                payload_format='json',
            )
            for error_type, message, line, offset in failed
        )
        if not records:
            return None, dead
        raw = pa.table({PAYLOAD: pa.array(payloads, type=pa.binary())})
        table, errors = records_to_table(records, schema)
    elif batch.records is not None:
        if not batch.records:
            return None, dead
        positions = batch.positions
        table, errors = records_to_table(batch.records, schema)
        raw = pa.table(
            {
                PAYLOAD: pa.array(
                    [orjson.dumps(r, default=str) for r in batch.records], type=pa.binary()
                )
            }
        )
    else:
        if batch.table is None or batch.table.num_rows == 0:
            return None, dead
        positions = batch.positions
        table, errors = columns_to_table(batch.table, schema)
        raw = batch.table
    table = table.append_column(
        URI, pa.array(np.full(table.num_rows, batch.uri, dtype=object), type=pa.string())
    )
    table = table.append_column(POS, pa.array(np.asarray(positions, dtype=np.int64)))
    return ParsedBatch(table=table, raw=raw, errors=errors, fmt=batch.fmt), dead


def _decode_json_lines(lines: list[bytes], offsets: Sequence[int]):
    loads = orjson.loads
    try:
        records = [loads(line) for line in lines]
        if all(type(r) is dict for r in records):
            return records, offsets, lines, []
    except orjson.JSONDecodeError:
        pass
    # Slow path: at least one line is not a JSON object; sort them out one by one.
    records, positions, payloads, failed = [], [], [], []
    for line, offset in zip(lines, offsets):
        try:
            record = loads(line)
        except orjson.JSONDecodeError as exc:
            if not line.strip():
                continue  # a blank line is not a record
            failed.append((_decode_error_type(line), str(exc), line, offset))
            continue
        if type(record) is not dict:
            failed.append(
                ('not_an_object', f'expected a JSON object, got {type_name(record)}', line, offset)
            )
            continue
        records.append(record)
        positions.append(offset)
        payloads.append(line)
    return records, positions, payloads, failed


def _decode_error_type(line: bytes) -> str:
    try:
        line.decode('utf-8')
    except UnicodeDecodeError:
        return 'invalid_utf8'
    return 'json_decode_error'


def records_to_table(records: list[dict], schema: EventSchema) -> tuple[pa.Table, RowErrors]:
    """Builds loosely typed columns from decoded records (JSON objects, Avro records)."""
    errors: RowErrors = {}
    columns = {}
    for spec in schema.fields:
        name = spec.name
        columns[name] = _column([r.get(name) for r in records], spec, errors)
    if schema.extra != 'ignore':
        known = frozenset(schema.field_names)
        dumps = orjson.dumps
        columns[ATTRIBUTES] = pa.array(
            [
                None
                if r.keys() <= known
                else dumps({k: v for k, v in r.items() if k not in known}, default=str)
                for r in records
            ],
            type=pa.binary(),
        ).cast(pa.string())
    return pa.table(columns), errors


def _column(values: list, spec: FieldSpec, errors: RowErrors) -> pa.Array:
    try:
        if spec.kind == 'string':
            return pa.array(values, type=pa.string())
        inferred = pa.array(values)
        t = inferred.type
        if pa.types.is_null(t):
            return inferred
        if spec.kind == 'bool' and pa.types.is_boolean(t):
            return inferred
        if spec.kind != 'bool' and (
            pa.types.is_integer(t)
            or pa.types.is_floating(t)
            or pa.types.is_string(t)
            or (spec.kind == 'timestamp' and pa.types.is_timestamp(t))
        ):
            return inferred
        if spec.kind == 'bool' and pa.types.is_string(t):
            return inferred
    except (pa.ArrowInvalid, pa.ArrowTypeError, OverflowError):
        pass
    return _mixed_column(values, spec, errors)


def _mixed_column(values: list, spec: FieldSpec, errors: RowErrors) -> pa.Array:
    """Per-element fallback: scalars become text (cleansing converts them), others errors."""
    out: list[str | None] = []
    numeric_ok = spec.kind in ('int', 'float', 'timestamp')
    for i, value in enumerate(values):
        if value is None or type(value) is str:
            out.append(value)
        elif numeric_ok and type(value) in (int, float):
            out.append(repr(value))
        elif spec.kind == 'bool' and type(value) is bool:
            out.append('true' if value else 'false')
        elif spec.kind == 'timestamp' and hasattr(value, 'isoformat'):
            out.append(value.isoformat())
        else:
            out.append(None)
            expected = {'string': 'a string', 'bool': 'a boolean'}.get(spec.kind, 'a number')
            if spec.kind == 'timestamp':
                expected = 'a string or a number'
            errors.setdefault(i, {}).setdefault(
                spec.name,
                (TYPE_ERROR, f'{spec.name}: expected {expected}, got {type_name(value)}'),
            )
    return pa.array(out, type=pa.string())


def columns_to_table(table: pa.Table, schema: EventSchema) -> tuple[pa.Table, RowErrors]:
    """Maps decoded columns (CSV, Parquet) onto the schema's fields; others to attributes."""
    errors: RowErrors = {}
    n = table.num_rows
    columns = {}
    for spec in schema.fields:
        if spec.name in table.column_names:
            col = table.column(spec.name).combine_chunks()
            if pa.types.is_dictionary(col.type):
                col = col.dictionary_decode()
            if spec.kind == 'string' and not pa.types.is_string(col.type):
                if pa.types.is_null(col.type):
                    col = col.cast(pa.string())
                else:
                    col = _mixed_column(col.to_pylist(), spec, errors)
            columns[spec.name] = col
        else:
            columns[spec.name] = pa.nulls(n, pa.string())
    extra_names = [c for c in table.column_names if c not in columns]
    if schema.extra != 'ignore':
        if extra_names:
            extra = table.select(extra_names).to_pylist()
            dumps = orjson.dumps
            attributes = [
                dumps({k: v for k, v in row.items() if v is not None}, default=str).decode()
                if any(v is not None for v in row.values())
                else None
                for row in extra
            ]
            columns[ATTRIBUTES] = pa.array(attributes, type=pa.string())
        else:
            columns[ATTRIBUTES] = pa.nulls(n, pa.string())
    return pa.table(columns), errors
