"""A block of JSON Lines through pyarrow's JSON reader, when that gives exactly what the per-line
decoder would.

pyarrow parses a block in C++ (on its thread pool) straight into columns, several times faster
than decoding one line at a time with orjson and building columns from Python objects. But it
refuses a whole block for one malformed line or for one column whose JSON types differ between
rows (a timestamp that is a string here and a number there), and it is laxer than JSON in a few
places (``NaN``, two objects on one line, date-like strings read as timestamps). So the block is
taken only when the result can be checked to be what ``columnar.parse`` would build line by line:
every line one object, string fields strings, other fields one scalar JSON type, no non-finite
numbers, no inferred timestamps. :func:`parse_lines` is that reading with its checks (it names
the lines at fault where it can); ``columnar.json_split``, which the parser calls, reads a
clean block whole with it and a dirty one in parts. :func:`read_json_block` is the strict
whole-block form (None for anything else), kept as the contract its tests state.

Two checks come before pyarrow sees a block, because what it does with such input is worse than
refusing it: it does not check UTF-8 (invalid bytes would reach the columns, and fail later
outside any error handling), and it recurses on nesting (a line nested some 50,000 deep
overflows the stack and kills the process). A block that is not UTF-8, or in which a line could
nest deeper than ``_MAX_NESTING``, goes line by line, where orjson refuses both with an error.

Plain pyarrow and numpy, no Beam in it.
"""

from __future__ import annotations

import re

import numpy as np
import orjson
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.json as pajson

from beam_pipelines.columnar.render import python_rows
from beam_pipelines.schema import ATTRIBUTES
from beam_pipelines.schema import EventSchema

__all__ = [
    'deep_lines',
    'dump_present',
    'is_utf8',
    'parse_lines',
    'read_json_block',
    'render_attributes',
]

_OPEN_BRACE = ord('{')
# pyarrow's reader parses a block in chunks of this size, cut at newlines, on its threads (1 MB:
# an 8 MB block keeps both cores busy; a line longer than about two chunks makes it read the
# block again as one chunk: tests/columnar/test_json_block.py).
_CHUNK_BYTES = 1 << 20
# JSON types each field kind accepts as it is; cleansing converts the rest (strings) in bulk.
_NUMERIC = ('int', 'float', 'timestamp')
_SPECIAL = r'[\x00-\x1f"\\]'  # strings orjson would escape: rendered by orjson itself
# Nested values are refused anyway (see ``_not_taken``): a line with more opening brackets than this
# (in strings too, so it is a bound on its depth) is not worth a try, and cannot crash pyarrow.
_MAX_NESTING = 64
_OPEN_BRACKET = ord('[')
_ROW = re.compile(r' in row (\d+)$')  # where a parse error of one chunk stopped


def read_json_block(text: bytes, line_starts: np.ndarray, schema: EventSchema) -> pa.Table | None:
    """Parses a block of JSON Lines with pyarrow, or returns None (see the module docstring).

    Args:
        text: the lines, newline-terminated (the last one may lack its newline).
        line_starts: the offset of each line in ``text``.
        schema: the event schema.

    Returns:
        One loosely typed column per schema field (as ``columnar.parse`` builds them) plus
        ``attributes`` when the schema keeps extra fields; None when the block must be parsed
        line by line.
    """
    n = len(line_starts)
    data = np.frombuffer(text, np.uint8)
    # Every line must start an object: this rules out blank lines, so that row i is line i.
    if n == 0 or not (data[line_starts] == _OPEN_BRACE).all():
        return None
    if deep_lines(text, data, line_starts).any() or not is_utf8(text):
        return None
    result = parse_lines(text, n, schema)
    return result if isinstance(result, pa.Table) else None


