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
    """Applied to a tuple of PCollections; outputs ``fn(*args)`` once they are all complete."""

    def __init__(self, fn: Callable[..., Any], *args: Any):
        super().__init__()
        self._fn = fn
        self._args = args

    def expand(self, outputs):
        if not outputs:
            raise ValueError('RunAfter needs at least one PCollection to wait for')
        waits = [
            beam.pvalue.AsSingleton(pcoll | f'Done[{i}]' >> beam.combiners.Count.Globally())
            for i, pcoll in enumerate(outputs)
        ]
        return (
            outputs[0].pipeline
            | 'Once' >> beam.Create([None])
            | 'Run' >> beam.Map(_run, len(waits), self._fn, self._args, *waits)
        )


def _run(_, n_waits: int, fn, args, *done) -> Any:
    assert len(done) == n_waits
    return fn(*args)
