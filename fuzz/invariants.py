"""The invariants every parser must keep, whatever the input.

Shared by the hypothesis properties (``tests/reliability/test_fuzz_properties.py``) and the
atheris targets (``fuzz/fuzz_*.py``), so both state the same rules. Each ``check_*`` function
runs the code under test on one input and raises :class:`InvariantViolation` naming the rule
it broke; an exception of the code under test itself is let through, since "never raises" is
one of the rules. ``skip`` names rules whose violation is tolerated (a known bug pinned by its
own test), so a broad property can keep checking everything else.

The rules:

* ``every-line-once`` / ``every-record-once``: each non-blank input line (each record of a
  file) comes out exactly once, as a valid row or as a dead letter, at its own position.
* ``positions-unique``: no two outputs of one file name the same record position.
* ``dead-letter-envelope``: every dead letter is the project's one envelope, serialisable.
* ``dead-letter-keeps-payload``: a parse or validation dead letter of a JSON line carries the
  line's exact bytes; one of a decoded record (CSV, Avro, Parquet) carries it as a JSON object.
* ``valid-rows-typed``: valid rows have the schema's Arrow types, no null required field, no
  empty required string, timestamps in [1970, 2100) UTC, finite numbers within their bounds,
  allowed values only, and ``attributes`` a JSON object of the extra fields (none if forbidden).
* ``valid-rows-pass-the-model`` / ``model-rejects-dead-rows`` / ``columnar-equals-model:F``:
  the vectorised path agrees with the pydantic model, record by record and field by field.
* ``timestamp-*``: parsing never raises anything but ``ValueError`` with one of the module's
  messages, valid results lie in range, the row and vectorised paths agree, and ISO-8601 and
  epoch values round-trip.

The ingestion front doors' rules are in :mod:`fuzz.ingest_invariants`.

Plain Python; imports neither atheris nor hypothesis.
"""

from __future__ import annotations

import atexit
import datetime as dt
import io
import math
import os
import tempfile
import traceback
from collections.abc import Iterable
from collections.abc import Mapping
from typing import Literal

import orjson
import pyarrow as pa
import pyarrow.compute as pc
import pydantic
from pydantic import ConfigDict
from pydantic import Field

from beam_pipelines.columnar.batch import POS
from beam_pipelines.columnar.batch import RawBatch
from beam_pipelines.columnar.cleanse import cleanse_table
from beam_pipelines.columnar.parse import parse_raw_batch
from beam_pipelines.columnar.timestamps import MSG_FORMAT
from beam_pipelines.columnar.timestamps import MSG_MISSING
from beam_pipelines.columnar.timestamps import MSG_RANGE
from beam_pipelines.columnar.timestamps import normalise_timestamps
from beam_pipelines.columnar.timestamps import parse_timestamp
from beam_pipelines.columnar.validate import split_valid
from beam_pipelines.dead_letter import ENVELOPE_FIELDS
from beam_pipelines.dead_letter import decode_payload
from beam_pipelines.dead_letter import to_json_line
from beam_pipelines.io.files import FileRange
from beam_pipelines.io.files import _read_avro
from beam_pipelines.io.files import _read_csv
from beam_pipelines.io.files import _read_jsonl
from beam_pipelines.io.files import _read_parquet
from beam_pipelines.io.wire_formats import WireFormat
from beam_pipelines.schema import ATTRIBUTES
from beam_pipelines.schema import Event
from beam_pipelines.schema import EventSchema
from beam_pipelines.schema import compile_schema

__all__ = [
    'EVENT_SCHEMA',
    'READING_SCHEMA',
    'InvariantViolation',
    'avro_file',
    'check_envelope',
    'check_file',
    'check_json_lines',
    'check_timestamp',
    'check_timestamp_round_trip',
    'check_valid_events',
    'check_wire',
    'decoded_object',
    'parquet_file',
    'run_raw_batch',
    'signature',
]

PIPELINE = 'fuzz'
URI = 'mem://fuzz.jsonl'
UTC = dt.UTC
EPOCH = dt.datetime(1970, 1, 1, tzinfo=UTC)
END = dt.datetime(2100, 1, 1, tzinfo=UTC)
STAGES = ('read', 'parse', 'validate')


