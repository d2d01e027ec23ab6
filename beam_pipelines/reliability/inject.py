"""Runs the flagship with one failure injected right after a sink write, for the chaos runs.

    python -m beam_pipelines.reliability.inject --sink postgres --after_write 3 \
        --marker_dir DIR -- --input events.jsonl --output_dir out --postgres_url ...

The ``after_write``-th batch the sink writes (counted in this process) is written, then its
bundle fails with an exception, as a worker dying between a write and the bundle's commit
would. A marker file in ``marker_dir`` makes it happen once: a rerun with the same marker
directory fails nowhere, which is how a bundle retry (Flink, Dataflow) or a rerun of the job
(the DirectRunner, which does not retry bundles: the job fails) sees the write a second time.

The hook wraps the sinks' load methods in this process only (the DirectRunner's in-process
workers run them here); the flagship's code carries no fault-injection switch.
"""

from __future__ import annotations

import argparse
import functools
import os
import sys
import threading

__all__ = ['InjectedFault', 'main']


class InjectedFault(RuntimeError):
    """The failure the chaos run asked for."""


class _Trigger:
    def __init__(self, sink: str, after_write: int, marker_dir: str):
        self._sink = sink
        self._after = after_write
        self._marker = os.path.join(marker_dir, f'{sink}-after-write-{after_write}')
        self._writes = 0
        self._lock = threading.Lock()

    def wrote(self) -> None:
        with self._lock:
            self._writes += 1
            if self._writes != self._after or os.path.exists(self._marker):
                return
            os.makedirs(os.path.dirname(self._marker), exist_ok=True)
            with open(self._marker, 'w') as f:
                f.write('injected\n')
        raise InjectedFault(f'chaos: injected failure after {self._sink} write {self._after}')


def _install(trigger: _Trigger, sink: str) -> None:
    if sink == 'postgres':
        from beam_pipelines.io import postgres

        load = postgres._Lane._load

        @functools.wraps(load)
        def _load(self, table):
            out = load(self, table)
            trigger.wrote()
            return out

        postgres._Lane._load = _load
        return
    from beam_pipelines.io import redis_sink

    process = redis_sink._WriteAggregatesFn.process

    @functools.wraps(process)
    def _process(self, table):
        yield from process(self, table)
        trigger.wrote()

    redis_sink._WriteAggregatesFn.process = _process


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    split = argv.index('--') if '--' in argv else len(argv)
    parser = argparse.ArgumentParser(prog='inject', description=__doc__.split('\n\n')[0])
    parser.add_argument('--sink', choices=('postgres', 'redis'), required=True)
    parser.add_argument('--after_write', type=int, required=True)
    parser.add_argument('--marker_dir', required=True)
    args = parser.parse_args(argv[:split])
    _install(_Trigger(args.sink, args.after_write, args.marker_dir), args.sink)
    from beam_pipelines import cli
    from beam_pipelines.event_analytics.config import PIPELINE_NAME
    from beam_pipelines.event_analytics.launcher import run

    cli.configure_logging()
    return cli.main(PIPELINE_NAME, run, argv[split + 1 :])


if __name__ == '__main__':
    sys.exit(main())