def parse_lines(
    text: bytes | pa.Buffer,
    n: int,
    schema: EventSchema,
    quoted: frozenset = frozenset(),
    whole=False,
) -> pa.Table | np.ndarray | None:
    """pyarrow's reading of ``n`` lines, checked to be what the per-line path builds.

    The caller has checked what pyarrow must not see (see the module docstring).

    Args:
        text: the lines, newline-terminated (the last one may lack its newline).
        n: how many lines ``text`` holds.
        schema: the event schema.
        quoted: non-string fields whose values in these lines are strings (read as strings).
        whole: parse ``text`` as one chunk (on one thread), so that a parse error names the
            line it stopped at, counted from the start of ``text``.

    Returns:
        The columns (see :func:`read_json_block`); or the indices of the lines to leave to the
        per-line path (pyarrow refused one and named it, only when ``whole`` is set; or read
        values the per-line path would not give: a nested value, a date, NaN, an extra
        field's whole number among fractions); or None when the lines at fault are unknown.
    """
    strings = pa.schema(
        [
            pa.field(f.name, pa.string())
            for f in schema.fields
            if f.kind == 'string' or f.name in quoted
        ]
    )
    try:
        table = pajson.read_json(
            pa.BufferReader(text),
            read_options=pajson.ReadOptions(
                block_size=max(len(text) + 1, _CHUNK_BYTES) if whole else _CHUNK_BYTES,
                use_threads=not whole,
            ),
            parse_options=pajson.ParseOptions(
                explicit_schema=strings, unexpected_field_behavior='infer'
            ),
        )
    except pa.ArrowInvalid as exc:
        if not whole and 'straddl' in str(exc):  # a line longer than about two chunks
            result = parse_lines(text, n, schema, quoted, whole=True)
            return result if isinstance(result, pa.Table) else None
        found = _ROW.search(str(exc)) if whole else None
        row = int(found.group(1)) if found else n
        return np.array([row]) if row < n else None
    except (pa.ArrowNotImplementedError, UnicodeDecodeError):
        return None
    if table.num_rows != n:  # two objects on one line
        return None
    if not all(_sound(column) for column in table.columns):
        return None
    known = set(schema.field_names)
    columns = {
        spec.name: table.column(spec.name).combine_chunks()
        if spec.name in table.column_names
        else pa.nulls(n)
        for spec in schema.fields
    }
    extras = table.select([c for c in table.column_names if c not in known])
    checked = [(columns[spec.name], spec.kind) for spec in schema.fields]
    checked += [(column.combine_chunks(), 'extra') for column in extras.columns]
    odd = [rows for rows in (_not_taken(c, kind) for c, kind in checked) if rows is not None]
    if odd:
        refused = np.flatnonzero(np.logical_or.reduce(odd))
        if len(refused):
            return refused
    if schema.extra != 'ignore':
        columns[ATTRIBUTES] = render_attributes(extras)
    return pa.table(columns)


def _sound(column: pa.ChunkedArray) -> bool:
    """Whether a column is a valid array. pyarrow's JSON reader builds lists with offsets past
    their child (``[[null, null]]``, and ``[null, false]``, whose leading null it first took
    for the item type), which fails later reads of it with ArrowIndexError or worse. Only
    columns holding lists are checked: a full validation costs a pass."""
    if not _holds_lists(column.type):
        return True
    try:
        column.validate(full=True)
    except pa.ArrowInvalid:
        return False
    return True


def _holds_lists(kind: pa.DataType) -> bool:
    if pa.types.is_list(kind) or pa.types.is_large_list(kind):
        return True
    if pa.types.is_struct(kind):
        return any(_holds_lists(kind.field(i).type) for i in range(kind.num_fields))
    return False


def deep_lines(text: bytes, data: np.ndarray, line_starts: np.ndarray) -> np.ndarray:
    """Per line, whether it may nest deeper than ``_MAX_NESTING`` (it has more opening brackets
    than that). Flat lines, the usual ones, are settled by two counts."""
    # Beyond each line's own opening brace (numpy counts faster than bytes.count; find() skips
    # the second count when there is no bracket at all, as in flat events).
    extra = int(np.count_nonzero(data == _OPEN_BRACE)) - len(line_starts)
    if text.find(b'[') >= 0:
        extra += text.count(b'[')
    if extra < _MAX_NESTING:
        return np.zeros(len(line_starts), dtype=bool)
    opening = np.flatnonzero((data == _OPEN_BRACE) | (data == _OPEN_BRACKET))
    per_line = np.bincount(
        np.searchsorted(line_starts, opening, side='right') - 1, minlength=len(line_starts)
    )
    return per_line > _MAX_NESTING


