"""Reading event files (JSON Lines, CSV, Avro, Parquet) as columnar raw batches.

``ReadEventFiles`` matches a glob through Beam's filesystems (local, ``gs://``, ``s3://``),
splits uncompressed JSON Lines files into byte ranges so that several workers share a big file,
and reads each range or file into :class:`~beam_pipelines.columnar.batch.RawBatch` elements of
at most ``batch_rows`` records. Beam's ``ReadFromText`` yields one element per line, which is the
per-element cost this project exists to avoid, hence the hand-written range reader; it follows
``textio``'s rule that a line belongs to the range in which it starts.
"""

from __future__ import annotations

import csv
import io
import logging
import math
import time
from collections.abc import Iterator
from typing import NamedTuple

import apache_beam as beam
import fastavro
import numpy as np
import orjson
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.csv as pacsv
import pyarrow.parquet as pq
from apache_beam.io import fileio
from apache_beam.io.filesystem import CompressionTypes
from apache_beam.io.filesystems import FileSystems
from apache_beam.metrics import Metrics

from beam_pipelines.columnar.batch import RawBatch
from beam_pipelines.io import coders  # noqa: F401  (registers the batch coders)
from beam_pipelines.observability.metrics import NAMESPACE

__all__ = ['FORMATS', 'FileRange', 'ReadEventFiles', 'infer_format']

_LOGGER = logging.getLogger(__name__)

FORMATS = ('jsonl', 'csv', 'avro', 'parquet')
_EXTENSIONS = {
    '.jsonl': 'jsonl',
    '.ndjson': 'jsonl',
    '.json': 'jsonl',
    '.csv': 'csv',
    '.avro': 'avro',
    '.parquet': 'parquet',
    '.pq': 'parquet',
}
_COMPRESSED = ('.gz', '.bz2', '.zst', '.zstd', '.deflate', '.lzma')
_BLOCK_BYTES = 8 << 20
_CSV_BLOCK_BYTES = 4 << 20
_MAX_CSV_BLOCK_BYTES = 1 << 30  # a CSV row longer than this fails the rest of its file
_NEWLINE = ord('\n')
_BOM = b'\xef\xbb\xbf'


def infer_format(path: str) -> str | None:
    """The input format named by a path's extension (compression suffixes ignored)."""
    name = path.lower()
    for suffix in _COMPRESSED:
        if name.endswith(suffix):
            name = name[: -len(suffix)]
            break
    for ext, fmt in _EXTENSIONS.items():
        if name.endswith(ext):
            return fmt
    return None


def _is_compressed(path: str) -> bool:
    return path.lower().endswith(_COMPRESSED)


class FileRange(NamedTuple):
    """A part of one file to read: ``[start, end)``.

    In bytes (``unit='bytes'``; lines starting in the range are ours; ``end`` -1 means a
    compressed file read whole) or in Parquet row groups (``unit='row_groups'``).
    """

    uri: str
    fmt: str
    start: int
    end: int
    unit: str = 'bytes'


class ReadEventFiles(beam.PTransform):
    """Reads the files matching a glob into raw batches.

    Args:
        file_pattern: a glob, local or on any Beam filesystem.
        input_format: one of ``FORMATS``, or None to infer it per file from its extension.
        batch_rows: the most records per batch.
        range_bytes: the byte range size that uncompressed JSON Lines files are split into.
        total_bytes: the input's size, if known, for progress lines.
    """

    def __init__(
        self,
        file_pattern: str,
        input_format: str | None = None,
        batch_rows: int = 50_000,
        range_bytes: int = 16 << 20,
        total_bytes: int | None = None,
    ):
        super().__init__()
        if not file_pattern:
            raise ValueError('file_pattern must be a non-empty glob')
        if input_format is not None and input_format not in FORMATS:
            raise ValueError(f'input_format must be one of {FORMATS}, got {input_format!r}')
        if batch_rows < 1:
            raise ValueError(f'batch_rows must be >= 1, got {batch_rows}')
        if range_bytes < 1:
            raise ValueError(f'range_bytes must be >= 1, got {range_bytes}')
        self._pattern = file_pattern
        self._format = input_format
        self._batch_rows = batch_rows
        self._range_bytes = range_bytes
        self._total_bytes = total_bytes

    def expand(self, pbegin):
        return (
            pbegin
            | 'MatchFiles' >> fileio.MatchFiles(self._pattern)
            | 'SplitRanges' >> beam.FlatMap(_split, self._format, self._range_bytes)
            | 'SpreadRanges' >> beam.Reshuffle()
            | 'ReadRanges'
            >> beam.ParDo(_ReadRangeFn(self._batch_rows, self._total_bytes)).with_output_types(
                RawBatch
            )
        )


