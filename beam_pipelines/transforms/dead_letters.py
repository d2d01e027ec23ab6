"""One DoFn shape for every columnar step that can reject records.

A step is a plain function ``step(element) -> (output, dead_letters)``; ``SplitDeadLettersFn``
emits the output (when it has rows) on the main output and each dead letter on the
``dead_letter`` output, counting both: ``records_in``/``records_out{stage}`` and
``dead_letters{stage,error_type}``. ``ParseEvents`` and ``ValidateEvents`` are built on it.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import apache_beam as beam
from apache_beam import pvalue

from beam_pipelines.observability.metrics import LagHistogram
from beam_pipelines.observability.metrics import counter
from beam_pipelines.transforms.tags import DEAD_LETTER
from beam_pipelines.transforms.tags import VALID

__all__ = ['SplitDeadLettersFn', 'split_dead_letters']


class SplitDeadLettersFn(beam.DoFn):
    """Runs ``step`` on each element; see the module docstring.

    Args:
        step: ``element -> (output or None, list of dead-letter envelopes)``; picklable.
        rows_of: the row count of an output (0 drops it).
        stage: the ``stage`` label of the metrics.
        lag_column: when given, the outputs (Arrow tables) feed the
            ``processing_lag_seconds{stage}`` histogram from this event-time column.
    """

    def __init__(
        self,
        step: Callable,
        rows_of: Callable[[Any], int],
        stage: str,
        lag_column: str | None = None,
    ):
        self._step = step
        self._rows_of = rows_of
        self._stage = stage
        self._lag_column = lag_column

    def setup(self):
        self._in = counter('records_in', stage=self._stage)
        self._out = counter('records_out', stage=self._stage)
        self._dead: dict[str, Any] = {}  # error_type -> counter, made on first use
        self._lag = LagHistogram(self._stage, self._lag_column) if self._lag_column else None

    def process(self, element):
        output, dead = self._step(element)
        rows = self._rows_of(output) if output is not None else 0
        self._in.inc(rows + len(dead))
        if dead:
            by_type: dict[str, int] = {}
            for envelope in dead:
                kind = envelope.get('error_type') or 'unknown'
                by_type[kind] = by_type.get(kind, 0) + 1
                yield pvalue.TaggedOutput(DEAD_LETTER, envelope)
            for kind, n in by_type.items():
                if kind not in self._dead:
                    self._dead[kind] = counter('dead_letters', stage=self._stage, error_type=kind)
                self._dead[kind].inc(n)
        if rows:
            self._out.inc(rows)
            if self._lag is not None:
                self._lag.observe(output)
            yield output


def split_dead_letters(pcoll, label: str, fn: SplitDeadLettersFn, output_type):
    """Applies ``fn``; returns ``(outputs, dead_letters)``."""
    results = pcoll | label >> beam.ParDo(fn).with_output_types(output_type).with_outputs(
        DEAD_LETTER, main=VALID
    )
    return results[VALID], results[DEAD_LETTER]