class Reading(Event):
    """A custom schema with the field kinds the default one lacks (int, bool, a ``Literal``,
    bounds) and extra fields forbidden, so the fuzzers reach every vectorised rule."""

    model_config = ConfigDict(extra='forbid', str_strip_whitespace=True)

    count: int | None = Field(default=None, ge=0, le=10**9)
    ok: bool | None = None
    kind: Literal['a', 'b'] | None = None


EVENT_SCHEMA = compile_schema(Event)
READING_SCHEMA = compile_schema(Reading)
assert not READING_SCHEMA.row_level, READING_SCHEMA.row_level_reasons


class InvariantViolation(AssertionError):
    """An input broke one of the module's rules (``rule`` names it)."""

    def __init__(self, rule: str, detail: str):
        super().__init__(f'[{rule}] {detail}')
        self.rule = rule


def _require(ok: bool, rule: str, detail, skip: Iterable[str] = ()) -> None:
    if not ok and rule not in skip:
        raise InvariantViolation(rule, detail() if callable(detail) else str(detail))


def signature(exc: BaseException) -> str:
    """A short, stable name for a failure: the rule it broke, or the exception type and the
    innermost project frame (``ArrowInvalid@columnar/cleanse.py:66``); the fuzz driver reports
    each distinct one once."""
    if isinstance(exc, InvariantViolation):
        return f'invariant:{exc.rule}'
    frames = traceback.extract_tb(exc.__traceback__)
    ours = [f for f in frames if '/beam_pipelines/' in f.filename.replace(os.sep, '/')]
    frame = ours[-1] if ours else (frames[-1] if frames else None)
    if frame is None:
        return type(exc).__name__
    path = frame.filename.replace(os.sep, '/').split('/beam_pipelines/')[-1]
    return f'{type(exc).__name__}@{path}:{frame.lineno}'


# --- The columnar pipeline: parse, cleanse, validate ---------------------------------------


def run_raw_batch(batch: RawBatch, schema: EventSchema) -> tuple[pa.Table | None, list[dict]]:
    """One raw batch through parsing, cleansing and validation, as the pipeline runs them."""
    parsed, dead = parse_raw_batch(batch, schema, PIPELINE)
    if parsed is None:
        return None, dead
    parsed = parsed._replace(table=cleanse_table(parsed.table, schema, parsed.errors))
    valid, invalid = split_valid(parsed, schema, PIPELINE)
    return valid, dead + invalid


def _rows(table: pa.Table | None) -> int:
    return 0 if table is None else table.num_rows


def check_envelope(envelope: dict, skip: Iterable[str] = ()) -> None:
    """The project's one dead-letter envelope, serialisable and decodable."""
    rule = 'dead-letter-envelope'
    _require(set(envelope) == set(ENVELOPE_FIELDS), rule, lambda: sorted(envelope), skip)
    _require(envelope['stage'] in STAGES, rule, lambda: envelope['stage'], skip)
    _require(
        isinstance(envelope['error_type'], str) and envelope['error_type'] != '',
        rule,
        lambda: envelope,
        skip,
    )
    _require(isinstance(envelope['error_message'], str), rule, lambda: envelope, skip)
    _require(envelope['payload_encoding'] in ('utf-8', 'base64'), rule, lambda: envelope, skip)
    _require(
        isinstance(envelope['source'], dict) and 'uri' in envelope['source'],
        rule,
        lambda: envelope,
        skip,
    )
    line = to_json_line(envelope)
    _require(orjson.loads(line)['payload'] == envelope['payload'], rule, line, skip)
    decode_payload(envelope)  # must not raise
    if envelope['event_time'] is not None:
        try:
            parse_timestamp(envelope['event_time'])
        except ValueError as exc:
            _require(False, rule, f'event_time {envelope["event_time"]!r}: {exc}', skip)