def _split(metadata, input_format: str | None, range_bytes: int) -> Iterator[FileRange]:
    uri = metadata.path
    fmt = input_format or infer_format(uri)
    if fmt is None:
        raise ValueError(f'cannot tell the format of {uri}: pass --input_format')
    size = metadata.size_in_bytes
    if fmt == 'parquet' and size > range_bytes:
        yield from _split_row_groups(uri, size, range_bytes)
        return
    if fmt != 'jsonl' or _is_compressed(uri) or size <= range_bytes:
        yield FileRange(uri, fmt, 0, size if not _is_compressed(uri) else -1)
        return
    for start in range(0, size, range_bytes):
        yield FileRange(uri, fmt, start, min(start + range_bytes, size))


def _split_row_groups(uri: str, size: int, range_bytes: int) -> Iterator[FileRange]:
    """Groups a Parquet file's row groups into ranges of about ``range_bytes``."""
    try:
        with FileSystems.open(uri, compression_type=CompressionTypes.UNCOMPRESSED) as f:
            groups = pq.ParquetFile(f).metadata
            sizes = [groups.row_group(i).total_byte_size for i in range(groups.num_row_groups)]
    except Exception:  # unreadable metadata: the reader reports it as a dead letter
        yield FileRange(uri, 'parquet', 0, size)
        return
    start, acc = 0, 0
    for i, group_bytes in enumerate(sizes):
        acc += group_bytes
        if acc >= range_bytes or i == len(sizes) - 1:
            yield FileRange(uri, 'parquet', start, i + 1, unit='row_groups')
            start, acc = i + 1, 0


class _ReadRangeFn(beam.DoFn):
    """Reads one file range into raw batches."""

    def __init__(self, batch_rows: int, total_bytes: int | None):
        self._batch_rows = batch_rows
        self._total_bytes = total_bytes

    def setup(self):
        self._records = Metrics.counter(NAMESPACE, 'read_records')
        self._bytes = Metrics.counter(NAMESPACE, 'read_bytes')
        self._done_bytes = 0
        self._last_log = time.monotonic()

    def process(self, rng: FileRange) -> Iterator[RawBatch]:
        reader = {
            'jsonl': _read_jsonl,
            'csv': _read_csv,
            'avro': _read_avro,
            'parquet': _read_parquet,
        }[rng.fmt]
        for batch in reader(rng, self._batch_rows):
            self._records.inc(batch.record_count())
            yield batch
        span = rng.end - rng.start if rng.unit == 'bytes' and rng.end >= 0 else 0
        self._bytes.inc(span)
        self._progress(span)

    def _progress(self, span: int) -> None:
        self._done_bytes += span
        now = time.monotonic()
        if self._total_bytes and now - self._last_log >= 2.0:
            self._last_log = now
            _LOGGER.info(
                'progress: read %.1f of %.1f MB (%.0f%%)',
                self._done_bytes / 1e6,
                self._total_bytes / 1e6,
                100.0 * self._done_bytes / self._total_bytes,
            )


def _open(rng: FileRange):
    if rng.end < 0:
        return FileSystems.open(rng.uri)  # compression inferred from the extension
    return FileSystems.open(rng.uri, compression_type=CompressionTypes.UNCOMPRESSED)


