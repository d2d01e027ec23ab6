"""The audit trail of GDPR requests in ``gdpr_audit``: who asked for what, when, and what was
done (counts per store). It holds no personal data: not the subject's id, nor a pseudonym of it
(the tombstones, which need pseudonyms, are linked only by request id)."""

from __future__ import annotations

import contextlib
import datetime as dt
import getpass
import os
import uuid

import orjson

from beam_pipelines.io.postgres import ident

__all__ = ['AuditRecord', 'audited', 'requester']


def requester(given: str | None) -> str:
    """Who makes the request: ``--requested_by``, else the operating-system user."""
    if given:
        return given
    try:
        return getpass.getuser()
    except (KeyError, OSError):
        return f'uid:{os.getuid()}'


class AuditRecord:
    """One request's record; ``counts`` and ``stores`` are filled in as the work is done."""

    def __init__(self, action: str, requested_by: str):
        self.request_id = uuid.uuid4().hex
        self.action = action
        self.requested_by = requested_by
        self.started_at = dt.datetime.now(dt.UTC)
        self.counts: dict[str, dict[str, int]] = {}
        self.stores: list[str] = []


def _write(conn, schema: str, record: AuditRecord, status: str, error: str | None) -> None:
    with conn, conn.cursor() as cur:
        cur.execute(
            f'INSERT INTO {ident(schema)}.gdpr_audit (request_id, action, requested_by, '
            'started_at, finished_at, status, stores, counts, error) '
            'VALUES (%s, %s, %s, %s, %s, %s, %s, %s, %s) ON CONFLICT (request_id) DO UPDATE SET '
            'finished_at = EXCLUDED.finished_at, status = EXCLUDED.status, '
            'stores = EXCLUDED.stores, counts = EXCLUDED.counts, error = EXCLUDED.error',
            (
                record.request_id,
                record.action,
                record.requested_by,
                record.started_at,
                None if status == 'running' else dt.datetime.now(dt.UTC),
                status,
                orjson.dumps(record.stores).decode(),
                orjson.dumps(record.counts).decode(),
                error,
            ),
        )


@contextlib.contextmanager
def audited(conn, schema: str, action: str, requested_by: str):
    """Records the request as running, then as succeeded or failed (with the error's type
    only: an exception message could quote the data)."""
    record = AuditRecord(action, requested_by)
    _write(conn, schema, record, 'running', None)
    try:
        yield record
    except BaseException as exc:
        conn.rollback()
        _write(conn, schema, record, 'failed', type(exc).__name__)
        raise
    _write(conn, schema, record, 'succeeded', None)
