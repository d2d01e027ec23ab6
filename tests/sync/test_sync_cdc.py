"""CDC syncs: the apply logic on parsed ``test_decoding`` changes (against the machine's
server), and whole CDC runs against a throwaway ``wal_level = logical`` cluster (the fixture of
tests/io/test_postgres_cdc.py: skipped without the server binaries or root, failed under CI)."""

from __future__ import annotations

import uuid

import psycopg2

from beam_pipelines.io.postgres_cdc import parse_test_decoding
from beam_pipelines.io.warehouse_schema import migrate
from beam_pipelines.sync import Mapping
from beam_pipelines.sync.postgres_dest import PostgresDestination
from beam_pipelines.sync.source import SourceTable
from beam_pipelines.sync.source import runs_of_changes
from tests.io.test_postgres_cdc import logical_url  # noqa: F401  (fixture)
from tests.io.test_redis import REDIS_URL
from tests.sync.conftest import sql
from tests.sync.conftest import sync

ITEMS = (
    'CREATE TABLE {s}.items (id bigint PRIMARY KEY, note text, price double precision, '
    'at timestamptz, loaded_at timestamptz NOT NULL DEFAULT now())'
)
LINES = [
    'BEGIN 700',
    "table {s}.items: INSERT: id[bigint]:1 note[text]:'a' price[double precision]:1.5 "
    "at[timestamp with time zone]:'2024-05-01 10:00:00+02' "
    "loaded_at[timestamp with time zone]:'2024-05-01 08:00:00.25+00'",
    "table {s}.items: INSERT: id[bigint]:2 note[text]:'it''s' price[double precision]:null "
    'at[timestamp with time zone]:null loaded_at[timestamp with time zone]:'
    "'2024-05-01 08:00:00+00'",
    "table other.items: INSERT: id[bigint]:9 note[text]:'not ours' price[double precision]:1 "
    'at[timestamp with time zone]:null loaded_at[timestamp with time zone]:'
    "'2024-05-01 08:00:00+00'",
    'COMMIT 700',
    'table {s}.items: DELETE: id[bigint]:1',
    "table {s}.items: UPDATE: id[bigint]:2 note[text]:'b' price[double precision]:2 "
    'at[timestamp with time zone]:null loaded_at[timestamp with time zone]:'
    "'2024-05-01 08:01:00+00'",
    "table {s}.items: INSERT: id[bigint]:1 note[text]:'again' price[double precision]:3 "
    'at[timestamp with time zone]:null loaded_at[timestamp with time zone]:'
    "'2024-05-01 08:02:00+00'",
]


def test_parsed_changes_apply_in_order(pg_url, dest_schema):
    s = dest_schema
    sql(pg_url, f'CREATE SCHEMA {s}')
    sql(pg_url, ITEMS.format(s=s))
    conn = psycopg2.connect(pg_url)
    try:
        source = SourceTable.describe(conn, s, 'items')
    finally:
        conn.close()
    changes = [parse_test_decoding(line.format(s=s)) for line in LINES]
    runs = list(runs_of_changes([c for c in changes if c], source))
    assert [(op, t.num_rows) for op, t, _ in runs] == [('upsert', 2), ('delete', 1), ('upsert', 2)]
    dest = PostgresDestination(
        pg_url, f'{s}_copy', 'items', ('id',), source, Mapping(), create_table=True
    )
    try:
        for op, table, _ in runs:
            (dest.delete if op == 'delete' else dest.upsert)(table)
    finally:
        dest.close()
    got = sql(
        pg_url,
        f'SELECT id, note, price, at::text, loaded_at::text FROM {s}_copy.items ORDER BY id',
    )
    sql(pg_url, f'DROP SCHEMA {s}_copy CASCADE')
    assert got == [
        (1, 'again', 3.0, None, '2024-05-01 08:02:00+00'),
        (2, 'b', 2.0, None, '2024-05-01 08:01:00+00'),
    ]


def test_cdc_sync_copies_then_applies_changes_and_deletes(logical_url, client, prefix):  # noqa: F811
    url = logical_url
    conn = psycopg2.connect(url)
    migrate(conn, 'public')  # sync_jobs
    conn.close()
    sql(url, ITEMS.format(s='public'))
    sql(url, "INSERT INTO items (id, note, price) VALUES (1, 'a', 1), (2, 'b', 2), (3, 'c', 3)")
    name = f'cdc_{uuid.uuid4().hex[:8]}'
    to_pg = [
        '--name', name, '--mode', 'cdc', '--source_url', url, '--source_table', 'items',
        '--dest_url', url, '--dest_schema', 'mirror', '--create_table',
    ]  # fmt: skip
    to_redis = [
        '--name', f'{name}_r', '--mode', 'cdc', '--source_url', url, '--source_table', 'items',
        '--dest_url', REDIS_URL, '--key_prefix', prefix, '--columns', 'id,note',
    ]  # fmt: skip
    everything = 'SELECT * FROM {t} ORDER BY id'
    assert sync(*to_pg) == 0 and sync(*to_redis) == 0  # slot created, then a full copy
    assert sql(url, everything.format(t='mirror.items')) == sql(url, everything.format(t='items'))

    sql(url, "INSERT INTO items (id, note, at) VALUES (4, 'd', '2024-05-01 12:00:00.5+00')")
    sql(url, "UPDATE items SET note = 'it''s', price = NULL WHERE id = 2")
    sql(url, 'DELETE FROM items WHERE id = 3')
    sql(url, "INSERT INTO items (id, note) VALUES (5, 'e')")
    sql(url, 'DELETE FROM items WHERE id = 5')
    assert sync(*to_pg) == 0 and sync(*to_redis) == 0
    assert sql(url, everything.format(t='mirror.items')) == sql(url, everything.format(t='items'))
    hashes = {
        k.decode(): {f.decode(): v.decode() for f, v in client.hgetall(k).items()}
        for k in client.scan_iter(f'{prefix}*')
    }
    assert hashes == {
        f'{prefix}items:1': {'id': '1', 'note': 'a'},
        f'{prefix}items:2': {'id': '2', 'note': "it's"},
        f'{prefix}items:4': {'id': '4', 'note': 'd'},
    }

    assert sync(*to_pg) == 0  # acknowledged: nothing again
    runs = [
        r[0]
        for r in sql(
            url,
            'SELECT row_to_json(j) FROM (SELECT * FROM sync_jobs WHERE name = %s '
            'ORDER BY started_at) j',
            (name,),
        )
    ]
    assert [(r['status'], r['mode']) for r in runs] == [('succeeded', 'cdc')] * 3
    assert [r['rows_read'] for r in runs] == [3, 5, 0]
    assert all(r['rows_read'] == r['rows_written'] for r in runs)
    assert runs[1]['watermark_from'] == runs[0]['watermark_to']  # LSNs
    assert '/' in runs[1]['watermark_to']
