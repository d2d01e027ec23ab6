"""Fault injection against the flagship with its PostgreSQL and Redis sinks: ``make chaos``.

    python -m beam_pipelines.reliability.chaos --faults 20 --events 20000

One clean run writes the reference state. Then, for each fault type, ``--faults`` runs of the
same input each get one fault at a different moment, on private servers
(:mod:`~beam_pipelines.reliability.servers`) so nothing else on the machine is hurt:

* ``pg_restart``: PostgreSQL crashes (``pg_ctl stop -m immediate``) and is back 1 s later;
* ``pg_outage``: PostgreSQL crashes and stays down 8 s, longer than the sink's retries;
* ``redis_restart``: Redis is killed (it keeps nothing on disk) and restarted at once;
* ``redis_pause``: ``CLIENT PAUSE 3000 WRITE``: every writer blocks for 3 s;
* ``bundle_failure_pg`` / ``bundle_failure_redis``: the k-th sink write succeeds, then its
  bundle fails (:mod:`~beam_pipelines.reliability.inject`), once;
* ``sigkill``: the job is killed with SIGKILL;
* ``sigkill_continuous``: the same in the local continuous mode (``--state_dir``, ``--every
  1s --runs 3``), restarted on the same state; compared with a clean continuous run.

A run that fails must fail loudly (non-zero exit, an error line); it is then run again, as an
operator would, until it succeeds (at most 3 times). After the last run the figures must all
be 0: ``read - (valid + dead_letter + duplicates + late)`` from its run summary;
``count(*) - count(distinct event_id)`` of the events table; rows of each PostgreSQL table
that differ from the clean run's (either way, every column but the load times); Redis keys
whose value differs from the clean run's, or that one side lacks. A run that exits 0 is
checked before any rerun: success with data missing is the one outcome not allowed.

Results: a table on stdout and ``<out>/chaos.json``.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import signal
import subprocess
import sys
import threading
import time

import psycopg2
import redis

from beam_pipelines.reliability.servers import PrivatePostgres
from beam_pipelines.reliability.servers import PrivateRedis

__all__ = ['FAULTS', 'main', 'pg_state_diff', 'redis_drift', 'redis_dump', 'run_faults']

FAULTS = (
    'pg_restart',
    'pg_outage',
    'redis_restart',
    'redis_pause',
    'bundle_failure_pg',
    'bundle_failure_redis',
    'sigkill',
    'sigkill_continuous',
)
_CONTINUOUS = ('--every', '1s', '--runs', '3')
_TABLES = ('events', 'aggregates', 'dead_letters', 'anomalies')
_VOLATILE = {'loaded_at', 'processing_time'}  # when a row was written, not what it says
_MAX_RERUNS = 3


class Chaos:
    """The servers, the input and the clean run's reference state."""

    def __init__(self, pg: PrivatePostgres, rd: PrivateRedis, data: str, out: str):
        self.pg, self.rd, self.data, self.out = pg, rd, data, out
        self.seconds: dict[str, float] = {}
        self.redis: dict[str, dict] = {}  # held here: a Redis fault wipes the server

    def flagship(
        self, name: str, wrapper: list[str] | None = None, continuous: bool = False
    ) -> list[str]:
        module = ['-m', 'beam_pipelines.event_analytics'] if wrapper is None else wrapper
        state = ['--state_dir', os.path.join(self.out, 'state', name), *_CONTINUOUS]
        return [
            sys.executable, *module, '--input', self.data,
            '--output_dir', os.path.join(self.out, 'runs', name),
            '--postgres_url', self.pg.url, '--pg_schema', _schema(name),
            '--redis_url', self.rd.url, '--redis_prefix', _prefix(name), '--no_report',
            *(state if continuous else []),
        ]  # fmt: skip

    def clean(self, continuous: bool = False) -> None:
        """The reference run (of the batch or the continuous mode), and its Redis state."""
        name = _reference(continuous)
        started = time.monotonic()
        run = _run(self.flagship(name, continuous=continuous))
        if run['exit'] != 0:
            raise RuntimeError(f'the clean run {name} failed: {run["stderr"][-2000:]}')
        self.seconds[name] = time.monotonic() - started
        self.redis[name] = redis_dump(self.rd.url, _prefix(name))

    @property
    def clean_seconds(self) -> float:
        return self.seconds['clean']


