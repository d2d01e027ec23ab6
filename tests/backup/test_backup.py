"""Backups and restores against the real PostgreSQL server: whole round trips after a dropped
schema, incremental chains, refused corrupt archives, job records, and the key store left out."""

from __future__ import annotations

import datetime as dt
import json
import shutil

import psycopg2
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from psycopg2 import sql

from beam_pipelines.backup import BackupError
from beam_pipelines.backup import list_manifests
from beam_pipelines.backup import restore
from beam_pipelines.backup import run_backup
from beam_pipelines.backup import tables
from tests.backup.conftest import KEY_CANARY
from tests.backup.conftest import archive_text
from tests.backup.conftest import backup
from tests.backup.conftest import drop_schema
from tests.backup.conftest import execute
from tests.backup.conftest import load_flagship
from tests.backup.conftest import seed_small
from tests.backup.conftest import snapshot
from tests.backup.conftest import tree_bytes

pytestmark = pytest.mark.e2e


def by_name(manifest) -> dict:
    return {f.name: f for f in manifest.files}


def count_rows(url: str, schema: str, table: str, since: str | None = None) -> int:
    query = sql.SQL('SELECT count(*) FROM {}.{}').format(
        sql.Identifier(schema), sql.Identifier(table)
    )
    if since is None:
        return execute(url, query)[0][0]
    return execute(url, query + sql.SQL(' WHERE loaded_at >= %s'), (since,))[0][0]


def schema_exists(url: str, schema: str) -> bool:
    return execute(url, 'SELECT to_regnamespace(%s) IS NOT NULL', (schema,))[0][0]


def test_full_backup_restores_every_row_and_file_after_the_schema_is_dropped(
    tmp_path, pg_url, pg_schema, restore_schema
):
    out, arch = tmp_path / 'out', tmp_path / 'archive'
    load_flagship(tmp_path, pg_url, pg_schema, out, seed=21)
    seed_small(pg_url, pg_schema)  # quotes, commas and newlines in jsonb; a key; a sync job
    live, files = snapshot(pg_url, pg_schema), tree_bytes(out)
    assert len(live['events']) > 2000 and live['aggregates'] and live['dead_letters']

    flags = ['--postgres_url', pg_url, '--archive', arch]
    run = ['run', '--mode', 'full', '--pg_schema', pg_schema, '--output_dir', out, *flags]
    assert backup(*run) == 0
    drop_schema(pg_url, pg_schema)
    shutil.rmtree(out)

    [m] = list_manifests(str(arch))
    entries = by_name(m)
    assert entries['events'].rows == len(live['events'])
    assert entries['events'].full_copy and entries['events'].key == ('event_id', 'event_time')
    parquet = [f for f in m.output_files if f.name.endswith('.parquet')]
    assert parquet and all(not f.gzipped and f.rows > 0 for f in parquet)
    assert sum(f.rows for f in parquet if f.name.startswith('events/')) == len(live['events']) - 5
    restored = tmp_path / 'restored'
    restore_args = ['--pg_schema', restore_schema, '--output_dir', restored, *flags]
    assert backup('restore', '--id', m.backup_id, *restore_args) == 0
    assert snapshot(pg_url, restore_schema) == live  # loaded_at included
    assert tree_bytes(restored) == files


