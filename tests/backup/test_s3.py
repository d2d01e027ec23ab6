"""Backups in an ``s3://`` archive through Beam's S3 filesystem, against a local S3-compatible
server (moto, the ``s3_endpoint`` fixture of ``tests/conftest.py``)."""

from __future__ import annotations

import boto3
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from tests.backup.conftest import backup
from tests.backup.conftest import seed_small
from tests.backup.conftest import snapshot
from tests.backup.conftest import tree_bytes
from tests.conftest import S3_KEYS

pytestmark = pytest.mark.e2e
BUCKET = 'bp-backups'


def test_backup_restore_and_prune_on_s3(
    tmp_path, pg_url, pg_schema, restore_schema, s3_endpoint, capsys
):
    s3 = boto3.client('s3', endpoint_url=s3_endpoint, **S3_KEYS)
    s3.create_bucket(Bucket=BUCKET)
    s3_flags = [
        f'--s3_endpoint_url={s3_endpoint}',
        '--s3_access_key_id=testing',
        '--s3_secret_access_key=testing',
        '--s3_region_name=us-east-1',
    ]
    arch = f's3://{BUCKET}/warehouse'
    out = tmp_path / 'out'
    (out / 'events').mkdir(parents=True)
    pq.write_table(pa.table({'x': list(range(50))}), out / 'events' / 'part-0.parquet')
    (out / 'run_summary.json').write_text('{"counts": {}}')
    seed_small(pg_url, pg_schema)
    flags = ['--archive', arch, '--postgres_url', pg_url, '--pg_schema', pg_schema, *s3_flags]

    def take(mode: str) -> str:
        capsys.readouterr()
        assert backup('run', '--mode', mode, '--output_dir', out, *flags) == 0
        return capsys.readouterr().out.split(' backup ')[1].split()[0]

    full = take('full')
    seed_small(pg_url, pg_schema, tag='b')
    pq.write_table(pa.table({'x': [7]}), out / 'events' / 'part-1.parquet')
    inc = take('incremental')
    keys = [o['Key'] for o in s3.list_objects_v2(Bucket=BUCKET)['Contents']]
    assert f'warehouse/{inc}/manifest.json' in keys
    assert f'warehouse/{inc}/files/0/events/part-1.parquet' in keys
    assert f'warehouse/{inc}/files/0/events/part-0.parquet' not in keys  # unchanged: in full's

    live = snapshot(pg_url, pg_schema)
    restored = tmp_path / 'restored'
    restore_flags = ['--pg_schema', restore_schema, '--output_dir', restored, *s3_flags]
    args = ['restore', '--id', inc, '--archive', arch, '--postgres_url', pg_url, *restore_flags]
    assert backup(*args) == 0
    assert snapshot(pg_url, restore_schema) == live
    assert tree_bytes(restored) == tree_bytes(out)

    newest = take('full')
    assert backup('prune', '--keep', '1', *flags) == 0
    assert 'deleted 2 backups' in capsys.readouterr().out
    assert backup('list', '--archive', arch, *s3_flags) == 0
    listing = capsys.readouterr().out
    assert newest in listing and full not in listing and inc not in listing
    left = {o['Key'].split('/')[1] for o in s3.list_objects_v2(Bucket=BUCKET)['Contents']}
    assert left == {newest}
