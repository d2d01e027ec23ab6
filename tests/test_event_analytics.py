"""End to end: the launcher on files in all four formats, against the reference."""

from __future__ import annotations

import gzip
import json
import os
import subprocess
import sys

import pyarrow.parquet as pq
import pytest

from beam_pipelines import event_analytics
from beam_pipelines.columnar.sketch import RELATIVE_ACCURACY
from beam_pipelines.dead_letter import ENVELOPE_FIELDS
from beam_pipelines.generate_events import GeneratorConfig
from beam_pipelines.generate_events import generate_records
from beam_pipelines.generate_events import write_events
from tests.reference import reference

pytestmark = pytest.mark.e2e


@pytest.fixture(scope='module')
def records():
    return generate_records(GeneratorConfig(events=3000, seed=11, entities=40, duration_secs=900))[
        0
    ]


def _launch(tmp_path, input_path, *flags):
    out = tmp_path / 'out'
    code = event_analytics.run(
        [
            '--input',
            str(input_path),
            '--output_dir',
            str(out),
            '--batch_rows',
            '700',
            '--num_shards',
            '3',
            *flags,
        ]
    )
    summary = json.loads((out / 'run_summary.json').read_text())
    return code, out, summary


@pytest.mark.parametrize('fmt', ['jsonl', 'csv', 'avro', 'parquet'])
def test_flagship_matches_reference(tmp_path, records, fmt):
    path = tmp_path / f'events.{fmt}'
    write_events(records, str(path), fmt)
    code, out, summary = _launch(tmp_path, path)
    ref = reference(str(path), fmt)
    counts = summary['counts']
    assert code == 0
    assert summary['balanced'] is True
    assert counts['read'] == counts['valid'] + counts['dead_letter'] + counts['duplicates']
    for name in ('read', 'valid', 'dead_letter', 'duplicates'):
        assert counts[name] == ref[name], name
    if fmt in ('jsonl', 'csv'):
        assert counts['dead_letter'] > 0 and counts['duplicates'] > 0

    events = pq.read_table(out / 'events')
    assert set(events.column('event_id').to_pylist()) == ref['event_ids']
    assert events.num_rows == counts['valid']

    dead = [
        json.loads(line)
        for f in (out / 'dead_letter').glob('*.jsonl')
        for line in f.read_text().splitlines()
    ]
    assert len(dead) == counts['dead_letter']
    assert all(set(d) == set(ENVELOPE_FIELDS) and d['pipeline'] == 'event_analytics' for d in dead)

    aggregates = pq.read_table(out / 'aggregates').to_pylist()
    assert len(aggregates) == counts['aggregates'] == len(ref['aggregates'])
    for row in aggregates:
        key = (row['entity_id'], row['event_type'], row['window_start'].timestamp())
        expected = ref['aggregates'][key]
        assert (row['window_end'] - row['window_start']).total_seconds() == 60
        for field in ('count', 'value_count', 'min', 'max'):
            assert row[field] == expected[field], field
        for field, rel in (
            ('sum', 1e-9),
            ('mean', 1e-9),
            ('stddev', 1e-9),
            ('p50', RELATIVE_ACCURACY),
            ('p95', RELATIVE_ACCURACY),
        ):
            if expected[field] is None:
                assert row[field] is None, field
            else:
                assert row[field] == pytest.approx(expected[field], rel=rel), field


def test_rerun_replaces_outputs(tmp_path, records):
    path = tmp_path / 'events.jsonl'
    write_events(records, str(path), 'jsonl')
    _, out, first = _launch(tmp_path, path)
    _, _, second = _launch(tmp_path, path, '--num_shards', '5')
    assert first['counts'] == second['counts']
    assert pq.read_table(out / 'events').num_rows == second['counts']['valid']


def test_session_and_sliding_windows_run(tmp_path, records):
    path = tmp_path / 'events.jsonl'
    write_events(records, str(path), 'jsonl')
    _, out, sliding = _launch(
        tmp_path,
        path,
        '--window_type',
        'sliding',
        '--window_size_secs',
        '120',
        '--window_period_secs',
        '60',
    )
    # Every event lands in exactly two 120 s windows sliding by 60 s.
    agg = pq.read_table(out / 'aggregates')
    assert sum(agg.column('count').to_pylist()) == 2 * sliding['counts']['valid']
    _, out, session = _launch(
        tmp_path, path, '--window_type', 'session', '--session_gap_secs', '30'
    )
    agg = pq.read_table(out / 'aggregates')
    assert sum(agg.column('count').to_pylist()) == session['counts']['valid']


def _cli(*args):
    return subprocess.run(
        [sys.executable, '-m', 'beam_pipelines.event_analytics', *args],
        capture_output=True,
        text=True,
        timeout=120,
    )


