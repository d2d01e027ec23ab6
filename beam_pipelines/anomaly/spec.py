"""Detector specs: which detectors score a key's values, how scores are calibrated and combined,
from a JSON or YAML file (``--detector_spec``), so users change detection without code.

::

    warmup: 200                 # points per key before any verdict
    detectors:                  # each: kind, window (points), threshold, seasonal_period_secs
      - {kind: zscore, window: 100}
      - {kind: zscore, window: 500}
      - {kind: zscore, window: 100, seasonal_period_secs: 86400}
    calibration: {kind: rank, history: 8000}   # or {kind: fixed}: raw / (raw + threshold)
    ensemble: {aggregation: max, threshold: 0.78}
    refractory_points: 150      # after a point scores refractory_level or more, the key's next
    refractory_level: 0.75      # points score 0 (one detection per episode)

Kinds: ``zscore`` (sliding mean and stddev), ``robust_zscore`` (median and MAD), ``iqr``
(quartiles), ``relative_change`` (against the mean of the last ``window`` values). Aggregations:
``max``, ``mean`` (of the scores; anomaly from ``threshold``), or votes on the detectors' labels:
``majority``, ``any``, ``all`` (the score is then the fraction of detectors that say anomaly).
The threshold defaults to 0.78 with rank calibration and to 0.5 with fixed calibration (where a
detector's score is 0.5 exactly at its own threshold). The refractory period starts at
``refractory_level``, not at the threshold, so scores do not depend on the threshold: it can be
tuned afterwards on the scores, as NAB's optimiser does. Every unknown key or bad value is
refused with its path.

``DEFAULT_SPEC`` is the spec measured on NAB (``python -m beam_pipelines.evaluate_nab``); its
state is about 100 KB per key (the three 8,000-value rank histories): use a shorter ``history``
for many keys.
"""

from __future__ import annotations

import dataclasses
import json
from typing import Any

import yaml

from beam_pipelines.anomaly.detectors import DetectorConfig

__all__ = ['AGGREGATIONS', 'DEFAULT_SPEC', 'AnomalySpec', 'SpecError', 'load_spec', 'parse_spec']

AGGREGATIONS = ('max', 'mean', 'majority', 'any', 'all')
CALIBRATIONS = ('rank', 'fixed')


class SpecError(ValueError):
    """A spec that cannot be used; the message names the offending path."""


@dataclasses.dataclass(frozen=True)
class AnomalySpec:
    """A parsed, checked spec (see the module docstring)."""

    detectors: tuple[DetectorConfig, ...]
    warmup: int = 200
    calibration: str = 'rank'
    history: int = 8000
    aggregation: str = 'max'
    threshold: float = 0.78
    refractory_points: int = 150
    refractory_level: float = 0.75

    def __post_init__(self):
        if not self.detectors:
            raise SpecError('detectors: at least one is needed')
        if self.calibration not in CALIBRATIONS:
            raise SpecError(f'calibration.kind: one of {CALIBRATIONS}, got {self.calibration!r}')
        if self.aggregation not in AGGREGATIONS:
            raise SpecError(
                f'ensemble.aggregation: one of {AGGREGATIONS}, got {self.aggregation!r}'
            )
        if not 0 < self.threshold < 1:
            raise SpecError(f'ensemble.threshold: must lie in (0, 1), got {self.threshold}')
        if not 0 < self.refractory_level <= 1:
            raise SpecError(f'refractory_level: must lie in (0, 1], got {self.refractory_level}')
        if self.warmup < 0 or self.refractory_points < 0 or self.history < 2:
            raise SpecError('warmup and refractory_points must be >= 0, history >= 2')
        names = [d.name for d in self.detectors]
        if len(set(names)) != len(names):
            raise SpecError(f'detectors: two are the same ({names})')

    def to_dict(self) -> dict:
        """The spec as plain data (for run summaries and the anomalies' provenance)."""
        return {
            'warmup': self.warmup,
            'detectors': [
                {k: v for k, v in dataclasses.asdict(d).items() if v is not None}
                for d in self.detectors
            ],
            'calibration': {'kind': self.calibration, 'history': self.history},
            'ensemble': {'aggregation': self.aggregation, 'threshold': self.threshold},
            'refractory_points': self.refractory_points,
            'refractory_level': self.refractory_level,
        }


