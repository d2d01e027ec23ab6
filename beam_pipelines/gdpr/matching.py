"""Finding a subject's traces: exact values, values inside text, and dead-letter payloads.

A trace is one of the subject's identifiers (its plain ``entity_id`` and declared personal
values, and their pseudonyms under every key) standing alone or delimited inside text: ``u1``
matches ``{"entity_id": "u1"}`` but not ``u10``. :class:`Matcher` carries one pattern written
in the syntax that Python's ``re``, RE2 (Arrow's compute functions) and PostgreSQL's regular
expressions share, so every store is searched the same way.

Dead letters are raw records: :func:`payload_values` takes every value out of a payload (JSON
scalars when it parses, delimited tokens otherwise), so ingestion can drop the dead letters of
erased subjects by their pseudonyms (:func:`envelope_tombstoned`).
"""

from __future__ import annotations

import base64
import contextlib
import re
from collections.abc import Iterable

import numpy as np
import orjson
import pyarrow as pa
import pyarrow.compute as pc

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
    # A backslash before an ASCII punctuation character is literal in all three dialects;
    # non-ASCII characters are never metacharacters, and RE2 refuses a backslash before them.
    return ''.join(c if c.isalnum() or ord(c) > 127 else '\\' + c for c in value)


class Matcher:
    """Matches the identifiers given, exactly or delimited inside text.

    Args:
        identifiers: plain values and pseudonyms (empty strings are ignored).
    """

    def __init__(self, identifiers: Iterable[str]):
        self.identifiers = tuple(sorted({i for i in identifiers if i}))
        if not self.identifiers:
            raise ValueError('identifiers: at least one non-empty value is needed')
        alternatives = '|'.join(_escape(i) for i in self.identifiers)
        # RE2 (Arrow) has no lookaround: the shared pattern consumes its delimiters. Python's
        # own pattern uses lookaround, so adjacent traces ("u1,u1") are each found.
        self.pattern = f'(^|[^{_WORD}])({alternatives})($|[^{_WORD}])'
        self._compiled = re.compile(f'(?<![{_WORD}])({alternatives})(?![{_WORD}])')

    def search(self, text: str | None) -> bool:
        return bool(text) and self._compiled.search(text) is not None

    def count(self, text: str) -> int:
        return len(self._compiled.findall(text))

    def redact(self, text: str, replacement: str) -> str:
        """``text`` with every trace replaced (its delimiters kept)."""
        return self._compiled.sub(lambda _: replacement, text)

    def equals(self, value) -> bool:
        return value is not None and as_text(value) in self.identifiers

    def arrow_mask(self, column: pa.ChunkedArray | pa.Array) -> np.ndarray:
        """Rows of a string column that hold a trace."""
        found = pc.match_substring_regex(column, self.pattern)
        return np.asarray(found.fill_null(False).to_numpy(zero_copy_only=False), dtype=bool)


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
