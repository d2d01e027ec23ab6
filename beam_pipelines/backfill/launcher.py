"""``python -m beam_pipelines.backfill``: reruns a pipeline over date partitions.

::

    python -m beam_pipelines.backfill --pipeline event_analytics --from 2026-11-01 \\
        --to 2026-11-07 --parallelism 2 -- \\
        --input 'data/events/dt={date}/*.jsonl' --output_dir 'out/dt={date}' \\
        --postgres_url postgresql://127.0.0.1/test

Every flag after ``--`` goes to the pipeline with ``{date}`` (also ``{year}``, ``{month}``,
``{day}``, ``{hour}``, ``{partition}``) filled per partition. Reruns are idempotent: the pipeline
replaces a partition's output files and upserts the warehouse. Finished partitions are kept in
``--record``; running the same backfill again does only those that did not succeed (``--force``
does all). The exit status is 0 only when every partition succeeded.
"""

from __future__ import annotations

import os
import sys

from beam_pipelines import cli
from beam_pipelines import launchers
from beam_pipelines.backfill.partitions import STEPS
from beam_pipelines.backfill.partitions import fill
from beam_pipelines.backfill.partitions import parse_day
from beam_pipelines.backfill.partitions import partitions
from beam_pipelines.backfill.record import Record
from beam_pipelines.backfill.record import args_digest
from beam_pipelines.backfill.runner import Job
from beam_pipelines.backfill.runner import run_all

__all__ = ['plan', 'run']

PROG = 'backfill'
STATE_DIR = 'backfill_state'


def _parser():
    parser = cli.ArgumentParser(prog=f'python -m beam_pipelines.{PROG}', allow_abbrev=False)
    names = [x.name for x in launchers.BEAM_PIPELINES]
    parser.add_argument('--pipeline', required=True, choices=names, help='Launcher to rerun.')
    parser.add_argument('--from', dest='start', required=True, help='First partition.')
    parser.add_argument('--to', dest='end', required=True, help='Last partition (included).')
    parser.add_argument('--step', choices=sorted(STEPS), default='daily', help='Partition size.')
    parser.add_argument('--parallelism', type=int, default=1, help='Partitions run at once.')
    parser.add_argument('--retries', type=int, default=1, help='Reruns of a failed partition.')
    parser.add_argument('--record', default=None, help='Record of finished partitions.')
    parser.add_argument('--logs_dir', default=None, help='One log file per partition.')
    parser.add_argument('--force', action='store_true', help='Rerun finished partitions too.')
    parser.add_argument('--dry_run', action='store_true', help='Print the commands only.')
    return parser


def plan(pipeline_args: list[str], start, end, step: str) -> list[Job]:
    """One job per partition, with its arguments filled.

    Raises:
        cli.UsageError: bad dates, unknown fields, or no argument naming the partition.
    """
    try:
        parts = partitions(start, end, step)
        jobs = []
        for p in parts:
            args = [fill(a, p) for a in pipeline_args]
            jobs.append(Job(p, args, args_digest(args)))
    except ValueError as exc:
        raise cli.UsageError(str(exc)) from None
    if len(jobs) > 1 and jobs[0].args == jobs[1].args:
        # Every partition would read and overwrite the same thing.
        raise cli.UsageError(
            'no pipeline flag names the partition: use {date} (or {year}, {month}, {day}, '
            "{hour}), e.g. --input 'events/dt={date}/*.jsonl' --output_dir 'out/dt={date}'"
        )
    return jobs


def run(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    if '--' in argv:
        cut = argv.index('--')
        args, pipeline_args = _parser().parse_args(argv[:cut]), argv[cut + 1 :]
    else:
        args, pipeline_args = _parser().parse_known_args(argv)
    if args.parallelism < 1 or args.retries < 0:
        raise cli.UsageError('--parallelism must be at least 1 and --retries at least 0')
    try:
        start = parse_day(args.start, args.step)
        end = parse_day(args.end, args.step)
    except ValueError as exc:
        raise cli.UsageError(str(exc)) from None
    jobs = plan(pipeline_args, start, end, args.step)
    module = launchers.get(args.pipeline).module
    if args.dry_run:
        for job in jobs:
            print(f'{job.partition.name}: python -m {module} {" ".join(job.args)}')
        return 0
    record = Record(args.record or os.path.join(STATE_DIR, f'{args.pipeline}.jsonl'))
    done = set() if args.force else record.done({j.partition.name: j.digest for j in jobs})
    todo = [j for j in jobs if j.partition.name not in done]
    print(
        f'{PROG}: {args.pipeline}: {len(jobs)} partition(s) {jobs[0].partition.name} .. '
        f'{jobs[-1].partition.name}; {len(jobs) - len(todo)} already done, {len(todo)} to run, '
        f'{args.parallelism} at a time (record: {record.path})',
        flush=True,
    )
    logs_dir = args.logs_dir or os.path.join(STATE_DIR, 'logs', args.pipeline)
    failed = run_all(module, todo, record, logs_dir, args.parallelism, args.retries)
    if failed:
        names = ', '.join(f'{job.partition.name} (exit {status})' for job, status in failed)
        print(
            f'{PROG}: {len(failed)} of {len(todo)} partition(s) failed: {names}; logs in '
            f'{logs_dir}; run the same command again to retry only those',
            file=sys.stderr,
        )
        return cli.EXIT_FAILED
    print(f'{PROG}: all {len(jobs)} partition(s) done')
    return 0
