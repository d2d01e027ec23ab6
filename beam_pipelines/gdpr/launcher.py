"""``python -m beam_pipelines.gdpr``: keys, access, erasure, retention.

::

    python -m beam_pipelines.gdpr keygen --output secrets.json
    python -m beam_pipelines.gdpr rotate --ring pseudonym --gdpr_secrets_file secrets.json
    python -m beam_pipelines.gdpr rewrap --gdpr_secrets_file secrets.json --postgres_url ...
    python -m beam_pipelines.gdpr access --subject user-42 --output user-42.zip \\
        --postgres_url postgresql://... --redis_url redis://... --output_dir out
    python -m beam_pipelines.gdpr erase --subject user-42 --identifier a@example.com \\
        --postgres_url postgresql://... --redis_url redis://... --output_dir out
    python -m beam_pipelines.gdpr enforce --postgres_url postgresql://... --redis_url ... \\
        --output_dir out
    python -m beam_pipelines.gdpr retention --retention_days 90 --retention dead_letters=14 \\
        --postgres_url postgresql://... --output_dir out

Every command takes the flagship's store flags and acts on every store given. The secrets come
from ``--gdpr_secrets_file`` or ``$BP_GDPR_SECRETS``. Results print as JSON.
"""

from __future__ import annotations

import os
import sys

import orjson
import psycopg2
import redis

from beam_pipelines import cli
from beam_pipelines.gdpr import secrets as gdpr_secrets
from beam_pipelines.gdpr.access import export_subject
from beam_pipelines.gdpr.audit import audited
from beam_pipelines.gdpr.audit import requester
from beam_pipelines.gdpr.enforce import TombstoneEnforcer
from beam_pipelines.gdpr.erase import Stores
from beam_pipelines.gdpr.erase import erase_subject
from beam_pipelines.gdpr.erase import resolve_subject
from beam_pipelines.gdpr.keystore import KeyStore
from beam_pipelines.gdpr.retention import apply_retention
from beam_pipelines.gdpr.retention import parse_retention
from beam_pipelines.gdpr.stores.redis import enforce_redis
from beam_pipelines.gdpr.tombstones import load_tombstones
from beam_pipelines.io.postgres import connect
from beam_pipelines.io.postgres import ident
from beam_pipelines.io.warehouse_schema import migrate
from beam_pipelines.redaction import redact

__all__ = ['PROG', 'run']

PROG = 'beam_pipelines.gdpr'


def _store_flags(parser, warehouse_required: bool = True) -> None:
    parser.add_argument(
        '--postgres_url',
        required=warehouse_required,
        default=None,
        help='The warehouse (also holds the key store, tombstones and audit).',
    )
    parser.add_argument('--pg_schema', default='public', help='The warehouse schema.')
    parser.add_argument(
        '--gdpr_store_url',
        default=None,
        help="The pipelines' key store, tombstones and audit, when not the warehouse's.",
    )
    parser.add_argument('--gdpr_schema', default=None, help='Their schema (default: --pg_schema).')
    parser.add_argument('--redis_url', default=None, help='Redis (aggregates, features, streams).')
    parser.add_argument('--redis_prefix', default='bp:', help="Prefix of the pipelines' keys.")
    parser.add_argument(
        '--redis_stream',
        action='append',
        default=[],
        help='A Redis stream outside the prefix to search too, e.g. the ingestion stream '
        '(repeatable; streams below the prefix are always searched).',
    )
    parser.add_argument(
        '--output_dir',
        action='append',
        default=[],
        help='An output directory of the pipelines (repeatable; local, s3://, gs://).',
    )
    parser.add_argument(
        '--dead_letter_dir',
        action='append',
        default=[],
        help='Another dead-letter location, e.g. a quarantine bucket (repeatable).',
    )
    parser.add_argument('--gdpr_secrets_file', default=None, help='default: $BP_GDPR_SECRETS')
    parser.add_argument('--requested_by', default=None, help='Who asks (default: the OS user).')


