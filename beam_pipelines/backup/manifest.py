"""Backup manifests: what one backup holds, its place in a chain, and which backups to prune.

A manifest (``<archive>/<backup_id>/manifest.json``) is written last, so its presence marks a
finished backup. It lists every stored file with its size, SHA-256 and row count. An
incremental's manifest lists the whole inventory of output files at its time: files unchanged
since the parent point at the ancestor's copy, so restoring one backup needs only its chain.

Plain Python, no Beam and no database: the chain and prune logic are unit-tested on their own.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import json
import logging
import secrets
from collections.abc import Callable
from collections.abc import Iterable

from apache_beam.io.filesystems import FileSystems

from beam_pipelines.backup import archive

__all__ = [
    'FULL',
    'INCREMENTAL',
    'MANIFEST_NAME',
    'BackupError',
    'FileEntry',
    'Manifest',
    'VerificationError',
    'chain',
    'find_manifest',
    'list_manifests',
    'manifest_path',
    'new_backup_id',
    'plan_prune',
    'read_manifest',
    'write_manifest',
]

_LOGGER = logging.getLogger(__name__)

FULL = 'full'
INCREMENTAL = 'incremental'
MODES = (FULL, INCREMENTAL)
MANIFEST_NAME = 'manifest.json'
FORMAT_VERSION = 1
TABLE = 'table'
FILE = 'file'


class BackupError(Exception):
    """A backup, restore or prune that cannot go on; the message says why (exit status 1)."""


class VerificationError(BackupError):
    """Archive contents that do not match their manifest."""


def new_backup_id(now: dt.datetime | None = None) -> str:
    """A sortable id: the UTC time to the microsecond, then a short random suffix (two backups
    started in the same microsecond still differ)."""
    now = (now or dt.datetime.now(dt.UTC)).astimezone(dt.UTC)
    return f'{now:%Y%m%dT%H%M%S%f}Z-{secrets.token_hex(3)}'


@dataclasses.dataclass(frozen=True)
class FileEntry:
    """One stored file.

    Attributes:
        path: where it is, relative to the archive root (an ancestor's directory for output
            files unchanged since then).
        kind: ``table`` (a gzipped CSV dump) or ``file`` (an output file).
        name: the table's name, or the file's path relative to its output directory.
        rows: rows in the dump or the Parquet file; None for other files.
        bytes: stored size.
        sha256: of the stored bytes.
        columns: a dump's columns, in order (its CSV header).
        key: a table's primary key.
        full_copy: the dump holds the whole table, not the rows since the parent's watermark.
        output: a file's output directory, as an index into :attr:`Manifest.outputs`.
        source_sha256: of the original file (differs from ``sha256`` when stored gzipped).
        gzipped: stored gzipped (restored decompressed).
    """

    path: str
    kind: str
    name: str
    rows: int | None
    bytes: int
    sha256: str
    columns: tuple[str, ...] = ()
    key: tuple[str, ...] = ()
    full_copy: bool = False
    output: int | None = None
    source_sha256: str | None = None
    gzipped: bool = False

    def to_dict(self) -> dict:
        data = dataclasses.asdict(self)
        data['columns'] = list(self.columns)
        data['key'] = list(self.key)
        return data

    @classmethod
    def from_dict(cls, data: dict) -> FileEntry:
        fields = {f.name for f in dataclasses.fields(cls)}
        values = {k: v for k, v in data.items() if k in fields}
        values['columns'] = tuple(values.get('columns') or ())
        values['key'] = tuple(values.get('key') or ())
        return cls(**values)


@dataclasses.dataclass(frozen=True)
class Manifest:
    """One backup.

    Attributes:
        backup_id: sortable id (see :func:`new_backup_id`).
        mode: ``full`` or ``incremental``.
        parent_id: the backup an incremental builds on; None for a full one.
        schema: the source schema.
        database: the source database's name.
        migration_version: the source schema's latest applied migration.
        created_at: ISO time the backup started.
        watermark_from: the dumps hold the rows with ``loaded_at`` from here on (None: all rows;
            a table without ``loaded_at`` is always copied whole).
        watermark_to: every row stamped before this time is in this backup or its ancestors;
            the next incremental starts here.
        outputs: the output directories backed up.
        files: every stored file.
    """

    backup_id: str
    mode: str
    parent_id: str | None
    schema: str
    database: str
    migration_version: int
    created_at: str
    watermark_from: str | None
    watermark_to: str
    outputs: tuple[str, ...]
    files: tuple[FileEntry, ...]

    @property
    def tables(self) -> tuple[FileEntry, ...]:
        return tuple(f for f in self.files if f.kind == TABLE)

    @property
    def output_files(self) -> tuple[FileEntry, ...]:
        return tuple(f for f in self.files if f.kind == FILE)

    def stored_here(self) -> tuple[FileEntry, ...]:
        """The files this backup stored itself (not those it shares with an ancestor)."""
        return tuple(f for f in self.files if f.path.startswith(self.backup_id + '/'))

    @property
    def rows(self) -> int:
        """Warehouse rows dumped by this backup (Parquet rows are counted per file)."""
        return sum(f.rows or 0 for f in self.stored_here() if f.kind == TABLE)

    @property
    def bytes(self) -> int:
        return sum(f.bytes for f in self.stored_here())

    def to_json(self) -> bytes:
        data = {
            'format': FORMAT_VERSION,
            'backup_id': self.backup_id,
            'mode': self.mode,
            'parent_id': self.parent_id,
            'schema': self.schema,
            'database': self.database,
            'migration_version': self.migration_version,
            'created_at': self.created_at,
            'watermark': {'from': self.watermark_from, 'to': self.watermark_to},
            'outputs': list(self.outputs),
            'totals': {'rows': self.rows, 'bytes': self.bytes, 'files': len(self.stored_here())},
            'files': [f.to_dict() for f in self.files],
        }
        return json.dumps(data, indent=2).encode()

    @classmethod
    def from_json(cls, raw: bytes) -> Manifest:
        data = json.loads(raw)
        if data.get('format') != FORMAT_VERSION:
            raise BackupError(f'unknown manifest format {data.get("format")!r}')
        return cls(
            backup_id=data['backup_id'],
            mode=data['mode'],
            parent_id=data['parent_id'],
            schema=data['schema'],
            database=data['database'],
            migration_version=data['migration_version'],
            created_at=data['created_at'],
            watermark_from=data['watermark']['from'],
            watermark_to=data['watermark']['to'],
            outputs=tuple(data['outputs']),
            files=tuple(FileEntry.from_dict(f) for f in data['files']),
        )


def manifest_path(archive_root: str, backup_id: str) -> str:
    return archive.join(archive_root, backup_id, MANIFEST_NAME)


def write_manifest(archive_root: str, manifest: Manifest) -> str:
    path = manifest_path(archive_root, manifest.backup_id)
    archive.write_atomically(path, manifest.to_json())
    return path


def find_manifest(archive_root: str, backup_id: str) -> Manifest | None:
    """A backup's manifest; None when the backup is not there (or never finished)."""
    path = manifest_path(archive_root, backup_id)
    if not FileSystems.exists(path):
        return None
    with archive.open_read(path) as f:
        return Manifest.from_json(f.read())