def test_incremental_chain_holds_only_changes_and_restores_the_live_state(
    tmp_path, pg_url, pg_schema, restore_schema
):
    out, static, arch = tmp_path / 'out', tmp_path / 'static', str(tmp_path / 'archive')
    static.mkdir()
    pq.write_table(pa.table({'x': [1, 2, 3]}), static / 'fixed.parquet')
    load_flagship(tmp_path, pg_url, pg_schema, out, seed=31)
    s = sql.Identifier(pg_schema)
    first_load = execute(pg_url, sql.SQL('SELECT max(loaded_at) FROM {}.events').format(s))[0][0]
    full = run_backup(pg_url, pg_schema, arch, 'full', [str(out), str(static)])

    load_flagship(tmp_path, pg_url, pg_schema, out, seed=32, events=1000)
    execute(
        pg_url,
        sql.SQL(
            'UPDATE {}.aggregates SET count = count + 1 WHERE entity_id = '
            '(SELECT min(entity_id) FROM {}.aggregates)'
        ).format(s, s),
    )
    inc = run_backup(pg_url, pg_schema, arch, 'incremental', [str(out), str(static)])
    assert (inc.mode, inc.parent_id, inc.watermark_from) == (
        'incremental',
        full.backup_id,
        full.watermark_to,
    )
    for entry in inc.tables:
        if entry.full_copy:
            assert entry.name in ('gdpr_audit', 'gdpr_tombstones', 'sync_jobs')
            assert entry.rows == count_rows(pg_url, pg_schema, entry.name)
            continue
        changed = count_rows(pg_url, pg_schema, entry.name, since=full.watermark_to)
        assert entry.rows == changed, entry.name
    events, aggregates = by_name(inc)['events'], by_name(inc)['aggregates']
    assert events.rows >= 900 and aggregates.rows > 0
    if dt.datetime.fromisoformat(full.watermark_to) > first_load:
        # (Unless another session's transaction, open all along, held the watermark back.)
        assert events.rows < count_rows(pg_url, pg_schema, 'events')
        assert aggregates.rows < count_rows(pg_url, pg_schema, 'aggregates')
    # The unchanged file points at the full backup's copy; the rewritten outputs were copied.
    fixed = by_name(inc)['fixed.parquet']
    assert fixed.path.startswith(full.backup_id + '/') and fixed.output == 1
    assert all(f.path.startswith(inc.backup_id + '/') for f in inc.output_files if f.output == 0)

    # Nothing changed: no files and (but for what another session held back) no rows.
    empty = run_backup(pg_url, pg_schema, arch, 'incremental', [str(out), str(static)])
    assert empty.parent_id == inc.backup_id
    for e in empty.tables:
        if not e.full_copy:
            assert e.rows == count_rows(pg_url, pg_schema, e.name, since=inc.watermark_to)
    assert not [f for f in empty.output_files if f.path.startswith(empty.backup_id)]

    live = snapshot(pg_url, pg_schema)
    targets = [str(tmp_path / 'r_out'), str(tmp_path / 'r_static')]
    summary = restore(empty.backup_id, arch, pg_url, restore_schema, targets)
    assert summary['chain'] == [full.backup_id, inc.backup_id, empty.backup_id]
    assert snapshot(pg_url, restore_schema) == live
    assert tree_bytes(tmp_path / 'r_out') == tree_bytes(out)
    assert tree_bytes(tmp_path / 'r_static') == tree_bytes(static)


def test_rows_of_transactions_in_flight_during_a_backup_are_in_the_next(
    tmp_path, pg_url, pg_schema, restore_schema
):
    arch = str(tmp_path / 'archive')
    seed_small(pg_url, pg_schema)
    writer = psycopg2.connect(pg_url)
    try:
        with writer.cursor() as cur:  # open, uncommitted while the full backup runs
            cur.execute(
                sql.SQL(
                    'UPDATE {}.events SET value = -1 WHERE event_id = %s RETURNING loaded_at'
                ).format(sql.Identifier(pg_schema)),
                ('a1',),
            )
            stamped = cur.fetchone()[0]
        full = run_backup(pg_url, pg_schema, arch, 'full')
        assert dt.datetime.fromisoformat(full.watermark_to) <= stamped
        writer.commit()
    finally:
        writer.close()
    inc = run_backup(pg_url, pg_schema, arch, 'incremental')
    expected = count_rows(pg_url, pg_schema, 'events', since=full.watermark_to)
    assert by_name(inc)['events'].rows == expected >= 1
    restore(inc.backup_id, arch, pg_url, restore_schema)
    value = sql.SQL('SELECT value FROM {}.events WHERE event_id = %s')
    assert execute(pg_url, value.format(sql.Identifier(restore_schema)), ('a1',)) == [(-1.0,)]


def test_a_corrupt_archive_is_refused_and_nothing_is_restored(
    tmp_path, pg_url, pg_schema, restore_schema, capsys
):
    out, arch = tmp_path / 'out', tmp_path / 'archive'
    out.mkdir()
    pq.write_table(pa.table({'x': list(range(100))}), out / 'part.parquet')
    seed_small(pg_url, pg_schema, rows=200)
    m = run_backup(pg_url, pg_schema, str(arch), 'full', [str(out)])
    target = tmp_path / 'restored'
    args = ['restore', '--id', m.backup_id, '--archive', arch, '--postgres_url', pg_url]
    args += ['--pg_schema', restore_schema, '--output_dir', target]

    def refused(path, edit, expected):
        original = path.read_bytes()
        path.write_bytes(edit(original))
        capsys.readouterr()
        assert backup(*args) == 1
        err = capsys.readouterr().err
        assert 'refusing to restore' in err and expected in err, err
        assert not schema_exists(pg_url, restore_schema)
        assert not target.exists() or not any(target.iterdir())
        path.write_bytes(original)

    def flip(data: bytes) -> bytes:
        middle = len(data) // 2
        return data[:middle] + bytes([data[middle] ^ 0x40]) + data[middle + 1 :]

    backup_dir = arch / m.backup_id
    refused(backup_dir / 'tables' / 'events.csv.gz', flip, 'tables/events.csv.gz: SHA-256')
    refused(backup_dir / 'files' / '0' / 'part.parquet', flip, 'part.parquet: SHA-256')

    def fewer_rows(raw: bytes) -> bytes:
        data = json.loads(raw)
        next(f for f in data['files'] if f['name'] == 'events')['rows'] -= 1
        return json.dumps(data).encode()

    refused(backup_dir / 'manifest.json', fewer_rows, '200 rows, the manifest says 199')
    assert backup(*args) == 0  # all put back


