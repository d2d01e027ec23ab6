"""The flagship through Beam's portable Job API (the one Flink's job server speaks), with the
Python job service started by the test and a LOOPBACK environment."""

from __future__ import annotations

import json
import sys

import pyarrow.parquet as pq
import pytest

from beam_pipelines import event_analytics
from beam_pipelines.generate_events import GeneratorConfig
from beam_pipelines.generate_events import generate_records
from beam_pipelines.generate_events import write_events
from tests.conftest import local_server

pytestmark = pytest.mark.e2e


@pytest.fixture(scope='module')
def job_endpoint():
    module = 'apache_beam.runners.portability.local_job_service_main'
    with local_server(lambda port: [sys.executable, '-m', module, '--port', str(port)]) as port:
        yield f'localhost:{port}'


def test_flagship_on_the_portable_runner(tmp_path, job_endpoint):
    records, _ = generate_records(GeneratorConfig(events=2000, seed=5, entities=30))
    path = tmp_path / 'events.jsonl'
    write_events(records, str(path), 'jsonl')
    direct_out, portable_out = tmp_path / 'direct', tmp_path / 'portable'
    common = ['--input', str(path), '--batch_rows', '500', '--num_shards', '3']
    assert event_analytics.run([*common, '--output_dir', str(direct_out)]) == 0
    assert (
        event_analytics.run(
            [
                *common,
                '--output_dir',
                str(portable_out),
                '--runner=PortableRunner',
                f'--job_endpoint={job_endpoint}',
                '--environment_type=LOOPBACK',
            ]
        )
        == 0
    )
    direct = json.loads((direct_out / 'run_summary.json').read_text())
    portable = json.loads((portable_out / 'run_summary.json').read_text())
    assert portable['counts'] == direct['counts']
    assert portable['balanced']

    def rows(out):
        return sorted(tuple(r.values()) for r in pq.read_table(out / 'aggregates').to_pylist())

    assert rows(portable_out) == rows(direct_out)