def _subject_flags(parser) -> None:
    parser.add_argument('--subject', required=True, help="The subject's entity_id.")
    parser.add_argument(
        '--identifier',
        action='append',
        default=[],
        help='Another identifier of the subject: a value of a personal-data field such as an '
        'e-mail address (repeatable).',
    )
    parser.add_argument(
        '--pii_fields',
        default=None,
        help="The pipelines' personal-data fields: their values in the subject's events also "
        'identify it elsewhere.',
    )


def _parser():
    parser = cli.ArgumentParser(prog=f'python -m {PROG}', allow_abbrev=False)
    commands = parser.add_subparsers(dest='command', required=True, parser_class=cli.ArgumentParser)
    keygen = commands.add_parser('keygen', help='Write new secrets (one key per ring).')
    keygen.add_argument('--output', required=True, help='Where (created with mode 0600).')
    rotate = commands.add_parser('rotate', help='Add a key to a ring and make it active.')
    rotate.add_argument('--ring', choices=('pseudonym', 'master'), required=True)
    rotate.add_argument('--gdpr_secrets_file', required=True, help='Rewritten in place.')
    rewrap = commands.add_parser('rewrap', help='Re-wrap every data key with the active master.')
    _store_flags(rewrap)
    for name, text in (
        ('access', 'Export everything held on a subject (JSON and CSV).'),
        ('erase', 'Erase a subject from every store, with a tombstone and an audit record.'),
    ):
        command = commands.add_parser(name, help=text)
        _store_flags(command)
        _subject_flags(command)
        if name == 'access':
            command.add_argument('--output', required=True, help='A directory, or a .zip.')
        else:
            command.add_argument(
                '--archive',
                action='append',
                default=[],
                help='A backup archive (local, s3://, gs://) whose tombstone log gets this '
                'erasure, so restoring an older backup does not bring the subject back '
                '(repeatable).',
            )
            command.add_argument(
                '--settle_secs',
                type=float,
                default=0.0,
                help='Wait this long between writing the tombstones and deleting, so running '
                'pipelines (which reload tombstones every 60 s) stop writing the subject first.',
            )
    enforce = commands.add_parser(
        'enforce',
        help='Remove whatever a tombstone names from every store (after late writes, restores).',
    )
    _store_flags(enforce)
    retention = commands.add_parser('retention', help='Remove data past its retention.')
    _store_flags(retention, warehouse_required=False)
    retention.add_argument('--retention_days', type=float, default=None, help='Every dataset.')
    retention.add_argument(
        '--retention',
        action='append',
        default=[],
        help='DATASET=DAYS for one dataset (events, aggregates, anomalies, dead_letters, '
        'quality); repeatable.',
    )
    retention.add_argument('--dry_run', action='store_true', help='Report only.')
    return parser


def _secrets(path: str | None) -> gdpr_secrets.GdprSecrets:
    try:
        return gdpr_secrets.load(path)
    except gdpr_secrets.SecretsError as exc:
        raise cli.UsageError(str(exc)) from None


def _connect(url: str, schema: str, flag: str):
    try:
        ident(schema)
        conn = connect(url)
    except (psycopg2.Error, ValueError) as exc:
        raise cli.UsageError(f'{flag} {redact(url)}: {exc}') from None
    migrate(conn, schema)
    return conn


def _stores(args) -> Stores:
    conn = gdpr_conn = None
    if args.postgres_url is not None:
        conn = _connect(args.postgres_url, args.pg_schema, '--postgres_url')
    store_url = args.gdpr_store_url or args.postgres_url
    store_schema = args.gdpr_schema or args.pg_schema
    if store_url is not None and (store_url, store_schema) != (args.postgres_url, args.pg_schema):
        gdpr_conn = _connect(store_url, store_schema, '--gdpr_store_url')
    client = redis.Redis.from_url(args.redis_url) if args.redis_url else None
    if client is not None:
        try:
            client.ping()
        except redis.RedisError as exc:
            raise cli.UsageError(f'--redis_url {redact(args.redis_url)}: {exc}') from None
    return Stores(
        conn,
        args.pg_schema,
        client,
        args.redis_prefix,
        (*args.output_dir, *args.dead_letter_dir),
        gdpr_conn,
        store_schema,
        tuple(args.redis_stream),
    )


