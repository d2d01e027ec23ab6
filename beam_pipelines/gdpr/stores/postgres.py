"""A subject's rows in the warehouse: events (by entity or any attribute value), aggregates,
anomalies and dead letters (traces in the raw payload).

Every value is a bound parameter. Dead letters are narrowed in SQL by one regular expression
(:class:`~beam_pipelines.gdpr.matching.Matcher`) and confirmed in Python by exact comparison
with the values their payload holds, so erasing ``u1`` keeps the dead letters of ``u1-2``.
"""

from __future__ import annotations

from typing import Any

import psycopg2.extras

from beam_pipelines.gdpr.matching import payload_values
from beam_pipelines.gdpr.subject import Subject
from beam_pipelines.io.postgres import ident

__all__ = ['erase', 'find', 'found_personal_values']

_BY_ENTITY = ('aggregates', 'anomalies')


def _events_where(subject: Subject) -> tuple[str, tuple]:
    values = list(subject.identifiers)
    return (
        'entity_id = ANY(%s) OR EXISTS (SELECT 1 FROM jsonb_each_text(attributes) a '
        'WHERE a.value = ANY(%s))',
        (subject.entity_values, values),
    )


def _dead_letter_ids(conn, s: str, subject: Subject) -> list[str]:
    matcher = subject.matcher()
    with conn.cursor() as cur:
        cur.execute(
            f'SELECT id, payload, payload_encoding FROM {s}.dead_letters '
            "WHERE payload ~ %s OR payload_encoding = 'base64'",
            (matcher.pattern,),
        )
        rows = cur.fetchall()
    wanted = set(subject.identifiers)
    return [
        row_id
        for row_id, payload, encoding in rows
        if payload_values({'payload': payload, 'payload_encoding': encoding}) & wanted
    ]


def found_personal_values(conn, schema: str, subject: Subject, fields: list[str]) -> list[str]:
    """The values of the declared fields in the subject's events (pseudonyms, mostly)."""
    if not fields:
        return []
    with conn.cursor() as cur:
        cur.execute(
            f'SELECT DISTINCT a.value FROM {ident(schema)}.events, '
            'jsonb_each_text(attributes) a WHERE entity_id = ANY(%s) AND a.key = ANY(%s)',
            (subject.entity_values, fields),
        )
        return [row[0] for row in cur.fetchall()]


def find(conn, schema: str, subject: Subject) -> dict[str, list[dict[str, Any]]]:
    """Every row held on the subject, per table."""
    s = ident(schema)
    where, params = _events_where(subject)
    out = {}
    with conn.cursor(cursor_factory=psycopg2.extras.RealDictCursor) as cur:
        cur.execute(f'SELECT * FROM {s}.events WHERE {where} ORDER BY event_time', params)
        out['events'] = [dict(r) for r in cur.fetchall()]
        for table in _BY_ENTITY:
            cur.execute(
                f'SELECT * FROM {s}.{ident(table)} WHERE entity_id = ANY(%s)',
                (subject.entity_values,),
            )
            out[table] = [dict(r) for r in cur.fetchall()]
        ids = _dead_letter_ids(conn, s, subject)
        cur.execute(f'SELECT * FROM {s}.dead_letters WHERE id = ANY(%s)', (ids,))
        out['dead_letters'] = [dict(r) for r in cur.fetchall()]
    return out


def erase(conn, schema: str, subject: Subject) -> dict[str, int]:
    """Deletes the subject's rows in one transaction; returns counts per table."""
    s = ident(schema)
    where, params = _events_where(subject)
    counts = {}
    with conn, conn.cursor() as cur:
        cur.execute(f'DELETE FROM {s}.events WHERE {where}', params)
        counts['events'] = cur.rowcount
        for table in _BY_ENTITY:
            cur.execute(
                f'DELETE FROM {s}.{ident(table)} WHERE entity_id = ANY(%s)',
                (subject.entity_values,),
            )
            counts[table] = cur.rowcount
        ids = _dead_letter_ids(conn, s, subject)
        cur.execute(f'DELETE FROM {s}.dead_letters WHERE id = ANY(%s)', (ids,))
        counts['dead_letters'] = cur.rowcount
    return counts
