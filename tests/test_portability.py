"""The Beam pipeline launchers through Beam's portable Job API (the one Flink's job server
speaks), with Beam's Python job service started by the test.

Every Beam pipeline launcher runs here (the flagship, the feature pipeline, ``detect_anomalies``
and ``profile``). Two environments: LOOPBACK (the SDK worker in the launcher's process) and
EXTERNAL, a separate worker pool process (``worker_pool_main``, as beside a Flink
TaskManager), where every DoFn, coder and client crosses a process boundary pickled, with no
main session saved. Each run's outputs must equal the DirectRunner's on the same input.
"""

from __future__ import annotations

import csv
import datetime as dt
import json
import os
import sys
import uuid

import numpy as np
import psycopg2
import pyarrow.parquet as pq
import pytest

from beam_pipelines import detect_anomalies
from beam_pipelines import event_analytics
from beam_pipelines import feature_pipeline
from beam_pipelines.gdpr import secrets as gdpr_secrets
from beam_pipelines.generate_events import GeneratorConfig
from beam_pipelines.generate_events import generate_records
from beam_pipelines.generate_events import write_events
from beam_pipelines.profile import launcher as profile
from tests.conftest import local_server
from tests.io.test_postgres import pg_url  # noqa: F401  (fixture)
from tests.io.test_redis import REDIS_URL
from tests.io.test_redis import client  # noqa: F401  (fixture)

pytestmark = pytest.mark.e2e


@pytest.fixture(scope='module')
def job_endpoint():
    module = 'apache_beam.runners.portability.local_job_service_main'
    with local_server(lambda port: [sys.executable, '-m', module, '--port', str(port)]) as port:
        yield f'localhost:{port}'


@pytest.fixture(scope='module')
def worker_pool():
    # The pool starts each worker as `python -c ...`: this interpreter's, as in Beam's image.
    path = os.path.dirname(sys.executable) + os.pathsep + os.environ.get('PATH', '')
    module = 'apache_beam.runners.worker.worker_pool_main'
    with local_server(
        lambda port: [sys.executable, '-m', module, '--service_port', str(port)],
        env={**os.environ, 'PATH': path},
    ) as port:
        yield f'localhost:{port}'


@pytest.fixture
def external(job_endpoint, worker_pool):
    """Flags for a job on the job service with its workers in the pool's processes."""
    return [
        '--runner=PortableRunner',
        f'--job_endpoint={job_endpoint}',
        '--environment_type=EXTERNAL',
        f'--environment_config={worker_pool}',
    ]


def sample(tmp_path, events=2000):
    records, _ = generate_records(GeneratorConfig(events=events, seed=5, entities=30))
    path = tmp_path / 'events.jsonl'
    write_events(records, str(path), 'jsonl')
    return path


def summary(out):
    return json.loads((out / 'run_summary.json').read_text())


def rows(path):
    return sorted(tuple(map(str, r.values())) for r in pq.read_table(path).to_pylist())


def test_flagship_on_the_portable_runner_with_loopback(tmp_path, job_endpoint):
    path = sample(tmp_path)
    direct_out, portable_out = tmp_path / 'direct', tmp_path / 'portable'
    common = ['--input', str(path), '--batch_rows', '500', '--num_shards', '3']
    assert event_analytics.run([*common, '--output_dir', str(direct_out)]) == 0
    loopback = ['--runner=PortableRunner', f'--job_endpoint={job_endpoint}']
    loopback += ['--environment_type=LOOPBACK']
    assert event_analytics.run([*common, '--output_dir', str(portable_out), *loopback]) == 0
    assert summary(portable_out)['counts'] == summary(direct_out)['counts']
    assert summary(portable_out)['balanced']
    assert rows(portable_out / 'aggregates') == rows(direct_out / 'aggregates')


@pytest.fixture
def two_schemas(pg_url):  # noqa: F811
    names = [f't_{uuid.uuid4().hex[:12]}' for _ in range(2)]
    yield names
    with psycopg2.connect(pg_url) as conn, conn.cursor() as cur:
        for name in names:
            cur.execute(f'DROP SCHEMA IF EXISTS "{name}" CASCADE')
    conn.close()


def _table_counts(url, schema):
    with psycopg2.connect(url) as conn, conn.cursor() as cur:
        counts = {}
        for table in ('events', 'aggregates', 'dead_letters', 'anomalies'):
            cur.execute(f'SELECT count(*) FROM "{schema}".{table}')
            counts[table] = cur.fetchone()[0]
    conn.close()
    return counts


