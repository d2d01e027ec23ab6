"""Backups and erasure together: restoring a backup taken before an erasure does not bring the
subject back (tombstones from the restored table and the archive's log are enforced, in the
restore's transaction), and a restore that cannot enforce them is refused and leaves nothing."""

from __future__ import annotations

import shutil
import uuid

import orjson
import psycopg2
import pytest

from beam_pipelines import cli
from beam_pipelines import event_analytics
from beam_pipelines.backup import launcher as backup_launcher
from beam_pipelines.gdpr import launcher as gdpr
from beam_pipelines.gdpr import secrets
from beam_pipelines.gdpr.matching import Matcher
from beam_pipelines.gdpr.pseudonym import all_pseudonyms
from tests.gdpr.test_erasure import _traces
from tests.gdpr.test_erasure import _write_input
from tests.io.test_postgres import pg_schema  # noqa: F401  (fixture)
from tests.io.test_postgres import pg_url  # noqa: F401  (fixture)
from tests.io.test_redis import client  # noqa: F401  (fixture)

pytestmark = pytest.mark.e2e
SUBJECT, EMAIL = 'user-007', 'user-007@example.com'


def _backup(*args) -> int:
    return cli.main(backup_launcher.PROG, backup_launcher.run, [str(a) for a in args])


def _count(url, sql):
    with psycopg2.connect(url) as conn, conn.cursor() as cur:
        cur.execute(sql)
        n = cur.fetchone()[0]
    conn.close()
    return n


@pytest.fixture
def restored_schema(pg_url):  # noqa: F811
    name = f'r_{uuid.uuid4().hex[:12]}'
    yield name
    with psycopg2.connect(pg_url) as conn, conn.cursor() as cur:
        cur.execute(f'DROP SCHEMA IF EXISTS "{name}" CASCADE')
    conn.close()


def test_a_backup_from_before_an_erasure_restores_without_the_subject(
    tmp_path,
    pg_url,  # noqa: F811
    pg_schema,  # noqa: F811
    restored_schema,
    client,  # noqa: F811
    monkeypatch,
):
    secrets_file = tmp_path / 'secrets.json'
    secrets_file.write_text(secrets.generate().to_json())
    ring = secrets.load(str(secrets_file)).pseudonym_keys
    source = tmp_path / 'events.jsonl'
    _write_input(source)
    out, archive = tmp_path / 'out', tmp_path / 'archive'
    run = [
        '--input', str(source), '--output_dir', str(out), '--postgres_url', pg_url,
        '--pg_schema', pg_schema, '--pii_fields', 'entity_id,email,referrer_email',
        '--encrypt_fields', 'phone', '--gdpr_secrets_file', str(secrets_file),
    ]  # fmt: skip
    assert event_analytics.run(run) == 0
    store = ['--postgres_url', pg_url, '--pg_schema', pg_schema]
    assert _backup('run', '--mode', 'full', *store, '--output_dir', out, '--archive', archive) == 0
    manifest = next(archive.rglob('manifest.json'))
    backup_id = orjson.loads(manifest.read_bytes())['backup_id']
    assert 'gdpr_keys' not in manifest.read_text()  # the key store is never archived

    erase = [
        'erase', *store, '--output_dir', str(out), '--gdpr_secrets_file', str(secrets_file),
        '--subject', SUBJECT, '--identifier', EMAIL, '--archive', str(archive),
    ]  # fmt: skip
    assert gdpr.run(erase) == 0
    assert list((archive / 'tombstones').glob('*.json'))
    live = _count(pg_url, f'SELECT count(*) FROM "{pg_schema}".events')

    target = ['--postgres_url', pg_url, '--pg_schema', restored_schema]
    restored_out = tmp_path / 'restored'
    restore = ['restore', '--id', backup_id, '--archive', archive, *target,
               '--output_dir', restored_out]  # fmt: skip
    # Without the keys the tombstones cannot be enforced: refused, and nothing is left behind.
    monkeypatch.delenv(secrets.ENV_VAR, raising=False)
    assert _backup(*restore) == 2
    assert not restored_out.exists() or not any(p.is_file() for p in restored_out.rglob('*'))
    assert _count(pg_url, f"SELECT count(*) FROM pg_tables WHERE schemaname = '{restored_schema}'"
                  " AND tablename = 'events'") in (0, 1)  # fmt: skip
    if _count(pg_url, f"SELECT count(*) FROM pg_tables WHERE schemaname = '{restored_schema}' "
              "AND tablename = 'events'"):  # fmt: skip
        assert _count(pg_url, f'SELECT count(*) FROM "{restored_schema}".events') == 0

    assert _backup(*restore, '--gdpr_secrets_file', secrets_file) == 0
    everything = Matcher(
        [SUBJECT, EMAIL, *all_pseudonyms(SUBJECT, ring), *all_pseudonyms(EMAIL, ring)]
    )
    prefix = f'none:{uuid.uuid4().hex}:'
    found = _traces(pg_url, restored_schema, client, prefix, [str(restored_out)], everything)
    assert found == {'postgres': [], 'redis': [], 'files': []}
    # Everyone else is back, row for row; their data keys are not (crypto-shredding's price:
    # the key store is replicated, never archived).
    assert _count(pg_url, f'SELECT count(*) FROM "{restored_schema}".events') == live
    assert _count(pg_url, f'SELECT count(*) FROM "{restored_schema}".gdpr_keys') == 0

    # An erasure not logged to the archive: the live store's tombstones apply.
    shutil.rmtree(archive / 'tombstones')
    again = f'{restored_schema}_b'
    try:
        target_b = ['--postgres_url', pg_url, '--pg_schema', again]
        out_b = tmp_path / 'restored_b'
        live = ['--gdpr_store_url', pg_url, '--gdpr_schema', pg_schema]
        live += ['--gdpr_secrets_file', secrets_file, '--output_dir', out_b]
        assert _backup('restore', '--id', backup_id, '--archive', archive, *target_b, *live) == 0
        found = _traces(pg_url, again, client, prefix, [str(out_b)], everything)
        assert found == {'postgres': [], 'redis': [], 'files': []}
    finally:
        with psycopg2.connect(pg_url) as conn, conn.cursor() as cur:
            cur.execute(f'DROP SCHEMA IF EXISTS "{again}" CASCADE')
        conn.close()
