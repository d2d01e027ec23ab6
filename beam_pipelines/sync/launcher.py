"""``python -m beam_pipelines.sync``: flags in, one sync run (or one every ``--every``) out.

Exit status: 0 when every run succeeded (failed rows are dead-lettered, not errors), 2 for
usage errors (bad flags; a missing source table, destination table or ``sync_jobs`` table; a
bad key; another run of the same sync holding its lock), 1 when a run failed (a server out of
reach, retries exhausted, ...).
"""

from __future__ import annotations

import logging
import re
import sys
import time

import psycopg2
import redis

from beam_pipelines import cli
from beam_pipelines.redaction import redact
from beam_pipelines.sync.mapping import Mapping
from beam_pipelines.sync.mapping import load_transform
from beam_pipelines.sync.mapping import parse_pairs
from beam_pipelines.sync.retry import RetryPolicy
from beam_pipelines.sync.runner import MODES
from beam_pipelines.sync.runner import JobResult
from beam_pipelines.sync.runner import SyncConfig
from beam_pipelines.sync.runner import SyncError
from beam_pipelines.sync.runner import sync_once

__all__ = ['PROG', 'format_result', 'parse_config', 'run']

_LOGGER = logging.getLogger(__name__)
PROG = 'beam_pipelines.sync'
_NAME = re.compile(r'^[A-Za-z0-9_.-]{1,100}$')


def _parser():
    p = cli.ArgumentParser(prog=f'python -m {PROG}', allow_abbrev=False)
    p.add_argument('--name', required=True, help='Identifies the sync (its job records).')
    p.add_argument('--source_url', required=True, help='libpq URL of the source database.')
    p.add_argument('--source_schema', default='public', help='Schema of the source table.')
    p.add_argument('--source_table', required=True, help='The table to keep in step.')
    p.add_argument('--key', default=None, help='Key columns a,b (default: the primary key).')
    p.add_argument('--dest_url', required=True, help='postgresql://... or redis://...')
    p.add_argument('--dest_schema', default=None, help='PostgreSQL destination schema.')
    p.add_argument('--dest_table', default=None, help='Destination table (or Redis key part).')
    p.add_argument('--create_table', action='store_true', help='Create a missing dest table.')
    p.add_argument('--mode', choices=MODES, default='watermark', help='How changes are found.')
    p.add_argument('--watermark_column', default='loaded_at', help='timestamptz set on write.')
    p.add_argument('--slot', default=None, help='CDC replication slot (default bp_sync_NAME).')
    p.add_argument('--batch_rows', type=int, default=10_000, help='Rows per batch.')
    p.add_argument('--rename', default=None, help='Renames old=new,...')
    p.add_argument('--columns', default=None, help='Destination columns to keep, a,b,c.')
    p.add_argument('--cast', default=None, help='Arrow casts col=type,... (after --rename).')
    p.add_argument('--transform', default=None, help='module:function, Table -> Table.')
    p.add_argument('--dead_letter_file', default=None, help='JSON Lines file for failed rows.')
    p.add_argument('--jobs_schema', default=None, help='Schema of sync_jobs (source schema).')
    p.add_argument('--max_retries', type=int, default=5, help='Retries of a failed write.')
    p.add_argument('--ttl_secs', type=int, default=None, help='Redis: expiry of each hash.')
    p.add_argument('--key_prefix', default='bp:', help='Redis: prefix before the table name.')
    p.add_argument(
        '--redis_timeout_secs', type=float, default=10.0, help='Redis: a command lost after.'
    )
    p.add_argument('--full', action='store_true', help='Re-sync everything.')
    p.add_argument('--every', default=None, help="Run again every interval ('30s', '5m').")
    p.add_argument('--runs', type=int, default=None, help='With --every: stop after N runs.')
    return p


def _names(text: str | None) -> tuple[str, ...]:
    return tuple(filter(None, (x.strip() for x in (text or '').split(','))))


def parse_config(argv: list[str]) -> tuple[SyncConfig, float | None, int | None]:
    """The sync's configuration, ``--every`` in seconds (or None) and ``--runs``.

    Raises:
        cli.UsageError: bad flags.
    """
    args = _parser().parse_args(cli._explicit_booleans(_parser(), argv))
    if not _NAME.match(args.name):
        raise cli.UsageError(f'--name must match [A-Za-z0-9_.-]{{1,100}}, got {args.name!r}')
    if args.max_retries < 0:
        raise cli.UsageError(f'--max_retries must be >= 0, got {args.max_retries}')
    every = None if args.every is None else cli.duration_secs(args.every, '--every')
    if args.runs is not None and (every is None or args.runs < 1):
        raise cli.UsageError('--runs needs --every and must be >= 1')
    try:
        mapping = Mapping(
            rename=parse_pairs(args.rename, '--rename'),
            casts=parse_pairs(args.cast, '--cast'),
            transform=load_transform(args.transform) if args.transform else None,
            columns=_names(args.columns),
        )
        config = SyncConfig(
            name=args.name,
            source_url=args.source_url,
            source_schema=args.source_schema,
            source_table=args.source_table,
            key=_names(args.key),
            dest_url=args.dest_url,
            dest_schema=args.dest_schema,
            dest_table=args.dest_table,
            create_table=args.create_table,
            mode=args.mode,
            watermark_column=args.watermark_column,
            slot=args.slot,
            batch_rows=args.batch_rows,
            mapping=mapping,
            dead_letter_file=args.dead_letter_file,
            jobs_schema=args.jobs_schema,
            retry=RetryPolicy(attempts=args.max_retries + 1),
            ttl_secs=args.ttl_secs,
            key_prefix=args.key_prefix,
            redis_timeout_secs=args.redis_timeout_secs,
            full=args.full,
        )
    except ValueError as exc:
        raise cli.UsageError(str(exc)) from None
    return config, every, args.runs


def format_result(config: SyncConfig, job: JobResult) -> str:
    rate = job.rows_read / job.seconds if job.seconds > 0 else 0.0
    return (
        f'sync {config.name}: read {job.rows_read:,}, written {job.rows_written:,}, '
        f'failed {job.rows_failed:,} in {job.seconds:.1f} s ({rate:,.0f} rows/s); '
        f'watermark {job.watermark_from or "-"} -> {job.watermark_to}; lag {job.lag_secs:.1f} s; '
        f'retries {job.retries}; job {job.job_id}'
        + (f'; dead letters in {job.dead_letters}' if job.rows_failed else '')
    )


def _once(config: SyncConfig) -> JobResult:
    try:
        return sync_once(config)
    except SyncError as exc:
        raise cli.UsageError(str(exc)) from None
    except (psycopg2.OperationalError, redis.ConnectionError) as exc:
        raise RuntimeError(redact(str(exc).strip())) from None


def run(argv: list[str] | None = None) -> int:
    """Parses flags and runs the sync once, or every ``--every`` until ``--runs`` (or forever).

    Returns:
        The exit status (see the module docstring); the loop stops at the first failed run.
    """
    config, every, runs = parse_config(list(sys.argv[1:] if argv is None else argv))
    _LOGGER.info(
        'sync %s: %s -> %s', config.name, config.describe_source(), config.describe_destination()
    )
    done = 0
    next_start = time.monotonic()
    while True:
        print(format_result(config, _once(config)), flush=True)
        done += 1
        if every is None or (runs is not None and done >= runs):
            return 0
        next_start += every
        time.sleep(max(0.0, next_start - time.monotonic()))