def is_utf8(text: bytes) -> bool:
    """Whether the block is valid UTF-8 (checked by Arrow, without a copy)."""
    offsets = pa.py_buffer(np.array([0, len(text)], dtype=np.int64))
    array = pa.Array.from_buffers(pa.large_binary(), 1, [None, offsets, pa.py_buffer(text)])
    try:
        array.cast(pa.large_string())
    except pa.ArrowInvalid:
        return False
    return True


def _not_taken(column: pa.Array, kind: str) -> np.ndarray | None:
    """Per row, whether pyarrow's value differs from what the per-line path builds for a field
    of ``kind`` (or an extra field): such rows are left to it, which explains them. None when
    no row does."""
    t = column.type
    if pa.types.is_null(t) or pa.types.is_string(t):
        return None
    if pa.types.is_integer(t):
        return None if kind in (*_NUMERIC, 'extra') else _mask(column.is_valid())
    if pa.types.is_floating(t):
        if kind not in (*_NUMERIC, 'extra'):
            return _mask(column.is_valid())
        values = column.fill_null(0.0).to_numpy(zero_copy_only=False)
        # JSON has no NaN or infinity: pyarrow reads them, the per-line decoder refuses them.
        odd = ~np.isfinite(values)
        if kind == 'extra':
            # An extra field read as doubles because some rows hold fractions: a whole one
            # may have been written 10 (orjson renders 10) or 10.0; pyarrow cannot tell.
            odd |= np.floor(values) == values
        return odd & _mask(column.is_valid()) if odd.any() else None
    if pa.types.is_boolean(t):
        return None if kind in ('bool', 'extra') else _mask(column.is_valid())
    return _mask(column.is_valid())  # lists, objects, and strings pyarrow took for timestamps


def render_attributes(extras: pa.Table) -> pa.Array:
    """The extra fields of each row as one JSON object, keys sorted, null values left out (None
    when a row has none), exactly as ``orjson.dumps(..., option=OPT_SORT_KEYS)`` renders them.

    Strings without characters to escape, integers and booleans are rendered in bulk; the rows
    holding anything else (floats, whose shortest form only orjson knows) go through orjson.
    """
    n = extras.num_rows
    if extras.num_columns == 0:
        return pa.nulls(n, pa.string())
    pieces, by_row = [], np.zeros(n, dtype=bool)
    for name in sorted(extras.column_names):
        column = extras.column(name).combine_chunks()
        t = column.type
        if pa.types.is_null(t):
            continue
        if pa.types.is_string(t):
            by_row |= _mask(pc.match_substring_regex(column, _SPECIAL))
            text = pc.binary_join_element_wise('"', column, '"', '')
        elif pa.types.is_integer(t):
            text = column.cast(pa.string())
        elif pa.types.is_boolean(t):
            text = pc.if_else(column, 'true', 'false')
        else:
            by_row |= _mask(column.is_valid())
            continue
        key = orjson.dumps(name).decode() + ':'
        pieces.append(pc.binary_join_element_wise(key, text, ''))
    joined = None  # the row's "key":value pieces so far, comma-separated (null: none yet)
    for piece in pieces:
        joined = (
            piece
            if joined is None
            else pc.coalesce(pc.binary_join_element_wise(joined, piece, ','), joined, piece)
        )
    if joined is None:
        rendered = pa.nulls(n, pa.string())
    else:
        rendered = pc.binary_join_element_wise('{', joined, '}', '')
    if by_row.any():
        rows = np.flatnonzero(by_row)
        dumped = [dump_present(r) for r in python_rows(extras.take(pa.array(rows)))]
        values = rendered.to_pylist()
        for i, text in zip(rows.tolist(), dumped):
            values[i] = None if text is None else text.decode()
        rendered = pa.array(values, pa.string())
    return rendered


def dump_present(fields: dict) -> bytes | None:
    """Extra fields as one JSON object, keys sorted, null values left out (None if none is
    left): the rendering of ``attributes`` on every path."""
    present = {k: v for k, v in fields.items() if v is not None}
    if not present:
        return None
    return orjson.dumps(present, default=str, option=orjson.OPT_SORT_KEYS)


def _mask(bools: pa.Array) -> np.ndarray:
    return np.asarray(bools.fill_null(False).to_numpy(zero_copy_only=False), dtype=bool)
