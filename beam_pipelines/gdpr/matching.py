"""Finding a subject's values: in JSON, in free text, and in dead-letter payloads.

Stores compare values exactly, never as substrings: :func:`payload_values` and
:func:`candidates` take every value out of a payload or a text (JSON scalars when it parses,
delimited tokens, and the finer pieces of URLs and query strings), so ``u1`` is found in
``{"entity_id": "u1"}`` and ``/u/u1/x`` but not in ``u10``, and ingestion drops the dead
letters of erased subjects by their tombstones (:func:`envelope_tombstoned`).

:class:`Matcher` is the coarse filter before that comparison: one regular expression, the
identifiers delimited by non-word characters, that PostgreSQL runs to narrow its dead letters
(and Python's ``re`` reads the same way).
"""

from __future__ import annotations

import base64
import contextlib
import re
from collections.abc import Iterable

import orjson

from beam_pipelines.gdpr.protect import as_text
from beam_pipelines.gdpr.secrets import KeyRing
from beam_pipelines.gdpr.tombstones import Tombstones

__all__ = ['Matcher', 'candidates', 'envelope_tombstoned', 'json_values', 'payload_values']

_WORD = 'A-Za-z0-9_'
_TOKEN = re.compile(r'[^\s"\',;:{}\[\]()=<>|\\]+')
# Finer splits for values embedded in URLs, query strings and sentences: "/u/user-42/profile",
# "id=user-42&x=1", "user-42." all yield "user-42".
_FINE = re.compile(r'[^A-Za-z0-9_@.+\-]+')


def _escape(value: str) -> str:
    # A backslash before an ASCII punctuation character is literal in PostgreSQL's and Python's
    # dialects; non-ASCII characters are never metacharacters (and RE2 would refuse a backslash
    # before them).
    return ''.join(c if c.isalnum() or ord(c) > 127 else '\\' + c for c in value)


class Matcher:
    """Finds the identifiers given, alone or delimited inside text (a superset of the exact
    matches the stores then confirm).

    Args:
        identifiers: plain values and pseudonyms (empty strings are ignored).
    """

    def __init__(self, identifiers: Iterable[str]):
        self.identifiers = tuple(sorted({i for i in identifiers if i}))
        if not self.identifiers:
            raise ValueError('identifiers: at least one non-empty value is needed')
        alternatives = '|'.join(_escape(i) for i in self.identifiers)
        # The SQL pattern consumes its delimiters (enough to narrow rows); Python's uses
        # lookaround, so adjacent traces ("u1,u1") are each found.
        self.pattern = f'(^|[^{_WORD}])({alternatives})($|[^{_WORD}])'
        self._compiled = re.compile(f'(?<![{_WORD}])({alternatives})(?![{_WORD}])')

    def search(self, text: str | None) -> bool:
        return bool(text) and self._compiled.search(text) is not None


def _scalars(value, out: list[str]) -> None:
    if isinstance(value, dict):
        for v in value.values():
            _scalars(v, out)
    elif isinstance(value, list):
        for v in value:
            _scalars(v, out)
    elif value is not None:
        out.append(as_text(value))


def json_values(value) -> list[str]:
    """Every scalar inside a JSON document, as text."""
    out: list[str] = []
    _scalars(value, out)
    return out


def candidates(text: str) -> set[str]:
    """The values free text may hold: delimited tokens, coarse and fine, trailing punctuation
    trimmed. A value is found by exact comparison with these, never by substring."""
    out = set()
    for token in _TOKEN.findall(text):
        out.add(token)
        out.update(_FINE.split(token))
    out |= {t.strip('.-+') for t in out}
    out.discard('')
    return out


def payload_values(envelope: dict) -> set[str]:
    """Every value a dead letter's payload holds: JSON scalars and the candidates of its text."""
    payload = envelope.get('payload')
    if not payload:
        return set()
    if envelope.get('payload_encoding') == 'base64':
        payload = base64.b64decode(payload).decode('utf-8', errors='replace')
    values = candidates(payload)
    with contextlib.suppress(orjson.JSONDecodeError):
        scalars: list[str] = []
        _scalars(orjson.loads(payload), scalars)
        values.update(scalars)
        for scalar in scalars:
            values |= candidates(scalar)
    return values


def envelope_tombstoned(envelope: dict, tombstones: Tombstones, ring: KeyRing) -> bool:
    """Whether a dead letter carries a value of an erased subject."""
    return any(tombstones.matches(v, ring) for v in payload_values(envelope))
