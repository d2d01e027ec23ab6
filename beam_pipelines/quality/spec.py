"""The declared quality expectations (``--quality_spec``, YAML or JSON)::

    weights: {completeness: 1, validity: 2, uniqueness: 1, timeliness: 1, consistency: 1,
              accuracy: 2}
    completeness: {fields: [value, country]}   # default: every field that may be null
    timeliness: {max_lag_secs: 3600}           # scored only when given
    rules:                                     # accuracy: the share of rows passing all
      - {name: value_range, field: value, min: 0, max: 10000}
      - {name: known_sources, field: source, allowed: [web, ios, android, api]}
      - {name: purchases_have_values, field: value, not_null: true,
         where: {field: event_type, in: [purchase]}}
      - {name: ordered, left: start_time, op: '<=', right: end_time}
    thresholds: {score: 0.95, validity: 0.98}  # a measure below its threshold is a breach

Nulls are completeness's business: a rule other than ``not_null`` passes a null.
"""

from __future__ import annotations

import dataclasses
import json

import yaml

__all__ = ['DIMENSIONS', 'QualitySpec', 'Rule', 'SpecError', 'load_quality_spec']

DIMENSIONS = ('completeness', 'validity', 'uniqueness', 'timeliness', 'consistency', 'accuracy')
OPS = ('<', '<=', '==', '!=', '>=', '>')
_RULE_KEYS = {'name', 'field', 'min', 'max', 'allowed', 'not_null', 'left', 'op', 'right', 'where'}


class SpecError(ValueError):
    """A quality spec that cannot be used; the message names the place."""


@dataclasses.dataclass(frozen=True)
class Rule:
    name: str
    kind: str  # range | allowed | not_null | compare
    field: str | None = None
    min: float | None = None
    max: float | None = None
    allowed: tuple = ()
    left: str | None = None
    op: str | None = None
    right: str | None = None
    where_field: str | None = None
    where_in: tuple = ()

    def fields(self) -> set[str]:
        return {f for f in (self.field, self.left, self.right, self.where_field) if f}


@dataclasses.dataclass(frozen=True)
class QualitySpec:
    weights: dict[str, float] = dataclasses.field(
        default_factory=lambda: dict.fromkeys(DIMENSIONS, 1.0)
    )
    completeness_fields: tuple[str, ...] | None = None
    max_lag_secs: float | None = None
    rules: tuple[Rule, ...] = ()
    thresholds: dict[str, float] = dataclasses.field(default_factory=dict)

    def check_fields(self, known: set[str]) -> None:
        """Raises SpecError for a field the schema does not have."""
        used = set(self.completeness_fields or ())
        for rule in self.rules:
            used |= rule.fields()
        unknown = used - known
        if unknown:
            raise SpecError(f'unknown field(s) {sorted(unknown)} (schema: {sorted(known)})')


def _rule(raw, i: int) -> Rule:
    where = f'rules[{i}]'
    if not isinstance(raw, dict):
        raise SpecError(f'{where}: expected a mapping')
    unknown = set(raw) - _RULE_KEYS
    if unknown:
        raise SpecError(f'{where}: unknown keys {sorted(unknown)}')
    name = str(raw.get('name') or f'rule_{i}')
    cond = raw.get('where')
    where_field, where_in = None, ()
    if cond is not None:
        if not isinstance(cond, dict) or set(cond) != {'field', 'in'} or not cond['in']:
            raise SpecError(f'{where} ({name}): where must be {{field: F, in: [values]}}')
        where_field, where_in = str(cond['field']), tuple(cond['in'])
    common = {'name': name, 'where_field': where_field, 'where_in': where_in}
    if 'left' in raw or 'op' in raw or 'right' in raw:
        if raw.get('op') not in OPS or not raw.get('left') or not raw.get('right'):
            raise SpecError(f'{where} ({name}): a comparison needs left, op ({OPS}) and right')
        return Rule(kind='compare', left=raw['left'], op=raw['op'], right=raw['right'], **common)
    if not raw.get('field'):
        raise SpecError(f'{where} ({name}): field is required')
    if raw.get('not_null'):
        return Rule(kind='not_null', field=raw['field'], **common)
    if 'allowed' in raw:
        if not isinstance(raw['allowed'], list) or not raw['allowed']:
            raise SpecError(f'{where} ({name}): allowed must be a non-empty list')
        return Rule(kind='allowed', field=raw['field'], allowed=tuple(raw['allowed']), **common)
    if 'min' in raw or 'max' in raw:
        low, high = raw.get('min'), raw.get('max')
        for bound in (low, high):
            if bound is not None and not isinstance(bound, int | float):
                raise SpecError(f'{where} ({name}): min and max must be numbers')
        if low is not None and high is not None and low > high:
            raise SpecError(f'{where} ({name}): min {low} is above max {high}')
        return Rule(kind='range', field=raw['field'], min=low, max=high, **common)
    raise SpecError(f'{where} ({name}): give min/max, allowed, not_null or left/op/right')


def parse_quality_spec(doc) -> QualitySpec:
    """Raises SpecError naming the place of the first problem."""
    if doc is None:
        return QualitySpec()
    if not isinstance(doc, dict):
        raise SpecError('expected a mapping')
    unknown = set(doc) - {'weights', 'completeness', 'timeliness', 'rules', 'thresholds'}
    if unknown:
        raise SpecError(f'unknown keys {sorted(unknown)}')
    weights = dict.fromkeys(DIMENSIONS, 1.0)
    for name, w in (doc.get('weights') or {}).items():
        if name not in DIMENSIONS:
            raise SpecError(f'weights: unknown dimension {name!r} (known: {DIMENSIONS})')
        if not isinstance(w, int | float) or w < 0:
            raise SpecError(f'weights.{name}: must be a number >= 0')
        weights[name] = float(w)
    if not any(weights.values()):
        raise SpecError('weights: at least one must be above 0')
    fields = (doc.get('completeness') or {}).get('fields')
    lag = (doc.get('timeliness') or {}).get('max_lag_secs')
    if lag is not None and (not isinstance(lag, int | float) or lag <= 0):
        raise SpecError('timeliness.max_lag_secs: must be a number > 0')
    thresholds = {}
    for name, t in (doc.get('thresholds') or {}).items():
        if name not in (*DIMENSIONS, 'score'):
            raise SpecError(f'thresholds: unknown measure {name!r}')
        if not isinstance(t, int | float) or not 0 <= t <= 1:
            raise SpecError(f'thresholds.{name}: must be between 0 and 1')
        thresholds[name] = float(t)
    rules = tuple(_rule(r, i) for i, r in enumerate(doc.get('rules') or []))
    names = [r.name for r in rules]
    if len(set(names)) != len(names):
        raise SpecError(f'rules: names must be unique: {names}')
    return QualitySpec(
        weights=weights,
        completeness_fields=tuple(fields) if fields is not None else None,
        max_lag_secs=float(lag) if lag is not None else None,
        rules=rules,
        thresholds=thresholds,
    )


def load_quality_spec(path: str) -> QualitySpec:
    """The spec in a YAML or JSON file (any Beam filesystem)."""
    from apache_beam.io.filesystems import FileSystems

    with FileSystems.open(path) as f:
        text = f.read().decode('utf-8')
    try:
        doc = json.loads(text) if path.endswith('.json') else yaml.safe_load(text)
    except (json.JSONDecodeError, yaml.YAMLError) as exc:
        raise SpecError(
            f'not valid {"JSON" if path.endswith(".json") else "YAML"}: {exc}'
        ) from None
    return parse_quality_spec(doc)
