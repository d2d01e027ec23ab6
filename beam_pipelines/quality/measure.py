"""Quality measurements per input source: mergeable partials from batches, then scores.

A partial holds counts only (and the lag sketch's bucket counts), so partials of any batches
merge by addition and the scores of the merged partial are exact (lag quantiles within the
sketch's 1%). The measures of a source (its file or stream):

- validity: 1 - dead letters / records read;
- consistency: 1 - records whose types or formats do not fit the schema (the dead letters of
  ``type_error``, ``invalid_timestamp``, ``invalid_value``) / records read;
- uniqueness: events kept / valid events before deduplication;
- completeness: 1 - the mean null ratio of the fields measured;
- accuracy: the share of events that pass every declared rule;
- timeliness: the share of events whose lag (processing time - event time) is at most
  ``max_lag_secs`` (scored only when the spec gives it; p50/p95/max are always reported);
- score: the weighted mean of the measures scored.
"""

from __future__ import annotations

import collections
import dataclasses
import datetime as dt
import math
import time

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from beam_pipelines.columnar.batch import URI
from beam_pipelines.columnar.sketch import bucket_keys
from beam_pipelines.columnar.sketch import counter_quantiles
from beam_pipelines.quality.spec import DIMENSIONS
from beam_pipelines.quality.spec import QualitySpec
from beam_pipelines.quality.spec import Rule

__all__ = [
    'INCONSISTENT',
    'QualityPartial',
    'measure_dead_letters',
    'measure_events',
    'measure_valid',
    'score',
]

INCONSISTENT = ('type_error', 'invalid_timestamp', 'invalid_value')
UNKNOWN_SOURCE = '(unknown)'
_OPS = {
    '<': pc.less,
    '<=': pc.less_equal,
    '==': pc.equal,
    '!=': pc.not_equal,
    '>=': pc.greater_equal,
    '>': pc.greater,
}


@dataclasses.dataclass
class QualityPartial:
    dead: int = 0
    inconsistent: int = 0
    dead_by_type: collections.Counter = dataclasses.field(default_factory=collections.Counter)
    before_dedup: int = 0
    rows: int = 0
    nulls: collections.Counter = dataclasses.field(default_factory=collections.Counter)
    lag_buckets: collections.Counter = dataclasses.field(default_factory=collections.Counter)
    lag_max: float = -math.inf
    timely: int = 0
    violations: collections.Counter = dataclasses.field(default_factory=collections.Counter)
    failing: int = 0

    def merge(self, other: QualityPartial) -> QualityPartial:
        self.dead += other.dead
        self.inconsistent += other.inconsistent
        self.dead_by_type.update(other.dead_by_type)
        self.before_dedup += other.before_dedup
        self.rows += other.rows
        self.nulls.update(other.nulls)
        self.lag_buckets.update(other.lag_buckets)
        self.lag_max = max(self.lag_max, other.lag_max)
        self.timely += other.timely
        self.violations.update(other.violations)
        self.failing += other.failing
        return self


def _sources(table: pa.Table) -> pa.Array:
    if URI in table.column_names:
        return pc.fill_null(table.column(URI), UNKNOWN_SOURCE)
    return pa.array([UNKNOWN_SOURCE] * table.num_rows, pa.string())


def _windows(table: pa.Table, window_us: int | None) -> pa.Array:
    """Each row's event-time window start (epoch µs), or nulls without windows."""
    if not window_us:
        return pa.nulls(table.num_rows, pa.int64())
    micros = pc.cast(table.column('timestamp'), pa.int64())
    return pc.multiply(
        pc.floor(pc.divide(pc.cast(micros, pa.float64()), window_us)).cast(pa.int64()), window_us
    )


def _key(row: dict) -> tuple:
    return (row['source'], row['window'])


def measure_valid(table: pa.Table, window_us: int | None = None) -> dict[tuple, QualityPartial]:
    """Valid events before deduplication: their count per (source, window)."""
    work = pa.table({'source': _sources(table), 'window': _windows(table, window_us)})
    counts = work.group_by(['source', 'window']).aggregate([('source', 'count')]).to_pylist()
    return {_key(c): QualityPartial(before_dedup=c['source_count']) for c in counts}


def _dead_window(envelope: dict, window_us: int | None) -> int | None:
    """The window of a dead letter whose event time is known (else None: the run only)."""
    text = envelope.get('event_time')
    if not window_us or not text:
        return None
    try:
        when = dt.datetime.fromisoformat(str(text).replace('Z', '+00:00'))
    except ValueError:
        return None
    when = when if when.tzinfo else when.replace(tzinfo=dt.UTC)
    micros = (when - dt.datetime(1970, 1, 1, tzinfo=dt.UTC)) // dt.timedelta(microseconds=1)
    return micros // window_us * window_us


def measure_dead_letters(
    envelopes: list[dict], window_us: int | None = None
) -> dict[tuple, QualityPartial]:
    out: dict[tuple, QualityPartial] = collections.defaultdict(QualityPartial)
    for envelope in envelopes:
        source = (envelope.get('source') or {}).get('uri') or UNKNOWN_SOURCE
        kind = envelope.get('error_type') or 'unknown'
        part = out[(source, _dead_window(envelope, window_us))]
        part.dead += 1
        part.dead_by_type[kind] += 1
        if kind in INCONSISTENT:
            part.inconsistent += 1
    return dict(out)


def _column(table: pa.Table, name: str) -> pa.ChunkedArray | pa.Array:
    if name in table.column_names:
        return table.column(name)
    return pa.nulls(table.num_rows)


