"""``make bench``: events/s of the flagship against a per-element Beam pipeline, same input.

Generates N realistic (dirty) events once, as JSON Lines, then runs as separate processes, each
timed end to end (start-up included) with its peak RSS:

* the flagship on the DirectRunner, one worker;
* the flagship with ``--direct_num_workers=2`` (multi-processing);
* the flagship on the same events as Parquet (no JSON decoding: the columnar path's ceiling);
* the per-element baseline (``beam_pipelines.baselines.per_element``) with hand-written checks,
  and with the pydantic model per record. Ratios are to the faster (hand-written) one.

Prints a table and writes ``bench_out/results.json``. A command, not a test: figures vary
with the machine; the ratios are the point.

    python -m beam_pipelines.bench --events 1000000
"""

from __future__ import annotations

import argparse
import json
import os
import re
import resource
import subprocess
import sys
import tempfile
import time

import pyarrow.parquet as pq

__all__ = ['main']


def _run(name: str, argv: list[str], events: int) -> dict:
    """Runs one pipeline process; times it end to end and reads its peak RSS."""
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
    # The flagship prints its own run time, which excludes interpreter start-up and imports.
    found = re.search(r' in ([0-9.]+) s ', stdout)
    pipeline_seconds = float(found.group(1)) if found else None
    return {
        'name': name,
        'events': events,
        'seconds': round(seconds, 3),
        'events_per_sec': round(events / seconds),
        'pipeline_seconds': pipeline_seconds,
        'pipeline_events_per_sec': round(events / pipeline_seconds) if pipeline_seconds else None,
        'peak_rss_mb': round(usage.ru_maxrss / 1024),
        'stdout_tail': stdout.strip().splitlines()[-4:],
    }


def _generate(args, fmt: str) -> str:
    """The same seeded events in ``fmt`` (Parquet has no malformed lines), generated once."""
    path = os.path.join(args.work_dir, f'events-{args.events}-{args.seed}.{fmt}')
    if not os.path.exists(path):
        command = [
            sys.executable,
            '-m',
            'beam_pipelines.generate_events',
            '--events',
            str(args.events),
            '--seed',
            str(args.seed),
            '--entities',
            '10000',
            '--output',
            path,
        ]
        subprocess.run(command, check=True)
    return path


def _median_run(repeat: int, name: str, argv: list[str], events: int) -> dict:
    """Runs ``repeat`` times and keeps the median run (timings vary run to run on shared VMs)."""
    runs = sorted((_run(name, argv, events) for _ in range(repeat)), key=lambda r: r['seconds'])
    median = runs[len(runs) // 2]
    median['all_seconds'] = [r['seconds'] for r in runs]
    return median


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog='bench', description=__doc__.split('\n\n')[0])
    parser.add_argument('--events', type=int, default=1_000_000)
    parser.add_argument('--seed', type=int, default=1)
    parser.add_argument('--work_dir', default='bench_out')
    parser.add_argument(
        '--repeat', type=int, default=3, help='Runs of each flagship configuration (median kept).'
    )
    parser.add_argument(
        '--baseline_events',
        type=int,
        default=200_000,
        help='Run the (slow) per-element baselines on the first N lines only (default 200000; '
        '0 for all): their events/s barely depends on the input size.',
    )
    args = parser.parse_args(argv)
    os.makedirs(args.work_dir, exist_ok=True)
    data = _generate(args, 'jsonl')
    parquet_data = _generate(args, 'parquet')
    parquet_rows = pq.ParquetFile(parquet_data).metadata.num_rows
    with open(data, 'rb') as f:
        lines = sum(1 for line in f if line.strip())
    base_data, base_lines = data, lines
    if args.baseline_events and args.baseline_events < lines:
        base_data = os.path.join(args.work_dir, f'baseline-{args.baseline_events}.jsonl')
        with open(data, 'rb') as src, open(base_data, 'wb') as dst:
            for i, line in enumerate(src):
                if i >= args.baseline_events:
                    break
                dst.write(line)
        base_lines = args.baseline_events
    out = os.path.join(args.work_dir, 'out')
    flagship = ['-m', 'beam_pipelines.event_analytics', '--input', data]
    results = [
        _median_run(
            args.repeat, 'flagship, 1 worker', [*flagship, '--output_dir', f'{out}/w1'], lines
        ),
        _median_run(
            args.repeat,
            'flagship, 2 workers',
            [
                *flagship,
                '--output_dir',
                f'{out}/w2',
                '--direct_num_workers=2',
                '--direct_running_mode=multi_processing',
            ],
            lines,
        ),
        _median_run(
            args.repeat,
            'flagship, Parquet input',
            [
                '-m',
                'beam_pipelines.event_analytics',
                '--input',
                parquet_data,
                '--output_dir',
                f'{out}/parquet',
            ],
            parquet_rows,
        ),
        _run(
            'per-element, light checks',
            [
                '-m',
                'beam_pipelines.baselines.per_element',
                '--input',
                base_data,
                '--output_dir',
                f'{out}/light',
                '--validation',
                'light',
            ],
            base_lines,
        ),
        _run(
            'per-element, pydantic',
            [
                '-m',
                'beam_pipelines.baselines.per_element',
                '--input',
                base_data,
                '--output_dir',
                f'{out}/pydantic',
            ],
            base_lines,
        ),
    ]
    # The faster per-element baseline makes the fair ratio.
    baseline = max(results[3]['events_per_sec'], results[4]['events_per_sec'])
    for r in results:
        r['x_baseline'] = round(r['events_per_sec'] / baseline, 1)
    report = {
        'events': lines,
        'cpus': os.cpu_count(),
        'results': results,
        'max_child_rss_mb': round(resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024),
    }
    with open(os.path.join(args.work_dir, 'results.json'), 'w') as f:
        json.dump(report, f, indent=2)
    print(
        f'\n{"pipeline":<28} {"events":>10} {"seconds":>8} {"events/s":>10} '
        f'{"x baseline":>10} {"run-only ev/s":>14} {"peak RSS MB":>12}'
    )
    for r in results:
        run_only = f'{r["pipeline_events_per_sec"]:,}' if r['pipeline_events_per_sec'] else '-'
        print(
            f'{r["name"]:<28} {r["events"]:>10,} {r["seconds"]:>8.1f} '
            f'{r["events_per_sec"]:>10,} {r["x_baseline"]:>10.1f} {run_only:>14} '
            f'{r["peak_rss_mb"]:>12,}'
        )
    print(
        '\nseconds and events/s: the whole process (interpreter start-up and imports included),'
        f' median of {args.repeat} runs for the flagship;'
        "\nrun-only: the flagship's own timing of the pipeline run."
        f'\nresults: {os.path.join(args.work_dir, "results.json")}'
    )
    return 0


if __name__ == '__main__':
    sys.exit(main())
