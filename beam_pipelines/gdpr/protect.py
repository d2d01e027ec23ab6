"""Protecting a batch of clean events: drop erased subjects, pseudonymise, encrypt.

Plain Python on Arrow tables (the Beam step is :mod:`beam_pipelines.transforms.protect`):

1. rows carrying a tombstoned value (the subject, or any declared personal-data field) are
   dropped: an erased subject's records cannot come back through a replay or a backfill;
2. pseudonymised fields become keyed pseudonyms (:mod:`beam_pipelines.gdpr.pseudonym`);
3. encrypted fields become ciphertexts under the subject's data key. The subject is the
   pseudonym of ``entity_id``, so the key store never holds a plain id. Values keep their JSON
   type through encryption (the plaintext is always the JSON of the value).

Schema columns are handled per distinct value; fields in ``attributes`` need each row's JSON.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np
import orjson
import pyarrow as pa
import pyarrow.compute as pc

from beam_pipelines.gdpr import crypto
from beam_pipelines.gdpr.policy import SUBJECT_FIELD
from beam_pipelines.gdpr.policy import PiiPolicy
from beam_pipelines.gdpr.pseudonym import is_pseudonym
from beam_pipelines.gdpr.pseudonym import pseudonymise
from beam_pipelines.gdpr.pseudonym import pseudonymise_array
from beam_pipelines.gdpr.secrets import KeyRing
from beam_pipelines.gdpr.tombstones import Tombstones
from beam_pipelines.schema import ATTRIBUTES

__all__ = ['KeysFor', 'as_text', 'protect_table', 'subject_of']

KeysFor = Callable[[list[str]], dict[str, bytes]]


def as_text(value: Any) -> str:
    """The text a value is pseudonymised and matched as (strings as they are, else JSON)."""
    return value if isinstance(value, str) else orjson.dumps(value).decode()


def subject_of(entity_id: str, ring: KeyRing) -> str:
    """The key-store subject of an entity: its pseudonym under the active key."""
    return entity_id if is_pseudonym(entity_id) else pseudonymise(entity_id, ring)


def protect_table(
    table: pa.Table,
    policy: PiiPolicy,
    ring: KeyRing,
    tombstones: Tombstones,
    keys_for: KeysFor | None,
) -> tuple[pa.Table, int]:
    """Applies the steps of the module docstring.

    Returns:
        ``(protected_table, erased_rows)``: the rows dropped as tombstoned are counted, so
        ``read == valid + dead_letter + duplicates + erased`` still holds.
    """
    attrs = _attributes(table, policy)
    if tombstones:
        keep = ~_tombstoned(table, policy, ring, tombstones, attrs)
        if not keep.all():
            erased = int((~keep).sum())
            table = table.filter(pa.array(keep))
            attrs = [a for a, k in zip(attrs, keep) if k] if attrs is not None else None
            if not table.num_rows:
                return table, erased
        else:
            erased = 0
    else:
        erased = 0
    entities = table.column(SUBJECT_FIELD).combine_chunks()
    subjects = pseudonymise_array(entities, ring)
    keys = {}
    if policy.encrypt and keys_for is not None:
        keys = keys_for(pc.unique(subjects).to_pylist())
    elif policy.encrypt:
        raise ValueError('encrypted fields need a key store')
    for name in policy.columns:
        index = table.schema.get_field_index(name)
        column = table.column(index).combine_chunks()
        if name in policy.pseudonymise:
            column = subjects if name == SUBJECT_FIELD else pseudonymise_array(column, ring)
        else:
            column = _encrypt_column(column, subjects, keys, name)
        table = table.set_column(index, table.schema.field(index), column)
    if attrs is not None:
        subject_list = subjects.to_pylist()
        out = []
        for row, doc in enumerate(attrs):
            if doc is None:
                out.append(None)
                continue
            _protect_document(doc, policy, ring, subject_list[row], keys)
            out.append(orjson.dumps(doc).decode())
        index = table.schema.get_field_index(ATTRIBUTES)
        table = table.set_column(index, table.schema.field(index), pa.array(out, pa.string()))
    return table, erased


def _attributes(table: pa.Table, policy: PiiPolicy) -> list[dict | None] | None:
    if not policy.attribute_fields or ATTRIBUTES not in table.column_names:
        return None
    return [orjson.loads(a) if a else None for a in table.column(ATTRIBUTES).to_pylist()]


def _tombstoned(
    table: pa.Table,
    policy: PiiPolicy,
    ring: KeyRing,
    tombstones: Tombstones,
    attrs: list[dict | None] | None,
) -> np.ndarray:
    bad = np.zeros(table.num_rows, dtype=bool)
    for name in {SUBJECT_FIELD, *policy.columns}:
        encoded = pc.dictionary_encode(table.column(name).combine_chunks())
        hit = [
            v is not None and tombstones.matches(v, ring) for v in encoded.dictionary.to_pylist()
        ]
        if any(hit):
            indices = encoded.indices.fill_null(0).to_numpy(zero_copy_only=False)
            valid = np.asarray(encoded.indices.is_valid().to_numpy(zero_copy_only=False))
            bad |= np.asarray(hit, dtype=bool)[indices] & valid
    if attrs is not None:
        for row, doc in enumerate(attrs):
            if doc and not bad[row]:
                bad[row] = any(
                    doc.get(f) is not None and tombstones.matches(as_text(doc[f]), ring)
                    for f in policy.attribute_fields
                )
    return bad


def _encrypt_column(column: pa.Array, subjects: pa.Array, keys: dict, field: str) -> pa.Array:
    values = column.to_pylist()
    out = [
        v
        if v is None or crypto.is_ciphertext(v)
        else crypto.encrypt_value(orjson.dumps(v).decode(), keys[s], s, field)
        for v, s in zip(values, subjects.to_pylist())
    ]
    return pa.array(out, pa.string())


def _protect_document(doc: dict, policy: PiiPolicy, ring: KeyRing, subject: str, keys) -> None:
    for name in policy.attribute_fields:
        value = doc.get(name)
        if value is None:
            continue
        if name in policy.pseudonymise:
            text = as_text(value)
            doc[name] = text if is_pseudonym(text) else pseudonymise(text, ring)
        elif not crypto.is_ciphertext(value):
            doc[name] = crypto.encrypt_value(
                orjson.dumps(value).decode(), keys[subject], subject, name
            )
