"""Taking one backup: every table's dump in one consistent snapshot, then the output files,
then the manifest, with the job recorded in ``backup_jobs`` throughout."""

from __future__ import annotations

import contextlib
import datetime as dt
import logging

import psycopg2
import psycopg2.extensions

from beam_pipelines.backup import archive
from beam_pipelines.backup import jobs
from beam_pipelines.backup.manifest import FULL
from beam_pipelines.backup.manifest import INCREMENTAL
from beam_pipelines.backup.manifest import MODES
from beam_pipelines.backup.manifest import BackupError
from beam_pipelines.backup.manifest import Manifest
from beam_pipelines.backup.manifest import list_manifests
from beam_pipelines.backup.manifest import new_backup_id
from beam_pipelines.backup.manifest import write_manifest
from beam_pipelines.backup.outputs import backup_outputs
from beam_pipelines.backup.tables import discover_tables
from beam_pipelines.backup.tables import dump_table
from beam_pipelines.backup.tables import migration_version
from beam_pipelines.backup.tables import safe_upper_bound
from beam_pipelines.backup.tables import set_session_formats
from beam_pipelines.io.postgres import connect
from beam_pipelines.io.postgres import ident
from beam_pipelines.io.postgres import scrub

__all__ = ['REQUIRED_MIGRATION', 'latest_parent', 'run_backup']

_LOGGER = logging.getLogger(__name__)

# loaded_at on every data table and the backup_jobs table arrive with migration 5.
REQUIRED_MIGRATION = 5


def run_backup(
    postgres_url: str | None,
    schema: str,
    archive_location: str,
    mode: str = FULL,
    output_dirs: list[str] | tuple[str, ...] = (),
) -> Manifest:
    """Backs up a warehouse schema and output directories into an archive.

    Args:
        postgres_url: the warehouse (a libpq URL or DSN).
        schema: the schema to back up.
        archive_location: a local directory, ``s3://bucket/prefix`` or ``gs://bucket/prefix``.
        mode: ``full``, or ``incremental`` (the rows and files changed since the latest
            successful backup of this schema in this archive).
        output_dirs: pipeline output directories whose files to back up.

    Returns:
        The manifest written.

    Raises:
        ValueError: a bad mode or schema name.
        BackupError: no parent for an incremental, an unmigrated schema, or a failed backup
            (recorded as failed in ``backup_jobs``; its partial files are deleted).
    """
    if mode not in MODES:
        raise ValueError(f'mode must be one of {MODES}, got {mode!r}')
    ident(schema)
    root = archive.root(archive_location)
    outputs = [archive.root(o) for o in output_dirs]
    records = connect(postgres_url)
    try:
        records.autocommit = True
        with records.cursor() as cur:
            version = migration_version(cur, schema)
            cur.execute('SELECT current_database()')
            database = cur.fetchone()[0]
        if version < REQUIRED_MIGRATION:
            raise BackupError(
                f'schema {schema} is at migration {version}; backups need migration '
                f'{REQUIRED_MIGRATION} (python -m beam_pipelines.warehouse migrate)'
            )
        parent = latest_parent(records, schema, database, root) if mode == INCREMENTAL else None
        started = dt.datetime.now(dt.UTC)
        backup_id = new_backup_id(started)
        jobs.start(records, schema, backup_id, mode, parent and parent.backup_id, root, started)
        try:
            manifest, upper = _take(
                postgres_url, schema, database, version, root, outputs, parent, backup_id, started
            )
            jobs.succeed(records, schema, manifest, upper)
        except Exception as exc:
            error = scrub(f'{type(exc).__name__}: {exc}'.strip(), postgres_url)
            _LOGGER.error('backup %s failed: %s', backup_id, error)
            # Its manifest (if written) goes too: a failed backup must never become a parent.
            with contextlib.suppress(Exception):
                archive.delete_tree(archive.join(root, backup_id))
            try:
                jobs.fail(records, schema, backup_id, error)
            except psycopg2.Error as record_exc:
                _LOGGER.error('could not record the failure: %s', scrub(str(record_exc), None))
            raise BackupError(f'backup {backup_id} failed: {error}') from exc
    finally:
        records.close()
    _LOGGER.info(
        'backup %s (%s) of %s: %d rows, %d bytes',
        backup_id,
        mode,
        schema,
        manifest.rows,
        manifest.bytes,
    )
    return manifest


def latest_parent(records, schema: str, database: str, root: str) -> Manifest:
    """The latest backup of ``database.schema`` in the archive whose job succeeded.

    Raises:
        BackupError: there is none.
    """
    candidates = [m for m in list_manifests(root) if (m.database, m.schema) == (database, schema)]
    status = jobs.statuses(records, schema, [m.backup_id for m in candidates])
    for m in reversed(candidates):
        if status.get(m.backup_id) == jobs.SUCCEEDED:
            return m
    raise BackupError(
        f'no successful backup of {database}.{schema} in {root} to build an incremental on: '
        'take a full backup first'
    )


def _take(
    postgres_url, schema, database, version, root, outputs, parent, backup_id, started
) -> tuple[Manifest, dt.datetime]:
    since = dt.datetime.fromisoformat(parent.watermark_to) if parent else None
    conn = connect(postgres_url)
    try:
        conn.autocommit = True
        with conn.cursor() as cur:
            upper = safe_upper_bound(cur)
        # One snapshot for every table: the dump is one consistent state of the schema.
        conn.set_session(
            isolation_level=psycopg2.extensions.ISOLATION_LEVEL_REPEATABLE_READ,
            readonly=True,
            autocommit=False,
        )
        entries = []
        with conn, conn.cursor() as cur:
            set_session_formats(cur)
            for table in discover_tables(cur, schema):
                name = f'{table.name}.csv.gz'
                entries.append(
                    dump_table(
                        cur,
                        schema,
                        table,
                        archive.join(root, backup_id, 'tables', name),
                        f'{backup_id}/tables/{name}',
                        since,
                    )
                )
    finally:
        conn.close()
    previous = {}
    if parent is not None:
        previous = {(parent.outputs[f.output], f.name): f for f in parent.output_files}
    entries += backup_outputs(outputs, root, backup_id, previous)
    manifest = Manifest(
        backup_id=backup_id,
        mode=INCREMENTAL if parent else FULL,
        parent_id=parent and parent.backup_id,
        schema=schema,
        database=database,
        migration_version=version,
        created_at=started.isoformat(),
        watermark_from=since and since.isoformat(),
        watermark_to=upper.isoformat(),
        outputs=tuple(outputs),
        files=tuple(entries),
    )
    write_manifest(root, manifest)
    return manifest, upper
