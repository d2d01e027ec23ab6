"""``make bench``: the flagship against its baselines, in one run, on the same generated input.

Generates N realistic dirty events (mixed timestamp formats, malformed and invalid records,
duplicates) and the same N clean (one timestamp format, no bad records), once, then runs, each
as a separate process timed end to end (start-up included) with its peak RSS:

* the flagship on the DirectRunner: one worker, ``--direct_num_workers=2``, with PostgreSQL and
  Redis sinks (when they answer; ``BEAM_PIPELINES_BENCH_PG_URL`` / ``..._REDIS_URL``), on the
  clean input, on the same events as Parquet;
* baselines: a per-element Beam pipeline doing the same work
  (:mod:`beam_pipelines.baselines.per_element`), the hand-written single-process script
  (:mod:`beam_pipelines.baselines.plain_script`: orjson per line, a set for dedup, pyarrow
  group-by), and the raw pyarrow ceiling on clean input
  (:mod:`beam_pipelines.baselines.arrow_ceiling`);
* the anomaly stage alone (:mod:`beam_pipelines.bench_anomaly`), points/s on one core;
* the local continuous mode at 10k events/s for 30 s, p50/p95 from send to visible in Redis
  (:mod:`beam_pipelines.bench_latency`; when Redis answers);
* with ``--sizes``, the ratio cases again at each size (Beam's fixed cost, about 3 s of imports
  and runner set-up per process, weighs less as the input grows, so every ratio is a function of
  the size); with ``--cardinalities`` too, the flagship over the grid of sizes and key
  cardinalities, so the cost curve (throughput, peak RSS) is visible.

Prints the figures, the ratios and the issue's targets, and writes ``bench_out/results.json``.
A command, not a test: figures vary with the machine; the ratios in one run are the point.

    python -m beam_pipelines.bench --events 1M [--sizes 1M,5M,20M --cardinalities 1k,100k,1M]
"""

from __future__ import annotations

import argparse
import json
import os
import re
import subprocess
import sys
import tempfile
import time
import uuid

import pyarrow.parquet as pq

__all__ = ['main']

PG_URL = os.environ.get('BEAM_PIPELINES_BENCH_PG_URL', 'postgresql://127.0.0.1:5432/test')
REDIS_URL = os.environ.get('BEAM_PIPELINES_BENCH_REDIS_URL', 'redis://127.0.0.1:6379/0')
# (name, numerator, denominator, target): ratios of events/s measured in the same run.
TARGETS = (
    ('flagship / per-element Beam', 'flagship', 'per_element', 25.0),
    ('flagship / hand-written script', 'flagship', 'plain_script', 1.0),
    ('flagship clean / pyarrow ceiling', 'flagship_clean', 'arrow_ceiling', 0.4),
    ('2 workers / 1 worker', 'flagship_2_workers', 'flagship', 1.6),
    ('with sinks / files only', 'flagship_sinks', 'flagship', 0.5),
)


def _count(text: str) -> int:
    """``1M``, ``100k``, ``20000`` -> an int."""
    text = text.strip().lower()
    scale = {'k': 1_000, 'm': 1_000_000}.get(text[-1:], 1)
    return int(float(text.rstrip('km')) * scale)


def _run(name: str, argv: list[str], events: int) -> dict:
    """Runs one process; times it end to end and reads its peak RSS."""
    with tempfile.TemporaryFile('w+') as out, tempfile.TemporaryFile('w+') as err:
        started = time.perf_counter()
        proc = subprocess.Popen([sys.executable, *argv], stdout=out, stderr=err, text=True)
        _, status, usage = os.wait4(proc.pid, 0)
        seconds = time.perf_counter() - started
        out.seek(0)
        err.seek(0)
        stdout, stderr = out.read(), err.read()
    code = os.waitstatus_to_exitcode(status)
    if code != 0:
        raise SystemExit(f'bench: {name} failed ({code}):\n{stderr[-2000:]}')
    # The launchers print their own run time, which excludes interpreter start-up and imports.
    found = re.search(r' in ([0-9.]+) s ', stdout)
    run_seconds = float(found.group(1)) if found else None
    return {
        'name': name,
        'events': events,
        'seconds': round(seconds, 3),
        'events_per_sec': round(events / seconds),
        'run_seconds': run_seconds,
        'run_events_per_sec': round(events / run_seconds) if run_seconds else None,
        'peak_rss_mb': round(usage.ru_maxrss / 1024),
        'stdout_tail': stdout.strip().splitlines()[-4:],
    }


