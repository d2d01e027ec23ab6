"""Keyed pseudonyms: HMAC-SHA-256 of a value under a pseudonym key, tagged with the key's id.

A pseudonym reads ``<key id>_<64 hex digits>`` (``p1_3fa4...``), so a lookup knows which key
made it and old pseudonyms keep matching after a rotation. The same value gets the same
pseudonym in every field and store (joins and counts by entity still work), and nobody without
the key can compute one from a guessed value, as they could from a plain hash of an e-mail
address. Arrow columns are pseudonymised per distinct value: an entity column with a million
rows and a thousand entities costs a thousand HMACs.
"""

from __future__ import annotations

import hmac
import re

import pyarrow as pa
import pyarrow.compute as pc

from beam_pipelines.gdpr.secrets import KeyRing

__all__ = ['PSEUDONYM', 'all_pseudonyms', 'is_pseudonym', 'pseudonymise', 'pseudonymise_array']

PSEUDONYM = re.compile(r'[A-Za-z0-9]{1,16}_[0-9a-f]{64}')


def pseudonymise(value: str, ring: KeyRing, key_id: str | None = None) -> str:
    """The pseudonym of ``value`` under the active key (or ``key_id``)."""
    kid = key_id or ring.active
    digest = hmac.digest(ring.keys[kid], value.encode('utf-8'), 'sha256')
    return f'{kid}_{digest.hex()}'


def all_pseudonyms(value: str, ring: KeyRing) -> list[str]:
    """The pseudonyms of ``value`` under every key of the ring, active first."""
    kids = [ring.active, *(k for k in ring.keys if k != ring.active)]
    return [pseudonymise(value, ring, k) for k in kids]


def is_pseudonym(value: str) -> bool:
    return bool(PSEUDONYM.fullmatch(value))


def pseudonymise_array(values: pa.Array, ring: KeyRing) -> pa.Array:
    """Pseudonymises a string column; nulls stay null, values already pseudonyms stay (a
    replayed record that was pseudonymised once is not pseudonymised again)."""
    encoded = pc.dictionary_encode(values.cast(pa.string()))
    dictionary = encoded.dictionary.to_pylist()
    mapped = [v if is_pseudonym(v) else pseudonymise(v, ring) for v in dictionary]
    return pc.take(pa.array(mapped, pa.string()), encoded.indices)
