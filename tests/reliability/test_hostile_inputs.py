"""Every hostile input of the corpus (``beam_pipelines.reliability.hostile``) through the flagship,
end to end: each bad record must become a dead letter with a clear reason, each good event an
event, and the run summary must balance (``read = valid + dead_letter + duplicates``); nothing
may crash the pipeline or vanish.

The light file cases of a format share one run of the launcher (a run costs about a second
whatever its input; the cases keep apart by file, event ids and dead-letter source), each case
asserted by its own test. The stream cases go through a Redis stream with ``--wire_format``.
The heavy cases (a 100 MB line or CSV field, JSON nested 100,000 deep) run the launcher each in
a subprocess under ``RLIMIT_AS`` and a timeout that only detects hangs; their wall time and
peak RSS are printed (``pytest -s``).
"""

from __future__ import annotations

import json
import os
import resource
import subprocess
import sys
import time
import uuid
from typing import NamedTuple

import pyarrow.parquet as pq
import pytest

from beam_pipelines import event_analytics
from beam_pipelines.dead_letter import ENVELOPE_FIELDS
from beam_pipelines.io.files import FORMATS
from beam_pipelines.reliability import hostile
from beam_pipelines.reliability.hostile import CASES
from beam_pipelines.reliability.hostile import HostileCase
from tests.io.test_redis import REDIS_URL
from tests.io.test_redis import client  # noqa: F401  (fixture)
from tests.test_event_analytics import _launch

pytestmark = pytest.mark.e2e

COMPANION = 3  # good events in a second, clean file of the same format beside each case
MEMORY_LIMIT_BYTES = 3 << 30  # RLIMIT_AS of the heavy runs
HANG_TIMEOUT_SECS = 600  # detects a hang only; the heavy runs take seconds
BATCH_ROWS = '2'  # small batches: bad records share batches with good ones, and cross them

FILE_CASES = [c for c in CASES.values() if not c.heavy and not c.fmt.startswith('wire_')]
HEAVY_CASES = [c for c in CASES.values() if c.heavy]
WIRE_CASES = [c for c in CASES.values() if c.fmt.startswith('wire_')]
_MEASURED: list[tuple[str, float, float]] = []  # (case, wall secs, peak RSS MiB)


def _dead_letters(out) -> list[dict]:
    return [
        json.loads(line)
        for f in sorted((out / 'dead_letter').glob('*.jsonl'))
        for line in f.read_text().splitlines()
    ]


class _Run(NamedTuple):
    """One flagship run over some cases' inputs."""

    code: int
    summary: dict
    dead: list[dict]  # every dead letter of the run
    ids: set[str]  # the event ids of the valid events


def _finished(code: int, out) -> _Run:
    summary = json.loads((out / 'run_summary.json').read_text())
    ids = set(pq.read_table(out / 'events', columns=['event_id']).column(0).to_pylist())
    return _Run(code, summary, _dead_letters(out), ids)


def _check_run(run: _Run, cases: list[HostileCase], companion: int) -> None:
    """The run as a whole: it succeeded and balances, and holds exactly the cases' events."""
    counts = run.summary['counts']
    assert run.code == 0
    assert run.summary['balanced'], counts
    assert counts['read'] == counts['valid'] + counts['dead_letter'] + counts['duplicates']
    assert counts['duplicates'] == 0, counts
    assert counts['dead_letter'] == len(run.dead) == sum(c.bad for c in cases)
    expected = {f'companion-{i}' for i in range(companion)}
    for case in cases:
        expected |= case.good_ids() | set(case.accepted)
    assert counts['valid'] == len(expected)
    assert run.ids == expected


def _check_case(run: _Run, case: HostileCase, uri_suffix: str | None) -> list[dict]:
    """What must become of one case; returns its dead letters."""
    dead = [d for d in run.dead if uri_suffix is None or d['source']['uri'].endswith(uri_suffix)]
    reasons = sorted({(d['error_type'], d['error_message'][:100]) for d in dead})
    assert len(dead) == case.bad, reasons
    for d in dead:
        assert set(d) == set(ENVELOPE_FIELDS)
        assert d['error_type'] in case.reasons, (d['error_type'], d['error_message'])
        assert d['error_message'].strip(), d
        assert 'Traceback' not in d['error_message']
    assert case.good_ids() <= run.ids, reasons
    assert set(case.accepted) <= run.ids, reasons
    return dead


@pytest.fixture(scope='module')
def format_runs(tmp_path_factory):
    """One flagship run per file format over all its light cases (and a clean companion file):
    a run costs about a second whatever its input, and the cases' files, ids and dead letters
    (by their source) keep apart. Run on first use, then cached."""
    runs: dict[str, _Run] = {}

    def run(fmt: str) -> _Run:
        if fmt not in runs:
            root = tmp_path_factory.mktemp(f'hostile-{fmt}')
            directory = root / 'in'
            directory.mkdir()
            for case in FILE_CASES:
                if case.fmt == fmt:
                    case.write(str(directory / case.filename))
            hostile.write_good(str(directory / f'companion.{fmt}'), fmt, COMPANION, 'companion')
            flags = ['--batch_rows', BATCH_ROWS, '--no_report']
            code, out, _ = _launch(root, str(directory / '*'), *flags)
            runs[fmt] = _finished(code, out)
        return runs[fmt]

    return run


@pytest.mark.parametrize('fmt', FORMATS)
def test_hostile_files_run_balances(format_runs, fmt):
    _check_run(format_runs(fmt), [c for c in FILE_CASES if c.fmt == fmt], COMPANION)


