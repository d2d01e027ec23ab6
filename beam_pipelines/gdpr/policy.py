"""Which fields carry personal data and how each is protected: from flags or the schema.

A field is declared in ``--pii_fields`` (pseudonymised: replaced by a keyed HMAC pseudonym) or
``--encrypt_fields`` (encrypted with the subject's data key, recoverable until the subject is
erased), or in the schema model with ``Field(json_schema_extra={'personal_data': 'pseudonymise'})``
(or ``'encrypt'``). A field is a string column of the schema or, for fields outside the schema,
a key of ``attributes``. The subject of a record is its ``entity_id``.
"""

from __future__ import annotations

import dataclasses

from beam_pipelines.schema import EventSchema

__all__ = ['SUBJECT_FIELD', 'PiiPolicy', 'PolicyError', 'policy_from']

SUBJECT_FIELD = 'entity_id'
_MODES = ('pseudonymise', 'encrypt')


class PolicyError(ValueError):
    """A personal-data declaration that cannot be honoured."""


@dataclasses.dataclass(frozen=True)
class PiiPolicy:
    """Attributes:
    pseudonymise: fields replaced by pseudonyms.
    encrypt: fields encrypted per subject.
    columns: the declared fields that are schema columns (the others live in attributes).
    """

    pseudonymise: tuple[str, ...] = ()
    encrypt: tuple[str, ...] = ()
    columns: frozenset[str] = frozenset()

    @property
    def fields(self) -> tuple[str, ...]:
        return (*self.pseudonymise, *self.encrypt)

    @property
    def attribute_fields(self) -> tuple[str, ...]:
        return tuple(f for f in self.fields if f not in self.columns)

    def __bool__(self) -> bool:
        return bool(self.fields)


def _schema_declared(schema: EventSchema) -> dict[str, str]:
    declared = {}
    for name, info in schema.model.model_fields.items():
        extra = info.json_schema_extra if isinstance(info.json_schema_extra, dict) else {}
        mode = extra.get('personal_data')
        if mode is None:
            continue
        if mode not in _MODES:
            raise PolicyError(f'{name}: personal_data must be one of {_MODES}, got {mode!r}')
        declared[name] = mode
    return declared


def policy_from(
    schema: EventSchema, pseudonymise: list[str] | None, encrypt: list[str] | None
) -> PiiPolicy:
    """The policy of the flags and the schema's declarations.

    Raises:
        PolicyError: a field declared twice, the subject encrypted, or a non-string column.
    """
    modes = _schema_declared(schema)
    for names, mode in ((pseudonymise or [], 'pseudonymise'), (encrypt or [], 'encrypt')):
        for name in names:
            if modes.get(name, mode) != mode:
                raise PolicyError(f'{name}: declared both pseudonymised and encrypted')
            modes[name] = mode
    if modes.get(SUBJECT_FIELD) == 'encrypt':
        raise PolicyError(f'{SUBJECT_FIELD} names the subject: pseudonymise it, not encrypt it')
    kinds = {spec.name: spec.kind for spec in schema.fields}
    for name in modes:
        if name in kinds and kinds[name] != 'string':
            raise PolicyError(f'{name} is a {kinds[name]} field: only strings can be protected')
    return PiiPolicy(
        pseudonymise=tuple(n for n, m in modes.items() if m == 'pseudonymise'),
        encrypt=tuple(n for n, m in modes.items() if m == 'encrypt'),
        columns=frozenset(n for n in modes if n in kinds),
    )
