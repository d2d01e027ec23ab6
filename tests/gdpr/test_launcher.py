"""``python -m beam_pipelines.gdpr``: key files, rotation of both rings, refusals."""

from __future__ import annotations

import os
import stat
import subprocess
import sys

import orjson
import psycopg2
import pytest

from beam_pipelines import cli
from beam_pipelines import event_analytics
from beam_pipelines.gdpr import launcher as gdpr
from beam_pipelines.gdpr import secrets
from beam_pipelines.gdpr.pseudonym import pseudonymise
from tests.io.test_postgres import pg_schema  # noqa: F401  (fixture)
from tests.io.test_postgres import pg_url  # noqa: F401  (fixture)


def _events(path, entity, n, start=0):
    lines = [
        orjson.dumps(
            {
                'event_id': f'{entity}-{start + i}',
                'event_type': 'click',
                'entity_id': entity,
                'timestamp': 1714521600 + start + i,
                'phone': '+33 1 23',
            }
        )
        for i in range(n)
    ]
    path.write_bytes(b'\n'.join(lines) + b'\n')


def test_keygen_writes_a_private_file_and_never_overwrites(tmp_path, capsys):
    path = tmp_path / 'secrets.json'
    assert gdpr.run(['keygen', '--output', str(path)]) == 0
    assert stat.S_IMODE(os.stat(path).st_mode) == 0o600
    loaded = secrets.load(str(path))
    for key in loaded.pseudonym_keys.keys.values():
        assert key.hex() not in capsys.readouterr().out
    with pytest.raises(cli.UsageError, match='not overwriting'):
        gdpr.run(['keygen', '--output', str(path)])


def test_commands_without_secrets_fail_clearly(tmp_path, pg_url, pg_schema):  # noqa: F811
    env = {k: v for k, v in os.environ.items() if k != secrets.ENV_VAR}
    result = subprocess.run(
        [sys.executable, '-m', 'beam_pipelines.gdpr', 'erase', '--subject', 'u1',
         '--postgres_url', pg_url, '--pg_schema', pg_schema],
        capture_output=True, text=True, env=env, timeout=120, check=False,
    )  # fmt: skip
    assert result.returncode == 2
    assert 'no GDPR secrets' in result.stderr and 'Traceback' not in result.stderr


def test_rotations_keep_old_data_findable_and_erasable(tmp_path, pg_url, pg_schema):  # noqa: F811
    path = tmp_path / 'secrets.json'
    assert gdpr.run(['keygen', '--output', str(path)]) == 0
    flags = [
        '--postgres_url', pg_url, '--pg_schema', pg_schema,
        '--pii_fields', 'entity_id', '--encrypt_fields', 'phone',
        '--gdpr_secrets_file', str(path),
    ]  # fmt: skip
    first, second = tmp_path / 'a.jsonl', tmp_path / 'b.jsonl'
    _events(first, 'u1', 5)
    _events(second, 'u1', 5, start=100)
    assert (
        event_analytics.run(['--input', str(first), '--output_dir', str(tmp_path / 'o1'), *flags])
        == 0
    )
    old = secrets.load(str(path))
    # Both rings rotate: new data gets p2 pseudonyms and keys wrapped by m2.
    assert gdpr.run(['rotate', '--ring', 'pseudonym', '--gdpr_secrets_file', str(path)]) == 0
    assert gdpr.run(['rotate', '--ring', 'master', '--gdpr_secrets_file', str(path)]) == 0
    new = secrets.load(str(path))
    assert new.pseudonym_keys.active == 'p2' and new.master_keys.active == 'm2'
    assert (
        event_analytics.run(['--input', str(second), '--output_dir', str(tmp_path / 'o2'), *flags])
        == 0
    )
    s = f'"{pg_schema}"'
    with psycopg2.connect(pg_url) as conn, conn.cursor() as cur:
        cur.execute(f'SELECT entity_id, count(*) FROM {s}.events GROUP BY 1 ORDER BY 1')
        assert cur.fetchall() == [
            (pseudonymise('u1', old.pseudonym_keys, 'p1'), 5),
            (pseudonymise('u1', new.pseudonym_keys, 'p2'), 5),
        ]
        cur.execute(f'SELECT master_key_id, count(*) FROM {s}.gdpr_keys GROUP BY 1 ORDER BY 1')
        assert cur.fetchall() == [('m1', 1), ('m2', 1)]
    conn.close()
    store = ['--postgres_url', pg_url, '--pg_schema', pg_schema, '--gdpr_secrets_file', str(path)]
    assert gdpr.run(['rewrap', *store]) == 0
    bundle = tmp_path / 'bundle'
    assert gdpr.run(['access', *store, '--subject', 'u1', '--output', str(bundle)]) == 0
    exported = orjson.loads((bundle / 'subject.json').read_bytes())
    assert len(exported['postgres']['events']) == 10  # under both pseudonyms
    assert {e['attributes']['phone'] for e in exported['postgres']['events']} == {'+33 1 23'}
    assert gdpr.run(['erase', *store, '--subject', 'u1']) == 0
    with psycopg2.connect(pg_url) as conn, conn.cursor() as cur:
        cur.execute(f'SELECT count(*) FROM {s}.events')
        assert cur.fetchone()[0] == 0
        cur.execute(f'SELECT count(*) FROM {s}.gdpr_keys')
        assert cur.fetchone()[0] == 0
    conn.close()
    # A key that names tombstones cannot be dropped from the secrets: runs are refused.
    data = orjson.loads(path.read_bytes())
    del data['pseudonym_keys']['keys']['p1']
    path.write_bytes(orjson.dumps(data))
    with pytest.raises(cli.UsageError, match=r"\['p1'\]"):
        event_analytics.run(['--input', str(first), '--output_dir', str(tmp_path / 'o3'), *flags])