def _reference(continuous: bool) -> str:
    return 'clean_continuous' if continuous else 'clean'


def _schema(name: str) -> str:
    return 'r_' + name.replace('-', '_')


def _prefix(name: str) -> str:
    return f'{name}:'


def _run(argv: list[str], fault=None, at: float | None = None) -> dict:
    """Runs ``argv``; ``fault(process)`` is called ``at`` seconds after the start."""
    process = subprocess.Popen(
        argv, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, start_new_session=True
    )
    timer = None
    if fault is not None:
        timer = threading.Timer(at, _firing(fault), args=(process,))
        timer.start()
    stdout, stderr = process.communicate(timeout=600)
    fired = None
    if timer is not None:
        # A fault after the job has exited is not a fault of the job: a Redis that keeps
        # nothing on disk loses its data on any restart. Cancelled, and reported as such.
        timer.cancel()
        timer.join()
        fired = _fired(timer)
    return {'exit': process.returncode, 'stdout': stdout, 'stderr': stderr, 'fired': fired}


def _firing(fault):
    def fire(process):
        if process.poll() is None:  # only while the job runs
            fire.fired = True
            fault(process)

    fire.fired = False
    return fire


def _fired(timer: threading.Timer) -> bool:
    return bool(getattr(timer.function, 'fired', False))


def _injector(chaos: Chaos, kind: str, i: int):
    """(the fault as a callable on the job's process, wrapper module args or None)."""
    pg, rd = chaos.pg, chaos.rd

    def pg_down(seconds):
        def fault(_):
            pg.stop('immediate')
            time.sleep(seconds)
            pg.start()

        return fault

    def redis_restart(_):
        rd.kill()
        rd.start()

    def redis_pause(_):
        client = redis.Redis.from_url(rd.url)
        client.execute_command('CLIENT', 'PAUSE', 3000, 'WRITE')
        client.close()

    def sigkill(process):  # the job's whole process group: its workers too
        if process.poll() is None:
            os.killpg(process.pid, signal.SIGKILL)

    if kind.startswith('bundle_failure'):
        sink = 'postgres' if kind.endswith('pg') else 'redis'
        markers = os.path.join(chaos.out, 'markers', f'{kind}-{i}')
        wrapper = ['-m', 'beam_pipelines.reliability.inject', '--sink', sink]
        return None, [*wrapper, '--after_write', str(i + 1), '--marker_dir', markers, '--']
    faults = {
        'pg_restart': pg_down(1.0),
        'pg_outage': pg_down(8.0),
        'redis_restart': redis_restart,
        'redis_pause': redis_pause,
        'sigkill': sigkill,
        'sigkill_continuous': sigkill,
    }
    return faults[kind], None


def run_faults(chaos: Chaos, kind: str, count: int) -> list[dict]:
    """``count`` runs with one fault each, spread over the clean run's duration."""
    continuous = kind == 'sigkill_continuous'
    reference = _reference(continuous)
    if reference not in chaos.seconds:
        chaos.clean(continuous)
    results = []
    for i in range(count):
        name = f'{kind}-{i}'
        at = chaos.seconds[reference] * (0.2 + 0.75 * (i + 0.5) / count)
        fault, wrapper = _injector(chaos, kind, i)
        argv = chaos.flagship(name, wrapper, continuous)
        attempts = [_run(argv, fault, at)]
        silent_loss = False
        if attempts[0]['exit'] == 0:  # success claimed: it must be complete now
            silent_loss = not _all_zero(_figures(chaos, name, reference))
        while attempts[-1]['exit'] != 0 and len(attempts) <= _MAX_RERUNS:
            attempts.append(_run(argv))  # what an operator does: run it again
        first = attempts[0]
        results.append(
            {
                'run': name,
                'fault_at_secs': round(at, 2),
                # None: injected by the wrapper (bundle failures); False: the job had ended.
                'fired': attempts[0]['fired'],
                'first_exit': first['exit'],
                # Killed by a signal (sigkill), or an error line: a failure nobody can miss.
                'loud': first['exit'] <= 0 or _loud(first['stderr']),
                'reruns': len(attempts) - 1,
                'final_exit': attempts[-1]['exit'],
                'silent_loss': silent_loss,
                'error': _error(first),
                **_figures(chaos, name, reference),
            }
        )
        _drop(chaos, name)
    return results


def _loud(stderr: str) -> bool:
    return 'error' in stderr.lower()