def check_valid_events(table: pa.Table | None, schema: EventSchema, skip=()) -> None:
    """Valid rows satisfy every vectorisable rule of the schema (``valid-rows-typed``)."""
    if table is None or table.num_rows == 0:
        return
    rule = 'valid-rows-typed'
    try:
        table.validate(full=True)  # e.g. strings that are not UTF-8
    except pa.ArrowInvalid as exc:
        _require(False, rule, f'the valid rows are not valid Arrow data: {exc}', skip)
        return
    for spec in schema.fields:
        column = table.column(spec.name).combine_chunks()
        _require(
            column.type == spec.arrow_type,
            rule,
            lambda c=column, s=spec: f'{s.name}: {c.type}',
            skip,
        )
        if spec.required:
            _require(column.null_count == 0, rule, f'{spec.name}: null in a valid row', skip)
        values = column.to_pylist()
        for value in values:
            if value is None:
                continue
            if spec.kind == 'string':
                if spec.min_length is not None:
                    _require(len(value) >= spec.min_length, rule, (spec.name, value), skip)
                if spec.max_length is not None:
                    _require(len(value) <= spec.max_length, rule, (spec.name, value), skip)
            elif spec.kind == 'timestamp':
                _require(EPOCH <= value < END, rule, (spec.name, value), skip)
            elif spec.kind in ('float', 'int'):
                if spec.finite:
                    _require(math.isfinite(value), rule, (spec.name, value), skip)
                for bound, ok in (
                    (spec.ge, lambda v, b: v >= b),
                    (spec.gt, lambda v, b: v > b),
                    (spec.le, lambda v, b: v <= b),
                    (spec.lt, lambda v, b: v < b),
                ):
                    if bound is not None:
                        _require(ok(value, bound), rule, (spec.name, value, bound), skip)
            if spec.allowed is not None:
                _require(value in spec.allowed, rule, (spec.name, value), skip)
        if spec.kind == 'string' and column.null_count < len(column):
            if spec.strip:
                same = pc.equal(pc.utf8_trim_whitespace(column), column)
                _require(pc.all(same).as_py() is not False, rule, f'{spec.name} unstripped', skip)
            if spec.lower:
                same = pc.equal(pc.utf8_lower(column), column)
                _require(pc.all(same).as_py() is not False, rule, f'{spec.name} not lower', skip)
    if ATTRIBUTES in table.column_names:
        names = set(schema.field_names)
        for text in table.column(ATTRIBUTES).to_pylist():
            if text is None:
                continue
            _require(schema.extra != 'forbid', rule, f'extra fields kept: {text}', skip)
            extra = orjson.loads(text)
            _require(isinstance(extra, dict) and extra != {}, rule, text, skip)
            _require(not names & set(extra), rule, f'schema field in attributes: {text}', skip)
            _require(None not in extra.values(), rule, f'null in attributes: {text}', skip)
    _require(table.column(POS).null_count == 0, rule, 'a valid row without a position', skip)


def _model_view(row: dict, schema: EventSchema) -> dict:
    return {spec.name: row.get(spec.name) for spec in schema.fields}


def _same(a, b) -> bool:
    if isinstance(a, float) and isinstance(b, float):
        return a == b or (math.isnan(a) and math.isnan(b))
    return a == b


def _check_model(
    record_of: Mapping[int, object],
    valid: pa.Table | None,
    dead: list[dict],
    schema: EventSchema,
    skip,
) -> None:
    """The vectorised verdicts agree with the pydantic model, record by record; the values of
    valid rows equal the model's, field by field. ``record_of`` maps a position to the decoded
    record (a dict), or to None when it is not a JSON object."""
    model = schema.model
    if valid is not None:
        for row in valid.to_pylist():
            record = record_of.get(row[POS])
            try:
                accepted = model.model_validate(record)
            except pydantic.ValidationError as exc:
                _require(False, 'valid-rows-pass-the-model', (record, str(exc)), skip)
                continue
            dumped = accepted.model_dump()
            for name, got in _model_view(row, schema).items():
                want = dumped.get(name)
                _require(
                    _same(got, want),
                    f'columnar-equals-model:{name}',
                    lambda n=name, g=got, w=want, r=record: (
                        f'{n}: columnar {g!r}, model {w!r} for {r!r}'
                    ),
                    skip,
                )
    for envelope in dead:
        if envelope['stage'] != 'validate':
            continue
        record = record_of.get(_position(envelope))
        if not isinstance(record, dict):
            continue
        try:
            model.model_validate(record)
        except pydantic.ValidationError:
            continue
        _require(
            False,
            'model-rejects-dead-rows',
            lambda r=record, e=envelope: (
                f'the model takes {r!r}; columnar said {e["error_message"]!r}'
            ),
            skip,
        )


def _position(envelope: dict):
    source = envelope['source']
    return source.get('offset', source.get('record'))


def decoded_object(line: bytes) -> dict | None:
    """A line decoded as a JSON object, or None."""
    try:
        value = orjson.loads(line)
    except orjson.JSONDecodeError:
        return None
    return value if isinstance(value, dict) else None