def read_manifest(archive_root: str, backup_id: str) -> Manifest:
    """Raises:
    BackupError: no such backup (or it never finished) in the archive."""
    found = find_manifest(archive_root, backup_id)
    if found is None:
        raise BackupError(f'no backup {backup_id!r} in {archive_root} (no {MANIFEST_NAME})')
    return found


def list_manifests(archive_root: str) -> list[Manifest]:
    """Every finished backup in the archive, oldest first."""
    if not FileSystems.exists(archive_root) and archive.is_local(archive_root):
        return []
    found = FileSystems.match([archive.join(archive_root, '*', MANIFEST_NAME)])[0]
    ids = set()
    for meta in found.metadata_list:
        parts = archive.relative(meta.path, archive_root).split('/')
        if len(parts) == 2:  # not an output file that happens to be called manifest.json
            ids.add(parts[0])
    return [read_manifest(archive_root, i) for i in sorted(ids)]


def chain(lookup: Callable[[str], Manifest | None], backup_id: str) -> list[Manifest]:
    """The full backup and every incremental up to ``backup_id``, oldest first.

    Args:
        lookup: a backup's manifest by id, None when missing (``dict.get`` of loaded ones, or
            :func:`find_manifest` bound to an archive).
        backup_id: the last backup of the chain.

    Raises:
        BackupError: the backup or one of its ancestors is missing.
    """
    result: list[Manifest] = []
    current: str | None = backup_id
    while current is not None:
        m = lookup(current)
        if m is None:
            needed = f' (needed by {result[-1].backup_id})' if result else ''
            raise BackupError(f'backup {current!r} is not in the archive{needed}')
        if any(r.backup_id == current for r in result):
            raise BackupError(f'backup {current!r} is its own ancestor')
        result.append(m)
        current = m.parent_id if m.mode == INCREMENTAL else None
    return result[::-1]


def plan_prune(manifests: Iterable[Manifest], keep: int) -> tuple[list[str], list[str]]:
    """Which backups to keep and which to delete.

    Per source (database and schema), the ``keep`` newest backups are kept, and so is every
    ancestor their chains need: a full backup goes only when no kept incremental builds on it.

    Returns:
        (kept ids, deleted ids), each sorted.
    """
    if keep < 1:
        raise ValueError(f'keep must be >= 1, got {keep}')
    by_id = {m.backup_id: m for m in manifests}
    groups: dict[tuple[str, str], list[str]] = {}
    for m in by_id.values():
        groups.setdefault((m.database, m.schema), []).append(m.backup_id)
    kept: set[str] = set()
    for ids in groups.values():
        for backup_id in sorted(ids)[-keep:]:
            current: str | None = backup_id
            # Walks up as far as the archive goes: a broken chain keeps what is left of it.
            while current in by_id and current not in kept:
                kept.add(current)
                m = by_id[current]
                current = m.parent_id if m.mode == INCREMENTAL else None
    return sorted(kept), sorted(set(by_id) - kept)