def _error(run: dict) -> str | None:
    if run['exit'] < 0:
        return f'killed by signal {-run["exit"]}'
    return _last_error(run['stderr']) if run['exit'] else None


def _last_error(stderr: str) -> str:
    lines = [line for line in stderr.splitlines() if 'error' in line.lower()]
    lines = lines or stderr.strip().splitlines() or ['']
    return lines[-1][:300]


def _figures(chaos: Chaos, name: str, reference: str) -> dict:
    return {
        'unaccounted': _unaccounted(os.path.join(chaos.out, 'runs', name)),
        'pg_duplicates': _pg_duplicates(chaos.pg.url, _schema(name)),
        'pg_diff_rows': pg_state_diff(chaos.pg.url, _schema(reference), _schema(name)),
        'redis_drift': redis_drift(chaos.redis[reference], redis_dump(chaos.rd.url, _prefix(name))),
    }


def _all_zero(figures: dict) -> bool:
    return all(v == 0 for v in figures.values())


def _unaccounted(out_dir: str) -> int | None:
    """``read - (valid + dead_letter + duplicates + late)`` of the run summary (None: none)."""
    path = os.path.join(out_dir, 'run_summary.json')
    if not os.path.exists(path):
        return None
    with open(path) as f:
        c = json.load(f)['counts']
    return c['read'] - (c['valid'] + c['dead_letter'] + c['duplicates'] + c.get('late', 0))


def _pg_duplicates(url: str, schema: str) -> int | None:
    with psycopg2.connect(url) as conn, conn.cursor() as cur:
        if not _has_table(cur, schema, 'events'):
            return None
        cur.execute(f'SELECT count(*) - count(DISTINCT event_id) FROM "{schema}".events')
        return cur.fetchone()[0]


def _has_table(cur, schema: str, table: str) -> bool:
    cur.execute('SELECT to_regclass(%s) IS NOT NULL', (f'"{schema}".{table}',))
    return cur.fetchone()[0]


def pg_state_diff(url: str, reference: str, schema: str) -> int | None:
    """Rows of the warehouse tables in one schema and not the other, both ways (every column
    but the load times); None if the schema has no tables."""
    total = 0
    with psycopg2.connect(url) as conn, conn.cursor() as cur:
        for table in _TABLES:
            if not _has_table(cur, reference, table):
                continue
            if not _has_table(cur, schema, table):
                return None
            cur.execute(
                'SELECT column_name FROM information_schema.columns '
                'WHERE table_schema = %s AND table_name = %s ORDER BY ordinal_position',
                (reference, table),
            )
            columns = ', '.join(f'"{c}"' for (c,) in cur.fetchall() if c not in _VOLATILE)
            for a, b in ((reference, schema), (schema, reference)):
                cur.execute(
                    f'SELECT count(*) FROM (SELECT {columns} FROM "{a}".{table} '
                    f'EXCEPT ALL SELECT {columns} FROM "{b}".{table}) AS d'
                )
                total += cur.fetchone()[0]
    return total


def redis_drift(reference: dict, state: dict) -> int:
    """Keys whose value differs between two dumps (:func:`redis_dump`), or that one lacks."""
    return sum(1 for k in reference.keys() | state.keys() if reference.get(k) != state.get(k))


def redis_dump(url: str, prefix: str) -> dict:
    """Every key under ``prefix`` (the prefix taken off) and its value."""
    client = redis.Redis.from_url(url)
    try:
        return _redis_dump(client, prefix)
    finally:
        client.close()


def _redis_dump(client, prefix: str) -> dict:
    out = {}
    for key in client.scan_iter(f'{prefix}*', count=10_000):
        kind = client.type(key).decode()
        if kind == 'string':
            value = client.get(key)
        elif kind == 'hash':
            value = sorted(client.hgetall(key).items())
        elif kind == 'zset':
            value = client.zrange(key, 0, -1, withscores=True)
        elif kind == 'list':
            value = client.lrange(key, 0, -1)
        elif kind == 'set':
            value = sorted(client.smembers(key))
        else:
            value = kind
        out[key[len(prefix) :]] = value
    return out


