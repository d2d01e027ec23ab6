"""``python -m beam_pipelines.backup``: back up, restore, prune and list warehouse backups.

::

    python -m beam_pipelines.backup run --mode full --postgres_url postgresql://127.0.0.1/test \\
        --pg_schema public --output_dir out --archive s3://backups/warehouse \\
        --s3_endpoint_url http://127.0.0.1:9000 --s3_access_key_id ... --s3_secret_access_key ...
    python -m beam_pipelines.backup run --mode incremental ...   # rows and files since the last
    python -m beam_pipelines.backup list --archive s3://backups/warehouse
    python -m beam_pipelines.backup restore --id 20260101T020000000000Z-1a2b3c \\
        --archive s3://backups/warehouse --postgres_url postgresql://127.0.0.1/test \\
        --pg_schema restored --output_dir restored_out
    python -m beam_pipelines.backup prune --keep 7 --archive s3://backups/warehouse \\
        --postgres_url postgresql://127.0.0.1/test --pg_schema public

Beam's filesystem flags (``--s3_*``, GCS credentials) are accepted as by the pipelines. Exit
status: 0 done, 2 usage errors, 1 failures (a refused restore included).
"""

from __future__ import annotations

import os
import sys

import orjson
from apache_beam.io.filesystems import FileSystems

from beam_pipelines import cli
from beam_pipelines.backup import archive
from beam_pipelines.backup.backup import run_backup
from beam_pipelines.backup.manifest import MODES
from beam_pipelines.backup.manifest import BackupError
from beam_pipelines.backup.manifest import Manifest
from beam_pipelines.backup.manifest import list_manifests
from beam_pipelines.backup.prune import prune
from beam_pipelines.backup.restore import restore
from beam_pipelines.gdpr import secrets as gdpr_secrets
from beam_pipelines.gdpr.enforce import TombstoneEnforcer
from beam_pipelines.io.postgres import connect

__all__ = ['PROG', 'format_backups', 'run']

PROG = 'backup'


def _parser():
    parser = cli.ArgumentParser(prog=f'python -m beam_pipelines.{PROG}', allow_abbrev=False)
    commands = parser.add_subparsers(dest='command', required=True, parser_class=cli.ArgumentParser)

    def command(name: str, text: str, database: bool, required_db: bool = True):
        sub = commands.add_parser(name, help=text, allow_abbrev=False)
        sub.add_argument('--archive', required=True, help='Local path, s3://... or gs://...')
        if database:
            sub.add_argument(
                '--postgres_url', required=required_db, default=None, help='The warehouse.'
            )
            sub.add_argument(
                '--pg_schema', required=required_db, default=None, help='The warehouse schema.'
            )
        return sub

    backup = command('run', 'Take a backup.', database=True)
    backup.add_argument('--mode', choices=MODES, required=True, help='full or incremental.')
    backup.add_argument(
        '--output_dir', action='append', default=[], help='An output directory (repeatable).'
    )
    back = command('restore', 'Restore a backup and its ancestors.', database=True)
    back.add_argument('--id', dest='backup_id', required=True, help='The backup to restore.')
    back.add_argument(
        '--output_dir',
        action='append',
        default=[],
        help="Where each backed-up output directory goes, in the backup's order (repeatable).",
    )
    back.add_argument(
        '--allow_nonempty', action='store_true', help='Merge into tables that hold rows.'
    )
    back.add_argument(
        '--gdpr_secrets_file',
        default=None,
        help='The pseudonym keys that enforce the tombstones of erased subjects on the restored '
        'data (default: $BP_GDPR_SECRETS); required when there are tombstones.',
    )
    back.add_argument(
        '--gdpr_store_url',
        default=None,
        help='The live GDPR store (its tombstones apply too: erasures since the backup that '
        'were not logged to this archive).',
    )
    back.add_argument('--gdpr_schema', default='public', help="The live GDPR store's schema.")
    cut = command('prune', 'Delete old backups.', database=True, required_db=False)
    cut.add_argument('--keep', type=int, required=True, help='Newest backups kept per schema.')
    cut.add_argument('--dry_run', action='store_true', help='Show what would be deleted.')
    listing = command('list', 'List the backups of an archive.', database=False)
    listing.add_argument('--pg_schema', default=None, help='Only backups of this schema.')
    return parser


