"""Dead-letter replays protect personal data as the pipelines do: recovered events are
pseudonymised, erased subjects' dead letters are deleted rather than replayed, and a warehouse
with tombstones refuses an unprotected replay."""

from __future__ import annotations

import uuid

import psycopg2
import pytest

from beam_pipelines import event_analytics
from beam_pipelines.gdpr import secrets
from beam_pipelines.gdpr.config import GdprConfig
from beam_pipelines.gdpr.policy import policy_from
from beam_pipelines.gdpr.pseudonym import is_pseudonym
from beam_pipelines.gdpr.tombstones import add_tombstones
from beam_pipelines.generate_events import GeneratorConfig
from beam_pipelines.generate_events import generate_records
from beam_pipelines.generate_events import write_events
from beam_pipelines.ops.replay import ReplayRefused
from beam_pipelines.ops.replay import replay
from beam_pipelines.schema import Event
from beam_pipelines.schema import compile_schema
from tests.io.test_postgres import pg_url  # noqa: F401  (fixture)


def test_replays_are_protected(tmp_path, pg_url):  # noqa: F811
    records, _ = generate_records(GeneratorConfig(events=600, seed=41, entities=6))
    write_events(records, str(tmp_path / 'e.jsonl'), 'jsonl')
    keys = tmp_path / 'secrets.json'
    keys.write_text(secrets.generate().to_json())
    ring = secrets.load(str(keys)).pseudonym_keys
    schema = f't_{uuid.uuid4().hex[:12]}'
    argv = ['--input', str(tmp_path / 'e.jsonl'), '--output_dir', str(tmp_path / 'out')]
    argv += ['--schema', 'tests.schemas:Reading', '--postgres_url', pg_url, '--pg_schema', schema]
    argv += ['--pii_fields', 'entity_id', '--gdpr_secrets_file', str(keys)]
    conn = psycopg2.connect(pg_url)
    try:
        assert event_analytics.run(argv) == 0  # the strict schema: (nearly) all dead letters
        with conn, conn.cursor() as cur:
            add_tombstones(cur, schema, ['user-000001'], ring, 'req')
        with pytest.raises(ReplayRefused, match='tombstones'):
            replay(conn, schema, compile_schema(Event), 'event_analytics', filters={})
        conn.rollback()
        gdpr = GdprConfig(
            policy_from(compile_schema(Event), ['entity_id'], []), str(keys), None, schema
        )
        result = replay(
            conn,
            schema,
            compile_schema(Event),
            'event_analytics',
            filters={'stage': 'validate'},
            limit=10_000,
            gdpr=gdpr,
        )
        assert result['recovered'] and result['erased']
        with conn.cursor() as cur:
            cur.execute(f'SELECT DISTINCT entity_id FROM "{schema}".events')
            entities = [r[0] for r in cur.fetchall()]
            cur.execute(
                f'SELECT count(*) FROM "{schema}".dead_letters WHERE payload LIKE %s '
                "AND stage = 'validate'",
                ('%"user-000001"%',),
            )
            left = cur.fetchone()[0]
        assert entities and all(is_pseudonym(e) for e in entities)
        assert left == 0  # the erased subject's dead letters are gone, not replayed
    finally:
        conn.rollback()
        with conn, conn.cursor() as cur:
            cur.execute(f'DROP SCHEMA IF EXISTS "{schema}" CASCADE')
        conn.close()