def _violations(table: pa.Table, rule: Rule) -> pa.Array:
    """True where a row breaks the rule."""
    if rule.kind == 'not_null':
        bad = pc.is_null(_column(table, rule.field))
    elif rule.kind == 'allowed':
        bad = pc.and_(
            pc.invert(_is_in(_column(table, rule.field), rule.allowed)),
            pc.is_valid(_column(table, rule.field)),
        )
    elif rule.kind == 'range':
        col = pc.cast(_column(table, rule.field), pa.float64())
        bad = pa.array([False] * table.num_rows)
        if rule.min is not None:
            bad = pc.or_(bad, pc.fill_null(pc.less(col, rule.min), False))
        if rule.max is not None:
            bad = pc.or_(bad, pc.fill_null(pc.greater(col, rule.max), False))
    else:
        compared = _OPS[rule.op](_column(table, rule.left), _column(table, rule.right))
        bad = pc.invert(pc.fill_null(compared, True))
    bad = pc.fill_null(bad, False)
    if rule.where_field is not None:
        bad = pc.and_(bad, _is_in(_column(table, rule.where_field), rule.where_in))
    return bad


def _is_in(col, values: tuple) -> pa.Array:
    """True where ``col`` is one of ``values`` (False for nulls, and for a missing column)."""
    if pa.types.is_null(col.type):
        return pa.array([False] * len(col))
    return pc.fill_null(pc.is_in(col, value_set=pa.array(list(values)).cast(col.type)), False)


def measure_events(
    table: pa.Table,
    spec: QualitySpec,
    fields: tuple[str, ...],
    now: float | None = None,
    window_us: int | None = None,
) -> dict[tuple, QualityPartial]:
    """Events after deduplication, per (source, window): nulls of ``fields``, lags, rule
    violations."""
    if table.num_rows == 0:
        return {}
    now = time.time() if now is None else now
    columns = {'source': _sources(table), 'window': _windows(table, window_us)}
    for name in fields:
        columns[f'null:{name}'] = pc.cast(pc.is_null(_column(table, name)), pa.int64())
    failing = pa.array([False] * table.num_rows)
    for rule in spec.rules:
        bad = _violations(table, rule)
        columns[f'rule:{rule.name}'] = pc.cast(bad, pa.int64())
        failing = pc.or_(failing, bad)
    columns['failing'] = pc.cast(failing, pa.int64())
    micros = pc.cast(table.column('timestamp'), pa.int64()).to_numpy(zero_copy_only=False)
    lag = now - micros.astype(np.float64) / 1e6
    columns['lag'] = pa.array(lag)
    columns['lag_key'] = pa.array(bucket_keys(np.maximum(lag, 0.0)))
    if spec.max_lag_secs is not None:
        columns['timely'] = pa.array((lag <= spec.max_lag_secs).astype(np.int64))
    work = pa.table(columns)
    sums = [
        c
        for c in work.column_names
        if c.startswith(('null:', 'rule:')) or c in ('failing', 'timely')
    ]
    grouped = work.group_by(['source', 'window']).aggregate(
        [(c, 'sum') for c in sums] + [('lag', 'max'), ('source', 'count')]
    )
    out: dict[tuple, QualityPartial] = {}
    for row in grouped.to_pylist():
        part = QualityPartial(rows=row['source_count'], lag_max=row['lag_max'])
        part.failing = row['failing_sum']
        part.timely = row.get('timely_sum') or 0
        for name in fields:
            part.nulls[name] = row[f'null:{name}_sum']
        for rule in spec.rules:
            part.violations[rule.name] = row[f'rule:{rule.name}_sum']
        out[_key(row)] = part
    keys = work.group_by(['source', 'window', 'lag_key']).aggregate([('lag_key', 'count')])
    for row in keys.to_pylist():
        out[_key(row)].lag_buckets[row['lag_key']] += row['lag_key_count']
    return out


def score(source: str, part: QualityPartial, spec: QualitySpec, fields: tuple[str, ...]) -> dict:
    """The quality row of a source: every measure, the score and the breaches."""
    read = part.before_dedup + part.dead
    p50, p95 = counter_quantiles(part.lag_buckets, (0.5, 0.95)) or (None, None)
    measures: dict[str, float | None] = {
        'validity': 1 - part.dead / read if read else None,
        'consistency': 1 - part.inconsistent / read if read else None,
        'uniqueness': part.rows / part.before_dedup if part.before_dedup else None,
        'completeness': (
            1 - sum(part.nulls[f] for f in fields) / (part.rows * len(fields))
            if part.rows and fields
            else None
        ),
        'accuracy': 1 - part.failing / part.rows if part.rows else None,
        'timeliness': (
            part.timely / part.rows if part.rows and spec.max_lag_secs is not None else None
        ),
    }
    scored = [(spec.weights[d], measures[d]) for d in DIMENSIONS if measures[d] is not None]
    weight = sum(w for w, _ in scored)
    overall = sum(w * m for w, m in scored) / weight if weight else None
    values = {**measures, 'score': overall}
    breaches = [
        {'measure': m, 'value': values[m], 'threshold': t}
        for m, t in sorted(spec.thresholds.items())
        if values.get(m) is not None and values[m] < t
    ]
    return {
        'source': source,
        **values,
        'records_read': read,
        'dead_letters': part.dead,
        'duplicates': part.before_dedup - part.rows,
        'events': part.rows,
        'lag_p50_secs': p50,
        'lag_p95_secs': p95,
        'lag_max_secs': part.lag_max if part.rows else None,
        'null_ratios': {f: part.nulls[f] / part.rows for f in fields} if part.rows else {},
        'rule_violations': dict(part.violations),
        'dead_letters_by_type': dict(part.dead_by_type),
        'breaches': breaches,
    }
