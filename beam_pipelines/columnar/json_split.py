"""A dirty block of JSON Lines through pyarrow's reader anyway: in groups it can take, with the
lines it cannot left to the per-line path.

pyarrow's reader refuses a whole block for one malformed line or for one column whose JSON type
changes between rows, and realistic input has both: timestamps that are strings in some rows
and numbers in others, a value sent as a string now and then, ~1% of lines broken. Decoding
such a block line by line costs ~4 us a line; pyarrow reads ~1 us a line. So a block that
pyarrow refuses whole is split:

1. Lines that cannot be one flat-enough JSON object in UTF-8 (not starting with ``{`` or not
   ending with ``}``, nested too deep; invalid UTF-8, looked for line by line only in a block
   that is not UTF-8) or whose string field holds something else than a string or null are
   found with numpy, and left to the per-line path, which explains them (dead letters, type
   errors).
2. The other lines are grouped by which of the schema's non-string fields hold a string (a
   numpy scan for each key's value, :class:`_ValueStarts`), so that within a group each such
   field has one JSON type; pyarrow reads each group with those fields declared strings.
3. A line pyarrow still refuses is named by its error (one chunk, so the row counts from the
   start): the lines before it are read again, it goes to the per-line path, reading goes on
   after it. Lines it reads into values the per-line path would not give (a nested value, a
   date, NaN, a whole number among an extra field's fractions) are found in its result, left
   out, and the rest read again. What is left of a group past a budget of calls goes to the
   per-line path.

The groups are only a guess at what pyarrow will take: every piece pyarrow returns passes the
checks of ``json_block.parse_lines``, and the pieces are joined as the per-line path types a
column of mixed values (:func:`concat_loose`), so the result is the per-line path's: a property
test compares the two (tests/columnar/test_json_split.py).

Plain pyarrow and numpy, no Beam in it.
"""

from __future__ import annotations

from typing import NamedTuple

import numpy as np
import pyarrow as pa

from beam_pipelines.columnar.json_block import deep_lines
from beam_pipelines.columnar.json_block import is_utf8
from beam_pipelines.columnar.json_block import parse_lines
from beam_pipelines.schema import EventSchema

__all__ = ['Split', 'concat_loose', 'split_json_block']

_OPEN_BRACE, _CLOSE_BRACE = ord('{'), ord('}')
_CR, _NEWLINE = ord('\r'), ord('\n')
_QUOTE, _COLON, _SPACE = ord('"'), ord(':'), ord(' ')
_MAX_SPACES = 4  # spaces after a colon a value may start past, to be seen
_ASCII_END = 0x80
# Past this many calls of pyarrow's reader on a group after its first (plus one per
# _RETRY_EVERY lines), the rest of the group goes line by line: a call costs ~0.3 ms, a line
# decoded by itself ~4 us.
_RETRIES = 16
_RETRY_EVERY = 128
# Non-string fields sorted into groups by whether each holds a string: 2^n groups at most.
_MAX_SORTED_FIELDS = 6


class Split(NamedTuple):
    """A block, split.

    Attributes:
        table: the lines pyarrow read, one row each, in the order of ``rows`` (the columns of
            ``json_block.read_json_block``).
        rows: the block's line indices read by pyarrow, grouped as read (not in order).
        rest: the line indices left to the per-line path, ascending.
    """

    table: pa.Table | None
    rows: np.ndarray
    rest: np.ndarray


