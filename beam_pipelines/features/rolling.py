"""Per-entity rolling features at event time, point-in-time correct, vectorised.

For each event of an entity, in time order, :func:`rolling_features` computes from the entity's
events up to and including that event's time (never later ones):

* per horizon (e.g. 5 min, 1 h, 24 h): ``count_<h>`` (events), ``sum_<h>``, ``mean_<h>`` and
  ``stddev_<h>`` (sample, ddof 1) of the values in ``(t - h, t]``;
* ``secs_since_prev``: time since the entity's previous event (null for its first);
* ``type_ratio_<H>``: the share of the event's own type among the entity's events of the longest
  horizon ``H``, and ``ratio_<type>_<H>`` for each configured type;
* ``lag_1`` ... ``lag_k``: the entity's previous values;
* ``anomaly_score`` (with an anomaly spec): the score of the event's value by the entity's own
  anomaly model (``anomaly.model``), fed the entity's values in time order (filled in by
  ``features.shard``, which keeps the model).

The computation is one pass of cumulative sums and binary searches over the entity's retained
history plus the new events, so a batch run (all events at once) and a stream (events arriving
a few at a time, history carried in state) give the same features, to floating-point rounding
(the window sums are differences of cumulative sums, which start at different events; sums of
squares are taken around the entity's first value, so the stddev stays exact for large
values): :class:`EntityHistory` keeps only what the longest horizon and the lags still need.

Plain Arrow and numpy, no pipeline in it.
"""

from __future__ import annotations

import dataclasses

import numpy as np
import pyarrow as pa

from beam_pipelines.columnar.ordering import micros
from beam_pipelines.columnar.timestamps import TIMESTAMP_TYPE

__all__ = ['EntityHistory', 'FeatureSpec', 'feature_schema', 'horizon_name', 'rolling_features']

_US = 1_000_000
INPUT_COLUMNS = ('entity_id', 'event_type', 'timestamp', 'value')


def horizon_name(secs: float) -> str:
    """``300`` -> ``5m``, ``3600`` -> ``1h``, ``86400`` -> ``24h``, ``90`` -> ``90s``."""
    if secs % 3600 == 0:
        return f'{int(secs // 3600)}h'
    if secs % 60 == 0:
        return f'{int(secs // 60)}m'
    return f'{secs:g}s'


@dataclasses.dataclass(frozen=True)
class FeatureSpec:
    """Which features (see the module docstring)."""

    horizons_secs: tuple[float, ...] = (300.0, 3600.0, 86400.0)
    lags: int = 3
    event_types: tuple[str, ...] = ()
    anomaly: object | None = None  # an anomaly.spec.AnomalySpec: adds anomaly_score

    def __post_init__(self):
        if not self.horizons_secs or any(not h > 0 for h in self.horizons_secs):
            raise ValueError(f'horizons must be > 0, got {self.horizons_secs}')
        if len(set(self.horizons_secs)) != len(self.horizons_secs):
            raise ValueError(f'horizons repeat: {self.horizons_secs}')
        if self.lags < 0:
            raise ValueError(f'lags must be >= 0, got {self.lags}')

    @property
    def longest(self) -> float:
        return max(self.horizons_secs)

    def numeric_columns(self) -> list[str]:
        """The feature columns (all float64), in schema order."""
        cols = []
        for h in sorted(self.horizons_secs):
            n = horizon_name(h)
            cols += [f'count_{n}', f'sum_{n}', f'mean_{n}', f'stddev_{n}']
        longest = horizon_name(self.longest)
        cols += ['secs_since_prev', f'type_ratio_{longest}']
        cols += [f'ratio_{t}_{longest}' for t in self.event_types]
        cols += [f'lag_{i}' for i in range(1, self.lags + 1)]
        if self.anomaly is not None:
            cols.append('anomaly_score')
        return cols


def feature_schema(spec: FeatureSpec) -> pa.Schema:
    """Offline feature rows: the event's identity and value, then the features."""
    return pa.schema(
        [
            pa.field('entity_id', pa.string(), nullable=False),
            pa.field('event_time', TIMESTAMP_TYPE, nullable=False),
            pa.field('event_id', pa.string()),
            pa.field('event_type', pa.string()),
            pa.field('value', pa.float64()),
            *(pa.field(c, pa.float64()) for c in spec.numeric_columns()),
        ]
    )


@dataclasses.dataclass
class EntityHistory:
    """What an entity's next events still need of its past: the events within the longest
    horizon of its latest one, and at least the last ``lags`` events."""

    times: np.ndarray  # int64 µs, ascending
    values: np.ndarray  # float64, NaN for missing
    types: np.ndarray  # str (numpy unicode: compact and fast to keep in state)
    shift: float | None = None  # the entity's first value: sums of squares are taken around it

    @classmethod
    def empty(cls) -> EntityHistory:
        return cls(np.zeros(0, np.int64), np.zeros(0), np.zeros(0, dtype=str))

    @property
    def last_us(self) -> int | None:
        return int(self.times[-1]) if len(self.times) else None


