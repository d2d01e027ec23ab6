"""Erasure (GDPR art. 17): delete or shred a subject's data in every store given.

Order matters. The tombstones are written first, in their own transaction: from then on a
pipeline that reloads them (``refresh_secs``) drops the subject's records, and a replay or a
backfill cannot bring them back. Then the data keys are deleted (crypto-shredding), then the
warehouse rows (one transaction), Redis, and the files. Records already inside a running
pipeline when the tombstones are written can still land after the deletion:
``--settle_secs`` waits for the pipelines to reload the tombstones first, and ``gdpr enforce``
(scheduled) finds and removes whatever a tombstone names, in every store. Every step is
idempotent, so a failed erasure is finished by running it again (or by ``gdpr enforce``,
which needs no identifiers); the audit record says which stores were done.
"""

from __future__ import annotations

import dataclasses
import logging
import time

from beam_pipelines.gdpr.audit import audited
from beam_pipelines.gdpr.enforce import log_tombstones
from beam_pipelines.gdpr.keystore import KeyStore
from beam_pipelines.gdpr.secrets import KeyRing
from beam_pipelines.gdpr.stores import files as file_store
from beam_pipelines.gdpr.stores import postgres as pg_store
from beam_pipelines.gdpr.stores import redis as redis_store
from beam_pipelines.gdpr.subject import Subject
from beam_pipelines.gdpr.tombstones import add_tombstones

__all__ = ['Stores', 'erase_subject', 'resolve_subject']

_LOGGER = logging.getLogger(__name__)


@dataclasses.dataclass
class Stores:
    """The stores a command acts on (any may be absent but the warehouse connection).

    The GDPR store (key store, tombstones, audit) is the warehouse unless the pipelines were
    given a ``--gdpr_store_url`` / ``--gdpr_schema`` of their own.
    """

    conn: object  # psycopg2 connection to the warehouse
    schema: str
    redis: object | None = None  # redis.Redis
    redis_prefix: str = 'bp:'
    output_dirs: tuple[str, ...] = ()
    gdpr_conn: object | None = None  # None: the warehouse's
    gdpr_schema: str | None = None
    redis_streams: tuple[str, ...] = ()  # streams outside the prefix (ingestion)

    @property
    def store(self):
        return self.gdpr_conn if self.gdpr_conn is not None else self.conn

    @property
    def store_schema(self) -> str:
        return self.gdpr_schema or self.schema


def resolve_subject(
    stores: Stores, entity_id: str, identifiers: list[str], ring: KeyRing, fields: list[str]
) -> Subject:
    """The subject, with the pseudonymised personal values its own events hold."""
    subject = Subject.of(entity_id, identifiers, ring)
    found = pg_store.found_personal_values(stores.conn, stores.schema, subject, fields)
    return subject.with_found(found)


def erase_subject(
    stores: Stores,
    subject: Subject,
    ring: KeyRing,
    requested_by: str,
    archives: tuple[str, ...] = (),
    settle_secs: float = 0.0,
) -> dict:
    """Erases ``subject`` everywhere; returns the audit record's id and counts.

    Args:
        archives: backup archives whose tombstone log gets the erasure's tombstones, so a
            restore of an older backup enforces them (:mod:`beam_pipelines.gdpr.enforce`).
        settle_secs: wait between the tombstones and the deletions, so running pipelines
            reload the tombstones (every ``refresh_secs``) before the subject's data goes.
    """
    with audited(stores.store, stores.store_schema, 'erase', requested_by) as record:
        with stores.store, stores.store.cursor() as cur:
            stones = add_tombstones(
                cur, stores.store_schema, list(subject.identifiers), ring, record.request_id
            )
        for archive in archives:
            log_tombstones(archive, record.request_id, stones)
        record.counts['tombstones'] = {'added': len(stones), 'archives': len(archives)}
        if settle_secs > 0:
            time.sleep(settle_secs)
        with stores.store:  # shredding first: every copy of its ciphertexts is unreadable now
            shredded = KeyStore(stores.store, stores.store_schema, None).delete(
                list(subject.key_subjects)
            )
        record.counts['postgres'] = {
            **pg_store.erase(stores.conn, stores.schema, subject),
            'data_keys': shredded,
        }
        record.stores.append('postgres')
        if stores.redis is not None:
            record.counts['redis'] = redis_store.erase(
                stores.redis, stores.redis_prefix, subject, stores.redis_streams
            )
            record.stores.append('redis')
        if stores.output_dirs:
            record.counts['files'] = file_store.erase(list(stores.output_dirs), subject)
            record.stores.append('files')
        _LOGGER.info('erasure %s done: %s', record.request_id, record.counts)
    return {'request_id': record.request_id, 'counts': record.counts}
