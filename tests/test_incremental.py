"""End to end: incremental runs of the flagship (``--state_dir``) equal one run over all input."""

from __future__ import annotations

import datetime as dt
import json

import pyarrow.compute as pc
import pyarrow.parquet as pq
import pytest

from beam_pipelines import event_analytics
from beam_pipelines.generate_events import GeneratorConfig
from beam_pipelines.generate_events import generate_records
from beam_pipelines.generate_events import write_events
from tests.test_event_analytics import _cli

pytestmark = pytest.mark.e2e

KEY = ('entity_id', 'event_type', 'window_start')


def _run(input_path, out, state, *flags):
    code = event_analytics.run(
        [
            '--input',
            str(input_path),
            '--output_dir',
            str(out),
            '--state_dir',
            str(state),
            '--num_shards',
            '3',
            '--allowed_lateness_secs',
            '3600',
            *flags,
        ]
    )
    return code, json.loads((out / 'run_summary.json').read_text())


def test_two_incremental_runs_give_the_single_batch_run_aggregates(tmp_path):
    records, _ = generate_records(
        GeneratorConfig(events=2000, seed=5, entities=20, duration_secs=900)
    )
    half = len(records) // 2
    # A current event of another entity moves the watermark past every window's close (the
    # generated events are older than the allowed lateness).
    sentinel = json.dumps(
        {
            'event_id': 'sentinel',
            'event_type': 'click',
            'entity_id': 'sentinel',
            'timestamp': dt.datetime.now(dt.UTC).isoformat(),
            'value': 1.0,
        }
    )
    first, second, everything = (tmp_path / n for n in ('a.jsonl', 'b.jsonl', 'all.jsonl'))
    write_events(records[:half], str(first), 'jsonl')
    write_events(records[half:], str(second), 'jsonl')
    write_events(records, str(everything), 'jsonl')
    with open(second, 'a') as f:
        f.write(sentinel + '\n')

    out, state = tmp_path / 'out', tmp_path / 'state'
    code1, run1 = _run(first, out, state)
    code2, run2 = _run(second, out, state)
    assert code1 == code2 == 0
    assert run1['balanced'] and run2['balanced']
    total = {k: run1['counts'][k] + run2['counts'][k] for k in run1['counts']}
    assert total['late'] == 0

    batch_out = tmp_path / 'batch'
    assert event_analytics.run(['--input', str(everything), '--output_dir', str(batch_out)]) == 0
    batch = json.loads((batch_out / 'run_summary.json').read_text())['counts']
    assert total['valid'] - 1 == batch['valid']  # the sentinel
    assert total['duplicates'] == batch['duplicates']
    assert total['dead_letter'] == batch['dead_letter']

    panes = pq.read_table(out / 'aggregates')
    final = panes.filter(pc.field('is_final')).filter(pc.field('entity_id') != 'sentinel')
    expected = pq.read_table(batch_out / 'aggregates')
    assert final.num_rows == expected.num_rows
    got = {tuple(r[k] for k in KEY): (r['count'], r['sum']) for r in final.to_pylist()}
    want = {tuple(r[k] for k in KEY): (r['count'], r['sum']) for r in expected.to_pylist()}
    assert got.keys() == want.keys()
    for key, (count, total_value) in want.items():
        assert got[key][0] == count
        assert got[key][1] == pytest.approx(total_value)
    # Every window's panes are numbered from 0 without gaps, and only the last is final.
    indices = {}
    for r in panes.to_pylist():
        indices.setdefault(tuple(r[k] for k in KEY), []).append((r['pane_index'], r['is_final']))
    for seen in indices.values():
        seen.sort()
        assert [i for i, _ in seen] == list(range(len(seen)))
        assert [f for _, f in seen] == [False] * (len(seen) - 1) + [True]


def test_a_rerun_of_the_same_input_adds_only_duplicates(tmp_path):
    records, _ = generate_records(GeneratorConfig(events=300, seed=2, duration_secs=120))
    path = tmp_path / 'a.jsonl'
    write_events(records, str(path), 'jsonl')
    out, state = tmp_path / 'out', tmp_path / 'state'
    _, first = _run(path, out, state, '--dedup_horizon_secs', '86400')
    code, again = _run(path, out, state, '--dedup_horizon_secs', '86400')
    assert code == 0 and again['balanced']
    assert again['counts']['valid'] == 0
    assert again['counts']['duplicates'] == first['counts']['valid'] + first['counts']['duplicates']


@pytest.mark.parametrize(
    'args, fragment',
    [
        (['--every', '5s'], '--every needs --state_dir'),
        (['--state_dir', '/tmp/x', '--every', 'soon'], 'positive duration'),
        (['--streaming'], 'needs a streaming runner'),
        (
            ['--state_dir', '/tmp/x', '--window_type', 'session', '--accumulation', 'discarding'],
            'needs --accumulation accumulating',
        ),
    ],
)
def test_bad_incremental_flags_give_one_line_errors(args, fragment):
    result = _cli('--input', __file__, '--input_format', 'jsonl', *args)
    assert result.returncode == 2
    assert fragment in result.stderr.strip().splitlines()[-1]
