"""``RunAfter``: call a function once, after some PCollections are completely produced.

Used to move durable state forward only when the outputs it describes are written: an
extraction watermark, a replication slot's acknowledged position. Completion is expressed the
Beam way, as side inputs: the call waits for each PCollection's (global) count.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import apache_beam as beam

__all__ = ['RunAfter']


class RunAfter(beam.PTransform):
    """Applied to a tuple of PCollections; outputs ``fn(*args)`` once they are all complete.

    With ``on`` (a PCollection), it calls ``fn(value, *args)`` for each of its values instead.
    """

    def __init__(self, fn: Callable[..., Any], *args: Any, on: beam.PCollection | None = None):
        super().__init__()
        self._fn = fn
        self._args = args
        self._on = on

    def expand(self, outputs):
        if not outputs:
            raise ValueError('RunAfter needs at least one PCollection to wait for')
        waits = [
            beam.pvalue.AsSingleton(pcoll | f'Done[{i}]' >> beam.combiners.Count.Globally())
            for i, pcoll in enumerate(outputs)
        ]
        if self._on is None:
            return (
                outputs[0].pipeline
                | 'Once' >> beam.Create([None])
                | 'Run' >> beam.Map(_run, self._fn, self._args, *waits)
            )
        return self._on | 'RunOnValues' >> beam.Map(_run_on, self._fn, self._args, *waits)


def _run(_, fn, args, *_done) -> Any:
    return fn(*args)


def _run_on(value, fn, args, *_done) -> Any:
    return fn(value, *args)
