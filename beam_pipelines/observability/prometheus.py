"""Beam metrics and run summaries as Prometheus metrics: a text-format file after each run
(``--metrics_file``, for node_exporter's textfile collector or a Pushgateway) and an HTTP
endpoint (``--metrics_port``) that serves the latest run's metrics.

Every Beam metric of the project's namespace becomes ``beam_pipelines_<name>``, summed over
the steps that report it and over the runs of the process (``--every``), with the labels its
name carries
(:mod:`beam_pipelines.observability.metrics`): counters as ``_total`` counters, distributions
as summaries (``_sum``, ``_count``) with ``_min`` and ``_max`` gauges, gauges as gauges, and the
bucket counters of :data:`~beam_pipelines.observability.metrics.HISTOGRAMS` as histograms.
The last run's own metrics (``beam_pipelines_last_run_*`` gauges) come from its summary:
records by outcome, duration, success; ``beam_pipelines_runs_total`` counts runs by status.
"""

from __future__ import annotations

import collections
import os
import threading
import time

import prometheus_client
from prometheus_client.core import CounterMetricFamily
from prometheus_client.core import GaugeMetricFamily
from prometheus_client.core import HistogramMetricFamily
from prometheus_client.core import SummaryMetricFamily

from beam_pipelines.observability.metrics import HISTOGRAMS
from beam_pipelines.observability.metrics import NAMESPACE
from beam_pipelines.observability.metrics import parse_metric_name

__all__ = ['PREFIX', 'RunMetrics', 'Snapshot', 'beam_families', 'run_families']

PREFIX = 'beam_pipelines_'


def _value(result):
    # Committed where the runner has them (the DirectRunner, Dataflow), else attempted.
    return result.committed if result.committed is not None else result.attempted


def _key(result) -> tuple | None:
    """(base name, sorted labels) of a project metric with a value; None for any other."""
    if result.key.metric.namespace != NAMESPACE or _value(result) is None:
        return None
    base, labels = parse_metric_name(result.key.metric.name)
    return base, tuple(sorted(labels.items()))


class Snapshot:
    """The project's Beam metrics of one or more runs, keyed by (base name, sorted labels) and
    summed over steps (and over runs, with :meth:`merge`: counters keep counting across the
    runs of one process, as Prometheus expects of a counter)."""

    def __init__(self):
        self.counters: dict[tuple, int] = collections.defaultdict(int)
        self.distributions: dict[tuple, list] = {}  # key -> [count, sum, min, max]
        self.gauges: dict[tuple, tuple] = {}  # key -> (timestamp, value)

    @classmethod
    def of(cls, metric_results) -> Snapshot:
        snap = cls()
        query = metric_results.query()
        for r in query['counters']:
            key = _key(r)
            if key is not None:
                snap._count(key, _value(r))
        for r in query['distributions']:
            key = _key(r)
            if key is not None:
                v = _value(r)
                snap._distribution(key, [v.count, v.sum, v.min, v.max])
        for r in query['gauges']:
            key = _key(r)
            if key is not None:
                v = _value(r)
                ts = v.timestamp.timestamp() if hasattr(v.timestamp, 'timestamp') else v.timestamp
                snap._gauge(key, (ts, v.value))
        return snap

    def _count(self, key: tuple, n: int) -> None:
        self.counters[key] += n

    def _distribution(self, key: tuple, new: list) -> None:
        old = self.distributions.get(key)
        self.distributions[key] = (
            new
            if old is None
            else [old[0] + new[0], old[1] + new[1], min(old[2], new[2]), max(old[3], new[3])]
        )

    def _gauge(self, key: tuple, new: tuple) -> None:
        if key not in self.gauges or new[0] >= self.gauges[key][0]:
            self.gauges[key] = new

    def merge(self, other: Snapshot) -> Snapshot:
        for key, n in other.counters.items():
            self._count(key, n)
        for key, d in other.distributions.items():
            self._distribution(key, d)
        for key, g in other.gauges.items():
            self._gauge(key, g)
        return self

    def families(self) -> list:
        """The Prometheus metric families."""
        counters = dict(self.counters)
        families = _histograms(counters)
        by_name: dict[str, dict] = collections.defaultdict(dict)
        for (base, labels), total in counters.items():
            by_name[base][labels] = total
        for base, series in sorted(by_name.items()):
            names = sorted({k for labels in series for k, _ in labels})
            family = CounterMetricFamily(PREFIX + base, f'Beam counter {base}.', labels=names)
            for labels, total in sorted(series.items()):
                family.add_metric([dict(labels).get(n, '') for n in names], total)
            families.append(family)
        for (base, labels), (count, total, low, high) in sorted(self.distributions.items()):
            names, values = [k for k, _ in labels], [v for _, v in labels]
            summary = SummaryMetricFamily(PREFIX + base, f'Beam distribution {base}.', labels=names)
            summary.add_metric(values, count_value=count, sum_value=total)
            families.append(summary)
            for stat, x in (('min', low), ('max', high)):
                gauge = GaugeMetricFamily(
                    f'{PREFIX}{base}_{stat}', f'{stat} of {base}.', labels=names
                )
                gauge.add_metric(values, x)
                families.append(gauge)
        for (base, labels), (_, v) in sorted(self.gauges.items()):
            if base.endswith('_ppm'):  # Beam gauges hold integers: parts per million
                base, v = base[: -len('_ppm')], v / 1_000_000
            gauge = GaugeMetricFamily(
                PREFIX + base, f'Beam gauge {base}.', labels=[k for k, _ in labels]
            )
            gauge.add_metric([x for _, x in labels], v)
            families.append(gauge)
        return families