def _read_jsonl(rng: FileRange, batch_rows: int) -> Iterator[RawBatch]:
    """Reads the lines starting in ``rng`` as blocks of ``batch_rows`` lines (the last one
    shorter), as ``RawBatch.text``: newlines are found with numpy, and no per-line object is
    made."""
    end = rng.end if rng.end >= 0 else math.inf
    with _open(rng) as f:
        base = 0  # the file offset of pending[0]
        if rng.start > 0:
            # The line holding byte start-1 belongs to the previous range.
            f.seek(rng.start - 1)
            base = rng.start - 1 + len(f.readline())
        elif end > len(_BOM) and f.read(len(_BOM)) == _BOM:
            # A byte order mark marks the file's encoding; it is not part of its first line
            # (JSON parsers may ignore it, RFC 8259 section 8.1; the CSV reader does). (A range
            # ending within it keeps it: the line must start in the range that reads it.)
            base = len(_BOM)
        else:
            f.seek(0)  # compressed files seek back to 0 by reading again
        pending = b''
        ends = np.zeros(0, np.int64)  # where each complete line of pending ends
        while base < end:
            block = f.read(_BLOCK_BYTES)
            found = np.flatnonzero(np.frombuffer(block, np.uint8) == _NEWLINE) + len(pending) + 1
            pending += block
            ends = np.concatenate((ends, found))
            if not block and pending and (not len(ends) or ends[-1] != len(pending)):
                ends = np.append(ends, len(pending))  # a last line without a newline
            # The starts of the complete lines (none yet: a line longer than the blocks read).
            starts = np.concatenate(([0], ends[:-1]))[: len(ends)]
            ours = int(np.searchsorted(base + starts, end))  # the lines starting before end
            last = not block or ours < len(starts)
            full = ours if last else ours - ours % batch_rows
            for i in range(0, full, batch_rows):
                j = min(i + batch_rows, full)
                yield RawBatch(
                    rng.uri,
                    'jsonl',
                    (base + starts[i:j]).tolist(),
                    text=pending[int(starts[i]) : int(ends[j - 1])],
                )
            if last:
                return
            consumed = int(ends[full - 1]) if full else 0
            pending = pending[consumed:]
            ends = ends[full:] - consumed
            base += consumed


def _read_csv(rng: FileRange, batch_rows: int) -> Iterator[RawBatch]:
    """Reads a CSV file with Arrow's streaming reader, block by block.

    A record's position is its ordinal among the file's records (0-based, the header and empty
    lines not counted), whether it is read, or a dead letter of the wrong width or not UTF-8.

    Three things Arrow's reader cannot do are done otherwise, the records already given skipped
    (they come in file order whatever the block size, so counting them is enough):
    a row longer than the block (a huge field) fails the block, and the file is read again with
    blocks four times larger (up to ``_MAX_CSV_BLOCK_BYTES``); and a row of the wrong width, or
    a header Arrow reads otherwise than Python's ``csv`` (a quoted name spanning lines), sends
    the rest of the file to Python's ``csv`` module (see :func:`_csv_rows_in_python`): Arrow's
    invalid-row handler gives a row's line number, not how many good rows came before it in
    its block, so it cannot say the row's position (and it cannot hand over a row not UTF-8).
    """
    names, failure = _csv_header(rng)
    if failure is not None:
        yield RawBatch(rng.uri, 'csv', [], failures=(failure,))
        return
    if names is None:
        return  # an empty file: no header, and no records to lose
    done = _CsvProgress()
    block = _CSV_BLOCK_BYTES
    while True:
        try:
            yield from _csv_rows_in_arrow(rng, names, batch_rows, block, done)
            return
        except (pa.ArrowInvalid, OSError) as exc:
            error = exc
        if 'straddl' in str(error) and block < _MAX_CSV_BLOCK_BYTES:
            block = min(block * 4, _MAX_CSV_BLOCK_BYTES)  # a row longer than the block
            continue
        if isinstance(error, pa.ArrowInvalid) and 'straddl' not in str(error):
            yield from _csv_rows_in_python(rng, names, batch_rows, done)
            return
        message = f'CSV read failed after {done.records} records: {error}'
        yield RawBatch(rng.uri, 'csv', [], failures=(('corrupt_file', message, b'', done.records),))
        return


def _csv_header(rng: FileRange) -> tuple[list[str] | None, tuple | None]:
    """The column names as Python's ``csv`` reads them (a quoted name may span lines), or a
    ``corrupt_file`` failure; ``(None, None)`` for an empty file."""
    with _open(rng) as f:
        text = io.TextIOWrapper(f, encoding='utf-8-sig', errors='surrogateescape', newline='')
        try:
            names = next(csv.reader(text), None)  # a BOM is not a name
        except csv.Error as exc:
            return None, ('corrupt_file', f'unreadable CSV header: {exc}', b'', 0)
    if names is None:
        return None, None
    raw = ','.join(names).encode('utf-8', 'surrogateescape')
    try:
        raw.decode('utf-8')
    except UnicodeDecodeError as exc:
        return None, ('corrupt_file', f'unreadable CSV header: {exc}', raw, 0)
    if not names or len(set(names)) != len(names):
        message = f'CSV header has empty or repeated column names: {names}'
        return None, ('corrupt_file', message, raw, 0)
    return names, None


