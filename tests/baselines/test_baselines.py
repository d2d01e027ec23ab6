"""The benchmark's baselines do the flagship's work: the same counts and aggregates on the same
input, so the ratios ``make bench`` prints compare like with like."""

from __future__ import annotations

import json

import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq
import pytest

from beam_pipelines import event_analytics
from beam_pipelines.baselines import arrow_ceiling
from beam_pipelines.baselines import plain_script
from beam_pipelines.bench_anomaly import measure
from beam_pipelines.generate_events import GeneratorConfig
from beam_pipelines.generate_events import generate_records
from beam_pipelines.generate_events import write_events


def _flagship(tmp_path, source):
    out = tmp_path / 'flagship'
    assert (
        event_analytics.run(['--input', str(source), '--output_dir', str(out), '--no_report']) == 0
    )
    aggregates = pq.read_table(out / 'aggregates')
    return out, {
        (r['entity_id'], r['event_type'], r['window_start'].timestamp()): (r['count'], r['sum'])
        for r in aggregates.to_pylist()
    }


def _windows(table: pa.Table, count: str) -> dict:
    starts = pc.divide(table.column('window_start'), 1e6).to_pylist()
    return {
        (e, t, s): (c, v)
        for e, t, s, c, v in zip(
            table.column('entity_id').to_pylist(),
            table.column('event_type').to_pylist(),
            starts,
            table.column(count).to_pylist(),
            table.column('value_sum').to_pylist(),
        )
    }


def _close(a: dict, b: dict) -> bool:
    return a.keys() == b.keys() and all(
        a[k][0] == b[k][0] and (a[k][1] or 0) == pytest.approx(b[k][1] or 0) for k in a
    )


def test_the_script_counts_and_aggregates_what_the_flagship_does(tmp_path):
    records, _ = generate_records(GeneratorConfig(events=4000, seed=3, entities=40))
    source = tmp_path / 'dirty.jsonl'
    write_events(records, str(source), 'jsonl')
    out, expected = _flagship(tmp_path, source)
    counts = plain_script.run(str(source), str(tmp_path / 'plain'))
    summary = json.loads((out / 'run_summary.json').read_text())['counts']
    for name in ('read', 'valid', 'dead_letter', 'duplicates', 'aggregates'):
        assert counts[name] == summary[name], name
    script = pq.read_table(tmp_path / 'plain' / 'aggregates.parquet')
    assert _close(_windows(script, 'event_id_count'), expected)


def test_the_arrow_ceiling_aggregates_clean_input_as_the_flagship_does(tmp_path):
    records, _ = generate_records(
        GeneratorConfig(
            events=3000, seed=4, entities=30, duplicate_rate=0.0, malformed_rate=0.0,
            invalid_rate=0.0, tidy=True,
        )
    )  # fmt: skip
    source = tmp_path / 'clean.jsonl'
    write_events(records, str(source), 'jsonl')
    _, expected = _flagship(tmp_path, source)
    arrow_ceiling.run(str(source), str(tmp_path / 'arrow'))
    ceiling = pq.read_table(tmp_path / 'arrow' / 'aggregates.parquet')
    assert _close(_windows(ceiling, 'event_id_count'), expected)


def test_the_anomaly_stage_bench_scores_every_point_in_both_shapes_alike():
    result = measure(points=12_000, keys=4)
    assert result['points'] == 12_000
    batch, streaming = result['batch'], result['streaming']
    assert batch['points_per_sec_per_core'] > 0 and streaming['points_per_sec_per_core'] > 0
    assert batch['anomalies'] >= 1  # the injected spikes, once the detectors have warmed up
    # One batch per key or one point per key per release: the same verdicts.
    assert batch['anomalies'] == streaming['anomalies']
