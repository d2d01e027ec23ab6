"""Restoring a backup chain into a database schema and output directories.

Everything is checked before anything is written: every file's SHA-256, size and row count
against its manifest, the schema version, and that the targets are empty. Then the target schema
is migrated and every dump is loaded, oldest first, in one transaction, so a restore that fails
half-way leaves no rows behind. An optional hook runs last, inside that transaction: the GDPR
module uses it to drop what erased subjects left in backups (tombstone enforcement).
"""

from __future__ import annotations

import csv
import functools
import logging
import zlib
from collections.abc import Callable
from typing import Any

from apache_beam.io.filesystems import FileSystems

from beam_pipelines.backup import archive
from beam_pipelines.backup.manifest import BackupError
from beam_pipelines.backup.manifest import FileEntry
from beam_pipelines.backup.manifest import Manifest
from beam_pipelines.backup.manifest import VerificationError
from beam_pipelines.backup.manifest import chain
from beam_pipelines.backup.manifest import find_manifest
from beam_pipelines.backup.outputs import restore_file
from beam_pipelines.backup.outputs import sha256_of
from beam_pipelines.backup.outputs import verify_file
from beam_pipelines.backup.tables import check_fits
from beam_pipelines.backup.tables import count_csv_rows
from beam_pipelines.backup.tables import load_table
from beam_pipelines.backup.tables import set_session_formats
from beam_pipelines.io.postgres import connect
from beam_pipelines.io.postgres import ident
from beam_pipelines.io.warehouse_schema import MIGRATIONS
from beam_pipelines.io.warehouse_schema import migrate

__all__ = ['AfterRestore', 'plan_loads', 'restore', 'verify']

_LOGGER = logging.getLogger(__name__)

AfterRestore = Callable[[Any, str, list[str]], dict]
"""``after_restore(conn, schema, output_dirs) -> dict``: runs in the restore's open transaction
(it must not commit); what it returns lands in the summary under ``after_restore``."""

_UNREADABLE = (OSError, EOFError, zlib.error, UnicodeDecodeError, csv.Error)
_SHOWN_PROBLEMS = 5


def restore(
    backup_id: str,
    archive_location: str,
    postgres_url: str | None,
    schema: str,
    output_dirs: list[str] | tuple[str, ...] = (),
    after_restore: AfterRestore | None = None,
    allow_nonempty: bool = False,
) -> dict:
    """Restores the chain ending at ``backup_id``.

    Args:
        backup_id: the backup to restore (with its ancestors).
        archive_location: the archive holding it.
        postgres_url: the target database.
        schema: the target schema (created and migrated when missing).
        output_dirs: where the backed-up output directories go, one per directory backed up, in
            the manifest's order; empty to restore tables only.
        after_restore: the hook run after loading (see :data:`AfterRestore`).
        allow_nonempty: merge into tables and directories that hold data already.

    Returns:
        A summary: the chain, rows per table, restored files, the hook's result.

    Raises:
        ValueError: bad arguments (schema name, number of output directories).
        VerificationError: archive contents do not match their manifests (nothing restored).
        BackupError: a missing backup or ancestor, a schema newer than this code, targets that
            hold data.
    """
    ident(schema)
    root = archive.root(archive_location)
    manifests = chain(functools.partial(find_manifest, root), backup_id)
    target = manifests[-1]
    latest = max(version for version, _, _ in MIGRATIONS)
    if target.migration_version > latest:
        raise BackupError(
            f'backup {backup_id} is of schema migration {target.migration_version}; this code '
            f'knows up to {latest}'
        )
    loads = plan_loads(manifests)
    targets = _output_targets(target, [archive.root(d) for d in output_dirs], allow_nonempty)
    files = list(target.output_files) if targets else []
    verify(root, loads, files)

    conn = connect(postgres_url)
    try:
        migrate(conn, schema)
        with conn, conn.cursor() as cur:
            set_session_formats(cur)
            check_fits(cur, schema, loads, allow_nonempty)
            loaded: dict[str, int] = {}
            for entry in loads:
                rows = load_table(cur, schema, entry, _path(root, entry))
                loaded[entry.name] = loaded.get(entry.name, 0) + rows
            restored = []
            try:
                for e in files:
                    restored.append(restore_file(e, _path(root, e), targets[e.output]))
                hooked = after_restore(conn, schema, targets) if after_restore else None
            except BaseException:
                # The tables roll back with the transaction; the files written so far go too,
                # so a refused restore (say, tombstones it could not enforce) leaves nothing.
                if restored:
                    FileSystems.delete(restored)
                raise
    finally:
        conn.close()
    summary = {
        'backup_id': backup_id,
        'chain': [m.backup_id for m in manifests],
        'schema': schema,
        'rows_loaded': loaded,
        'files': restored,
        'after_restore': hooked,
    }
    _LOGGER.info(
        'restored %s into %s: %d rows, %d files',
        backup_id,
        schema,
        sum(loaded.values()),
        len(restored),
    )
    return summary


