"""Pruning an archive: keep the newest backups and the ancestors their chains need."""

from __future__ import annotations

import logging

from apache_beam.io.filesystems import FileSystems

from beam_pipelines.backup import archive
from beam_pipelines.backup import jobs
from beam_pipelines.backup.manifest import list_manifests
from beam_pipelines.backup.manifest import manifest_path
from beam_pipelines.backup.manifest import plan_prune
from beam_pipelines.io.postgres import connect
from beam_pipelines.io.postgres import ident

__all__ = ['prune']

_LOGGER = logging.getLogger(__name__)


def prune(
    archive_location: str,
    keep: int,
    postgres_url: str | None = None,
    schema: str | None = None,
    dry_run: bool = False,
) -> dict:
    """Deletes every backup but the ``keep`` newest per source and their chains' ancestors.

    Args:
        archive_location: the archive.
        keep: how many newest backups to keep per source schema (>= 1).
        postgres_url: with ``schema``, the warehouse whose ``backup_jobs`` rows of deleted
            backups are marked ``pruned``.
        schema: only prune backups of this schema (all schemas when None).
        dry_run: report what would go, delete nothing.

    Returns:
        ``{'kept': [...], 'deleted': [...], 'marked': n}``.
    """
    if schema is not None:
        ident(schema)
    root = archive.root(archive_location)
    manifests = [m for m in list_manifests(root) if schema is None or m.schema == schema]
    kept, deleted = plan_prune(manifests, keep)
    marked = 0
    if not dry_run:
        # Manifest first: a half-deleted backup then no longer counts as one.
        for backup_id in deleted:
            base = archive.join(root, backup_id)
            FileSystems.delete([manifest_path(root, backup_id)])
            archive.delete_tree(base)
            _LOGGER.info('pruned backup %s', backup_id)
        if postgres_url is not None and schema is not None and deleted:
            conn = connect(postgres_url)
            try:
                marked = jobs.mark_pruned(conn, schema, deleted)
            finally:
                conn.close()
    return {'kept': kept, 'deleted': deleted, 'marked': marked}