def check_json_lines(
    lines: list[bytes],
    schema: EventSchema = EVENT_SCHEMA,
    as_block: bool = False,
    skip: Iterable[str] = (),
) -> tuple[pa.Table | None, list[dict]]:
    """JSON Lines as a message source gives them (a list) or a file reader (``as_block``).

    Rules: every-line-once, dead-letter-envelope, dead-letter-keeps-payload, valid-rows-typed,
    and the model agreement rules. Lines must hold no newline.
    """
    if not lines:
        return None, []
    assert all(b'\n' not in line for line in lines), 'lines hold no newline'
    offsets, pos = [], 0
    for line in lines:
        offsets.append(pos)
        pos += len(line) + 1
    if as_block:
        batch = RawBatch(URI, 'jsonl', offsets, text=b''.join(line + b'\n' for line in lines))
    else:
        batch = RawBatch(URI, 'jsonl', offsets, lines=list(lines))
    valid, dead = run_raw_batch(batch, schema)
    _check_line_outputs(dict(zip(offsets, lines)), valid, dead, schema, skip)
    return valid, dead


def _check_line_outputs(line_at: dict[int, bytes], valid, dead, schema, skip) -> None:
    expected = sorted(offset for offset, line in line_at.items() if line.strip())
    seen = sorted(
        [*(valid.column(POS).to_pylist() if valid is not None else []), *map(_position, dead)]
    )
    _require(
        seen == expected,
        'every-line-once',
        lambda: f'positions out {seen}, non-blank lines at {expected}',
        skip,
    )
    for envelope in dead:
        check_envelope(envelope, skip)
        line = line_at.get(_position(envelope))
        _require(
            line is not None and decode_payload(envelope) == line,
            'dead-letter-keeps-payload',
            lambda e=envelope, li=line: f'{decode_payload(e)!r} != line {li!r}',
            skip,
        )
    check_valid_events(valid, schema, skip)
    records = {offset: decoded_object(line) for offset, line in line_at.items()}
    _check_model(records, valid, dead, schema, skip)


# --- Files: JSON Lines, CSV, Avro, Parquet --------------------------------------------------

_BOM = b'\xef\xbb\xbf'
_READERS = {'jsonl': _read_jsonl, 'csv': _read_csv, 'avro': _read_avro, 'parquet': _read_parquet}
_SCRATCH: list[str] = []


def _scratch_path(fmt: str) -> str:
    if not _SCRATCH:
        # The fuzz driver names a folder it removes after each run (atheris ends the process
        # without running atexit handlers); elsewhere a temporary folder removed at exit.
        given = os.environ.get('FUZZ_SCRATCH_DIR')
        if given:
            os.makedirs(given, exist_ok=True)
            _SCRATCH.append(given)
        else:
            shm = (
                '/dev/shm' if os.path.isdir('/dev/shm') and os.access('/dev/shm', os.W_OK) else None
            )
            _SCRATCH.append(tempfile.mkdtemp(prefix='beam-fuzz-', dir=shm))
            atexit.register(cleanup_scratch)
    return os.path.join(_SCRATCH[0], f'input.{fmt}')


def cleanup_scratch() -> None:
    """Removes the scratch folder the file checks write their inputs to."""
    import shutil

    while _SCRATCH:
        shutil.rmtree(_SCRATCH.pop(), ignore_errors=True)