def plan_loads(manifests: list[Manifest]) -> list[FileEntry]:
    """The dumps to load, in order: per table of the last backup, its latest whole copy and the
    incremental dumps after it (a table copied whole each time needs only its last copy)."""
    loads = []
    for last in manifests[-1].tables:
        steps = []
        for m in reversed(manifests):
            entry = next((e for e in m.tables if e.name == last.name), None)
            if entry is None:
                break
            steps.append(entry)
            if entry.full_copy:
                break
        else:
            _LOGGER.warning('no whole copy of %s in the chain: loading its increments', last.name)
        loads += steps[::-1]
    return loads


def verify(root: str, loads: list[FileEntry], files: list[FileEntry]) -> None:
    """Checks every file to be restored against its manifest entry.

    Raises:
        VerificationError: listing the mismatches.
    """
    problems = []
    for entry in loads:
        path = _path(root, entry)
        try:
            rows, size, sha = count_csv_rows(path)
        except _UNREADABLE as exc:
            try:
                differs = sha256_of(path) != entry.sha256
            except OSError:
                differs = True
            what = 'SHA-256 differs from the manifest; ' if differs else ''
            problems.append(f'{entry.path}: {what}unreadable ({type(exc).__name__}: {exc})')
            continue
        if sha != entry.sha256:
            problems.append(f'{entry.path}: SHA-256 {sha} differs from the manifest')
        elif size != entry.bytes:
            problems.append(f'{entry.path}: {size} bytes, the manifest says {entry.bytes}')
        elif rows != entry.rows:
            problems.append(f'{entry.path}: {rows} rows, the manifest says {entry.rows}')
    for entry in files:
        try:
            problems += verify_file(entry, _path(root, entry))
        except _UNREADABLE as exc:
            problems.append(f'{entry.path}: unreadable ({type(exc).__name__}: {exc})')
    if problems:
        more = len(problems) - _SHOWN_PROBLEMS
        raise VerificationError(
            f'refusing to restore: {len(problems)} archive file(s) do not match the manifest, '
            'nothing was restored: '
            + '; '.join(problems[:_SHOWN_PROBLEMS])
            + (f'; and {more} more' if more > 0 else '')
        )


def _path(root: str, entry: FileEntry) -> str:
    return archive.join(root, *entry.path.split('/'))


def _output_targets(target: Manifest, dirs: list[str], allow_nonempty: bool) -> list[str]:
    if not dirs:
        if target.output_files:
            _LOGGER.warning('no output directory given: the backed-up files are not restored')
        return []
    if len(dirs) != len(target.outputs):
        raise ValueError(
            f'backup {target.backup_id} holds {len(target.outputs)} output directories '
            f'({", ".join(target.outputs) or "none"}): give as many, in that order'
        )
    if not allow_nonempty:
        for d in dirs:
            if archive.list_files(d):
                raise BackupError(f'the output directory {d} is not empty')
    return dirs
