"""Warehouse administration: ``python -m beam_pipelines.warehouse migrate --postgres_url URL``,
and ``grant-readonly --role bp_reader`` for the read-only role of the ops API.

Creates the warehouse schema and applies any migration not applied yet (idempotent; safe to run
concurrently). The URL may leave parts out: libpq takes them from the ``PG*`` variables.
"""

from __future__ import annotations

import argparse
import sys

import psycopg2
from psycopg2 import sql

from beam_pipelines.io.postgres import connect
from beam_pipelines.io.postgres import ident
from beam_pipelines.io.postgres import redact
from beam_pipelines.io.warehouse_schema import migrate

__all__ = ['grant_readonly', 'main']


def grant_readonly(conn, schema: str, role: str) -> None:
    """Creates ``role`` (LOGIN, no other rights) if it does not exist and lets it SELECT from
    every table of ``schema``, present and future; idempotent. Identifiers are composed with
    ``psycopg2.sql``, never formatted in."""
    ident(schema)
    ident(role)
    r, s = sql.Identifier(role), sql.Identifier(schema)
    with conn, conn.cursor() as cur:
        cur.execute('SELECT 1 FROM pg_roles WHERE rolname = %s', (role,))
        if cur.fetchone() is None:
            cur.execute(
                sql.SQL('CREATE ROLE {} LOGIN NOSUPERUSER NOCREATEDB NOCREATEROLE').format(r)
            )
        cur.execute(sql.SQL('ALTER ROLE {} SET default_transaction_read_only = on').format(r))
        cur.execute(sql.SQL('GRANT USAGE ON SCHEMA {} TO {}').format(s, r))
        cur.execute(sql.SQL('GRANT SELECT ON ALL TABLES IN SCHEMA {} TO {}').format(s, r))
        cur.execute(
            sql.SQL('ALTER DEFAULT PRIVILEGES IN SCHEMA {} GRANT SELECT ON TABLES TO {}').format(
                s, r
            )
        )


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
    grant = commands.add_parser(
        'grant-readonly', help='create (if needed) a login role that can only read the schema'
    )
    grant.add_argument('--postgres_url', default='postgresql://', help='libpq URL (an admin)')
    grant.add_argument('--pg_schema', default='public', help='database schema (default public)')
    grant.add_argument('--role', required=True, help='the read-only role (e.g. bp_reader)')
    args = parser.parse_args(argv)
    try:
        conn = connect(args.postgres_url)
    except psycopg2.Error as exc:
        print(
            f'warehouse: error: cannot connect to {redact(args.postgres_url)}: {exc}'.strip(),
            file=sys.stderr,
        )
        return 2
    if args.command == 'grant-readonly':
        try:
            grant_readonly(conn, args.pg_schema, args.role)
        except (psycopg2.Error, ValueError) as exc:
            print(f'warehouse: error: grant failed: {str(exc).strip()}', file=sys.stderr)
            return 1
        finally:
            conn.close()
        print(f'warehouse: role {args.role!r} can read schema {args.pg_schema!r} and nothing else')
        return 0
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