def test_flagship_with_sinks_in_an_external_worker_pool(
    tmp_path,
    external,
    pg_url,  # noqa: F811
    two_schemas,
    client,  # noqa: F811
):
    path = sample(tmp_path)
    prefixes = [f'test:{uuid.uuid4().hex[:10]}:' for _ in range(2)]
    outs = [tmp_path / 'direct', tmp_path / 'external']
    common = ['--input', str(path), '--batch_rows', '500', '--num_shards', '3']
    common += ['--postgres_url', pg_url, '--redis_url', REDIS_URL, '--detect_anomalies']
    # Personal data too: the workers read the GDPR secrets themselves (none travel in the job),
    # pseudonymise the entities and encrypt a column with keys from the warehouse.
    secrets_file = tmp_path / 'gdpr_secrets.json'
    secrets_file.write_text(gdpr_secrets.generate().to_json())
    common += ['--pii_fields', 'entity_id', '--encrypt_fields', 'source']
    common += ['--gdpr_secrets_file', str(secrets_file)]
    try:
        for out, schema, prefix, extra in zip(
            outs, two_schemas, prefixes, ([], [*external, '--checkpointing_interval=60000'])
        ):
            argv = [*common, '--output_dir', str(out), '--pg_schema', schema]
            assert event_analytics.run([*argv, '--redis_prefix', prefix, *extra]) == 0
        direct, portable = (summary(out) for out in outs)
        assert portable['counts'] == direct['counts'] and portable['balanced']
        assert rows(outs[1] / 'aggregates') == rows(outs[0] / 'aggregates')
        warehouse = [_table_counts(pg_url, s) for s in two_schemas]
        assert warehouse[1] == warehouse[0]
        assert warehouse[1]['events'] == portable['counts']['valid']
        keys = [sorted(k[len(p) :] for k in client.scan_iter(f'{p}*')) for p in prefixes]
        assert keys[1] == keys[0] and keys[0]
        assert all(b':p1_' in k for k in keys[0])  # pseudonymised entities
        with psycopg2.connect(pg_url) as conn, conn.cursor() as cur:
            for schema in two_schemas:
                cur.execute(f'SELECT count(*) FROM "{schema}".gdpr_keys')
                assert cur.fetchone()[0] > 0
                cur.execute(
                    f'SELECT count(*) FROM "{schema}".events WHERE source NOT LIKE \'enc1.%%\''
                )
                assert cur.fetchone()[0] == 0
        conn.close()
    finally:
        for p in prefixes:
            stale = list(client.scan_iter(f'{p}*'))
            if stale:
                client.delete(*stale)


def test_feature_pipeline_in_an_external_worker_pool(tmp_path, external):
    path = sample(tmp_path, events=1500)
    outs = [tmp_path / 'direct', tmp_path / 'external']
    common = ['--input', str(path), '--feature_horizons', '1m,10m', '--resample_secs', '300']
    for out, extra in zip(outs, ([], external)):
        assert feature_pipeline.run([*common, '--output_dir', str(out), *extra]) == 0
    assert summary(outs[1])['counts'] == summary(outs[0])['counts']
    assert rows(outs[1] / 'features') == rows(outs[0] / 'features')
    assert rows(outs[1] / 'timeseries') == rows(outs[0] / 'timeseries')
    stats = [json.loads((o / 'features' / '_normalization.json').read_text()) for o in outs]
    assert stats[1] == stats[0]


def test_detect_anomalies_in_an_external_worker_pool(tmp_path, external):
    rng = np.random.default_rng(4)
    start = dt.datetime(2024, 5, 1)
    values = rng.normal(50, 2, 400)
    values[300] = 95.0
    with open(tmp_path / 'in.csv', 'w', newline='') as f:
        w = csv.writer(f)
        w.writerow(['timestamp', 'value'])
        w.writerows(
            ((start + dt.timedelta(hours=i)).isoformat(), f'{v:.3f}') for i, v in enumerate(values)
        )
    outs = [tmp_path / 'direct.csv', tmp_path / 'external.csv']
    for out, extra in zip(outs, ([], external)):
        argv = ['--input', str(tmp_path / 'in.csv'), '--output', str(out)]
        assert detect_anomalies.run([*argv, *extra]) == 0
    assert outs[1].read_text() == outs[0].read_text()
    assert outs[1].read_text().count(',1\n') >= 1  # the spike


def test_profile_in_an_external_worker_pool(tmp_path, external):
    path = sample(tmp_path, events=1500)
    outs = [tmp_path / 'direct.json', tmp_path / 'external.json']
    for out, extra in zip(outs, ([], external)):
        argv = ['--input', str(path), '--output', str(out), '--batch_rows', '400']
        assert profile.run([*argv, *extra]) == 0
    assert json.loads(outs[1].read_text()) == json.loads(outs[0].read_text())