def _median(repeat: int, name: str, argv: list[str], events: int) -> dict:
    """Runs ``repeat`` times and keeps the median run (timings vary run to run on shared VMs)."""
    return _median_of(repeat, lambda: _run(name, argv, events))


def _median_of(repeat: int, measure) -> dict:
    """The median of ``repeat`` calls of ``measure()`` by seconds, with every run's seconds."""
    runs = sorted((measure() for _ in range(repeat)), key=lambda r: r['seconds'])
    median = runs[len(runs) // 2]
    median['all_seconds'] = [r['seconds'] for r in runs]
    return median


def _generate(work_dir: str, events: int, entities: int, seed: int, fmt: str, clean=False):
    """Seeded events, generated once per (size, cardinality, kind)."""
    kind = 'clean' if clean else 'dirty'
    path = os.path.join(work_dir, f'events-{events}-{entities}-{seed}-{kind}.{fmt}')
    if not os.path.exists(path):
        command = [
            *(sys.executable, '-m', 'beam_pipelines.generate_events'),
            *('--events', str(events), '--seed', str(seed), '--entities', str(entities)),
            *('--output', path),
            *(['--clean'] if clean else []),
        ]
        subprocess.run(command, check=True)
    return path


def _lines(path: str) -> int:
    with open(path, 'rb') as f:
        return sum(1 for line in f if line.strip())


def _head(path: str, n: int, work_dir: str) -> tuple[str, int]:
    """The first ``n`` lines (the slow per-element baseline's rate barely depends on size)."""
    out = os.path.join(work_dir, f'head-{n}-{os.path.basename(path)}')
    with open(path, 'rb') as src, open(out, 'wb') as dst:
        for i, line in enumerate(src):
            if i >= n:
                break
            dst.write(line)
    return out, _lines(out)


def _services() -> bool:
    try:
        import psycopg2
        import redis

        psycopg2.connect(PG_URL, connect_timeout=3).close()
        redis.Redis.from_url(REDIS_URL, socket_connect_timeout=3).ping()
        return True
    except Exception:
        return False


def _sinks_case(args, data: str, lines: int, out: str) -> dict:
    """The flagship with both sinks, each run loading an empty schema and key prefix (a first
    load; a re-run of the same input, which updates every row, is slower)."""
    return _median_of(args.repeat, lambda: _sinks_run(data, lines, out))


def _sinks_run(data: str, lines: int, out: str) -> dict:
    import psycopg2
    import redis

    schema, prefix = f'bench_{uuid.uuid4().hex[:8]}', f'bench:{uuid.uuid4().hex[:8]}:'
    argv = [
        *('-m', 'beam_pipelines.event_analytics', '--input', data, '--output_dir', out),
        *('--postgres_url', PG_URL, '--pg_schema', schema),
        *('--redis_url', REDIS_URL, '--redis_prefix', prefix, '--no_report'),
    ]
    try:
        return _run('flagship_sinks', argv, lines)
    finally:
        with psycopg2.connect(PG_URL) as conn, conn.cursor() as cur:
            cur.execute(f'DROP SCHEMA IF EXISTS "{schema}" CASCADE')
        conn.close()
        client = redis.Redis.from_url(REDIS_URL)
        for key in client.scan_iter(f'{prefix}*', count=10_000):
            client.delete(key)


def _anomaly_case(points: int) -> dict:
    started = time.perf_counter()
    result = subprocess.run(
        [sys.executable, '-m', 'beam_pipelines.bench_anomaly', '--points', str(points)],
        check=True,
        capture_output=True,
        text=True,
    )
    measured = json.loads(result.stdout.strip().splitlines()[-1])
    batch, streaming = measured['batch'], measured['streaming']
    return {
        'name': 'anomaly_stage',
        'events': measured['points'],
        'seconds': round(time.perf_counter() - started, 3),
        'events_per_sec': batch['points_per_sec_per_core'],
        'run_seconds': batch['seconds'],
        'run_events_per_sec': batch['points_per_sec_per_core'],
        'streaming_events_per_sec': streaming['points_per_sec_per_core'],
        'peak_rss_mb': measured['peak_rss_mb'],
    }


def _latency_case() -> dict:
    result = subprocess.run(
        [sys.executable, '-m', 'beam_pipelines.bench_latency', '--rate', '10000',
         '--seconds', '30', '--every', '1s'],
        check=True, capture_output=True, text=True,
    )  # fmt: skip
    found = re.search(r'p50 ([0-9.]+) s, p95 ([0-9.]+) s, max ([0-9.]+) s', result.stdout)
    return {
        'name': 'streaming_latency',
        'rate': 10_000,
        'p50_secs': float(found.group(1)) if found else None,
        'p95_secs': float(found.group(2)) if found else None,
        'max_secs': float(found.group(3)) if found else None,
        'stdout_tail': result.stdout.strip().splitlines()[-2:],
    }


def _flagship_cases(args, size: int, entities: int, repeat: int) -> list[dict]:
    """The cases whose ratios the targets name, all on inputs of ``size`` events: the flagship
    (1 and 2 workers, clean input), the hand-written script and the pyarrow ceiling."""
    out = os.path.join(args.work_dir, 'out', f'{size}-{entities}')
    dirty = _generate(args.work_dir, size, entities, args.seed, 'jsonl')
    clean = _generate(args.work_dir, size, entities, args.seed, 'jsonl', clean=True)
    lines, clean_lines = _lines(dirty), _lines(clean)
    flagship = ['-m', 'beam_pipelines.event_analytics', '--no_report']
    two_workers = ['--direct_num_workers=2', '--direct_running_mode=multi_processing']
    cases = [
        ('flagship', [*flagship, '--input', dirty, '--output_dir', f'{out}/w1'], lines),
        (
            'flagship_2_workers',
            [*flagship, '--input', dirty, '--output_dir', f'{out}/w2', *two_workers],
            lines,
        ),
        (
            'flagship_clean',
            [*flagship, '--input', clean, '--output_dir', f'{out}/clean'],
            clean_lines,
        ),
        (
            'plain_script',
            [
                '-m',
                'beam_pipelines.baselines.plain_script',
                '--input',
                dirty,
                '--output_dir',
                f'{out}/plain',
            ],
            lines,
        ),
        (
            'arrow_ceiling',
            [
                '-m',
                'beam_pipelines.baselines.arrow_ceiling',
                '--input',
                clean,
                '--output_dir',
                f'{out}/arrow',
            ],
            clean_lines,
        ),
    ]
    return [_median(repeat, name, argv, n) for name, argv, n in cases]


def _ratios(by_name: dict[str, dict]) -> list[dict]:
    """The targets' ratios of events/s (whole process) among the cases measured."""
    return [
        {
            'name': name,
            'measured': round(by_name[a]['events_per_sec'] / by_name[b]['events_per_sec'], 2),
            'target': target,
            'met': by_name[a]['events_per_sec'] / by_name[b]['events_per_sec'] >= target,
        }
        for name, a, b, target in TARGETS
        if a in by_name and b in by_name
    ]


def _size_sweep(args, per_element: dict) -> list[dict]:
    """The ratio cases again at every ``--sizes`` size (one run each): Beam's fixed cost (about
    3 s of imports and runner set-up per process) weighs less as the input grows."""
    rows = []
    for size in args.sizes:
        results = _flagship_cases(args, size, args.entities, 1)
        by_name = {r['name']: r for r in results} | {'per_element': per_element}
        rows.append({'size': size, 'results': results, 'ratios': _ratios(by_name)})
    return rows


def _sweep(args, sizes: list[dict]) -> list[dict]:
    """The flagship over sizes x cardinalities (the cost curve); the runs at ``--entities``
    are the size sweep's."""
    measured = {
        row['size']: next(r for r in row['results'] if r['name'] == 'flagship') for row in sizes
    }
    rows = []
    for size in args.sizes:
        for entities in args.cardinalities:
            if entities == args.entities and size in measured:
                rows.append({**measured[size], 'size': size, 'entities': entities})
                continue
            data = _generate(args.work_dir, size, entities, args.seed, 'jsonl')
            out = os.path.join(args.work_dir, 'out', f'sweep-{size}-{entities}')
            argv = ['-m', 'beam_pipelines.event_analytics', '--input', data, '--output_dir', out]
            result = _run(f'flagship {size:,} x {entities:,}', [*argv, '--no_report'], _lines(data))
            rows.append({**result, 'size': size, 'entities': entities})
    return rows


def _print(results: list[dict], ratios: list[dict], sweep: list[dict], latency, sizes) -> None:
    _print_results(results)
    print(f'\n{"ratio (events/s, whole process)":<36} {"measured":>9} {"target":>8}')
    for r in ratios:
        mark = 'met' if r['met'] else 'NOT met'
        print(f'{r["name"]:<36} {r["measured"]:>8.2f}x {r["target"]:>7.2f}x  {mark}')
    if latency:
        print(
            f'\nstreaming (local continuous mode, 10k events/s): p50 {latency["p50_secs"]} s, '
            f'p95 {latency["p95_secs"]} s (target p95 < 5 s)'
        )
    for row in sizes:
        print(f'\n--- {row["size"]:,} events ---')
        _print_results(row['results'])
        for r in row['ratios']:
            mark = 'met' if r['met'] else 'NOT met'
            print(f'{r["name"]:<36} {r["measured"]:>8.2f}x {r["target"]:>7.2f}x  {mark}')
    if sweep:
        print(
            f'\n{"size x entities":<26} {"events/s":>10} {"run-only ev/s":>14} {"peak RSS MB":>12}'
        )
        for r in sweep:
            print(
                f'{r["size"]:>11,} x {r["entities"]:>11,} {r["events_per_sec"]:>10,} '
                f'{r["run_events_per_sec"] or 0:>14,} {r["peak_rss_mb"]:>12,}'
            )


def _print_results(results: list[dict]) -> None:
    print(
        f'\n{"case":<22} {"events":>11} {"seconds":>8} {"events/s":>10} {"run-only ev/s":>14} '
        f'{"peak RSS MB":>12}'
    )
    for r in results:
        run_only = f'{r["run_events_per_sec"]:,}' if r.get('run_events_per_sec') else '-'
        print(
            f'{r["name"]:<22} {r["events"]:>11,} {r["seconds"]:>8.1f} {r["events_per_sec"]:>10,} '
            f'{run_only:>14} {r["peak_rss_mb"]:>12,}'
        )


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog='bench', description=__doc__.split('\n\n')[0])
    parser.add_argument('--events', type=_count, default=1_000_000)
    parser.add_argument('--entities', type=_count, default=10_000)
    parser.add_argument('--seed', type=int, default=1)
    parser.add_argument('--work_dir', default='bench_out')
    parser.add_argument('--repeat', type=int, default=3, help='Runs per flagship case (median).')
    parser.add_argument(
        '--baseline_events',
        type=_count,
        default=200_000,
        help='Run the (slow) per-element baseline on the first N lines only (0: all).',
    )
    parser.add_argument('--anomaly_points', type=_count, default=200_000)
    parser.add_argument(
        '--sinks', choices=('auto', 'on', 'off'), default='auto', help='The PostgreSQL+Redis case.'
    )
    parser.add_argument(
        '--latency',
        choices=('auto', 'on', 'off'),
        default='auto',
        help='The 30 s streaming case (needs Redis; auto: when the services answer).',
    )
    parser.add_argument(
        '--sizes', type=lambda t: [_count(x) for x in t.split(',')], default=[], help='1M,5M,20M'
    )
    parser.add_argument(
        '--cardinalities',
        type=lambda t: [_count(x) for x in t.split(',')],
        default=None,
        help='Entities per sweep size (default: --entities), e.g. 1k,100k,1M.',
    )
    args = parser.parse_args(argv)
    args.cardinalities = args.cardinalities or [args.entities]
    os.makedirs(args.work_dir, exist_ok=True)
    out = os.path.join(args.work_dir, 'out')
    results = _flagship_cases(args, args.events, args.entities, args.repeat)
    dirty = _generate(args.work_dir, args.events, args.entities, args.seed, 'jsonl')
    lines = _lines(dirty)
    parquet = _generate(args.work_dir, args.events, args.entities, args.seed, 'parquet')
    results.append(
        _median(
            args.repeat,
            'flagship_parquet',
            [
                *('-m', 'beam_pipelines.event_analytics', '--no_report'),
                *('--input', parquet, '--output_dir', f'{out}/parquet'),
            ],
            pq.ParquetFile(parquet).metadata.num_rows,
        )
    )
    services = _services()
    if args.sinks == 'on' or (args.sinks == 'auto' and services):
        results.append(_sinks_case(args, dirty, lines, f'{out}/sinks'))
    head, head_lines = (
        _head(dirty, args.baseline_events, args.work_dir)
        if args.baseline_events and args.baseline_events < lines
        else (dirty, lines)
    )
    per_element = _run(
        'per_element',
        [
            *('-m', 'beam_pipelines.baselines.per_element', '--input', head),
            *('--output_dir', f'{out}/per_element', '--validation', 'light'),
        ],
        head_lines,
    )
    results += [per_element, _anomaly_case(args.anomaly_points)]
    ratios = _ratios({r['name']: r for r in results})
    anomaly = results[-1]['events_per_sec']
    ratios.append(
        {
            'name': 'anomaly stage, points/s per core',
            'measured': round(anomaly / 50_000, 2),
            'target': 1.0,
            'met': anomaly >= 50_000,
            'points_per_sec': anomaly,
            'streaming_points_per_sec': results[-1]['streaming_events_per_sec'],
        }
    )
    wants_latency = args.latency == 'on' or (args.latency == 'auto' and services)
    latency = _latency_case() if wants_latency else None
    sizes = _size_sweep(args, per_element) if args.sizes else []
    sweep = _sweep(args, sizes) if args.sizes else []
    report = {
        'events': lines,
        'entities': args.entities,
        'cpus': os.cpu_count(),
        'results': results,
        'ratios': ratios,
        'latency': latency,
        'sizes': sizes,
        'sweep': sweep,
    }
    with open(os.path.join(args.work_dir, 'results.json'), 'w') as f:
        json.dump(report, f, indent=2)
    _print(results, ratios, sweep, latency, sizes)
    print(
        '\nseconds and events/s: the whole process (interpreter start-up and imports included), '
        f"median of {args.repeat} runs; run-only: the launcher's own timing of its run."
        f'\nresults: {os.path.join(args.work_dir, "results.json")}'
    )
    return 0


if __name__ == '__main__':
    sys.exit(main())
