"""End to end: the flagship's metrics over HTTP (--metrics_port) and in a text-format file
(--metrics_file), with the sinks on; the counts in them account for every record."""

from __future__ import annotations

import json
import subprocess
import sys
import time
import urllib.request
import uuid

import pytest
from prometheus_client.parser import text_string_to_metric_families

from beam_pipelines.generate_events import GeneratorConfig
from beam_pipelines.generate_events import generate_records
from beam_pipelines.generate_events import write_events
from tests.conftest import free_port
from tests.io.test_postgres import pg_schema  # noqa: F401  (fixture)
from tests.io.test_postgres import pg_url  # noqa: F401  (fixture)
from tests.io.test_redis import REDIS_URL
from tests.io.test_redis import client  # noqa: F401  (fixture)

pytestmark = pytest.mark.e2e


def samples(text):
    out = {}
    for family in text_string_to_metric_families(text):
        for s in family.samples:
            out[(s.name, tuple(sorted(s.labels.items())))] = s.value
    return out


def value(found, name, **labels):
    return found[(name, tuple(sorted(labels.items())))]


def total(found, name):
    return sum(v for (n, _), v in found.items() if n == name)


def test_metrics_over_http_and_in_a_file_account_for_every_record(
    tmp_path,
    pg_url,  # noqa: F811
    pg_schema,  # noqa: F811
    client,  # noqa: F811
):
    records, _ = generate_records(GeneratorConfig(events=3000, seed=9, entities=20))
    write_events(records, str(tmp_path / 'events.jsonl'), 'jsonl')
    port, prefix = free_port(), f'test:{uuid.uuid4().hex[:10]}:'
    out, metrics_file = tmp_path / 'out', tmp_path / 'metrics' / 'event_analytics.prom'
    argv = [sys.executable, '-m', 'beam_pipelines', 'event_analytics']
    argv += ['--input', str(tmp_path / 'events.jsonl'), '--output_dir', str(out)]
    argv += ['--postgres_url', pg_url, '--pg_schema', pg_schema, '--num_shards', '3']
    argv += ['--redis_url', REDIS_URL, '--redis_prefix', prefix]
    argv += ['--metrics_file', str(metrics_file), '--metrics_port', str(port)]
    argv += ['--metrics_linger_secs', '120']
    proc = subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        deadline, served = time.monotonic() + 300, None
        while time.monotonic() < deadline and proc.poll() is None:
            try:
                with urllib.request.urlopen(f'http://127.0.0.1:{port}/metrics', timeout=5) as r:
                    text = r.read().decode()
            except OSError:
                text = ''
            found = samples(text) if text else {}
            key = (
                'beam_pipelines_runs_total',
                (('pipeline', 'event_analytics'), ('status', 'succeeded')),
            )
            if found.get(key) == 1:
                served = found
                break
            time.sleep(0.3)
        assert served is not None, proc.stderr.read() if proc.poll() is not None else 'timeout'
    finally:
        proc.terminate()
        proc.wait(timeout=30)
        stale = list(client.scan_iter(f'{prefix}*'))
        if stale:
            client.delete(*stale)

    in_file = samples(metrics_file.read_text())
    counts = json.loads((out / 'run_summary.json').read_text())['counts']
    for found in (served, in_file):

        def run(outcome, found=found):
            return value(
                found,
                'beam_pipelines_last_run_records',
                pipeline='event_analytics',
                outcome=outcome,
            )

        assert {k: run(k) for k in ('read', 'valid', 'dead_letter', 'duplicates')} == {
            k: counts[k] for k in ('read', 'valid', 'dead_letter', 'duplicates')
        }
        assert value(found, 'beam_pipelines_last_run_success', pipeline='event_analytics') == 1
        assert (
            value(found, 'beam_pipelines_last_run_records_unaccounted', pipeline='event_analytics')
            == 0
        )
        # The stage counters tell the same story as the summary.
        assert value(found, 'beam_pipelines_records_in_total', stage='parse') == counts['read']
        assert total(found, 'beam_pipelines_dead_letters_total') == counts['dead_letter']
        assert value(found, 'beam_pipelines_duplicates_total') == counts['duplicates']
        assert value(found, 'beam_pipelines_records_out_total', stage='dedup') == counts['valid']
        lag_count = value(found, 'beam_pipelines_processing_lag_seconds_count', stage='validate')
        assert lag_count == value(found, 'beam_pipelines_records_out_total', stage='validate')
        # Sink write latency, as summaries with their extremes.
        for sink in ('postgres', 'redis'):
            assert value(found, f'beam_pipelines_{sink}_write_ms_count') > 0
            assert value(found, f'beam_pipelines_{sink}_write_ms_max') >= 0
        assert value(found, 'beam_pipelines_postgres_rows_events_total') >= counts['valid']