@pytest.mark.parametrize('case', FILE_CASES, ids=lambda c: c.name)
def test_hostile_file(format_runs, case):
    dead = _check_case(format_runs(case.fmt), case, case.filename)
    for d in dead:
        if d['error_type'] == 'corrupt_file':  # a whole file: the message says what and where
            assert d['stage'] == 'read'
            assert case.fmt[:3] in d['error_message'].lower()


@pytest.fixture(scope='session')
def heavy_inputs(tmp_path_factory):
    """The heavy cases' files, written once per session."""
    root = tmp_path_factory.mktemp('heavy')
    for case in HEAVY_CASES:
        case.write(str(root / case.filename))
    return root


def _limit_memory():  # runs in the child, before exec
    resource.setrlimit(resource.RLIMIT_AS, (MEMORY_LIMIT_BYTES, MEMORY_LIMIT_BYTES))


def _run_bounded(argv: list[str]) -> tuple[int, str, float, float]:
    """Runs ``argv`` under the memory limit; (exit status, stderr, wall secs, peak RSS MiB)."""
    started = time.monotonic()
    # RLIMIT_AS bounds address space, not memory: glibc's per-thread malloc arenas and Arrow's
    # allocator reserve gigabytes they never touch (a small run maps 2.6 GB, uses 0.24 GB).
    # With two arenas and the system allocator the address space tracks the memory used.
    env = {**os.environ, 'MALLOC_ARENA_MAX': '2', 'ARROW_DEFAULT_MEMORY_POOL': 'system'}
    with subprocess.Popen(
        argv,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        env=env,
        preexec_fn=_limit_memory,
    ) as proc:
        # wait4 gives this child's own peak RSS; a watchdog kills it if it hangs.
        deadline = started + HANG_TIMEOUT_SECS
        while True:
            pid, status, usage = os.wait4(proc.pid, os.WNOHANG)
            if pid:
                break
            if time.monotonic() > deadline:
                proc.kill()
                pytest.fail(f'{argv} hung for {HANG_TIMEOUT_SECS} s')
            time.sleep(0.05)
        proc.returncode = os.waitstatus_to_exitcode(status)
        stderr = proc.stderr.read().decode(errors='replace')
    return proc.returncode, stderr, time.monotonic() - started, usage.ru_maxrss / 1024


@pytest.mark.slow
@pytest.mark.parametrize('case', HEAVY_CASES, ids=lambda c: c.name)
def test_heavy_hostile_file_in_bounded_memory(tmp_path, heavy_inputs, case):
    directory = tmp_path / 'in'
    directory.mkdir()
    os.symlink(heavy_inputs / case.filename, directory / case.filename)
    hostile.write_good(str(directory / f'companion.{case.fmt}'), case.fmt, COMPANION, 'companion')
    out = tmp_path / 'out'
    argv = [sys.executable, '-m', 'beam_pipelines.event_analytics']
    argv += ['--input', str(directory / '*'), '--output_dir', str(out)]
    argv += ['--batch_rows', BATCH_ROWS, '--num_shards', '2', '--no_report']
    code, stderr, secs, rss_mib = _run_bounded(argv)
    _MEASURED.append((case.name, secs, rss_mib))
    print(f'\n{case.name}: {secs:.1f} s wall, peak RSS {rss_mib:.0f} MiB', flush=True)
    assert code == 0, stderr[-2000:]
    run = _finished(code, out)
    _check_run(run, [case], COMPANION)
    _check_case(run, case, case.filename)


@pytest.fixture(scope='module', autouse=True)
def _report_measurements():
    yield
    if _MEASURED:
        worst = max(_MEASURED, key=lambda m: m[2])
        children = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024
        print(
            f'\nheavy hostile inputs (RLIMIT_AS {MEMORY_LIMIT_BYTES >> 20} MiB, timeout '
            f'{HANG_TIMEOUT_SECS} s): worst peak RSS {worst[2]:.0f} MiB ({worst[0]}, '
            f'{worst[1]:.1f} s); slowest {max(m[1] for m in _MEASURED):.1f} s; '
            f'RUSAGE_CHILDREN ru_maxrss {children:.0f} MiB'
        )


@pytest.mark.parametrize('case', WIRE_CASES, ids=lambda c: c.name)
def test_hostile_stream_messages(tmp_path, client, case):  # noqa: F811
    stream = f'test:{uuid.uuid4().hex[:10]}:hostile'
    path = tmp_path / case.filename
    case.write(str(path))
    for message in hostile.read_messages(str(path)):
        client.xadd(stream, {'event': message})
    flags = ['--source', 'redis_stream', '--redis_url', REDIS_URL, '--stream_name', stream]
    flags += ['--stop_at_end', '--batch_rows', BATCH_ROWS]
    if case.fmt == 'wire_csv':
        flags += ['--wire_format', 'csv', '--csv_columns', ','.join(hostile.FIELDS)]
    else:
        schema = tmp_path / 'event.avsc'
        schema.write_text(json.dumps(hostile.AVRO_SCHEMA))
        flags += ['--wire_format', 'avro', '--avro_schema', str(schema)]
    try:
        out = tmp_path / 'out'
        code = event_analytics.run(['--output_dir', str(out), '--no_report', *flags])
        run = _finished(code, out)
    finally:
        client.delete(stream)
    _check_run(run, [case], companion=0)
    _check_case(run, case, None)