def format_backups(manifests: list[Manifest]) -> str:
    rows = [('backup_id', 'mode', 'parent_id', 'schema', 'rows', 'bytes', 'files', 'watermark')]
    for m in manifests:
        rows.append(
            (
                m.backup_id,
                m.mode,
                m.parent_id or '-',
                m.schema,
                f'{m.rows:,}',
                f'{m.bytes:,}',
                str(len(m.stored_here())),
                m.watermark_to,
            )
        )
    widths = [max(len(r[i]) for r in rows) for i in range(len(rows[0]))]
    return '\n'.join('  '.join(c.ljust(w) for c, w in zip(r, widths)).rstrip() for r in rows)


def run(argv: list[str] | None = None) -> int:
    """Runs one subcommand.

    Returns:
        0, or 1 when the backup, restore or prune failed (the reason on stderr).

    Raises:
        cli.UsageError: bad flags (exit status 2 through :func:`cli.main`).
    """
    argv = list(sys.argv[1:] if argv is None else argv)
    args, beam_args = _parser().parse_known_args(argv)
    # The archive is reached through Beam's filesystems, configured by the same flags as the
    # pipelines' (--s3_endpoint_url and the like); anything else is a typo.
    FileSystems.set_options(cli.parse_pipeline_args(beam_args))
    try:
        return _COMMANDS[args.command](args)
    except ValueError as exc:
        raise cli.UsageError(str(exc)) from None
    except BackupError as exc:
        print(f'{PROG}: error: {exc}', file=sys.stderr)
        return cli.EXIT_FAILED


def _run(args) -> int:
    m = run_backup(args.postgres_url, args.pg_schema, args.archive, args.mode, args.output_dir)
    print(
        f'{PROG}: {m.mode} backup {m.backup_id} of {m.schema}: {m.rows:,} rows, '
        f'{len(m.stored_here())} files, {m.bytes:,} bytes (parent {m.parent_id or "none"})'
    )
    return 0


def _pseudonym_keys(args):
    if not (args.gdpr_secrets_file or gdpr_secrets.ENV_VAR in os.environ):
        return None  # refused later only if there are tombstones to enforce
    try:
        return gdpr_secrets.load(args.gdpr_secrets_file).pseudonym_keys
    except gdpr_secrets.SecretsError as exc:
        raise cli.UsageError(str(exc)) from None


def _restore(args) -> int:
    live = connect(args.gdpr_store_url) if args.gdpr_store_url else None
    try:
        enforcer = TombstoneEnforcer(_pseudonym_keys(args), args.archive, live, args.gdpr_schema)
        summary = restore(
            args.backup_id,
            args.archive,
            args.postgres_url,
            args.pg_schema,
            args.output_dir,
            after_restore=enforcer,
            allow_nonempty=args.allow_nonempty,
        )
    finally:
        if live is not None:
            live.close()
    chain = ' -> '.join(summary['chain'])
    print(f'{PROG}: restored {chain} into {summary["schema"]}')
    for table, rows in summary['rows_loaded'].items():
        print(f'  {table:<20} {rows:>12,} rows')
    print(f'  files: {len(summary["files"])}')
    enforced = summary.get('after_restore') or {}
    if enforced.get('tombstones'):
        print(f'  tombstones enforced: {orjson.dumps(enforced).decode()}')
    return 0


def _prune(args) -> int:
    result = prune(args.archive, args.keep, args.postgres_url, args.pg_schema, args.dry_run)
    verb = 'would delete' if args.dry_run else 'deleted'
    print(
        f'{PROG}: kept {len(result["kept"])}, {verb} {len(result["deleted"])} backups'
        + (f', marked {result["marked"]} job rows pruned' if result['marked'] else '')
    )
    for backup_id in result['deleted']:
        print(f'  {backup_id}')
    return 0


def _list(args) -> int:
    manifests = [
        m for m in list_manifests(archive.root(args.archive)) if args.pg_schema in (None, m.schema)
    ]
    print(format_backups(manifests))
    return 0


_COMMANDS = {'run': _run, 'restore': _restore, 'prune': _prune, 'list': _list}
