"""Vectorised validation against a compiled schema, with row-level explanations.

Each rule is evaluated on whole columns; messages are built only for the rows that fail. Rules
the vectorised path cannot express (custom validators) run row by row with the pydantic model,
only for rows that passed everything else.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import orjson
import pyarrow as pa
import pyarrow.compute as pc
import pydantic

from beam_pipelines.columnar.batch import META_COLUMNS
from beam_pipelines.columnar.batch import POS
from beam_pipelines.columnar.batch import URI
from beam_pipelines.columnar.batch import ParsedBatch
from beam_pipelines.columnar.batch import RowErrors
from beam_pipelines.columnar.render import python_rows
from beam_pipelines.columnar.render import shown_value
from beam_pipelines.dead_letter import Stage
from beam_pipelines.dead_letter import make_dead_letter
from beam_pipelines.dead_letter import now
from beam_pipelines.schema import ATTRIBUTES
from beam_pipelines.schema import EventSchema
from beam_pipelines.schema import FieldSpec

__all__ = ['check_rules', 'split_valid']


def check_rules(table: pa.Table, schema: EventSchema, errors: RowErrors) -> None:
    """Adds an error to ``errors`` for every row that breaks a field rule."""
    for spec in schema.fields:
        column = table.column(spec.name).combine_chunks()
        present = _np(column.is_valid())
        if spec.required:
            _flag(errors, spec, ~present, column, 'missing_field', 'is missing')
        if not present.any():
            continue
        if spec.kind == 'string':
            _string_rules(errors, spec, column, present)
        elif spec.kind in ('float', 'int'):
            _number_rules(errors, spec, column, present)
        if spec.allowed is not None:
            ok = _np(pc.is_in(column, pa.array(spec.allowed)))
            _flag(
                errors,
                spec,
                present & ~ok,
                column,
                'invalid_value',
                f'is not one of {list(spec.allowed)}',
            )
    if schema.extra == 'forbid' and ATTRIBUTES in table.column_names:
        extra = _np(table.column(ATTRIBUTES).combine_chunks().is_valid())
        for i in np.flatnonzero(extra):
            errors.setdefault(int(i), {}).setdefault(
                ATTRIBUTES, ('unexpected_field', 'fields outside the schema are forbidden')
            )


def _string_rules(errors, spec: FieldSpec, column: pa.Array, present: np.ndarray) -> None:
    if spec.min_length is not None or spec.max_length is not None:
        length = _np(pc.utf8_length(column).fill_null(0))
        if spec.min_length is not None:
            what = 'is empty' if spec.min_length == 1 else f'is shorter than {spec.min_length}'
            _flag(
                errors,
                spec,
                present & (length < spec.min_length),
                column,
                'constraint_violation',
                what,
            )
        if spec.max_length is not None:
            _flag(
                errors,
                spec,
                present & (length > spec.max_length),
                column,
                'constraint_violation',
                f'is longer than {spec.max_length}',
            )
    if spec.pattern is not None:
        ok = _np(pc.match_substring_regex(column, spec.pattern))
        _flag(
            errors,
            spec,
            present & ~ok,
            column,
            'constraint_violation',
            f'does not match {spec.pattern!r}',
        )


def _number_rules(errors, spec: FieldSpec, column: pa.Array, present: np.ndarray) -> None:
    # Unsafe: an int64 beyond 2**53 is compared as its nearest float (a safe cast would fail).
    values = column.cast(pa.float64(), safe=False).fill_null(0.0)
    values = np.asarray(values.to_numpy(zero_copy_only=False))
    if spec.finite:
        _flag(
            errors,
            spec,
            present & ~np.isfinite(values),
            column,
            'invalid_value',
            'is not a finite number',
        )
    for bound, op, word in (
        (spec.ge, np.less, '>='),
        (spec.gt, np.less_equal, '>'),
        (spec.le, np.greater, '<='),
        (spec.lt, np.greater_equal, '<'),
    ):
        if bound is not None:
            _flag(
                errors,
                spec,
                present & op(values, bound),
                column,
                'constraint_violation',
                f'must be {word} {bound:g}',
            )


def _flag(errors: RowErrors, spec: FieldSpec, bad: np.ndarray, column, category, what) -> None:
    for i in np.flatnonzero(bad):
        row = errors.setdefault(int(i), {})
        if spec.name in row:
            continue  # the first explanation of a field is the precise one
        if category == 'missing_field':
            row[spec.name] = (category, f'{spec.name}: {what}')
        else:
            shown = shown_value(column, int(i))
            row[spec.name] = (category, f'{spec.name}: {shown} {what}')


def _np(array: pa.Array) -> np.ndarray:
    if pa.types.is_boolean(array.type):
        array = array.fill_null(False)
    return np.asarray(array.to_numpy(zero_copy_only=False))


def _row_level(table: pa.Table, schema: EventSchema, candidates: np.ndarray, errors: RowErrors):
    rows = table.take(pa.array(candidates)).to_pylist()
    for i, row in zip(candidates, rows):
        record = {k: v for k, v in row.items() if k not in META_COLUMNS and k != ATTRIBUTES}
        if row.get(ATTRIBUTES):
            record.update(orjson.loads(row[ATTRIBUTES]))
        try:
            schema.model.model_validate(record)
        except pydantic.ValidationError as exc:
            message = '; '.join(
                f'{".".join(map(str, e["loc"])) or "record"}: {e["msg"]}' for e in exc.errors()
            )
            errors.setdefault(int(i), {})['__model__'] = ('model_validation', message)


def split_valid(
    batch: ParsedBatch, schema: EventSchema, pipeline: str
) -> tuple[pa.Table, list[dict[str, Any]]]:
    """Checks every rule and splits a cleansed batch into clean events and dead letters.

    Args:
        batch: a cleansed batch.
        schema: the compiled schema.
        pipeline: pipeline name for dead letters.

    Returns:
        ``(valid_table, dead_letters)``; the valid table keeps the meta columns.
    """
    errors = {row: dict(fields) for row, fields in batch.errors.items()}
    batch = batch._replace(errors=errors)
    check_rules(batch.table, schema, errors)
    n = batch.table.num_rows
    invalid = np.zeros(n, dtype=bool)
    if errors:
        invalid[np.fromiter(errors.keys(), dtype=np.int64, count=len(errors))] = True
    if schema.row_level:
        _row_level(batch.table, schema, np.flatnonzero(~invalid), errors)
        if len(errors) != int(invalid.sum()):
            invalid[np.fromiter(errors.keys(), dtype=np.int64, count=len(errors))] = True
    if not invalid.any():
        return batch.table, []
    valid = batch.table.filter(pa.array(~invalid))
    return valid, _dead_letters(batch, schema, np.flatnonzero(invalid), pipeline)


def _dead_letters(batch: ParsedBatch, schema: EventSchema, rows: np.ndarray, pipeline: str):
    take = pa.array(rows)
    meta = batch.table.select([URI, POS]).take(take).to_pylist()
    event_times = batch.table.column('timestamp').take(take).to_pylist()
    if isinstance(batch.raw, pa.Table):
        payloads = [orjson.dumps(r, default=str) for r in python_rows(batch.raw.take(take))]
    else:
        payloads = [batch.raw[int(i)] for i in rows]
        payloads = [p if isinstance(p, bytes) else orjson.dumps(p, default=str) for p in payloads]
    position_key = 'offset' if batch.fmt == 'jsonl' else 'record'
    order = {name: k for k, name in enumerate(schema.field_names)}
    out, at = [], now()  # one processing time for the batch's dead letters
    for i, m, ts, payload in zip(rows, meta, event_times, payloads):
        problems = sorted(batch.errors[int(i)].items(), key=lambda kv: order.get(kv[0], 1 << 30))
        out.append(
            make_dead_letter(
                stage=Stage.VALIDATE,
                error_type=problems[0][1][0],
                error_message='; '.join(message for _, (_, message) in problems),
                payload=payload,
                source={'uri': m[URI], position_key: m[POS], 'format': batch.fmt},
                pipeline=pipeline,
                # The raw JSON line, or the decoded CSV/Avro/Parquet row as a JSON object.
                payload_format='json',
                event_time=ts.strftime('%Y-%m-%dT%H:%M:%S.%fZ') if ts is not None else None,
                processing_time=at,
            )
        )
    return out