def _histograms(counters: dict) -> list:
    """Takes the bucket, sum and count counters of :data:`HISTOGRAMS` out of ``counters``;
    returns them as histogram families."""
    families = []
    for hist, edges in HISTOGRAMS.items():
        series: dict[tuple, dict] = collections.defaultdict(lambda: {'buckets': {}})
        for (base, labels), total in list(counters.items()):
            if base not in (f'{hist}_bucket', f'{hist}_sum_millis', f'{hist}_count'):
                continue
            del counters[(base, labels)]
            label_map = dict(labels)
            le = label_map.pop('le', None)
            key = tuple(sorted(label_map.items()))
            if base.endswith('_bucket'):
                series[key]['buckets'][le] = total
            elif base.endswith('_sum_millis'):
                series[key]['sum'] = total / 1000.0
            else:
                series[key]['count'] = total
        if not series:
            continue
        names = sorted({k for key in series for k, _ in key})
        family = HistogramMetricFamily(PREFIX + hist, f'{hist} (seconds).', labels=names)
        for key, data in sorted(series.items()):
            running, buckets = 0, []
            for edge in [*(f'{e:g}' for e in edges), '+Inf']:
                running += data['buckets'].get(edge, 0)
                buckets.append((edge, running))
            family.add_metric(
                [dict(key).get(n, '') for n in names], buckets, sum_value=data.get('sum', 0.0)
            )
        families.append(family)
    return families


def beam_families(metric_results) -> list:
    """Prometheus metric families of a ``PipelineResult.metrics()``'s project metrics."""
    return Snapshot.of(metric_results).families()


def run_families(pipeline: str, summary: dict | None, seconds: float, ok: bool) -> list:
    """The last run's own metrics (gauges: they describe that run): records by outcome (the
    summary's exact counts), duration, success, records unaccounted for, when it ended."""
    labels = ['pipeline']
    records = GaugeMetricFamily(
        PREFIX + 'last_run_records',
        'Records of the last run by outcome (the run summary).',
        labels=[*labels, 'outcome'],
    )
    for outcome, n in sorted(((summary or {}).get('counts') or {}).items()):
        records.add_metric([pipeline, outcome], n)
    duration = GaugeMetricFamily(
        PREFIX + 'last_run_duration_seconds', 'Wall time of the last run.', labels=labels
    )
    duration.add_metric([pipeline], seconds)
    success = GaugeMetricFamily(
        PREFIX + 'last_run_success',
        'Whether the last run succeeded with every record accounted for (1) or not (0).',
        labels=labels,
    )
    success.add_metric([pipeline], 1.0 if ok else 0.0)
    unaccounted = GaugeMetricFamily(
        PREFIX + 'last_run_records_unaccounted',
        'read - (valid + dead_letter + duplicates [+ late]) of the last run (0 when sound).',
        labels=labels,
    )
    unaccounted.add_metric([pipeline], float((summary or {}).get('unaccounted', 0) or 0))
    ended = GaugeMetricFamily(
        PREFIX + 'last_run_end_timestamp_seconds',
        'When the last run ended (Unix time).',
        labels=labels,
    )
    ended.add_metric([pipeline], time.time())
    return [records, duration, success, unaccounted, ended]


class RunMetrics:
    """The latest run's families, served over HTTP and written to a file.

    Args:
        pipeline: the pipeline's name (a label).
        path: the text-format file, rewritten atomically after each run (None: none).
        port: the HTTP port to serve on (None: none).
        host: the address to serve on.
    """

    def __init__(self, pipeline: str, path: str | None, port: int | None, host: str):
        self._pipeline = pipeline
        self._path = path
        self._lock = threading.Lock()
        self._beam = Snapshot()  # every run of this process, summed
        self._last: list = []
        self._runs: collections.Counter = collections.Counter()
        self._in_progress = False
        self.registry = prometheus_client.CollectorRegistry()
        self.registry.register(self)
        self.server = None
        if port is not None:
            self.server, _ = prometheus_client.start_http_server(
                port, addr=host, registry=self.registry
            )

    def collect(self):
        with self._lock:
            families = [*self._beam.families(), *self._last]
            runs, in_progress = dict(self._runs), self._in_progress
        total = CounterMetricFamily(
            PREFIX + 'runs', 'Runs of this process by status.', labels=['pipeline', 'status']
        )
        for status in ('succeeded', 'failed'):
            total.add_metric([self._pipeline, status], runs.get(status, 0))
        running = GaugeMetricFamily(
            PREFIX + 'run_in_progress', 'A run is going on (1) or not (0).', labels=['pipeline']
        )
        running.add_metric([self._pipeline], 1.0 if in_progress else 0.0)
        yield from [*families, total, running]

    def started(self) -> None:
        with self._lock:
            self._in_progress = True

    def finished(self, result, summary: dict | None, seconds: float, ok: bool) -> None:
        """Takes a run's metrics (``result`` may be None when it failed before running)."""
        snapshot = Snapshot.of(result.metrics()) if result is not None else Snapshot()
        last = run_families(self._pipeline, summary, seconds, ok)
        with self._lock:
            self._beam.merge(snapshot)
            self._last = last
            self._runs['succeeded' if ok else 'failed'] += 1
            self._in_progress = False
        if self._path:
            folder = os.path.dirname(os.path.abspath(self._path))
            os.makedirs(folder, exist_ok=True)
            # Atomic (a temporary file renamed), as the textfile collector requires.
            prometheus_client.write_to_textfile(self._path, self.registry)

    def close(self) -> None:
        if self.server is not None:
            self.server.shutdown()
            self.server.server_close()
