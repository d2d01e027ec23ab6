"""Fixtures of the backup tests: the real PostgreSQL server (a schema per test, dropped after),
warehouses filled by the flagship or by hand, and table snapshots to compare."""

from __future__ import annotations

import datetime as dt
import gzip
import uuid
from pathlib import Path

import psycopg2
import pytest
from psycopg2 import sql

from beam_pipelines import cli
from beam_pipelines import event_analytics
from beam_pipelines.backup import launcher
from beam_pipelines.backup.tables import EXCLUDED_TABLES
from beam_pipelines.generate_events import GeneratorConfig
from beam_pipelines.generate_events import generate_records
from beam_pipelines.generate_events import write_events
from beam_pipelines.io.warehouse_schema import ensure_event_partitions
from beam_pipelines.io.warehouse_schema import migrate
from tests.io.test_postgres import pg_schema  # noqa: F401  (fixture)
from tests.io.test_postgres import pg_url  # noqa: F401  (fixture)

KEY_CANARY = 'subject-canary-7Qx2'


@pytest.fixture
def restore_schema(pg_url):  # noqa: F811
    """A second schema name for restores, dropped afterwards."""
    name = f'r_{uuid.uuid4().hex[:12]}'
    yield name
    with psycopg2.connect(pg_url) as conn, conn.cursor() as cur:
        cur.execute(sql.SQL('DROP SCHEMA IF EXISTS {} CASCADE').format(sql.Identifier(name)))
    conn.close()


def backup(*args) -> int:
    """The command line, exit status included (usage errors are 2, failures 1)."""
    return cli.main(launcher.PROG, launcher.run, [str(a) for a in args])


def execute(url: str, statement, params=None) -> list:
    with psycopg2.connect(url) as conn, conn.cursor() as cur:
        cur.execute(statement, params)
        rows = cur.fetchall() if cur.description else []
    conn.close()
    return rows


def drop_schema(url: str, schema: str) -> None:
    execute(url, sql.SQL('DROP SCHEMA {} CASCADE').format(sql.Identifier(schema)))


def load_flagship(tmp_path: Path, url: str, schema: str, out: Path, seed: int, events: int = 3000):
    """Runs the flagship on generated events into ``schema`` and ``out``."""
    records, _ = generate_records(GeneratorConfig(events=events, seed=seed, entities=30))
    path = tmp_path / f'events-{seed}.jsonl'
    write_events(records, str(path), 'jsonl')
    argv = ['--input', str(path), '--output_dir', str(out), '--postgres_url', url]
    assert event_analytics.run([*argv, '--pg_schema', schema, '--num_shards', '2']) == 0


def seed_small(url: str, schema: str, tag: str = 'a', rows: int = 5) -> None:
    """A migrated schema with a few hand-made rows in several tables, gdpr_keys included."""
    conn = psycopg2.connect(url)
    try:
        migrate(conn, schema)
        s = sql.Identifier(schema)
        with conn, conn.cursor() as cur:
            day = dt.datetime(2026, 3, 1, tzinfo=dt.UTC)
            ensure_event_partitions(cur, schema, [day.date()])
            insert = sql.SQL(
                'INSERT INTO {}.events (event_id, event_type, entity_id, event_time, value, '
                'attributes) VALUES (%s, %s, %s, %s, %s, %s)'
            ).format(s)
            attributes = '{"k": "v,\\n\\"q\\""}'  # commas, newlines and quotes in the CSV
            for i in range(rows):
                at = day + dt.timedelta(seconds=i)
                cur.execute(insert, (f'{tag}{i}', 'click', f'u{i % 2}', at, i / 3, attributes))
            cur.execute(
                sql.SQL(
                    'INSERT INTO {}.gdpr_keys (subject, master_key_id, wrapped_key) '
                    'VALUES (%s, %s, %s) ON CONFLICT DO NOTHING'
                ).format(s),
                (KEY_CANARY, 'mk1', KEY_CANARY.encode()),
            )
            cur.execute(
                sql.SQL(
                    'INSERT INTO {}.sync_jobs (job_id, name, source, destination, mode, '
                    'started_at, status) VALUES (%s, %s, %s, %s, %s, now(), %s)'
                ).format(s),
                (f'job-{tag}', 'n', 'src', 'dst', 'full', 'succeeded'),
            )
    finally:
        conn.close()


def backed_up_tables(url: str, schema: str) -> list[str]:
    rows = execute(
        url,
        'SELECT relname FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace '
        "WHERE n.nspname = %s AND relkind IN ('r', 'p') AND NOT relispartition ORDER BY 1",
        (schema,),
    )
    return [r[0] for r in rows if r[0] not in EXCLUDED_TABLES]


def snapshot(url: str, schema: str) -> dict[str, list]:
    """Every row of every backed-up table, all columns (loaded_at too), in a stable order."""
    found = {}
    for table in backed_up_tables(url, schema):
        rows = execute(
            url,
            sql.SQL('SELECT * FROM {}.{}').format(sql.Identifier(schema), sql.Identifier(table)),
        )
        found[table] = sorted(rows, key=repr)
    return found


def tree_bytes(root: Path) -> dict[str, bytes]:
    return {
        str(p.relative_to(root)): p.read_bytes() for p in sorted(root.rglob('*')) if p.is_file()
    }


def archive_text(root: Path) -> bytes:
    """Every archive file's bytes, gzipped ones decompressed, to search for what must not be."""
    blobs = []
    for p in sorted(root.rglob('*')):
        if p.is_file():
            data = p.read_bytes()
            blobs.append(gzip.decompress(data) if p.name.endswith('.gz') else data)
    return b'\n'.join(blobs)
