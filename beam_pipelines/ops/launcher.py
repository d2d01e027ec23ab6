"""``python -m beam_pipelines.ops serve``: the ops API.

::

    python -m beam_pipelines.ops serve --port 8090 --token_file ops_tokens.txt \\
        --runs_root 'out*' --postgres_url postgresql://bp_reader@127.0.0.1/test

Tokens: one per line in ``--token_file`` (several while rotating), else the comma-separated
``BEAM_PIPELINES_OPS_TOKENS``; at least 16 bytes each. ``--postgres_url`` should name a
read-only role (``python -m beam_pipelines.warehouse grant-readonly --role bp_reader``); reads
run in read-only transactions anyway.
"""

from __future__ import annotations

import os
import sys

from aiohttp import web

from beam_pipelines import cli
from beam_pipelines.gdpr.config import GdprConfig
from beam_pipelines.gdpr.config import field_names
from beam_pipelines.gdpr.policy import PolicyError
from beam_pipelines.gdpr.policy import policy_from
from beam_pipelines.gdpr.secrets import ENV_VAR
from beam_pipelines.gdpr.secrets import SecretsError
from beam_pipelines.ingest.auth import load_secrets
from beam_pipelines.ops.app import OpsConfig
from beam_pipelines.ops.app import make_app
from beam_pipelines.options.input import DEFAULT_SCHEMA
from beam_pipelines.schema import SchemaError
from beam_pipelines.schema import compile_schema
from beam_pipelines.schema import load_model

__all__ = ['TOKENS_ENV', 'run']

PROG = 'beam_pipelines.ops'
TOKENS_ENV = 'BEAM_PIPELINES_OPS_TOKENS'


def _parser():
    parser = cli.ArgumentParser(prog=f'python -m {PROG}', allow_abbrev=False)
    commands = parser.add_subparsers(dest='command', required=True, parser_class=cli.ArgumentParser)
    serve = commands.add_parser('serve', help='Serve the ops API.')
    serve.add_argument('--host', default='127.0.0.1', help='Address to listen on.')
    serve.add_argument('--port', type=int, default=8090, help='Port to listen on.')
    serve.add_argument('--token_file', default=None, help=f'Tokens (default ${TOKENS_ENV}).')
    serve.add_argument('--runs_root', default='out', help='Glob of run output directories.')
    serve.add_argument('--postgres_url', default=None, help='The warehouse (a read-only role).')
    serve.add_argument('--pg_schema', default='public', help='The warehouse schema.')
    serve.add_argument(
        '--replay_postgres_url',
        default=None,
        help='The warehouse through a role that may write: enables POST /dead-letters/replay.',
    )
    serve.add_argument(
        '--pii_fields', default=None, help="The pipelines' pseudonymised fields (replays too)."
    )
    serve.add_argument(
        '--encrypt_fields', default=None, help="The pipelines' encrypted fields (replays too)."
    )
    serve.add_argument(
        '--gdpr_secrets_file', default=None, help='The GDPR secrets (default $BP_GDPR_SECRETS).'
    )
    serve.add_argument(
        '--gdpr_schema',
        default=None,
        help='Schema of the key store and tombstones, in the replay database (default '
        '--pg_schema).',
    )
    serve.add_argument(
        '--schema',
        default=DEFAULT_SCHEMA,
        help='The event schema replays validate against (module:Class, the fixed one).',
    )
    return parser


def _gdpr(args, event_schema) -> GdprConfig | None:
    """The replays' personal-data protection: the pipelines' own policy and secrets."""
    pii, encrypted = field_names(args.pii_fields), field_names(args.encrypt_fields)
    if not (pii or encrypted or args.gdpr_secrets_file or os.environ.get(ENV_VAR)):
        return None
    try:
        policy = policy_from(event_schema, pii, encrypted)
        config = GdprConfig(
            policy, args.gdpr_secrets_file, None, args.gdpr_schema or args.pg_schema
        )
        config.secrets()
    except (PolicyError, SecretsError) as exc:
        raise cli.UsageError(str(exc)) from None
    return config


def run(argv: list[str] | None = None) -> int:
    args = _parser().parse_args(list(sys.argv[1:] if argv is None else argv))
    try:
        tokens = load_secrets(args.token_file, env_name=TOKENS_ENV)
    except (OSError, ValueError) as exc:
        raise cli.UsageError(f'tokens: {exc}') from None
    try:
        event_schema = compile_schema(load_model(args.schema))
    except SchemaError as exc:
        raise cli.UsageError(str(exc)) from None
    config = OpsConfig(
        tokens,
        args.runs_root,
        args.postgres_url,
        args.pg_schema,
        args.replay_postgres_url,
        event_schema,
        gdpr=_gdpr(args, event_schema),
    )
    print(f'{PROG}: serving on http://{args.host}:{args.port} (OpenAPI: /openapi.json)', flush=True)
    web.run_app(make_app(config), host=args.host, port=args.port, print=None)
    return 0
