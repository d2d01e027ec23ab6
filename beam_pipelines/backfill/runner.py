"""Runs a launcher once per partition, as child processes, at most ``parallelism`` at a time.

Each partition is its own process (``python -m MODULE flags``): runs are isolated from each other
(Beam's filesystems, the runner, memory) exactly as a scheduler would start them, and a crash of
one run cannot take the others down.
"""

from __future__ import annotations

import concurrent.futures
import dataclasses
import datetime as dt
import os
import subprocess
import sys
import threading
import time

import tqdm

from beam_pipelines.backfill.partitions import Partition
from beam_pipelines.backfill.record import Record

__all__ = ['Job', 'run_all']


@dataclasses.dataclass(frozen=True)
class Job:
    partition: Partition
    args: list[str]
    digest: str


def _now() -> str:
    return dt.datetime.now(dt.UTC).isoformat(timespec='seconds')


class _Children:
    """The running child processes, so that an interrupt stops them all."""

    def __init__(self):
        self._lock = threading.Lock()
        self._running: set[subprocess.Popen] = set()
        self.stopping = False

    def run(self, command: list[str], log) -> int:
        with self._lock:
            if self.stopping:
                return -2
            child = subprocess.Popen(command, stdout=log, stderr=subprocess.STDOUT)
            self._running.add(child)
        try:
            return child.wait()
        finally:
            with self._lock:
                self._running.discard(child)

    def stop(self) -> None:
        with self._lock:
            self.stopping = True
            for child in self._running:
                child.terminate()


def run_all(
    module: str,
    jobs: list[Job],
    record: Record,
    logs_dir: str,
    parallelism: int,
    retries: int,
) -> list[tuple[Job, int]]:
    """Runs the jobs; returns (job, exit status) for every one that failed."""
    os.makedirs(logs_dir, exist_ok=True)
    children = _Children()
    failed: list[tuple[Job, int]] = []
    bar = tqdm.tqdm(total=len(jobs), unit='partition', file=sys.stderr, dynamic_ncols=True)

    def one(job: Job) -> int:
        log_path = os.path.join(logs_dir, f'{job.partition.name}.log')
        status = -1
        for attempt in range(1, retries + 2):
            started, clock = _now(), time.monotonic()
            with open(log_path, 'a', encoding='utf-8') as log:
                log.write(f'# {started} attempt {attempt}: {module} {" ".join(job.args)}\n')
                log.flush()
                status = children.run([sys.executable, '-m', module, *job.args], log)
            if status == -2:  # interrupted before it started
                return status
            record.add(
                {
                    'partition': job.partition.name,
                    'status': 'succeeded' if status == 0 else 'failed',
                    'exit_code': status,
                    'attempt': attempt,
                    'args': job.digest,
                    'started': started,
                    'finished': _now(),
                    'seconds': round(time.monotonic() - clock, 3),
                    'log': log_path,
                }
            )
            if status == 0 or children.stopping:
                break
        return status

    with concurrent.futures.ThreadPoolExecutor(max_workers=parallelism) as pool:
        futures = {pool.submit(one, job): job for job in jobs}
        try:
            for future in concurrent.futures.as_completed(futures):
                job, status = futures[future], future.result()
                if status != 0:
                    failed.append((job, status))
                    bar.write(f'backfill: {job.partition.name} failed (exit {status})')
                bar.update(1)
        except KeyboardInterrupt:
            children.stop()
            for future in futures:
                future.cancel()
            raise
        finally:
            bar.close()
    return sorted(failed, key=lambda x: x[0].partition)