class _CsvProgress:
    """How many of a CSV file's records a read has given (read or dead letters), in order."""

    def __init__(self):
        self.records = 0


class _OtherHeader(pa.ArrowInvalid):
    """Arrow reads the header otherwise than Python's ``csv``: the file goes to the latter."""


def _csv_rows_in_arrow(
    rng: FileRange, names: list[str], batch_rows: int, block: int, done: _CsvProgress
) -> Iterator[RawBatch]:
    """The records of a CSV file after those ``done`` counts, with Arrow's reader, up to the
    first row of the wrong width: Arrow fails on it (no invalid-row handler: see
    :func:`_read_csv`; pyarrow would also decode the row for the handler, and print a
    traceback when it is not UTF-8)."""
    skip = done.records
    with _open(rng) as f:
        reader = pacsv.open_csv(
            f,
            read_options=pacsv.ReadOptions(use_threads=False, block_size=block),
            convert_options=pacsv.ConvertOptions(
                column_types={name: pa.binary() for name in names},
                # Only an empty cell is missing: Arrow's default null markers ('n/a',
                # 'NULL', 'nan', ...) would silently turn real values into nulls.
                null_values=[''],
                strings_can_be_null=True,
            ),
        )
        if reader.schema.names != names:
            raise _OtherHeader(f'Arrow reads the header as {reader.schema.names}')
        for record_batch in reader:
            table = pa.Table.from_batches([record_batch])
            if skip:
                skipped = min(skip, table.num_rows)
                table, skip = table.slice(skipped), skip - skipped
            for start in range(0, table.num_rows, batch_rows):
                yield _csv_batch(rng, table.slice(start, batch_rows), done, [])


def _csv_batch(rng: FileRange, chunk: pa.Table, done: _CsvProgress, invalid: list):
    """A raw batch of CSV rows, the next records of the file in order but for the ``invalid``
    ones (already positioned), counted in ``done``."""
    count = chunk.num_rows + len(invalid)
    positions = _without(range(done.records, done.records + count), invalid)
    chunk, bad = _csv_to_text(chunk, positions)
    good = _without(positions, bad)
    done.records += count
    return RawBatch(rng.uri, 'csv', good, table=chunk, failures=tuple(invalid) + tuple(bad))


def _without(positions, failures: list) -> list[int]:
    """``positions`` less those of ``failures``; no per-row check when there are none (the
    usual batch of Arrow's reader)."""
    if not failures:
        return list(positions)
    taken = {failure[3] for failure in failures}
    return [p for p in positions if p not in taken]


def _csv_rows_in_python(
    rng: FileRange, names: list[str], batch_rows: int, done: _CsvProgress
) -> Iterator[RawBatch]:
    """The records of a CSV file after those ``done`` counts, with Python's ``csv`` module:
    slower, and only for the rest of a file Arrow's reader cannot read (bytes that are not
    UTF-8 are kept as surrogates, so each row is a record or a dead letter of its own)."""
    rows: list[list[str | None]] = []
    invalid: list[tuple] = []
    ordinal = -1
    with _open(rng) as f:
        text = io.TextIOWrapper(f, encoding='utf-8-sig', errors='surrogateescape', newline='')
        reader = csv.reader(text)
        try:
            next(reader, None)  # the header
            for record in reader:
                if not record:
                    continue  # an empty line, as Arrow skips them
                ordinal += 1
                if ordinal < done.records:
                    continue  # given by Arrow's reader
                if len(record) != len(names):
                    raw = ','.join(record).encode('utf-8', 'surrogateescape')
                    message = f'expected {len(names)} columns, got {len(record)}'
                    invalid.append(('csv_row_error', message, raw, ordinal))
                else:
                    rows.append(record)
                if len(rows) + len(invalid) >= batch_rows:
                    yield _csv_batch(rng, _csv_table(names, rows), done, invalid)
                    rows, invalid = [], []
        except Exception as exc:  # the last resort: whatever stops it, say so
            position = done.records + len(rows) + len(invalid)
            message = f'CSV read failed after {position} records: {exc}'
            invalid.append(('corrupt_file', message, b'', position))
    if rows or invalid:
        yield _csv_batch(rng, _csv_table(names, rows), done, invalid)