@pytest.mark.parametrize(
    'args, fragment',
    [
        (['--input', 'x.jsonl', '--window_sise_secs', '3'], 'unrecognized arguments'),
        (['--input', '/nonexistent/*.jsonl'], 'matched no files'),
        ([], '--input is required'),
        (
            [
                '--input',
                __file__,
                '--input_format',
                'jsonl',
                '--window_type',
                'sliding',
                '--window_size_secs',
                '60',
                '--window_period_secs',
                '90',
            ],
            'window_period_secs',
        ),
        (['--input', __file__], 'cannot tell the format'),
        (
            ['--input', __file__, '--input_format', 'jsonl', '--schema', 'nope:Model'],
            "cannot import 'nope'",
        ),
        (
            ['--input', __file__, '--input_format', 'jsonl', '--window_size_secs', 'abc'],
            'invalid float value',
        ),
    ],
)
def test_bad_flags_give_one_line_errors(args, fragment):
    result = _cli(*args)
    assert result.returncode == 2
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    assert lines[0].startswith('event_analytics: error:')
    assert fragment in lines[0]


def test_custom_schema_from_the_command_line(tmp_path):
    rows = [
        'event_id,event_type,entity_id,timestamp,value,site',
        'r-1,temp,dev1,2024-05-01T00:00:10Z,20.5,lab',
        'r-2,temp,dev1,2024-05-01T00:00:20Z,21.5,lab',
        'x-3,temp,dev1,2024-05-01T00:00:30Z,22.5,lab',  # bad id prefix
        'r-4,wind,dev1,2024-05-01T00:00:40Z,3.0,lab',  # type not allowed
        'r-5,humidity,dev2,1714521650,400,',  # value out of range
        'r-1,temp,dev1,2024-05-01T00:00:10Z,20.5,lab',  # duplicate
    ]
    path = tmp_path / 'readings.csv'
    path.write_text('\n'.join(rows) + '\n')
    code, out, summary = _launch(tmp_path, path, '--schema', 'tests.schemas:Reading')
    assert code == 0
    assert summary['schema'] == 'tests.schemas:Reading'
    assert summary['row_level_validation']  # its own validator runs row by row
    assert summary['counts'] == {
        'read': 6,
        'valid': 2,
        'dead_letter': 3,
        'duplicates': 1,
        'aggregates': 1,
    }
    events = pq.read_table(out / 'events')
    assert events.column_names == [
        'event_id',
        'event_type',
        'entity_id',
        'timestamp',
        'value',
        'site',
    ]
    aggregate = pq.read_table(out / 'aggregates').to_pylist()[0]
    assert (aggregate['count'], aggregate['sum'], aggregate['mean']) == (2, 42.0, 21.0)


def test_empty_input_writes_empty_outputs(tmp_path):
    path = tmp_path / 'empty.jsonl'
    path.write_bytes(b'')
    code, out, summary = _launch(tmp_path, path)
    assert code == 0
    assert set(summary['counts'].values()) == {0}
    assert pq.read_table(out / 'aggregates').num_rows == 0


def test_compressed_and_mixed_formats_in_one_glob(tmp_path, records):
    data = tmp_path / 'in'
    data.mkdir()
    write_events(records[:1000], str(data / 'a.jsonl'), 'jsonl')
    with open(data / 'a.jsonl', 'rb') as f, gzip.open(data / 'b.jsonl.gz', 'wb') as g:
        g.write(f.read())
    write_events(records[1000:], str(data / 'c.parquet'), 'parquet')
    code, _, summary = _launch(tmp_path, str(data / '*'))
    refs = [
        reference(str(data / 'a.jsonl'), 'jsonl'),
        reference(str(data / 'c.parquet'), 'parquet'),
    ]
    assert code == 0
    # b.jsonl.gz repeats a.jsonl, so all of its valid events are duplicates.
    assert summary['counts']['read'] == 2 * refs[0]['read'] + refs[1]['read']
    assert summary['counts']['valid'] == len(refs[0]['event_ids'] | refs[1]['event_ids'])
    assert summary['balanced']


def test_the_dedup_shuffle_spills_to_a_temporary_directory_removed_after(
    tmp_path, records, monkeypatch
):
    """On the DirectRunner the dedup shuffle goes through files (it would sit in memory,
    several copies at once): they are in a temporary directory that is gone after the run."""
    from beam_pipelines.event_analytics import launcher

    temp = tmp_path / 'tmp'
    temp.mkdir()
    monkeypatch.setattr('tempfile.tempdir', str(temp))
    spilled = []
    build = launcher.build_pipeline

    def spy(pipeline, config):
        spilled.append(config.spill_dir)
        spilled.append(os.path.isdir(config.spill_dir))
        return build(pipeline, config)

    monkeypatch.setattr(launcher, 'build_pipeline', spy)
    path = tmp_path / 'events.jsonl'
    write_events(records, str(path), 'jsonl')
    code, _, summary = _launch(tmp_path, path)
    assert code == 0 and summary['balanced'] is True
    assert spilled[0] is not None and spilled[0].startswith(str(temp)) and spilled[1]
    assert not os.path.exists(spilled[0])