def check_file(
    data: bytes,
    fmt: str,
    schema: EventSchema = EVENT_SCHEMA,
    expected_records: int | None = None,
    batch_rows: int = 7,
    skip: Iterable[str] = (),
) -> tuple[int, list[dict]]:
    """A whole file of ``fmt`` through the project's reader and the columnar pipeline.

    Rules: nothing raises; every-record-once (per batch, and, when ``expected_records`` says
    the file is well formed, no whole-file ``corrupt_file`` dead letter and that many
    records out); positions-unique; dead-letter-envelope; dead-letter-keeps-payload;
    valid-rows-typed. For JSON Lines also every-line-once and the model agreement rules.

    Returns:
        ``(valid_rows, dead_letters)``.
    """
    path = _scratch_path(fmt)
    with open(path, 'wb') as f:
        f.write(data)
    batches = list(_READERS[fmt](FileRange(path, fmt, 0, len(data)), batch_rows))
    n_valid, dead_all, positions = 0, [], []
    valid_tables = []
    for batch in batches:
        valid, dead = run_raw_batch(batch, schema)
        records = batch.record_count()
        if batch.fmt == 'jsonl':  # a blank line is not a record
            records -= sum(1 for line in batch.line_list() if not line.strip())
        _require(
            _rows(valid) + len(dead) == records,
            'every-record-once',
            lambda v=valid, d=dead, r=records: (
                f'{_rows(v)} valid + {len(d)} dead != {r} records in a batch'
            ),
            skip,
        )
        n_valid += _rows(valid)
        dead_all.extend(dead)
        if valid is not None:
            positions.extend(valid.column(POS).to_pylist())
            valid_tables.append(valid)
        positions.extend(_position(e) for e in dead if e['error_type'] != 'corrupt_file')
        check_valid_events(valid, schema, skip)
    corrupt = [e for e in dead_all if e['error_type'] == 'corrupt_file']
    _require(
        len(positions) == len(set(positions)),
        'positions-unique',
        lambda: (
            f'positions {sorted(positions)}; dead letters '
            f'{[(e["error_type"], e["source"], e["payload"]) for e in dead_all]}'
        ),
        skip,
    )
    if expected_records is not None:  # a well-formed file: read record by record
        _require(
            not corrupt,
            'every-record-once',
            lambda: f'the file was given up: {corrupt[0]["error_message"]!r}',
            skip,
        )
        _require(
            n_valid + len(dead_all) == expected_records,
            'every-record-once',
            f'{n_valid} valid + {len(dead_all)} dead != {expected_records} records',
            skip,
        )
    for envelope in dead_all:
        check_envelope(envelope, skip)
        if fmt != 'jsonl' and envelope['stage'] == 'validate':
            record = orjson.loads(decode_payload(envelope))
            _require(
                isinstance(record, dict),
                'dead-letter-keeps-payload',
                lambda e=envelope: e['payload'],
                skip,
            )
    if fmt == 'jsonl':
        line_at = _lines_by_offset(data)
        if data.startswith(_BOM) and 0 not in positions and len(_BOM) in positions:
            # The reader may take a leading byte order mark as the file's, not the line's.
            line_at[len(_BOM)] = line_at.pop(0)[len(_BOM) :]
        valid = pa.concat_tables(valid_tables) if valid_tables else None
        _check_line_outputs(line_at, valid, dead_all, schema, skip)
    return n_valid, dead_all


def _lines_by_offset(data: bytes) -> dict[int, bytes]:
    out, start = {}, 0
    while start < len(data):
        end = data.find(b'\n', start)
        end = len(data) if end < 0 else end
        out[start] = data[start:end]
        start = end + 1
    return out


AVRO_SCHEMA = {
    'type': 'record',
    'name': 'FuzzEvent',
    'fields': [
        {'name': 'event_id', 'type': ['null', 'string', 'long', 'bytes']},
        {'name': 'event_type', 'type': ['null', 'string', 'boolean']},
        {'name': 'entity_id', 'type': ['null', 'string']},
        {'name': 'timestamp', 'type': ['null', 'long', 'double', 'string']},
        {'name': 'value', 'type': ['null', 'double', 'long', 'string', 'boolean']},
        {'name': 'source', 'type': ['null', 'string', {'type': 'array', 'items': 'long'}]},
        {
            'name': 'extra',
            'type': ['null', 'string', 'bytes', {'type': 'map', 'values': 'double'}],
        },
    ],
}


def avro_file(records: list[dict], codec: str = 'null') -> bytes:
    """An Avro container file of ``records`` in :data:`AVRO_SCHEMA`."""
    import fastavro

    out = io.BytesIO()
    fastavro.writer(out, fastavro.parse_schema(AVRO_SCHEMA), records, codec=codec, sync_interval=64)
    return out.getvalue()


def parquet_file(table: pa.Table, row_group_size: int = 5) -> bytes:
    import pyarrow.parquet as pq

    out = io.BytesIO()
    pq.write_table(table, out, row_group_size=row_group_size)
    return out.getvalue()


# --- Wire formats and MQTT payloads ----------------------------------------------------------


