"""Counting records across the pipeline's outputs in one small aggregation.

Each counted PCollection is mapped to ``(name, records)`` pairs by ``CountAs``; after a
``Flatten``, ``SumCounts`` sums per name in a single ``CombinePerKey`` (one shuffle for every count,
instead of a ``CombineGlobally`` each), yielding one dict with every name present.
"""

from __future__ import annotations

from collections.abc import Callable
from collections.abc import Iterable

import apache_beam as beam

__all__ = ['CountAs', 'SumCounts', 'num_rows', 'one']


def num_rows(table) -> int:
    return table.num_rows


def one(_) -> int:
    return 1


class CountAs(beam.PTransform):
    """Maps each element to ``(name, size_of(element))``."""

    def __init__(self, name: str, size_of: Callable[[object], int] = num_rows):
        super().__init__()
        self._name = name
        self._size_of = size_of

    def expand(self, pcoll):
        return pcoll | 'Size' >> beam.Map(lambda e, n=self._name, f=self._size_of: (n, f(e)))


class SumCounts(beam.PTransform):
    """Sums ``(name, n)`` pairs (flatten the ``CountAs`` outputs first) into one dict.

    Args:
        names: every name to report (0 when nothing was counted under it).
    """

    def __init__(self, names: Iterable[str]):
        super().__init__()
        self._names = tuple(names)

    def expand(self, sized):
        # GroupByKey rather than CombinePerKey/ToDict: Beam's DirectRunner in streaming mode
        # fails to translate a lifted CombinePerKey downstream of a stateful DoFn with timers
        # ("was not replaced as expected"), and the pairs are few. A zero per name makes the
        # result exist (with every name) even when nothing was counted.
        zeros = sized.pipeline | 'Zeros' >> beam.Create([(n, 0) for n in self._names])
        return (
            (sized, zeros)
            | 'WithZeros' >> beam.Flatten()
            | 'GroupPerName' >> beam.GroupByKey()
            | 'SumPerName' >> beam.MapTuple(lambda name, sizes: (None, (name, sum(sizes))))
            | 'GroupAll' >> beam.GroupByKey()
            | 'ToDict'
            >> beam.MapTuple(lambda _, pairs, names=self._names: _ordered(dict(pairs), names))
        )


def _ordered(totals: dict, names: tuple[str, ...]) -> dict:
    return {n: totals.get(n, 0) for n in names}