_TOP = {'warmup', 'detectors', 'calibration', 'ensemble', 'refractory_points', 'refractory_level'}
_DETECTOR = {'kind', 'window', 'threshold', 'warmup', 'seasonal_period_secs'}


def parse_spec(data: Any) -> AnomalySpec:
    """A spec from plain data (a parsed JSON/YAML document).

    Raises:
        SpecError: naming the path of what is wrong.
    """
    if not isinstance(data, dict):
        raise SpecError('a spec is a mapping with "detectors"')
    _no_unknown(data, _TOP, '')
    raw_detectors = data.get('detectors')
    if not isinstance(raw_detectors, list):
        raise SpecError('detectors: a list of detectors is needed')
    detectors = []
    for i, d in enumerate(raw_detectors):
        if not isinstance(d, dict):
            raise SpecError(f'detectors[{i}]: a mapping with "kind"')
        _no_unknown(d, _DETECTOR, f'detectors[{i}].')
        try:
            detectors.append(DetectorConfig(**{'warmup': 1, **d}))
        except (TypeError, ValueError) as exc:
            raise SpecError(f'detectors[{i}]: {exc}') from None
    calibration = data.get('calibration', {})
    ensemble = data.get('ensemble', {})
    for name, part, keys in (
        ('calibration', calibration, {'kind', 'history'}),
        ('ensemble', ensemble, {'aggregation', 'threshold'}),
    ):
        if not isinstance(part, dict):
            raise SpecError(f'{name}: a mapping')
        _no_unknown(part, keys, f'{name}.')
    kind = calibration.get('kind', 'rank')
    try:
        return AnomalySpec(
            detectors=tuple(detectors),
            warmup=int(data.get('warmup', 200)),
            calibration=kind,
            history=int(calibration.get('history', 8000)),
            aggregation=ensemble.get('aggregation', 'max'),
            threshold=float(ensemble.get('threshold', 0.5 if kind == 'fixed' else 0.78)),
            refractory_points=int(data.get('refractory_points', 150)),
            refractory_level=float(data.get('refractory_level', 0.75)),
        )
    except (TypeError, ValueError) as exc:
        if isinstance(exc, SpecError):
            raise
        raise SpecError(str(exc)) from None


def load_spec(path: str) -> AnomalySpec:
    """Reads a JSON (``.json``) or YAML spec file.

    Raises:
        SpecError: unreadable, not JSON/YAML, or not a valid spec.
    """
    try:
        with open(path, encoding='utf-8') as f:
            text = f.read()
        data = json.loads(text) if path.endswith('.json') else yaml.safe_load(text)
    except (OSError, ValueError, yaml.YAMLError) as exc:
        raise SpecError(f'{path}: {exc}') from None
    try:
        return parse_spec(data)
    except SpecError as exc:
        raise SpecError(f'{path}: {exc}') from None


def _no_unknown(data: dict, known: set, prefix: str) -> None:
    unknown = sorted(set(data) - known)
    if unknown:
        raise SpecError(f'{prefix}{unknown[0]}: unknown key (known: {", ".join(sorted(known))})')


DEFAULT_SPEC = parse_spec(
    {
        'warmup': 200,
        'detectors': [
            {'kind': 'zscore', 'window': 100},
            {'kind': 'zscore', 'window': 500},
            {'kind': 'zscore', 'window': 100, 'seasonal_period_secs': 86400},
        ],
        'calibration': {'kind': 'rank', 'history': 8000},
        'ensemble': {'aggregation': 'max', 'threshold': 0.78},
        'refractory_points': 150,
        'refractory_level': 0.75,
    }
)