def _csv_table(names: list[str], rows: list[list[str]]) -> pa.Table:
    """Rows of text (surrogates for bytes that are not UTF-8) as the binary columns Arrow's
    reader gives; an empty cell is missing."""
    columns = zip(*rows) if rows else [()] * len(names)
    return pa.table({name: _csv_column(values) for name, values in zip(names, columns)})


def _csv_column(values: tuple[str, ...]) -> pa.Array:
    try:
        text = pa.array(values, pa.string())  # in C++; refuses a surrogate
    except (UnicodeEncodeError, pa.ArrowInvalid):
        return pa.array(
            [v.encode('utf-8', 'surrogateescape') if v != '' else None for v in values],
            pa.binary(),
        )
    return pc.if_else(pc.equal(text, ''), pa.scalar(None, pa.string()), text).cast(pa.binary())


def _csv_to_text(table: pa.Table, positions: list[int]) -> tuple[pa.Table, list[tuple]]:
    """Casts binary CSV columns to text; rows with invalid UTF-8 become failures."""
    text_schema = pa.schema([(n, pa.string()) for n in table.column_names])
    try:
        return table.cast(text_schema), []
    except pa.ArrowInvalid:
        pass
    invalid: set[int] = set()
    for column in table.columns:
        _find_invalid(column.combine_chunks(), 0, invalid)
    bad = []
    for i in sorted(invalid):
        cells = [v or b'' for v in table.slice(i, 1).to_pylist()[0].values()]
        raw = b','.join(cells)
        reason = next(str(e) for e in _decode_errors(cells))
        bad.append(('invalid_utf8', f'CSV row is not valid UTF-8: {reason}', raw, positions[i]))
    keep = np.ones(table.num_rows, dtype=bool)
    keep[sorted(invalid)] = False
    return table.filter(pa.array(keep)).cast(text_schema), bad


def _find_invalid(column: pa.Array, offset: int, out: set[int], valid=None) -> None:
    """Adds the indices of rows that are not valid UTF-8, by bisection: Arrow checks a whole
    array in C++ (a cast, a full validation) but does not say which row failed, and bad rows
    are rare. ``valid(array)`` says whether a slice is fine (default: it casts to text)."""
    if (valid or _casts_to_text)(column):
        return
    if len(column) == 1:
        out.add(offset)
        return
    half = len(column) // 2
    _find_invalid(column.slice(0, half), offset, out, valid)
    _find_invalid(column.slice(half), offset + half, out, valid)


def _casts_to_text(column: pa.Array) -> bool:
    try:
        column.cast(pa.string())
    except pa.ArrowInvalid:
        return False
    return True


def _decode_errors(cells: list[bytes]):
    for cell in cells:
        try:
            cell.decode('utf-8')
        except UnicodeDecodeError as exc:
            yield exc


def _read_avro(rng: FileRange, batch_rows: int) -> Iterator[RawBatch]:
    """Reads an Avro container file block by block.

    A record that does not decode (a string that is not UTF-8, say) costs the rest of its
    block only: the records after it in the block cannot be found without it, so it and they
    become dead letters one each (the block says how many it holds), and the next block is read.
    A block that cannot be read at all (a truncated file, a broken sync marker) ends the file,
    with one ``corrupt_file`` dead letter saying after how many records.
    """
    index = 0
    records: list[dict] = []
    positions: list[int] = []
    failures: list[tuple] = []

    def batch() -> RawBatch:
        out = RawBatch(
            rng.uri, 'avro', list(positions), records=list(records), failures=tuple(failures)
        )
        records.clear()
        positions.clear()
        failures.clear()
        return out

    with _open(rng) as f:
        try:
            for block in fastavro.block_reader(f):
                decoded = 0
                try:
                    for record in block:
                        records.append(record)
                        positions.append(index)
                        index += 1
                        decoded += 1
                        if len(records) + len(failures) >= batch_rows:
                            yield batch()
                except Exception as exc:  # fastavro raises many types
                    failures.extend(_avro_block_failures(block, decoded, index, exc))
                    index += block.num_records - decoded
                    if len(records) + len(failures) >= batch_rows:
                        yield batch()
        except Exception as exc:  # a header or block that cannot be read
            failures.append(
                (
                    'corrupt_file',
                    f'Avro file unreadable after {index} records: {type(exc).__name__}: {exc}',
                    b'',
                    index,
                )
            )
    if records or failures:
        yield batch()


