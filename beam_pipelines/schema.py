"""The event schema: a pydantic v2 model, compiled into vectorisable field rules.

The default :class:`Event` model is what the flagship validates against. Users pass their own
model with ``--schema module:Class``; :func:`compile_schema` turns any model into an
:class:`EventSchema` whose field rules (types, required fields, lengths, ranges, allowed values)
run vectorised on Arrow batches. Constraints it cannot vectorise (custom validators, unknown
types) make the schema ``row_level``: those rows are then also checked one by one with the model,
so a custom model is always honoured, only slower.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import importlib
import types
import typing
from typing import Annotated
from typing import Any
from typing import Literal

import annotated_types
import pyarrow as pa
import pydantic
from pydantic import BaseModel
from pydantic import ConfigDict
from pydantic import Field
from pydantic import StringConstraints
from pydantic import field_validator

from beam_pipelines.columnar import timestamps

__all__ = [
    'CORE_FIELDS',
    'Event',
    'EventSchema',
    'FieldSpec',
    'SchemaError',
    'compile_schema',
    'load_model',
]

CORE_FIELDS = ('event_id', 'event_type', 'entity_id', 'timestamp', 'value')
ATTRIBUTES = 'attributes'


class SchemaError(ValueError):
    """A model that cannot serve as an event schema, or a ``--schema`` that does not load."""


NonEmptyStr = Annotated[str, StringConstraints(min_length=1)]


class Event(BaseModel):
    """The default event schema.

    Attributes:
        event_id: non-empty, unique per event; duplicates are dropped (first copy kept).
        event_type: non-empty; normalised to lower case.
        entity_id: non-empty; the key (user, device, account).
        timestamp: event time: RFC 3339 with ``Z`` or an offset, epoch seconds, or epoch
            milliseconds (absolute values above 1e11); normalised to UTC.
        value: optional finite number; numeric strings are coerced.
        source: optional origin of the event (app, service, region).

    Any other field is kept, as JSON, in ``attributes``.
    """

    model_config = ConfigDict(extra='allow', str_strip_whitespace=True)

    event_id: NonEmptyStr
    event_type: Annotated[str, StringConstraints(min_length=1, to_lower=True)]
    entity_id: NonEmptyStr
    timestamp: dt.datetime
    value: float | None = Field(default=None, allow_inf_nan=False)
    source: str | None = None

    @field_validator('timestamp', mode='before')
    @classmethod
    def _normalise_timestamp(cls, value: Any) -> dt.datetime:
        return timestamps.parse_timestamp(value)

    @field_validator('value', mode='before')
    @classmethod
    def _number_not_bool(cls, value: Any) -> Any:
        if isinstance(value, bool):
            raise ValueError('value: expected a number, got a boolean')
        if isinstance(value, str):
            text = value.strip()
            # The vectorised path's grammar: float() alone also takes "1_000", "inf" and
            # other scripts' digits.
            if text and not timestamps.NUMBER.match(text):
                raise ValueError(f'value: {text!r} is not a number')
            return text or None
        return value


# Validators of the default model that the vectorised path reproduces exactly.
_KNOWN_VALIDATORS = frozenset({'_normalise_timestamp', '_number_not_bool'})

_KINDS: dict[type, str] = {str: 'string', int: 'int', float: 'float', bool: 'bool'}
_ARROW_TYPES = {
    'string': pa.string(),
    'int': pa.int64(),
    'float': pa.float64(),
    'bool': pa.bool_(),
    'timestamp': timestamps.TIMESTAMP_TYPE,
}


@dataclasses.dataclass(frozen=True)
class FieldSpec:
    """One field's vectorisable rules.

    Attributes:
        name: field name.
        kind: 'string', 'int', 'float', 'bool' or 'timestamp'.
        required: the field must be present and non-null.
        min_length, max_length, pattern, lower: string rules.
        ge, gt, le, lt: numeric bounds.
        allowed: the allowed values (from ``Literal[...]``), or None.
        finite: floats must be finite.
    """

    name: str
    kind: str
    required: bool
    min_length: int | None = None
    max_length: int | None = None
    pattern: str | None = None
    lower: bool = False
    strip: bool = False
    ge: float | None = None
    gt: float | None = None
    le: float | None = None
    lt: float | None = None
    allowed: tuple | None = None
    finite: bool = True

    @property
    def arrow_type(self) -> pa.DataType:
        return _ARROW_TYPES[self.kind]


@dataclasses.dataclass(frozen=True)
class EventSchema:
    """A compiled event schema.

    Attributes:
        model: the pydantic model.
        fields: field rules in declaration order.
        extra: 'allow' (unknown fields go to ``attributes``), 'ignore' or 'forbid'.
        row_level: the model has rules the vectorised path cannot run.
        row_level_reasons: why, for logs and the run summary.
    """

    model: type[BaseModel]
    fields: tuple[FieldSpec, ...]
    extra: str
    row_level: bool
    row_level_reasons: tuple[str, ...] = ()

    @property
    def field_names(self) -> tuple[str, ...]:
        return tuple(f.name for f in self.fields)

    def field(self, name: str) -> FieldSpec:
        for spec in self.fields:
            if spec.name == name:
                return spec
        raise KeyError(name)

    @property
    def name(self) -> str:
        return f'{self.model.__module__}:{self.model.__qualname__}'

    def event_arrow_schema(self) -> pa.Schema:
        """The Arrow schema of clean events (the ``events/`` Parquet output)."""
        cols = [pa.field(f.name, f.arrow_type, nullable=not f.required) for f in self.fields]
        if self.extra == 'allow':
            cols.append(pa.field(ATTRIBUTES, pa.string()))
        return pa.schema(cols)


def _unwrap_optional(annotation: Any) -> tuple[Any, bool]:
    origin = typing.get_origin(annotation)
    if origin in (typing.Union, types.UnionType):
        args = [a for a in typing.get_args(annotation) if a is not type(None)]
        if len(args) == 1:
            return args[0], True
    return annotation, False


def _field_spec(name: str, info: pydantic.fields.FieldInfo, model_config: dict) -> FieldSpec:
    annotation, _ = _unwrap_optional(info.annotation)
    metadata = list(info.metadata)
    if typing.get_origin(annotation) is Annotated:
        base, *extra = typing.get_args(annotation)
        metadata.extend(extra)
        annotation, _ = _unwrap_optional(base)
    allowed = None
    if typing.get_origin(annotation) is Literal:
        allowed = typing.get_args(annotation)
        kinds = {_KINDS.get(type(a)) for a in allowed}
        if len(kinds) != 1 or None in kinds:
            raise _NotVectorisable(f'{name}: Literal of mixed or unsupported types')
        kind = kinds.pop()
    elif annotation is dt.datetime:
        kind = 'timestamp'
    elif annotation in _KINDS:
        kind = _KINDS[annotation]
    else:
        raise _NotVectorisable(f'{name}: type {annotation!r} is not vectorised')
    rules: dict[str, Any] = {
        'strip': bool(model_config.get('str_strip_whitespace')),
        'lower': bool(model_config.get('str_to_lower')),
    }
    for item in metadata:
        if isinstance(item, StringConstraints):
            rules['min_length'] = item.min_length
            rules['max_length'] = item.max_length
            rules['pattern'] = item.pattern
            rules['lower'] = rules['lower'] or bool(item.to_lower)
            rules['strip'] = rules['strip'] or bool(item.strip_whitespace)
        elif isinstance(item, annotated_types.MinLen):
            rules['min_length'] = item.min_length
        elif isinstance(item, annotated_types.MaxLen):
            rules['max_length'] = item.max_length
        elif isinstance(item, annotated_types.Ge | annotated_types.Gt):
            rules['ge' if isinstance(item, annotated_types.Ge) else 'gt'] = float(
                getattr(item, 'ge', getattr(item, 'gt', None))
            )
        elif isinstance(item, annotated_types.Le | annotated_types.Lt):
            rules['le' if isinstance(item, annotated_types.Le) else 'lt'] = float(
                getattr(item, 'le', getattr(item, 'lt', None))
            )
        elif getattr(item, 'allow_inf_nan', None) is not None:
            rules['finite'] = not item.allow_inf_nan
        elif getattr(item, 'pattern', None) is not None:
            rules['pattern'] = item.pattern
        else:
            raise _NotVectorisable(f'{name}: constraint {item!r} is not vectorised')
    if kind != 'float':
        rules.pop('finite', None)
    elif model_config.get('allow_inf_nan') is False:
        rules.setdefault('finite', True)
    return FieldSpec(name=name, kind=kind, required=info.is_required(), allowed=allowed, **rules)


class _NotVectorisable(Exception):
    pass


def compile_schema(model: type[BaseModel]) -> EventSchema:
    """Compiles a pydantic model into an :class:`EventSchema`.

    Args:
        model: a pydantic v2 model with at least the fields in ``CORE_FIELDS``.

    Returns:
        The compiled schema.

    Raises:
        SchemaError: when the model is not a pydantic model or misses a core field.
    """
    if not (isinstance(model, type) and issubclass(model, BaseModel)):
        raise SchemaError(f'--schema must name a pydantic v2 model class, got {model!r}')
    missing = [name for name in CORE_FIELDS if name not in model.model_fields]
    if missing:
        raise SchemaError(
            f'schema {model.__qualname__} lacks the core field(s) {", ".join(missing)}'
        )
    reasons = []
    specs = []
    config = dict(model.model_config)
    for name, info in model.model_fields.items():
        try:
            specs.append(_field_spec(name, info, config))
        except _NotVectorisable as exc:
            reasons.append(str(exc))
            specs.append(FieldSpec(name=name, kind='string', required=info.is_required()))
    decorators = model.__pydantic_decorators__
    custom = [
        name
        for group in (decorators.field_validators, decorators.model_validators)
        for name in group
        if name not in _KNOWN_VALIDATORS
    ]
    if custom:
        reasons.append('custom validators: ' + ', '.join(sorted(custom)))
    kinds = {s.name: s.kind for s in specs}
    if kinds['timestamp'] != 'timestamp' or kinds['value'] not in ('float', 'int'):
        raise SchemaError('schema fields timestamp must be a datetime and value a number')
    if ATTRIBUTES in kinds:
        raise SchemaError(f'field name {ATTRIBUTES!r} is reserved for unknown fields')
    return EventSchema(
        model=model,
        fields=tuple(specs),
        extra=config.get('extra') or 'ignore',
        row_level=bool(reasons),
        row_level_reasons=tuple(reasons),
    )


def load_model(spec: str) -> type[BaseModel]:
    """Imports ``module:Class``.

    Raises:
        SchemaError: with a one-line reason when the module or class cannot be loaded.
    """
    module_name, sep, class_name = spec.partition(':')
    if not sep or not module_name or not class_name:
        raise SchemaError(f'--schema must look like module:Class, got {spec!r}')
    try:
        module = importlib.import_module(module_name)
    except ImportError as exc:
        raise SchemaError(f'--schema {spec}: cannot import {module_name!r}: {exc}') from None
    model = getattr(module, class_name, None)
    if model is None:
        raise SchemaError(f'--schema {spec}: module {module_name!r} has no {class_name!r}')
    return model
