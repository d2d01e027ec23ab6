"""The batch types that travel between the pipeline's stages.

``RawBatch`` is what a reader yields (lines, records or an Arrow table, with their positions in
the file); ``ParsedBatch`` is an Arrow table with one column per schema field (loosely typed
until cleansing), the raw records kept aside to build dead letters, and the row errors found so
far. Row indices stay stable until validation filters the table.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any
from typing import NamedTuple

import pyarrow as pa

__all__ = [
    'META_COLUMNS',
    'POS',
    'URI',
    'BlockLines',
    'ParsedBatch',
    'RawBatch',
    'RowErrors',
    'split_lines',
]

URI = '_uri'
POS = '_pos'
META_COLUMNS = (URI, POS)

# row index -> field name -> (error category, message)
RowErrors = dict[int, dict[str, tuple[str, str]]]


class RawBatch(NamedTuple):
    """A slice of one input file, as read.

    Attributes:
        uri: the file.
        fmt: 'jsonl', 'csv', 'avro' or 'parquet'.
        positions: per record, its byte offset (jsonl) or record index (other formats).
        lines: raw lines (jsonl, from message sources), or None.
        records: decoded records (avro), or None.
        table: decoded columns (csv, parquet), or None.
        failures: records the reader could not decode: (error_type, message, payload, position).
        text: the lines of a JSON Lines file range as one block of bytes, newlines included
            (``positions`` are the file offsets of its lines), or None. Files are read this way
            so that no per-line object exists unless the per-line parser needs it: a block
            goes to pyarrow's JSON reader whole (see ``columnar.parse``).
    """

    uri: str
    fmt: str
    positions: Any
    lines: list[bytes] | None = None
    records: list[dict] | None = None
    table: pa.Table | None = None
    failures: tuple = ()
    text: bytes | None = None

    @property
    def position_key(self) -> str:
        return 'offset' if self.fmt == 'jsonl' else 'record'

    def line_list(self) -> list[bytes] | None:
        """The raw lines (jsonl), without their newlines, whether read as lines or as a block."""
        return self.lines if self.text is None else split_lines(self.text)

    def record_count(self) -> int:
        """Records in this batch, decodable or not."""
        return len(self.positions) + len(self.failures)


def split_lines(text: bytes) -> list[bytes]:
    """A block's lines without their newlines (a last line may lack its newline)."""
    lines = text.split(b'\n')
    if text.endswith(b'\n'):
        lines.pop()
    return lines


class BlockLines(Sequence):
    """A block's lines, each cut when it is read: rows parsed as a block need their raw line
    only to become a dead letter, which few rows do. Row i is line ``index[i]`` of the block
    (line i without ``index``); ``starts`` are the lines' offsets in ``text``."""

    def __init__(self, text: bytes, starts: Sequence[int], index: Sequence[int] | None = None):
        self._text = text
        self._starts = starts
        self._index = index

    def _line(self, j: int) -> bytes:
        if not -len(self._starts) <= j < len(self._starts):
            raise IndexError(j)
        j %= len(self._starts)
        start = int(self._starts[j])
        if j + 1 < len(self._starts):
            return self._text[start : int(self._starts[j + 1]) - 1]
        end = len(self._text) - 1 if self._text.endswith(b'\n') else len(self._text)
        return self._text[start:end]

    def __getitem__(self, i):
        if isinstance(i, slice):
            return [self[k] for k in range(*i.indices(len(self)))]
        return self._line(int(i if self._index is None else self._index[i]))

    def __len__(self) -> int:
        return len(self._starts) if self._index is None else len(self._index)


class ParsedBatch(NamedTuple):
    """Parsed rows of one raw batch.

    Attributes:
        table: one column per schema field, ``attributes`` and the meta columns.
        raw: for building dead-letter payloads, row-aligned with ``table``: the raw lines
            (jsonl: a list, or ``BlockLines``), the decoded records (avro) or the decoded
            columns (csv, parquet).
        errors: row errors found by parsing and cleansing.
        fmt: the input format (names the payload format and the position key).
    """

    table: pa.Table
    raw: pa.Table | Sequence[bytes] | list[dict]
    errors: RowErrors
    fmt: str
