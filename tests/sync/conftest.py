"""Fixtures of the sync tests: a warehouse schema loaded by the flagship, destination schemas
and Redis prefixes that are removed afterwards, and a sync launcher call."""

from __future__ import annotations

import uuid

import psycopg2
import pytest

from beam_pipelines import event_analytics
from beam_pipelines.generate_events import GeneratorConfig
from beam_pipelines.generate_events import generate_records
from beam_pipelines.generate_events import write_events
from beam_pipelines.sync import launcher
from tests.conftest import service_unavailable
from tests.io.test_postgres import PG_URL
from tests.io.test_redis import client  # noqa: F401  (fixture)


@pytest.fixture(scope='session')
def pg_url(worker_id):
    """A database of this test worker's own.

    A watermark sync stops short of the oldest transaction still open in its database (its
    rows may yet commit below the bound). In the shared database, other tests' transactions
    (under pytest-xdist) would hold the bound back at random; in a database of their own, the
    sync tests see only their own.
    """
    name = f'bp_sync_{worker_id}'
    try:
        admin = psycopg2.connect(PG_URL)
    except psycopg2.Error as exc:
        service_unavailable('PostgreSQL', exc)
    admin.autocommit = True
    with admin.cursor() as cur:
        cur.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        cur.execute(f'CREATE DATABASE "{name}"')
    base, _, _ = PG_URL.rpartition('/')
    yield f'{base}/{name}'
    with admin.cursor() as cur:
        cur.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
    admin.close()


def drop_schema(url: str, name: str) -> None:
    with psycopg2.connect(url) as conn, conn.cursor() as cur:
        cur.execute(f'DROP SCHEMA IF EXISTS "{name}" CASCADE')
    conn.close()


def sql(url: str, statement: str, params=()) -> list:
    """Runs one statement; returns its rows (or [])."""
    with psycopg2.connect(url) as conn, conn.cursor() as cur:
        cur.execute(statement, params)
        rows = cur.fetchall() if cur.description else []
    conn.close()
    return rows


def load_events(tmp_path, url: str, schema: str, events: int, seed: int) -> None:
    """Runs the flagship on generated events into the warehouse schema."""
    records, _ = generate_records(
        GeneratorConfig(events=events, seed=seed, entities=30, duration_secs=900)
    )
    path = tmp_path / f'events_{seed}.jsonl'
    write_events(records, str(path), 'jsonl')
    code = event_analytics.run(
        [
            '--input',
            str(path),
            '--output_dir',
            str(tmp_path / f'out_{seed}'),
            '--postgres_url',
            url,
            '--pg_schema',
            schema,
        ]
    )
    assert code == 0


@pytest.fixture(scope='module')
def warehouse(pg_url, tmp_path_factory):
    """A warehouse schema the flagship loaded (events, aggregates, sync_jobs, ...)."""
    schema = f't_{uuid.uuid4().hex[:12]}'
    try:
        load_events(tmp_path_factory.mktemp('warehouse'), pg_url, schema, 2000, seed=5)
        yield schema
    finally:
        drop_schema(pg_url, schema)


@pytest.fixture
def dest_schema(pg_url):
    name = f'd_{uuid.uuid4().hex[:12]}'
    yield name
    drop_schema(pg_url, name)


@pytest.fixture
def prefix(client):  # noqa: F811
    p = f'test:{uuid.uuid4().hex[:10]}:'
    yield p
    keys = list(client.scan_iter(f'{p}*'))
    if keys:
        client.delete(*keys)


def sync(*args) -> int:
    """The launcher in-process, as the command line would run it."""
    return launcher.run([str(a) for a in args])
