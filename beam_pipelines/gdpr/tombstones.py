"""Tombstones: keyed digests of erased subjects' identifiers, in ``gdpr_tombstones``.

Ingestion, replays, backfills and restores drop every record that carries a tombstoned value,
so an erasure cannot be undone by reprocessing old input. A tombstone is an HMAC of the value
under a pseudonym key, domain-separated from pseudonyms (``t_<key id>_<hex>``): it is not the
pseudonym the data carried, so after an erasure no store holds the subject's pseudonym either,
and nobody without the key can tell whom a tombstone stands for. Both the plain identifiers and
their pseudonyms are tombstoned, so raw input and already-protected rows (a restore, a sync)
are both caught.
"""

from __future__ import annotations

import dataclasses
import hmac

from beam_pipelines.gdpr.secrets import KeyRing
from beam_pipelines.gdpr.secrets import SecretsError
from beam_pipelines.io.postgres import ident

__all__ = ['Tombstones', 'add_tombstones', 'load_tombstones', 'tombstone_of']

_DOMAIN = b'beam_pipelines tombstone\x1f'


def tombstone_of(value: str, ring: KeyRing, key_id: str) -> str:
    digest = hmac.digest(ring.keys[key_id], _DOMAIN + value.encode('utf-8'), 'sha256')
    return f't_{key_id}_{digest.hex()}'


@dataclasses.dataclass(frozen=True)
class Tombstones:
    """A set of tombstones, and the matching of values (plain or pseudonyms) against it."""

    pseudonyms: frozenset[str]

    @property
    def key_ids(self) -> set[str]:
        return {p.split('_', 2)[1] for p in self.pseudonyms}

    def check_keys(self, ring: KeyRing) -> None:
        """Raises when a tombstone was made with a key the ring lacks: it could not be
        enforced, and erased data would come back."""
        missing = self.key_ids - set(ring.keys)
        if missing:
            raise SecretsError(
                f'tombstones use pseudonym keys {sorted(missing)} that the secrets lack; '
                'restore those keys (retired keys must stay while tombstones use them)'
            )

    def matches(self, value: str, ring: KeyRing) -> bool:
        """Whether a value (plain, or a pseudonym) is tombstoned."""
        return any(tombstone_of(value, ring, kid) in self.pseudonyms for kid in self.key_ids)

    def __bool__(self) -> bool:
        return bool(self.pseudonyms)


def load_tombstones(conn, schema: str) -> Tombstones:
    with conn.cursor() as cur:
        cur.execute(f'SELECT pseudonym FROM {ident(schema)}.gdpr_tombstones')
        return Tombstones(frozenset(row[0] for row in cur.fetchall()))


def add_tombstones(
    cur, schema: str, values: list[str], ring: KeyRing, request_id: str
) -> list[str]:
    """Tombstones ``values`` under every key of the ring; returns the tombstones."""
    stones = sorted({tombstone_of(v, ring, kid) for v in values for kid in ring.keys})
    cur.executemany(
        f'INSERT INTO {ident(schema)}.gdpr_tombstones (pseudonym, request_id) VALUES (%s, %s) '
        'ON CONFLICT (pseudonym) DO NOTHING',
        [(t, request_id) for t in stones],
    )
    return stones