def split_json_block(text: bytes, line_starts: np.ndarray, schema: EventSchema) -> Split | None:
    """Reads what pyarrow can of a block of JSON Lines (see the module docstring).

    Args:
        text: the lines, newline-terminated (the last one may lack its newline).
        line_starts: the offset of each line in ``text``.
        schema: the event schema.

    Returns:
        The split, or None for an empty block.
    """
    n = len(line_starts)
    if n == 0:
        return None
    data = np.frombuffer(text, np.uint8)
    left = _left_to_lines(text, data, line_starts)
    tried = not left.any()
    if tried:
        whole = parse_lines(text, n, schema)  # clean blocks: in chunks, on pyarrow's threads
        if isinstance(whole, pa.Table):
            return Split(whole, np.arange(n), np.zeros(0, np.int64))
    lines = _lines(text, line_starts)
    values = _ValueStarts(data, line_starts)
    for spec in schema.fields:
        if spec.kind == 'string':  # a type error the per-line path explains
            left |= values.of(spec.name, lambda b: (b != _QUOTE) & (b != ord('n')))
    sorted_fields = [f.name for f in schema.fields if f.kind != 'string'][:_MAX_SORTED_FIELDS]
    group = np.zeros(n, np.int64)
    for bit, name in enumerate(sorted_fields):
        group |= values.of(name, lambda b: b == _QUOTE).astype(np.int64) << bit
    group[left] = -1
    pieces: list[tuple[pa.Table, np.ndarray]] = []
    refused = [np.flatnonzero(left)]
    for code in np.unique(group[~left]).tolist():
        members = np.flatnonzero(group == code)
        quoted = frozenset(name for bit, name in enumerate(sorted_fields) if code >> bit & 1)
        if len(members) == n:  # one group, all the lines: the same text as the whole block
            read, failed = _read_group(lines, schema, quoted, tried and not quoted)
        else:
            read, failed = _read_group(lines.take(pa.array(members)), schema, quoted)
        pieces.extend((table, members[at]) for table, at in read)
        refused.append(members[failed])
    rest = np.sort(np.concatenate(refused))
    if not pieces:
        return Split(None, np.zeros(0, np.int64), rest)
    return Split(
        concat_loose([t for t, _ in pieces]), np.concatenate([at for _, at in pieces]), rest
    )


def _left_to_lines(text: bytes, data: np.ndarray, line_starts: np.ndarray) -> np.ndarray:
    """Lines pyarrow must not see, or that cannot be one JSON object: per line, True."""
    ends = np.append(line_starts[1:], len(data))  # past each line's newline
    left = data[line_starts] != _OPEN_BRACE  # also blank lines: then row i is line i
    last = ends - 1
    last -= (data[last] == _NEWLINE).astype(np.int64)
    last -= ((data[last] == _CR) & (last > line_starts)).astype(np.int64)
    left |= (data[last] != _CLOSE_BRACE) | (last <= line_starts)
    left |= deep_lines(text, data, line_starts)
    high = np.flatnonzero(data >= _ASCII_END) if not is_utf8(text) else ()
    if len(high):
        # pyarrow does not check UTF-8: the lines of a block that is not are checked here.
        for i in np.unique(np.searchsorted(line_starts, high, side='right') - 1).tolist():
            try:
                text[line_starts[i] : ends[i]].decode('utf-8')
            except UnicodeDecodeError:
                left[i] = True
    return left


def _lines(text: bytes, line_starts: np.ndarray) -> pa.Array:
    """The block's lines as one binary array over ``text`` (no copy)."""
    offsets = np.append(line_starts, len(text)).astype(np.int64)
    return pa.Array.from_buffers(
        pa.large_binary(), len(line_starts), [None, pa.py_buffer(offsets), pa.py_buffer(text)]
    )


class _ValueStarts:
    """Where a block's lines give a key, and the first byte of its value: found with numpy, a
    few passes over the block for all fields (a regular expression per field cost ~4x more).

    A guess, as the groups are: a key is a quote, a name ending in the field's last two bytes,
    a quote, a colon (then spaces before the value are skipped). So a key written with escapes
    or a space before its colon is not seen, and one in a nested object or a look-alike name
    is; pyarrow's checks correct every wrong guess (it costs a refusal, or a line by line).
    """

    def __init__(self, data: np.ndarray, line_starts: np.ndarray):
        self._data = data
        self._starts = line_starts
        self._n = len(line_starts)
        # Each '":' (a key's closing quote and its colon), and where its value starts.
        self._colons = np.flatnonzero((data[:-1] == _QUOTE) & (data[1:] == _COLON))
        value = np.minimum(self._colons + 2, len(data) - 1)
        for _ in range(_MAX_SPACES):
            spaced = np.flatnonzero(data[value] == _SPACE)
            if not len(spaced):
                break
            value[spaced] = np.minimum(value[spaced] + 1, len(data) - 1)
        self._value = value
        # The key's last two bytes, to pick each name's candidates in one comparison.
        before = np.maximum(self._colons - 2, 0)
        self._tail = data[before].astype(np.uint16) << 8 | data[before + 1]

    def of(self, name: str, test) -> np.ndarray:
        """Per line, whether a value of key ``name`` has a first byte passing ``test``."""
        key = name.encode()
        if len(key) < 2:  # not seen: pyarrow's checks still hold for such a field
            return np.zeros(self._n, dtype=bool)
        # Its last two bytes, and a quote where the name would start: a guess good enough.
        picked = np.flatnonzero(self._tail == (key[-2] << 8 | key[-1]))
        at = self._colons[picked]
        keep = self._data[np.maximum(at - len(key) - 1, 0)] == _QUOTE
        at, value = at[keep], self._value[picked[keep]]
        hits = at[test(self._data[value])]
        out = np.zeros(self._n, dtype=bool)
        out[np.searchsorted(self._starts, hits, side='right') - 1] = True
        return out


