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
import itertools
import logging
import math
import time
from collections.abc import Iterator
from typing import NamedTuple

import apache_beam as beam
import fastavro
import numpy as np
import pyarrow as pa
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
_NEWLINE = ord('\n')


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
        pending = b''
        ends = np.zeros(0, np.int64)  # where each complete line of pending ends
        while base < end:
            block = f.read(_BLOCK_BYTES)
            found = np.flatnonzero(np.frombuffer(block, np.uint8) == _NEWLINE) + len(pending) + 1
            pending += block
            ends = np.concatenate((ends, found))
            if not block and pending and (not len(ends) or ends[-1] != len(pending)):
                ends = np.append(ends, len(pending))  # a last line without a newline
            starts = np.concatenate(([0], ends[:-1]))
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
    with _open(rng) as f:
        header = f.readline()
    try:
        names = next(csv.reader([header.decode('utf-8-sig')]))  # a BOM is not a name
    except (UnicodeDecodeError, StopIteration, csv.Error) as exc:
        yield RawBatch(
            rng.uri,
            'csv',
            [],
            failures=(('corrupt_file', f'unreadable CSV header: {exc}', header, 0),),
        )
        return
    if not names or len(set(names)) != len(names):
        yield RawBatch(
            rng.uri,
            'csv',
            [],
            failures=(
                (
                    'corrupt_file',
                    f'CSV header has empty or repeated column names: {names}',
                    header,
                    0,
                ),
            ),
        )
        return
    invalid: list[tuple] = []

    def on_invalid(row) -> str:
        invalid.append(
            (
                'csv_row_error',
                f'expected {row.expected_columns} columns, got {row.actual_columns}',
                row.text,
                row.number,
            )
        )
        return 'skip'

    ordinal = 0
    with _open(rng) as f:
        try:
            reader = pacsv.open_csv(
                f,
                read_options=pacsv.ReadOptions(use_threads=False, block_size=4 << 20),
                parse_options=pacsv.ParseOptions(invalid_row_handler=on_invalid),
                convert_options=pacsv.ConvertOptions(
                    column_types={name: pa.binary() for name in names},
                    # Only an empty cell is missing: Arrow's default null markers ('n/a',
                    # 'NULL', 'nan', ...) would silently turn real values into nulls.
                    null_values=[''],
                    strings_can_be_null=True,
                ),
            )
            for record_batch in reader:
                table = pa.Table.from_batches([record_batch])
                for start in range(0, table.num_rows, batch_rows):
                    chunk = table.slice(start, batch_rows)
                    chunk, bad = _csv_to_text(chunk, ordinal)
                    dropped = {b[3] for b in bad}
                    positions = range(ordinal, ordinal + chunk.num_rows + len(bad))
                    good = [p for p in positions if p not in dropped]
                    ordinal += chunk.num_rows + len(bad)
                    yield RawBatch(
                        rng.uri, 'csv', good, table=chunk, failures=tuple(invalid) + tuple(bad)
                    )
                    invalid.clear()
        except (pa.ArrowInvalid, OSError) as exc:
            invalid.append(
                ('corrupt_file', f'CSV read failed after {ordinal} rows: {exc}', b'', ordinal)
            )
    if invalid:
        yield RawBatch(rng.uri, 'csv', [], failures=tuple(invalid))


def _csv_to_text(table: pa.Table, first: int) -> tuple[pa.Table, list[tuple]]:
    """Casts binary CSV columns to text; rows with invalid UTF-8 become failures."""
    text_schema = pa.schema([(n, pa.string()) for n in table.column_names])
    try:
        return table.cast(text_schema), []
    except pa.ArrowInvalid:
        pass
    invalid: set[int] = set()
    for column in table.columns:
        _find_invalid_utf8(column.combine_chunks(), 0, invalid)
    bad = []
    for i in sorted(invalid):
        cells = [v or b'' for v in table.slice(i, 1).to_pylist()[0].values()]
        raw = b','.join(cells)
        reason = next(str(e) for e in _decode_errors(cells))
        bad.append(('invalid_utf8', f'CSV row is not valid UTF-8: {reason}', raw, first + i))
    keep = np.ones(table.num_rows, dtype=bool)
    keep[sorted(invalid)] = False
    return table.filter(pa.array(keep)).cast(text_schema), bad


def _find_invalid_utf8(column: pa.Array, offset: int, out: set[int]) -> None:
    """Adds the indices of rows that are not valid UTF-8, by bisection: Arrow's cast checks a
    whole array in C++ but does not say which row failed, and bad rows are rare."""
    try:
        column.cast(pa.string())
        return
    except pa.ArrowInvalid:
        pass
    if len(column) == 1:
        out.add(offset)
        return
    half = len(column) // 2
    _find_invalid_utf8(column.slice(0, half), offset, out)
    _find_invalid_utf8(column.slice(half), offset + half, out)


def _decode_errors(cells: list[bytes]):
    for cell in cells:
        try:
            cell.decode('utf-8')
        except UnicodeDecodeError as exc:
            yield exc


def _read_avro(rng: FileRange, batch_rows: int) -> Iterator[RawBatch]:
    index = 0
    with _open(rng) as f:
        try:
            reader = fastavro.reader(f)
            while True:
                records = list(itertools.islice(reader, batch_rows))
                if not records:
                    break
                yield RawBatch(rng.uri, 'avro', range(index, index + len(records)), records=records)
                index += len(records)
        except Exception as exc:  # fastavro raises many types for corrupt input
            yield RawBatch(
                rng.uri,
                'avro',
                [],
                failures=(
                    (
                        'corrupt_file',
                        f'Avro decoding failed after {index} records: {type(exc).__name__}: {exc}',
                        b'',
                        index,
                    ),
                ),
            )


def _read_parquet(rng: FileRange, batch_rows: int) -> Iterator[RawBatch]:
    index = 0
    with _open(rng) as f:
        try:
            data = io.BytesIO(f.read()) if not hasattr(f, 'seekable') or not f.seekable() else f
            parquet = pq.ParquetFile(data)
            groups = None
            if rng.unit == 'row_groups':
                groups = list(range(rng.start, rng.end))
                meta = parquet.metadata
                index = sum(meta.row_group(i).num_rows for i in range(rng.start))
            for record_batch in parquet.iter_batches(batch_size=batch_rows, row_groups=groups):
                table = pa.Table.from_batches([record_batch])
                yield RawBatch(
                    rng.uri, 'parquet', range(index, index + table.num_rows), table=table
                )
                index += table.num_rows
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