def check_wire(
    lines: list[bytes], wire: WireFormat, schema: EventSchema = EVENT_SCHEMA, skip=()
) -> None:
    """Stream records in a wire format: each decodes to one record or one dead letter with its
    raw bytes, and each record becomes one valid row or one dead letter."""
    positions = list(range(len(lines)))
    raw = RawBatch('redis://fuzz', 'jsonl', positions, lines=list(lines))
    decoded = wire.decode_batch(raw)
    _require(
        len(decoded.positions) + len(decoded.failures) == len(lines),
        'every-record-once',
        f'{len(decoded.positions)} records + {len(decoded.failures)} failures',
        skip,
    )
    for _, _, payload, position in decoded.failures:
        _require(payload == lines[position], 'dead-letter-keeps-payload', payload, skip)
    valid, dead = run_raw_batch(decoded, schema)
    seen = sorted(
        [*(valid.column(POS).to_pylist() if valid is not None else []), *map(_position, dead)]
    )
    _require(seen == positions, 'every-record-once', f'positions out {seen}', skip)
    for envelope in dead:
        check_envelope(envelope, skip)
        if envelope['stage'] == 'parse':
            _require(
                decode_payload(envelope) == lines[_position(envelope)],
                'dead-letter-keeps-payload',
                envelope['payload'],
                skip,
            )
    check_valid_events(valid, schema, skip)


# --- Timestamps ------------------------------------------------------------------------------

_MESSAGES = (MSG_MISSING, MSG_FORMAT, MSG_RANGE)
_INT64 = 2**63


def check_timestamp(value, skip: Iterable[str] = ()) -> dt.datetime | None:
    """One raw timestamp through both paths.

    Rules: timestamp-row-raises-value-error-only (any other exception escapes), the vectorised
    path never raises, timestamp-in-range, timestamp-row-equals-vectorised.
    """
    try:
        row = parse_timestamp(value)
    except ValueError as exc:
        _require(str(exc) in _MESSAGES, 'timestamp-messages', str(exc), skip)
        row = None
    if row is not None:
        _require(
            row.tzinfo is not None and row.utcoffset() == dt.timedelta(0) and EPOCH <= row < END,
            'timestamp-in-range',
            (value, row),
            skip,
        )
    if isinstance(value, bool) or value is None:
        return row
    if isinstance(value, str):
        array = pa.array([value], pa.string())
    elif isinstance(value, int):
        if not -_INT64 <= value < _INT64:
            return row
        array = pa.array([value], pa.int64())
    elif isinstance(value, float):
        array = pa.array([value], pa.float64())
    else:
        return row
    out, errors = normalise_timestamps(array)
    vec = out[0].as_py()
    _require((0 in errors) == (vec is None), 'timestamp-errors-match-nulls', value, skip)
    _require(
        vec == row,
        'timestamp-row-equals-vectorised',
        lambda: f'{value!r}: row {row!r}, vectorised {vec!r} ({errors.get(0)!r})',
        skip,
    )
    return row


def check_timestamp_round_trip(moment: dt.datetime, skip: Iterable[str] = ()) -> None:
    """An aware datetime written as RFC 3339 (its own offset, ``Z``, lower case, a space) and
    as epoch seconds and milliseconds parses back to itself on both paths; outside [1970, 2100)
    it is refused as out of range."""
    assert moment.tzinfo is not None
    utc = moment.astimezone(UTC)
    texts = [
        moment.isoformat(),
        utc.strftime('%Y-%m-%dT%H:%M:%S.%fZ'),
        utc.strftime('%Y-%m-%d %H:%M:%S.%fz'),
        moment.isoformat().lower(),
    ]
    inside = EPOCH <= utc < END
    delta = utc - EPOCH
    us = (delta.days * 86_400 + delta.seconds) * 1_000_000 + delta.microseconds
    values: list = list(texts)
    if us % 1_000_000 == 0:
        values += [us // 1_000_000, str(us // 1_000_000)]
    if us % 1_000 == 0 and abs(us // 1_000) > 1e11:
        values += [us // 1_000, str(us // 1_000)]
    for value in values:
        got = check_timestamp(value, skip)
        if inside:
            _require(got == utc, 'timestamp-round-trip', lambda v=value, g=got: (v, g, utc), skip)
        else:
            _require(got is None, 'timestamp-in-range', (value, got), skip)
    if inside and abs(us) < 1e17:
        seconds = us / 1e6
        got = check_timestamp(seconds, skip)
        _require(
            got is not None and abs((got - utc).total_seconds()) <= 1e-6,
            'timestamp-round-trip',
            (seconds, got, utc),
            skip,
        )
