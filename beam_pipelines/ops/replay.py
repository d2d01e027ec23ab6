"""Replaying dead letters from the warehouse through the pipeline's own steps after a fix.

Selected dead letters (of the parse and validate stages: the records the pipeline could not
take) are fed, as the pipeline reads JSON Lines, through the same parse, cleanse and
validation functions the pipeline's transforms run, with the event schema in force now. In one
transaction: the events that pass are upserted into ``events`` (as the pipeline loads them) and
their dead letters deleted; the ones that fail again stay, with ``attempts`` increased and
their new error. The rows are locked while they are replayed (``FOR UPDATE SKIP LOCKED``), so
two replays never take the same dead letter.

Personal data is protected as the pipelines protect it (``gdpr``: the same policy and secrets):
recovered events are pseudonymised and encrypted before they land, and dead letters that carry
an erased subject's values are deleted, never replayed. A warehouse holding tombstones refuses
replays that are not given the secrets.
"""

from __future__ import annotations

from psycopg2 import sql

from beam_pipelines.columnar.batch import POS
from beam_pipelines.columnar.batch import RawBatch
from beam_pipelines.columnar.cleanse import cleanse_table
from beam_pipelines.columnar.parse import parse_raw_batch
from beam_pipelines.columnar.validate import split_valid
from beam_pipelines.dead_letter import decode_payload
from beam_pipelines.gdpr.config import GdprConfig
from beam_pipelines.gdpr.keystore import KeyStore
from beam_pipelines.gdpr.matching import envelope_tombstoned
from beam_pipelines.gdpr.protect import protect_table
from beam_pipelines.gdpr.tombstones import load_tombstones
from beam_pipelines.io.postgres import copy_and_merge
from beam_pipelines.io.warehouse import EventPartitions
from beam_pipelines.io.warehouse import event_rows
from beam_pipelines.io.warehouse import events_target

__all__ = ['MAX_REPLAY', 'REPLAYABLE_STAGES', 'ReplayRefused', 'replay']

REPLAYABLE_STAGES = ('parse', 'validate')
MAX_REPLAY = 10_000


def _select(schema: str, ids: list[str] | None, filters: dict, limit: int):
    where = [sql.SQL('stage = ANY(%(stages)s)')]
    params: dict = {'stages': list(REPLAYABLE_STAGES), 'limit': min(limit, MAX_REPLAY)}
    if ids is not None:
        where.append(sql.SQL('id = ANY(%(ids)s)'))
        params['ids'] = ids
    for name in ('stage', 'error_type', 'pipeline'):
        if filters.get(name) is not None:
            where.append(sql.SQL('{} = {}').format(sql.Identifier(name), sql.Placeholder(name)))
            params[name] = filters[name]
    query = sql.SQL(
        'SELECT id, stage, payload, payload_encoding, payload_format FROM {} WHERE {} '
        'ORDER BY processing_time, id LIMIT %(limit)s FOR UPDATE SKIP LOCKED'
    ).format(sql.Identifier(schema, 'dead_letters'), sql.SQL(' AND ').join(where))
    return query, params


class ReplayRefused(Exception):
    """A replay that could bring erased subjects' records back."""


def _protection(conn, pg_schema: str, gdpr: GdprConfig | None):
    """``(secrets, tombstones)`` for a protected replay; None for an unprotected one (refused
    when the warehouse holds tombstones). Keys and tombstones are read through the replay's
    own connection, from ``gdpr.store_schema``."""
    if gdpr is None:
        if load_tombstones(conn, pg_schema):
            raise ReplayRefused(
                'the warehouse holds tombstones of erased subjects: configure the GDPR secrets '
                '(--gdpr_secrets_file) so replays can drop their records'
            )
        return None
    secrets = gdpr.secrets()
    tombstones = load_tombstones(conn, gdpr.store_schema)
    tombstones.check_keys(secrets.pseudonym_keys)
    return secrets, tombstones


