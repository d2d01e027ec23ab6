"""One DoFn shape for every columnar step that can reject records.

A step is a plain function ``step(element) -> (output, dead_letters)``; ``SplitDeadLettersFn``
emits the output (when it has rows) on the main output and each dead letter on the
``dead_letter`` output, counting both. ``ParseEvents`` and ``ValidateEvents`` are built on it.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import apache_beam as beam
from apache_beam import pvalue
from apache_beam.metrics import Metrics

from beam_pipelines.io.files import NAMESPACE
from beam_pipelines.transforms.tags import DEAD_LETTER
from beam_pipelines.transforms.tags import VALID

__all__ = ['SplitDeadLettersFn', 'split_dead_letters']


class SplitDeadLettersFn(beam.DoFn):
    """Runs ``step`` on each element; see the module docstring.

    Args:
        step: ``element -> (output or None, list of dead-letter envelopes)``; picklable.
        rows_of: the row count of an output (0 drops it).
        stage: names the metrics: ``<stage>_records`` and ``dead_letter_<stage>``.
    """

    def __init__(self, step: Callable, rows_of: Callable[[Any], int], stage: str):
        self._step = step
        self._rows_of = rows_of
        self._stage = stage

    def setup(self):
        self._ok = Metrics.counter(NAMESPACE, f'{self._stage}_records')
        self._dead = Metrics.counter(NAMESPACE, f'dead_letter_{self._stage}')

    def process(self, element):
        output, dead = self._step(element)
        if dead:
            self._dead.inc(len(dead))
            for envelope in dead:
                yield pvalue.TaggedOutput(DEAD_LETTER, envelope)
        rows = self._rows_of(output) if output is not None else 0
        if rows:
            self._ok.inc(rows)
            yield output


def split_dead_letters(pcoll, label: str, fn: SplitDeadLettersFn, output_type):
    """Applies ``fn``; returns ``(outputs, dead_letters)``."""
    results = pcoll | label >> beam.ParDo(fn).with_output_types(output_type).with_outputs(
        DEAD_LETTER, main=VALID
    )
    return results[VALID], results[DEAD_LETTER]