def _drop(chaos: Chaos, name: str) -> None:
    with psycopg2.connect(chaos.pg.url) as conn, conn.cursor() as cur:
        cur.execute(f'DROP SCHEMA IF EXISTS "{_schema(name)}" CASCADE')
    client = redis.Redis.from_url(chaos.rd.url)
    for key in client.scan_iter(f'{_prefix(name)}*', count=10_000):
        client.delete(key)
    client.close()
    shutil.rmtree(os.path.join(chaos.out, 'runs', name), ignore_errors=True)
    shutil.rmtree(os.path.join(chaos.out, 'state', name), ignore_errors=True)


def summarise(kind: str, results: list[dict]) -> dict:
    def total(field):
        values = [r[field] for r in results]
        return None if any(v is None for v in values) else sum(values)

    return {
        'fault': kind,
        'faults': len(results),
        'failed_loudly': sum(1 for r in results if r['first_exit'] != 0),
        'not_loud': sum(1 for r in results if not r['loud']),
        'reruns': sum(r['reruns'] for r in results),
        'unfinished': sum(1 for r in results if r['final_exit'] != 0),
        'silent_loss': sum(1 for r in results if r['silent_loss']),
        'unaccounted': total('unaccounted'),
        'pg_duplicates': total('pg_duplicates'),
        'pg_diff_rows': total('pg_diff_rows'),
        'redis_drift': total('redis_drift'),
    }


def passed(row: dict) -> bool:
    return all(
        row[k] == 0
        for k in (
            'not_loud',
            'unfinished',
            'silent_loss',
            'unaccounted',
            'pg_duplicates',
            'pg_diff_rows',
            'redis_drift',
        )
    )


def _table(rows: list[dict]) -> str:
    head = (
        'fault', 'faults', 'failed_loudly', 'reruns', 'unfinished', 'silent_loss',
        'unaccounted', 'pg_duplicates', 'pg_diff_rows', 'redis_drift',
    )  # fmt: skip
    lines = ['  '.join(f'{h:>13}' for h in head)]
    for row in rows:
        lines.append('  '.join(f'{row[h]!s:>13}' for h in head))
    return '\n'.join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog='chaos', description=__doc__.split('\n\n')[0])
    parser.add_argument('--faults', type=int, default=20, help='Faults per type.')
    parser.add_argument('--events', type=int, default=20_000, help='Events in the input.')
    parser.add_argument('--types', default=','.join(FAULTS), help='Fault types, comma-separated.')
    parser.add_argument('--out', default='chaos_out', help='Where runs and chaos.json go.')
    args = parser.parse_args(argv)
    kinds = [k for k in args.types.split(',') if k]
    unknown = set(kinds) - set(FAULTS)
    if unknown:
        parser.error(f'--types: unknown {sorted(unknown)} (known: {", ".join(FAULTS)})')
    shutil.rmtree(args.out, ignore_errors=True)
    os.makedirs(args.out)
    data = os.path.join(args.out, 'events.jsonl')
    subprocess.run(
        [sys.executable, '-m', 'beam_pipelines.generate_events', '--events', str(args.events),
         '--seed', '11', '--output', data],
        check=True, capture_output=True,
    )  # fmt: skip
    started = time.monotonic()
    # A SIGTERM (make interrupted, a CI timeout) unwinds like an exception: the private
    # servers are stopped and their directories removed.
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))
    with PrivatePostgres() as pg, PrivateRedis() as rd:
        chaos = Chaos(pg, rd, data, args.out)
        chaos.clean()
        print(f'clean run: {chaos.clean_seconds:.1f} s; {args.faults} faults per type', flush=True)
        rows, details = [], {}
        for kind in kinds:
            details[kind] = run_faults(chaos, kind, args.faults)
            rows.append(summarise(kind, details[kind]))
            print(_table(rows[-1:]).splitlines()[-1], flush=True)
    report = {
        'events': args.events,
        'faults_per_type': args.faults,
        'clean_run_secs': {k: round(v, 2) for k, v in chaos.seconds.items()},
        'seconds': round(time.monotonic() - started, 1),
        'summary': rows,
        'runs': details,
        'passed': all(passed(r) for r in rows),
    }
    with open(os.path.join(args.out, 'chaos.json'), 'w') as f:
        json.dump(report, f, indent=2)
    print(_table(rows))
    print(f'{"PASSED" if report["passed"] else "FAILED"} in {report["seconds"]} s; details in '
          f'{args.out}/chaos.json')  # fmt: skip
    return 0 if report['passed'] else 1


if __name__ == '__main__':
    sys.exit(main())