def _read_group(
    lines: pa.Array, schema: EventSchema, quoted: frozenset, tried: bool = False
) -> tuple[list[tuple[pa.Table, np.ndarray]], np.ndarray]:
    """Reads a group's lines with pyarrow, as far as it takes them.

    Lines pyarrow refuses with an error naming them, or reads into values the per-line path
    would not give, are left out and the rest read again; a part refused without naming a line
    (a line holding two objects) is halved until the line is found. Past the budget of calls,
    what is left goes line by line.

    Args:
        lines: the group's lines.
        schema: the event schema.
        quoted: the non-string fields declared strings.
        tried: the lines were just read whole in chunks, and refused (no need to again).

    Returns:
        ``(pieces, refused)``: tables read, each with the group's line indices it holds, and
        the indices of the lines left to the per-line path.
    """
    n = len(lines)
    if not tried:
        first = parse_lines(_text(lines), n, schema, quoted)  # on pyarrow's threads, in chunks
        if isinstance(first, pa.Table):
            return [(first, np.arange(n))], np.zeros(0, np.int64)
    pieces, refused = [], []
    budget = _RETRIES + n // _RETRY_EVERY
    todo = [np.arange(n)]  # parts still to read: the group's line indices, ascending
    while todo:
        part = todo.pop()
        if budget <= 0:
            refused.append(part)
            continue
        budget -= 1
        found = parse_lines(_text(lines, part), len(part), schema, quoted, whole=True)
        if isinstance(found, pa.Table):
            pieces.append((found, part))
        elif found is not None:  # these lines go line by line; the others are read again
            refused.append(part[found])
            rest = np.delete(part, found)
            if len(found) == 1:  # pyarrow stopped there: what came before it was fine
                todo.extend(p for p in (rest[found[0] :], rest[: found[0]]) if len(p))
            elif len(rest):
                todo.append(rest)
        elif len(part) == 1:
            refused.append(part)
        else:
            middle = len(part) // 2
            todo.extend((part[middle:], part[:middle]))
    return pieces, np.sort(np.concatenate(refused)) if refused else np.zeros(0, np.int64)


def _text(lines: pa.Array, part: np.ndarray | None = None) -> pa.Buffer:
    """The bytes of some of a group's lines (all by default): a slice when they follow each
    other, else a copy."""
    if part is not None and len(part) and part[-1] - part[0] + 1 != len(part):
        lines = lines.take(pa.array(part))
        part = None
    start, stop = (0, len(lines)) if part is None else (int(part[0]), int(part[-1]) + 1)
    offsets = np.frombuffer(lines.buffers()[1], np.int64)[
        lines.offset : lines.offset + len(lines) + 1
    ]
    return lines.buffers()[2].slice(int(offsets[start]), int(offsets[stop] - offsets[start]))


def concat_loose(tables: list[pa.Table]) -> pa.Table:
    """Tables of loosely typed columns (same names) as one, each column typed as the per-line
    path types a column holding all their values (``parse._column``): integers among floats
    become floats, numbers and booleans among strings become their text, nulls take the
    others' type."""
    if len(tables) == 1:
        return tables[0]
    columns = {}
    for name in tables[0].column_names:
        parts = [t.column(name).combine_chunks() for t in tables]
        kinds = {p.type for p in parts if not pa.types.is_null(p.type)}
        if len(kinds) > 1:
            if any(pa.types.is_floating(k) for k in kinds):
                parts = [_cast(p, pa.float64(), pa.types.is_integer) for p in parts]  # as pa.array
            if pa.string() in kinds:
                parts = [_cast(p, pa.string(), lambda t: t != pa.string()) for p in parts]
            kinds = {p.type for p in parts if not pa.types.is_null(p.type)}
        if len(kinds) == 1:
            (kind,) = kinds
            parts = [p.cast(kind) if pa.types.is_null(p.type) else p for p in parts]
        columns[name] = pa.chunked_array(parts)
    return pa.table(columns)


def _cast(part: pa.Array, to: pa.DataType, when) -> pa.Array:
    # Unsafe: an integer beyond 2**53 becomes the nearest double, as pa.array makes it among
    # floats (then text, which cleansing reads back as that double, as on the per-line path).
    if not when(part.type) or pa.types.is_null(part.type):
        return part
    return part.cast(to, safe=False)
