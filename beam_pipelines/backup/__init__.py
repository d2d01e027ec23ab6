"""Backup, restore and prune of the PostgreSQL warehouse and the pipelines' output files.

A backup is a consistent, ordered sequence of ``COPY`` streams from one ``REPEATABLE READ``
snapshot, then a copy of the output directories' files, then a manifest: plain Python, not a Beam
pipeline. A pipeline would add nothing here: the work is one snapshot read in order by one
connection, and splitting it across workers would lose the single snapshot that makes the dump
consistent. The archive is reached through Beam's filesystems, so the same locations (local,
``s3://``, ``gs://``) and flags work as for the pipelines.

* :func:`run_backup` — ``full``: every table (:data:`~beam_pipelines.backup.tables.EXCLUDED_TABLES`
  left out: ``gdpr_keys`` never leaves the database, so deleting a subject's key shreds its data
  in every backup too) and every output file; ``incremental``: the rows whose ``loaded_at`` moved
  since the parent's watermark and the files whose SHA-256 changed.
* :func:`restore` — verifies, then loads a chain into a schema and output directories.
* :func:`prune` — keeps the newest backups and their chains' ancestors.

Layout of an archive::

    <archive>/<backup_id>/manifest.json             written last: the backup is complete
    <archive>/<backup_id>/tables/<table>.csv.gz     COPY ... (FORMAT csv, HEADER), gzipped
    <archive>/<backup_id>/files/<n>/<path>[.gz]     output directory n's files

Each backup is recorded in the schema's ``backup_jobs`` table. Command line:
:mod:`beam_pipelines.backup.launcher`.
"""

from beam_pipelines.backup.backup import run_backup
from beam_pipelines.backup.manifest import BackupError
from beam_pipelines.backup.manifest import Manifest
from beam_pipelines.backup.manifest import VerificationError
from beam_pipelines.backup.manifest import list_manifests
from beam_pipelines.backup.prune import prune
from beam_pipelines.backup.restore import AfterRestore
from beam_pipelines.backup.restore import restore

__all__ = [
    'AfterRestore',
    'BackupError',
    'Manifest',
    'VerificationError',
    'list_manifests',
    'prune',
    'restore',
    'run_backup',
]
