"""The provisioned Grafana dashboard and the Prometheus configuration: every metric the
dashboard queries is one the project exports (taken from a real run's --metrics_file and the
ingestion service's registry), and the compose file mounts what Grafana and Prometheus read."""

from __future__ import annotations

import json
import os
import re

import prometheus_client
import pytest
import yaml
from prometheus_client.parser import text_string_to_metric_families

from beam_pipelines import event_analytics
from beam_pipelines.generate_events import GeneratorConfig
from beam_pipelines.generate_events import generate_records
from beam_pipelines.generate_events import write_events
from beam_pipelines.ingest.service import _Metrics
from tests.io.test_postgres import pg_schema  # noqa: F401  (fixture)
from tests.io.test_postgres import pg_url  # noqa: F401  (fixture)
from tests.io.test_redis import REDIS_URL
from tests.io.test_redis import client  # noqa: F401  (fixture)

ROOT = os.path.join(os.path.dirname(__file__), '..', '..')
DASHBOARD = os.path.join(ROOT, 'docker', 'grafana', 'dashboards', 'beam_pipelines.json')
METRIC = re.compile(r'\bbeam_pipelines_[a-z0-9_]+')


def dashboard_metrics():
    with open(DASHBOARD) as f:
        dash = json.load(f)
    exprs = [t['expr'] for p in dash['panels'] for t in p['targets']]
    return dash, {m for e in exprs for m in METRIC.findall(e)}


def sample_names(text):
    return {s.name for f in text_string_to_metric_families(text) for s in f.samples}


@pytest.mark.e2e
def test_the_dashboard_queries_only_metrics_the_project_exports(
    tmp_path,
    pg_url,  # noqa: F811
    pg_schema,  # noqa: F811
    client,  # noqa: F811
):
    records, _ = generate_records(GeneratorConfig(events=2000, seed=4, entities=10))
    write_events(records, str(tmp_path / 'events.jsonl'), 'jsonl')
    prefix = f'test:{pg_schema}:'
    metrics_file = tmp_path / 'metrics.prom'
    argv = ['--input', str(tmp_path / 'events.jsonl'), '--output_dir', str(tmp_path / 'out')]
    argv += ['--postgres_url', pg_url, '--pg_schema', pg_schema, '--detect_anomalies', '--quality']
    argv += ['--redis_url', REDIS_URL, '--redis_prefix', prefix]
    try:
        assert event_analytics.run([*argv, '--metrics_file', str(metrics_file)]) == 0
    finally:
        stale = list(client.scan_iter(f'{prefix}*'))
        if stale:
            client.delete(*stale)
    exported = sample_names(metrics_file.read_text())
    ingest = _Metrics()
    ingest.requests.labels('events', '202').inc()
    ingest.refused.labels('rate_limited').inc()
    exported |= sample_names(prometheus_client.generate_latest(ingest.registry).decode())

    dash, used = dashboard_metrics()
    assert used, 'the dashboard queries nothing'
    assert used <= exported, f'not exported: {sorted(used - exported)}'
    titles = ' '.join(p['title'].lower() for p in dash['panels'])
    for topic in ('throughput', 'dead-letter', 'lag', 'anomalies', 'latency', 'quality score'):
        assert topic in titles


def test_the_compose_file_provisions_grafana_and_prometheus():
    with open(os.path.join(ROOT, 'docker', 'docker-compose.yml')) as f:
        services = yaml.safe_load(f)['services']
    for name in ('grafana', 'prometheus'):
        for volume in services[name]['volumes']:
            source = volume.split(':')[0]
            assert os.path.exists(os.path.join(ROOT, 'docker', source)), source
    with open(os.path.join(ROOT, 'docker', 'prometheus', 'prometheus.yml')) as f:
        scrape = yaml.safe_load(f)['scrape_configs']
    targets = {
        t.split(':')[0] for job in scrape for c in job['static_configs'] for t in c['targets']
    }
    assert targets <= set(services), targets - set(services)
    # Flink exposes its (and Beam's) metrics where Prometheus scrapes them.
    props = yaml.safe_load(services['jobmanager']['environment']['FLINK_PROPERTIES'])
    assert props['metrics.reporter.prom.port'] == 9249
    assert 'node-exporter' in targets
    exporter = services['node-exporter']
    assert '--collector.textfile.directory=/data/metrics' in exporter['command']
    (metrics_file,) = [
        a for a in services['submit']['entrypoint'] if a.startswith('--metrics_file=')
    ]
    assert metrics_file.split('=', 1)[1].startswith('/data/metrics/')
    with open(
        os.path.join(ROOT, 'docker', 'grafana', 'provisioning', 'dashboards', 'beam_pipelines.yml')
    ) as f:
        provider = yaml.safe_load(f)['providers'][0]
    assert (
        './grafana/dashboards:' + provider['options']['path'] + ':ro'
        in services['grafana']['volumes']
    )
