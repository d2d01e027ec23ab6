"""The project's Beam metrics: labelled names, and histograms built from counters.

Beam metrics have a namespace and a name but no labels, and Beam's Python SDK reports no
histograms on the portable runners. So a labelled metric is named the way Prometheus writes
one, ``dead_letters{error_type="json_decode_error",stage="parse"}`` (readable as it is in the
Dataflow and Flink UIs), and a histogram is a counter per bucket plus ``_sum`` and ``_count``
counters, filled per batch with one vectorised ``numpy.histogram``.
:mod:`beam_pipelines.observability.prometheus` turns both back into Prometheus families.
"""

from __future__ import annotations

import re
import time

import numpy as np
import pyarrow as pa
from apache_beam.metrics import Metrics

__all__ = [
    'HISTOGRAMS',
    'NAMESPACE',
    'LagHistogram',
    'counter',
    'metric_name',
    'parse_metric_name',
]

NAMESPACE = 'beam_pipelines'
# Processing lag (processing time minus event time), seconds: from live data to backfills.
LAG_BUCKETS_SECS = (0.1, 0.5, 1, 2, 5, 10, 30, 60, 300, 900, 3600, 6 * 3600, 86400, 7 * 86400)
HISTOGRAMS = {'processing_lag_seconds': LAG_BUCKETS_SECS}
_LABELLED = re.compile(r'^([a-zA-Z_][a-zA-Z0-9_]*)\{(.*)\}$', re.DOTALL)
_LABEL = re.compile(r'([a-zA-Z_][a-zA-Z0-9_]*)="((?:[^"\\]|\\.)*)"')


def metric_name(base: str, **labels: str) -> str:
    """``base{k="v",...}`` with the labels sorted (one name per label set)."""
    if not labels:
        return base
    body = ','.join(f'{k}="{_escape(str(v))}"' for k, v in sorted(labels.items()))
    return f'{base}{{{body}}}'


def _escape(value: str) -> str:
    # As Prometheus escapes label values: backslash, double quote, line feed.
    return value.replace('\\', '\\\\').replace('"', '\\"').replace('\n', '\\n')


def _unescape(value: str) -> str:
    return re.sub(r'\\(.)', lambda m: '\n' if m.group(1) == 'n' else m.group(1), value)


def parse_metric_name(name: str) -> tuple[str, dict[str, str]]:
    """The base name and labels of a name from :func:`metric_name` (any other name: no
    labels)."""
    match = _LABELLED.match(name)
    if not match:
        return name, {}
    labels = {k: _unescape(v) for k, v in _LABEL.findall(match.group(2))}
    return match.group(1), labels


def counter(base: str, **labels: str):
    """A Beam counter in the project's namespace."""
    return Metrics.counter(NAMESPACE, metric_name(base, **labels))


class LagHistogram:
    """``processing_lag_seconds`` of event tables: now minus each row's event time, counted
    into :data:`LAG_BUCKETS_SECS` per batch. Create it in ``DoFn.setup()``."""

    def __init__(self, stage: str, column: str = 'timestamp'):
        self._column = column
        edges = [*LAG_BUCKETS_SECS, float('inf')]
        self._edges = np.array([-np.inf, *edges])
        self._buckets = [
            counter('processing_lag_seconds_bucket', le=_le(e), stage=stage) for e in edges
        ]
        self._sum = counter('processing_lag_seconds_sum_millis', stage=stage)
        self._count = counter('processing_lag_seconds_count', stage=stage)

    def observe(self, table: pa.Table) -> None:
        if self._column not in table.column_names or table.num_rows == 0:
            return
        micros = table.column(self._column).cast(pa.int64()).to_numpy(zero_copy_only=False)
        lag = time.time() - micros.astype(np.float64) / 1e6
        counts, _ = np.histogram(lag, bins=self._edges)
        for bucket, n in zip(self._buckets, counts):
            if n:
                bucket.inc(int(n))
        # Counters are integers: the sum is kept in milliseconds (exported in seconds).
        self._sum.inc(round(float(lag.sum()) * 1000))
        self._count.inc(len(lag))


def _le(edge: float) -> str:
    return '+Inf' if edge == float('inf') else f'{edge:g}'
