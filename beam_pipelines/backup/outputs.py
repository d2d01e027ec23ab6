"""Pipeline output directories in and out of the archive: Parquet files and their companions.

Every file below an output directory is copied (Beam's temporary files excepted). Parquet is
stored as it is, being compressed already; other files (run summaries, reports, dead-letter
JSON Lines) are gzipped. An incremental backup copies only the files whose SHA-256 differs from
the chain's latest manifest and points at the ancestor's copy for the others.
"""

from __future__ import annotations

import dataclasses
import gzip
import hashlib
import logging

import pyarrow.parquet as pq
from apache_beam.io.filesystems import FileSystems

from beam_pipelines.backup import archive
from beam_pipelines.backup.manifest import FILE
from beam_pipelines.backup.manifest import FileEntry
from beam_pipelines.backup.manifest import VerificationError

__all__ = ['backup_outputs', 'restore_file', 'sha256_of', 'verify_file']

_LOGGER = logging.getLogger(__name__)

_STORED_AS_IS = ('.parquet', '.gz', '.zst', '.bz2')


def _is_temporary(relative_path: str) -> bool:
    # Beam's file sinks write under .temp-beam-*/ (or beam-temp-*) until they finalize.
    return any(p.startswith(('.', 'beam-temp')) for p in relative_path.split('/'))


def sha256_of(path: str) -> str:
    with archive.open_read(path) as f:
        reader = archive.HashingReader(f)
        reader.drain()
    return reader.sha256


def _parquet_rows(path: str) -> int:
    with archive.open_read(path) as f:
        return pq.ParquetFile(f).metadata.num_rows


def backup_outputs(
    outputs: list[str],
    archive_root: str,
    backup_id: str,
    previous: dict[tuple[str, str], FileEntry],
) -> list[FileEntry]:
    """Copies the output directories' files into ``<backup_id>/files/<index>/``.

    Args:
        outputs: the output directories (roots, see :func:`archive.root`).
        archive_root: the archive.
        backup_id: this backup.
        previous: the chain's latest file entries by (output directory, relative path); empty
            for a full backup.

    Returns:
        The entries of every file now in the outputs.
    """
    entries = []
    for index, output in enumerate(outputs):
        if not FileSystems.exists(output) and archive.is_local(output):
            raise FileNotFoundError(f'output directory {output} does not exist')
        for source in archive.list_files(output):
            name = archive.relative(source, output)
            if _is_temporary(name):
                continue
            before = previous.get((output, name))
            if before is not None and sha256_of(source) == before.source_sha256:
                entries.append(dataclasses.replace(before, output=index))
                continue
            entries.append(_copy_in(source, name, index, archive_root, backup_id))
    return entries


def _copy_in(source: str, name: str, index: int, archive_root: str, backup_id: str) -> FileEntry:
    gzipped = not name.lower().endswith(_STORED_AS_IS)
    relative_path = '/'.join([backup_id, 'files', str(index), name + ('.gz' if gzipped else '')])
    path = archive.join(archive_root, *relative_path.split('/'))
    original = hashlib.sha256()
    with archive.open_read(source) as src, archive.open_write(path) as raw:
        stored = archive.HashingWriter(raw)
        sink = gzip.GzipFile(fileobj=stored, mode='wb', mtime=0) if gzipped else stored
        while chunk := src.read(archive.CHUNK_BYTES):
            original.update(chunk)
            sink.write(chunk)
        if gzipped:
            sink.close()
    # Counted from the stored copy: that is what a restore will verify.
    rows = _parquet_rows(path) if name.lower().endswith('.parquet') else None
    return FileEntry(
        path=relative_path,
        kind=FILE,
        name=name,
        rows=rows,
        bytes=stored.bytes,
        sha256=stored.sha256,
        output=index,
        source_sha256=original.hexdigest(),
        gzipped=gzipped,
    )


def verify_file(entry: FileEntry, path: str) -> list[str]:
    """The problems of one stored output file (none when it matches its entry)."""
    with archive.open_read(path) as f:
        reader = archive.HashingReader(f)
        reader.drain()
    problems = []
    if reader.bytes != entry.bytes:
        problems.append(f'{entry.path}: {reader.bytes} bytes, the manifest says {entry.bytes}')
    if reader.sha256 != entry.sha256:
        problems.append(f'{entry.path}: SHA-256 {reader.sha256} differs from the manifest')
    elif entry.rows is not None:
        rows = _parquet_rows(path)
        if rows != entry.rows:
            problems.append(f'{entry.path}: {rows} Parquet rows, the manifest says {entry.rows}')
    return problems


def restore_file(entry: FileEntry, path: str, target_dir: str) -> str:
    """Writes one stored file back below ``target_dir`` (decompressed if it was gzipped).

    Returns:
        The restored file's path.

    Raises:
        VerificationError: the bytes written differ from the original's SHA-256.
    """
    dest = archive.join(target_dir, *entry.name.split('/'))
    original = hashlib.sha256()
    with archive.open_read(path) as raw, archive.open_write(dest) as out:
        src = gzip.GzipFile(fileobj=raw, mode='rb') if entry.gzipped else raw
        while chunk := src.read(archive.CHUNK_BYTES):
            original.update(chunk)
            out.write(chunk)
    if original.hexdigest() != entry.source_sha256:
        FileSystems.delete([dest])
        raise VerificationError(f'{entry.path} restored to {dest} differs from the original')
    return dest