def _avro_block_failures(block, decoded: int, index: int, exc: Exception) -> list[tuple]:
    """The dead letters of an Avro block whose record ``decoded`` (``index`` in the file) does
    not decode: that record, and each one after it in the block."""
    error_type = 'invalid_utf8' if isinstance(exc, UnicodeDecodeError) else 'avro_decode_error'
    where = f'in the Avro block at byte {block.offset}'
    out = [(error_type, f'record {index} {where} does not decode: {type(exc).__name__}: {exc}')]
    out += [
        ('avro_decode_error', f'record {i} {where} is lost with record {index} before it')
        for i in range(index + 1, index + block.num_records - decoded)
    ]
    return [(kind, message, b'', index + k) for k, (kind, message) in enumerate(out)]


def _read_parquet(rng: FileRange, batch_rows: int) -> Iterator[RawBatch]:
    index = 0
    with _open(rng) as f:
        try:
            data = io.BytesIO(f.read()) if not hasattr(f, 'seekable') or not f.seekable() else f
            parquet = pq.ParquetFile(data)
            names = parquet.schema_arrow.names
            if len(set(names)) != len(names):
                raise pa.ArrowInvalid(f'repeated column names: {names}')
            groups = None
            if rng.unit == 'row_groups':
                groups = list(range(rng.start, rng.end))
                meta = parquet.metadata
                index = sum(meta.row_group(i).num_rows for i in range(rng.start))
            for record_batch in parquet.iter_batches(batch_size=batch_rows, row_groups=groups):
                table = pa.Table.from_batches([record_batch])
                table, positions, bad = _parquet_utf8(table, index)
                yield RawBatch(rng.uri, 'parquet', positions, table=table, failures=bad)
                index += table.num_rows + len(bad)
        except (pa.ArrowInvalid, pa.ArrowException, OSError) as exc:
            yield RawBatch(
                rng.uri,
                'parquet',
                [],
                failures=(
                    (
                        'corrupt_file',
                        f'Parquet decoding failed after {index} records: {exc}',
                        b'',
                        index,
                    ),
                ),
            )


def _parquet_utf8(table: pa.Table, first: int) -> tuple[pa.Table, list[int], tuple]:
    """Takes out the rows holding strings that are not UTF-8, as failures: the Parquet reader
    does not check them, and they would fail whatever reads them next (cleansing, rendering).

    Returns:
        ``(table, positions, failures)``: the other rows and their positions.
    """
    positions = range(first, first + table.num_rows)
    try:
        table.validate(full=True)
        return table, positions, ()
    except pa.ArrowInvalid:
        pass
    invalid: set[int] = set()
    at_fault = []
    for name, column in zip(table.column_names, table.columns):
        before = len(invalid)
        _find_invalid(column.combine_chunks(), 0, invalid, _validates)
        if len(invalid) > before:
            at_fault.append(name)
    failures = [
        (
            'invalid_utf8',
            f'Parquet row is not valid UTF-8 in column(s) {at_fault}',
            orjson.dumps(_row_as_bytes(table, i), default=_bytes_as_text),
            first + i,
        )
        for i in sorted(invalid)
    ]
    keep = np.ones(table.num_rows, dtype=bool)
    keep[sorted(invalid)] = False
    good = [p for p, k in zip(positions, keep) if k]
    return table.filter(pa.array(keep)), good, tuple(failures)


def _row_as_bytes(table: pa.Table, i: int) -> dict:
    """Row ``i`` as Python values, with bytes for the strings that are not UTF-8 (and None for
    nested values that hold such strings)."""
    row = {}
    for name, column in zip(table.column_names, table.columns):
        try:
            row[name] = column[i].as_py()
        except UnicodeDecodeError:
            text = pa.types.is_string(column.type) or pa.types.is_large_string(column.type)
            row[name] = column.slice(i, 1).cast(pa.binary()).to_pylist()[0] if text else None
    return row


def _validates(column: pa.Array) -> bool:
    try:
        column.validate(full=True)
    except pa.ArrowInvalid:
        return False
    return True


def _bytes_as_text(value):
    if isinstance(value, bytes):
        return value.decode('utf-8', 'backslashreplace')  # readable; the file has the bytes
    raise TypeError(type(value).__name__)