def _write_secrets(path: str, value: gdpr_secrets.GdprSecrets, replace: bool) -> None:
    """Writes secrets readable by their owner only: a new file, or (``replace``) a complete
    new version renamed over the old one, so a crash never leaves half a key file."""
    target = f'{path}.tmp' if replace else path
    try:
        fd = os.open(target, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    except FileExistsError:
        raise cli.UsageError(f'{target} exists: not overwriting secrets') from None
    with os.fdopen(fd, 'w') as f:
        f.write(value.to_json())
    if replace:
        os.replace(target, path)


def _print(result) -> None:
    print(orjson.dumps(result, option=orjson.OPT_INDENT_2, default=str).decode())


def run(argv: list[str] | None = None) -> int:
    args = _parser().parse_args(list(sys.argv[1:] if argv is None else argv))
    if args.command == 'keygen':
        _write_secrets(args.output, gdpr_secrets.generate(), replace=False)
        _print({'written': args.output})
        return 0
    if args.command == 'rotate':
        current = _secrets(args.gdpr_secrets_file)
        rotated = gdpr_secrets.rotate(current, args.ring)
        _write_secrets(args.gdpr_secrets_file, rotated, replace=True)
        ring = rotated.pseudonym_keys if args.ring == 'pseudonym' else rotated.master_keys
        _print({'ring': args.ring, 'active': ring.active, 'keys': sorted(ring.keys)})
        return 0
    stores = _stores(args)
    who = requester(args.requested_by)
    if args.command == 'retention':
        try:
            days = parse_retention(args.retention_days, args.retention)
        except ValueError as exc:
            raise cli.UsageError(str(exc)) from None
        if not days:
            raise cli.UsageError('give --retention_days or --retention DATASET=DAYS')
        if stores.conn is None:
            _print(
                apply_retention(
                    None, args.pg_schema, list(stores.output_dirs), days, dry_run=args.dry_run
                )
            )
            return 0
        with audited(stores.store, stores.store_schema, 'retention', who) as record:
            report = apply_retention(
                stores.conn, stores.schema, list(stores.output_dirs), days, dry_run=args.dry_run
            )
            record.counts = {'postgres': report['postgres'], 'files': report['files']}
            record.stores = ['postgres'] + (['files'] if stores.output_dirs else [])
        _print({'request_id': record.request_id, **report})
        return 0
    keys = _secrets(args.gdpr_secrets_file)
    if args.command == 'rewrap':
        with audited(stores.store, stores.store_schema, 'rewrap', who) as record:
            with stores.store:
                n = KeyStore(stores.store, stores.store_schema, keys.master_keys).rewrap()
            record.counts = {'postgres': {'data_keys': n}}
        _print({'request_id': record.request_id, 'rewrapped': n})
        return 0
    if args.command == 'enforce':
        with audited(stores.store, stores.store_schema, 'enforce', who) as record:
            enforcer = TombstoneEnforcer(
                keys.pseudonym_keys,
                tombstone_conn=stores.store,
                tombstone_schema=stores.store_schema,
            )
            with stores.conn:
                report = enforcer(stores.conn, stores.schema, stores.output_dirs)
            if stores.redis is not None:
                report['redis'] = enforce_redis(
                    stores.redis,
                    stores.redis_prefix,
                    enforcer.tombstones,
                    keys.pseudonym_keys,
                    stores.redis_streams,
                )
            record.counts = {k: v for k, v in report.items() if isinstance(v, dict)}
            record.stores = sorted(record.counts)
        _print({'request_id': record.request_id, **report})
        return 0
    try:
        load_tombstones(stores.store, stores.store_schema).check_keys(keys.pseudonym_keys)
    except gdpr_secrets.SecretsError as exc:
        raise cli.UsageError(str(exc)) from None
    fields = [f.strip() for f in (args.pii_fields or '').split(',') if f.strip()]
    try:
        subject = resolve_subject(
            stores, args.subject, args.identifier, keys.pseudonym_keys, fields
        )
    except ValueError as exc:
        raise cli.UsageError(str(exc)) from None
    if args.command == 'access':
        _print(export_subject(stores, subject, keys.master_keys, args.output, who))
    else:
        archives = tuple(args.archive)
        _print(erase_subject(stores, subject, keys.pseudonym_keys, who, archives, args.settle_secs))
    return 0