def replay(
    conn,
    pg_schema: str,
    event_schema,
    pipeline: str,
    ids=None,
    filters=None,
    limit=100,
    gdpr: GdprConfig | None = None,
):
    """Replays the selected dead letters; returns what became of them.

    Args:
        conn: a connection that may write the warehouse.
        pg_schema: the warehouse schema.
        event_schema: the compiled event schema to validate against (the fixed one).
        pipeline: names the pipeline in the new errors.
        ids: dead-letter ids to replay, or None for ``filters``.
        filters: ``stage``, ``error_type``, ``pipeline`` equality filters.
        limit: most dead letters replayed.
        gdpr: the pipelines' personal-data protection; its key store and tombstones are read
            through ``conn``, in ``gdpr.store_schema``.

    Raises:
        ReplayRefused: the warehouse holds tombstones and ``gdpr`` is None.
    """
    protection = _protection(conn, pg_schema, gdpr)
    with conn, conn.cursor() as cur:
        query, params = _select(pg_schema, ids, filters or {}, limit)
        cur.execute(query, params)
        selected = cur.fetchall()
        erased = []
        if protection is not None and protection[1]:
            secrets, tombstones = protection
            ring = secrets.pseudonym_keys
            envelopes = [{'payload': row[2], 'payload_encoding': row[3]} for row in selected]
            erased = [
                row[0]
                for row, e in zip(selected, envelopes)
                if envelope_tombstoned(e, tombstones, ring)
            ]
            selected = [row for row in selected if row[0] not in set(erased)]
        if not selected:
            _delete(cur, sql.Identifier(pg_schema, 'dead_letters'), erased)
            return {'replayed': 0, 'recovered': [], 'failed_again': [], 'erased': erased}
        lines, errors = [], {}
        for i, (_, _, payload, encoding, fmt) in enumerate(selected):
            if fmt != 'json':
                errors[i] = ('not_replayable', f'only JSON payloads replay, not {fmt}')
            lines.append(decode_payload({'payload': payload, 'payload_encoding': encoding}))
        batch = RawBatch('replay', 'jsonl', list(range(len(lines))), lines=lines)
        parsed, dead = parse_raw_batch(batch, event_schema, pipeline)
        valid_positions: list[int] = []
        if parsed is not None:
            cleansed = parsed._replace(
                table=cleanse_table(parsed.table, event_schema, parsed.errors)
            )
            valid, invalid = split_valid(cleansed, event_schema, pipeline)
            dead = dead + invalid
            valid = (
                valid.filter([p not in errors for p in valid.column(POS).to_pylist()])
                if errors
                else valid
            )
            if protection is not None and valid.num_rows:
                secrets, tombstones = protection
                keys = KeyStore(conn, gdpr.store_schema, secrets.master_keys)
                before = set(valid.column(POS).to_pylist())
                valid, _ = protect_table(
                    valid, gdpr.policy, secrets.pseudonym_keys, tombstones, keys.keys_for
                )
                gone = before - set(valid.column(POS).to_pylist())
                erased += [selected[p][0] for p in sorted(gone)]
            valid_positions = valid.column(POS).to_pylist()
            if valid.num_rows:
                copy_and_merge(
                    cur, events_target(pg_schema), event_rows(valid), EventPartitions(pg_schema)
                )
        for envelope in dead:
            position = (envelope.get('source') or {}).get('offset')
            if position is not None and position not in errors:
                errors[position] = (envelope['error_type'], envelope['error_message'])
        recovered = [selected[p][0] for p in sorted(set(valid_positions))]
        failed = [(selected[p][0], *errors[p]) for p in sorted(errors)]
        table = sql.Identifier(pg_schema, 'dead_letters')
        _delete(cur, table, [*recovered, *erased])
        for dl_id, error_type, message in failed:
            cur.execute(
                sql.SQL(
                    'UPDATE {} SET attempts = attempts + 1, last_attempt_at = now(), '
                    'error_type = %s, error_message = %s WHERE id = %s'
                ).format(table),
                (error_type, message, dl_id),
            )
    return {
        'replayed': len(selected),
        'recovered': recovered,
        'failed_again': [{'id': i, 'error_type': t, 'error_message': m} for i, t, m in failed],
        'erased': erased,
    }


def _delete(cur, table: sql.Identifier, ids: list[str]) -> None:
    if ids:
        cur.execute(sql.SQL('DELETE FROM {} WHERE id = ANY(%s)').format(table), (ids,))