def rolling_features(
    history: EntityHistory, events: pa.Table, spec: FeatureSpec
) -> tuple[pa.Table, EntityHistory]:
    """The features of one entity's new ``events`` (sorted by time, none before the history's
    last), and the history to keep for the next ones."""
    new_t = micros(events.column('timestamp'))
    new_v = (
        events.column('value').cast(pa.float64()).fill_null(np.nan).to_numpy(zero_copy_only=False)
    )
    new_types = np.array(events.column('event_type').to_pylist(), dtype=str)
    t = np.concatenate([history.times, new_t])
    v = np.concatenate([history.values, new_v])
    types = np.concatenate([history.types, new_types])
    start = len(history.times)
    idx = np.arange(start, len(t))
    hi = np.searchsorted(t, t[idx], 'right')  # events up to and including this time
    present = ~np.isnan(v)
    filled = np.where(present, v, 0.0)
    shift = history.shift
    if shift is None and present.any():
        shift = float(v[present][0])  # fixed per entity: chunks and one pass agree
    shift = 0.0 if shift is None else shift
    cum_n = np.concatenate([[0], np.cumsum(present)])
    cum_s = np.concatenate([[0.0], np.cumsum(filled)])
    cum_q = np.concatenate([[0.0], np.cumsum(np.where(present, (v - shift) ** 2, 0.0))])
    cum_c = np.arange(len(t) + 1)
    out: dict[str, np.ndarray] = {}
    for h in sorted(spec.horizons_secs):
        name = horizon_name(h)
        lo = np.searchsorted(t, t[idx] - round(h * _US), 'right')  # (t - h, t]
        n = cum_n[hi] - cum_n[lo]
        s = cum_s[hi] - cum_s[lo]
        q = cum_q[hi] - cum_q[lo]
        with np.errstate(invalid='ignore', divide='ignore'):
            mean = np.where(n > 0, s / n, np.nan)
            m2 = q - n * (mean - shift) ** 2
            std = np.where(n > 1, np.sqrt(np.maximum(m2, 0.0) / (n - 1)), np.nan)
        out[f'count_{name}'] = (cum_c[hi] - cum_c[lo]).astype(float)
        out[f'sum_{name}'] = np.where(n > 0, s, np.nan)
        out[f'mean_{name}'] = mean
        out[f'stddev_{name}'] = std
    out['secs_since_prev'] = np.where(idx > 0, (t[idx] - t[np.maximum(idx - 1, 0)]) / _US, np.nan)
    longest = horizon_name(spec.longest)
    lo = np.searchsorted(t, t[idx] - round(spec.longest * _US), 'right')
    total = (cum_c[hi] - cum_c[lo]).astype(float)
    own = np.zeros(len(idx))
    type_arr = types
    for typ in set(new_types.tolist()) | set(spec.event_types):
        cum = np.concatenate([[0], np.cumsum(type_arr == typ)])
        share = (cum[hi] - cum[lo]) / total
        own = np.where(type_arr[idx] == typ, share, own)
        if typ in spec.event_types:
            out[f'ratio_{typ}_{longest}'] = share
    for typ in spec.event_types:
        out.setdefault(f'ratio_{typ}_{longest}', np.zeros(len(idx)))
    out[f'type_ratio_{longest}'] = own
    for k in range(1, spec.lags + 1):
        out[f'lag_{k}'] = np.where(idx - k >= 0, v[np.maximum(idx - k, 0)], np.nan)
    if spec.anomaly is not None:
        out['anomaly_score'] = np.full(len(idx), np.nan)  # the shard fills it in
    columns = {
        'entity_id': events.column('entity_id').cast(pa.string()),
        'event_time': events.column('timestamp').cast(TIMESTAMP_TYPE),
        'event_id': events.column('event_id').cast(pa.string())
        if 'event_id' in events.column_names
        else pa.nulls(events.num_rows, pa.string()),
        'event_type': events.column('event_type').cast(pa.string()),
        'value': pa.array(new_v, pa.float64(), from_pandas=True),
        **{c: pa.array(out[c], pa.float64(), from_pandas=True) for c in spec.numeric_columns()},
    }
    keep_from = min(
        int(np.searchsorted(t, t[-1] - round(spec.longest * _US), 'right')),
        max(len(t) - spec.lags, 0),
    )
    kept = EntityHistory(
        t[keep_from:].copy(),
        v[keep_from:].copy(),
        types[keep_from:].copy(),
        history.shift if history.shift is not None else (shift if present.any() else None),
    )
    return pa.table(columns, schema=feature_schema(spec)), kept
