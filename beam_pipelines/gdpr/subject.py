"""A data subject: its identifiers in plain and pseudonymised form, and how to find them."""

from __future__ import annotations

import dataclasses

from beam_pipelines.gdpr.matching import Matcher
from beam_pipelines.gdpr.pseudonym import all_pseudonyms
from beam_pipelines.gdpr.pseudonym import is_pseudonym
from beam_pipelines.gdpr.secrets import KeyRing

__all__ = ['Subject']


@dataclasses.dataclass(frozen=True)
class Subject:
    """Attributes:
    entity_id: the subject's id (plain).
    plain: the plain identifiers (the id and any declared personal values given).
    pseudonyms: their pseudonyms under every key, and pseudonyms found in the stores.
    key_subjects: the key-store rows of the subject (pseudonyms of the id).
    """

    entity_id: str
    plain: tuple[str, ...]
    pseudonyms: tuple[str, ...]
    key_subjects: tuple[str, ...]

    @classmethod
    def of(cls, entity_id: str, identifiers: list[str], ring: KeyRing | None) -> Subject:
        if not entity_id:
            raise ValueError('--subject: an entity id is required')
        plain = tuple(dict.fromkeys([entity_id, *(i for i in identifiers if i)]))
        pseudonyms = (
            tuple(p for v in plain for p in all_pseudonyms(v, ring)) if ring is not None else ()
        )
        keys = tuple(all_pseudonyms(entity_id, ring)) if ring is not None else ()
        return cls(entity_id, plain, pseudonyms, keys)

    def with_found(self, values: list[str]) -> Subject:
        """The subject with pseudonymised personal values found in its own records."""
        extra = [v for v in values if v and is_pseudonym(v) and v not in self.pseudonyms]
        return dataclasses.replace(self, pseudonyms=(*self.pseudonyms, *dict.fromkeys(extra)))

    @property
    def identifiers(self) -> tuple[str, ...]:
        return (*self.plain, *self.pseudonyms)

    @property
    def entity_values(self) -> list[str]:
        """What ``entity_id`` columns hold for this subject: the id, or a pseudonym of it."""
        return [self.entity_id, *self.key_subjects]

    def matcher(self) -> Matcher:
        return Matcher(self.identifiers)
