"""The flagship on s3:// through Beam's own S3 filesystem and options, against a local
S3-compatible server (moto in server mode on loopback, started by the test)."""

from __future__ import annotations

import io
import json

import boto3
import pyarrow.parquet as pq
import pytest

from beam_pipelines import event_analytics
from beam_pipelines.generate_events import GeneratorConfig
from beam_pipelines.generate_events import generate_records
from beam_pipelines.generate_events import write_events
from tests.conftest import S3_KEYS

pytestmark = pytest.mark.e2e
BUCKET = 'bp-test'


def test_flagship_reads_and_writes_s3(tmp_path, s3_endpoint):
    s3 = boto3.client('s3', endpoint_url=s3_endpoint, **S3_KEYS)
    s3.create_bucket(Bucket=BUCKET)
    records, _ = generate_records(GeneratorConfig(events=1500, seed=9, entities=20))
    local = tmp_path / 'events.parquet'
    write_events(records, str(local), 'parquet')
    s3.upload_file(str(local), BUCKET, 'in/events.parquet')
    s3_flags = [
        f'--s3_endpoint_url={s3_endpoint}',
        '--s3_access_key_id=testing',
        '--s3_secret_access_key=testing',
        '--s3_region_name=us-east-1',
    ]
    assert (
        event_analytics.run(
            [
                '--input',
                f's3://{BUCKET}/in/*.parquet',
                '--output_dir',
                f's3://{BUCKET}/out',
                *s3_flags,
            ]
        )
        == 0
    )
    assert (
        event_analytics.run(['--input', str(local), '--output_dir', str(tmp_path / 'local')]) == 0
    )
    summary = json.loads(s3.get_object(Bucket=BUCKET, Key='out/run_summary.json')['Body'].read())
    local_summary = json.loads((tmp_path / 'local' / 'run_summary.json').read_text())
    assert summary['counts'] == local_summary['counts']
    keys = [
        o['Key'] for o in s3.list_objects_v2(Bucket=BUCKET, Prefix='out/aggregates/')['Contents']
    ]
    rows = sum(
        pq.read_table(io.BytesIO(s3.get_object(Bucket=BUCKET, Key=k)['Body'].read())).num_rows
        for k in keys
        if k.endswith('.parquet')
    )
    assert rows == summary['counts']['aggregates']
