"""Warehouse administration: ``python -m beam_pipelines.warehouse migrate --postgres_url URL``.

Creates the warehouse schema and applies any migration not applied yet (idempotent; safe to run
concurrently). The URL may leave parts out: libpq takes them from the ``PG*`` variables.
"""

from __future__ import annotations

import argparse
import sys

import psycopg2

from beam_pipelines.io.postgres import connect
from beam_pipelines.io.postgres import redact
from beam_pipelines.io.warehouse_schema import migrate

__all__ = ['main']


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog='warehouse', description=__doc__.split('\n\n')[0])
    commands = parser.add_subparsers(dest='command', required=True)
    run = commands.add_parser('migrate', help='create or upgrade the warehouse tables')
    run.add_argument(
        '--postgres_url',
        default='postgresql://',
        help='libpq URL or DSN (default: the PG* environment variables)',
    )
    run.add_argument('--pg_schema', default='public', help='database schema (default public)')
    args = parser.parse_args(argv)
    try:
        conn = connect(args.postgres_url)
    except psycopg2.Error as exc:
        print(
            f'warehouse: error: cannot connect to {redact(args.postgres_url)}: {exc}'.strip(),
            file=sys.stderr,
        )
        return 2
    try:
        applied = migrate(conn, args.pg_schema)
    except (psycopg2.Error, ValueError) as exc:
        print(f'warehouse: error: migration failed: {str(exc).strip()}', file=sys.stderr)
        return 1
    finally:
        conn.close()
    state = f'applied {applied}' if applied else 'already up to date'
    print(f'warehouse: schema {args.pg_schema!r} at {redact(args.postgres_url)}: {state}')
    return 0


if __name__ == '__main__':
    sys.exit(main())
