"""The warehouse queries the ops API runs: a fixed allow-list, every value a bound parameter,
identifiers composed with ``psycopg2.sql`` (never string-built SQL), in read-only transactions.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
from typing import Any

from psycopg2 import sql

from beam_pipelines.io.warehouse import DEAD_LETTER_COLUMNS  # the table's: id + envelope

__all__ = ['DEAD_LETTER_FILTERS', 'NAMED', 'NamedQuery', 'dead_letters_query']

MAX_LIMIT = 1000
MAX_OFFSET = 10**9


@dataclasses.dataclass(frozen=True)
class NamedQuery:
    """An allow-listed query: its SQL (``{schema}`` is the warehouse schema) and parameters,
    each ``(name, type, required)``."""

    description: str
    sql: str
    params: tuple[tuple[str, type, bool], ...] = ()

    def compose(self, schema: str) -> sql.Composed:
        return sql.SQL(self.sql).format(schema=sql.Identifier(schema))


NAMED: dict[str, NamedQuery] = {
    'dead_letters_by_type': NamedQuery(
        'Dead letters per stage and error type since a time.',
        'SELECT stage, error_type, count(*) AS count, max(processing_time) AS last_seen '
        'FROM {schema}.dead_letters WHERE processing_time >= %(since)s '
        'GROUP BY stage, error_type ORDER BY count DESC',
        (('since', dt.datetime, True),),
    ),
    'entity_aggregates': NamedQuery(
        "One entity's window aggregates in a time range.",
        'SELECT entity_id, event_type, window_start, window_end, count, sum, mean, min, max, '
        'p50, p95 FROM {schema}.aggregates WHERE entity_id = %(entity_id)s '
        'AND window_start >= %(since)s AND window_start < %(until)s '
        'ORDER BY window_start LIMIT 10000',
        (('entity_id', str, True), ('since', dt.datetime, True), ('until', dt.datetime, True)),
    ),
    'recent_anomalies': NamedQuery(
        'The latest anomalies.',
        'SELECT entity_id, event_type, detector, event_time, value, score '
        'FROM {schema}.anomalies WHERE is_anomaly ORDER BY event_time DESC LIMIT %(limit)s',
        (('limit', int, True),),
    ),
    'quality_by_source': NamedQuery(
        'The latest data-quality measurement of each source.',
        'SELECT DISTINCT ON (pipeline, source) pipeline, source, measured_at, score, '
        'completeness, validity, uniqueness, timeliness, consistency, accuracy '
        'FROM {schema}.quality ORDER BY pipeline, source, measured_at DESC',
    ),
}

DEAD_LETTER_FILTERS = ('stage', 'error_type', 'pipeline')


def dead_letters_query(schema: str, filters: dict[str, Any], limit: int, offset: int):
    """(composed SQL, params) of a dead-letter page: equality filters and a time range, all
    bound, newest first."""
    where, params = [], {}
    for name in DEAD_LETTER_FILTERS:
        if filters.get(name) is not None:
            where.append(sql.SQL('{} = {}').format(sql.Identifier(name), sql.Placeholder(name)))
            params[name] = filters[name]
    if filters.get('since') is not None:
        where.append(sql.SQL('processing_time >= %(since)s'))
        params['since'] = filters['since']
    if filters.get('until') is not None:
        where.append(sql.SQL('processing_time < %(until)s'))
        params['until'] = filters['until']
    query = sql.SQL('SELECT {cols} FROM {table}{where} ORDER BY processing_time DESC, id ').format(
        cols=sql.SQL(', ').join(map(sql.Identifier, DEAD_LETTER_COLUMNS)),
        table=sql.Identifier(schema, 'dead_letters'),
        where=sql.SQL(' WHERE ') + sql.SQL(' AND ').join(where) if where else sql.SQL(''),
    ) + sql.SQL('LIMIT %(limit)s OFFSET %(offset)s')
    params.update(limit=min(limit, MAX_LIMIT), offset=offset)
    return query, params