def test_backup_jobs_record_successes_and_failures_without_secrets(
    tmp_path, pg_url, pg_schema, monkeypatch, capsys
):
    arch = str(tmp_path / 'archive')
    seed_small(pg_url, pg_schema)
    jobs = sql.SQL(
        'SELECT backup_id, mode, parent_id, status, rows, bytes, watermark, manifest, error, '
        'finished_at >= started_at FROM {}.backup_jobs ORDER BY backup_id'
    ).format(sql.Identifier(pg_schema))

    flags = ['--postgres_url', pg_url, '--pg_schema', pg_schema, '--archive', arch]
    assert backup('run', '--mode', 'incremental', *flags) == 1  # nothing to build on yet
    assert 'take a full backup first' in capsys.readouterr().err
    assert execute(pg_url, jobs) == []

    full = run_backup(pg_url, pg_schema, arch, 'full')

    def broken(*args, **kwargs):
        raise RuntimeError('disk on fire at postgresql://bk:hunter2@db.example/x')

    monkeypatch.setattr('beam_pipelines.backup.backup.backup_outputs', broken)
    with pytest.raises(BackupError, match='disk on fire') as failure:
        run_backup(pg_url, pg_schema, arch, 'incremental')
    assert 'hunter2' not in str(failure.value)
    monkeypatch.undo()
    inc = run_backup(pg_url, pg_schema, arch, 'incremental')

    ok, failed, last = execute(pg_url, jobs)
    assert ok[:6] == (full.backup_id, 'full', None, 'succeeded', full.rows, full.bytes)
    assert ok[6].isoformat() == full.watermark_to and ok[7]['backup_id'] == full.backup_id
    assert ok[8] is None and ok[9]
    assert failed[1:4] == ('incremental', full.backup_id, 'failed')
    assert 'disk on fire' in failed[8] and 'hunter2' not in failed[8] and failed[9]
    assert not (tmp_path / 'archive' / failed[0]).exists()
    # The failed backup is never a parent.
    assert last[:4] == (inc.backup_id, 'incremental', full.backup_id, 'succeeded')
    assert [m.backup_id for m in list_manifests(arch)] == [full.backup_id, inc.backup_id]


def test_the_key_store_is_never_backed_up(tmp_path, pg_url, pg_schema, restore_schema):
    arch = tmp_path / 'archive'
    seed_small(pg_url, pg_schema)
    full = run_backup(pg_url, pg_schema, str(arch), 'full')
    seed_small(pg_url, pg_schema, tag='b')  # touches gdpr_keys again
    inc = run_backup(pg_url, pg_schema, str(arch), 'incremental')
    for m in (full, inc):
        names = {f.name for f in m.files}
        assert 'gdpr_keys' not in names and 'events' in names
        assert not set(names) & tables.EXCLUDED_TABLES
    everything = archive_text(arch)
    assert b'gdpr_keys' not in everything
    assert KEY_CANARY.encode() not in everything
    assert KEY_CANARY.encode().hex().encode() not in everything  # bytea's text form
    restore(inc.backup_id, str(arch), pg_url, restore_schema)
    keys = sql.SQL('SELECT count(*) FROM {}.gdpr_keys').format(sql.Identifier(restore_schema))
    assert execute(pg_url, keys) == [(0,)]


def test_usage_errors_exit_2(tmp_path, pg_url):
    arch = str(tmp_path / 'a')
    assert backup('run', '--mode', 'sometimes', '--archive', arch) == 2
    assert backup('prune', '--keep', '0', '--archive', arch) == 2
    assert backup('list', '--archive', arch, '--no_such_flag') == 2
    run = ['run', '--mode', 'full', '--archive', arch, '--postgres_url', pg_url]
    assert backup(*run, '--pg_schema', 'bad-name') == 2
