"""End to end: ``python -m beam_pipelines.profile`` on dirty JSON Lines, CSV and Parquet, against
a plain reference."""

from __future__ import annotations

import json

import orjson
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from beam_pipelines import cli
from beam_pipelines.generate_events import GeneratorConfig
from beam_pipelines.generate_events import generate_records
from beam_pipelines.generate_events import write_events
from beam_pipelines.profile import launcher

pytestmark = pytest.mark.e2e


def test_profile_of_dirty_json_lines_counts_every_record(tmp_path, capsys):
    records, _ = generate_records(GeneratorConfig(events=3000, seed=6, entities=40))
    path = tmp_path / 'events.jsonl'
    write_events(records, str(path), 'jsonl')
    lines = path.read_bytes().splitlines()
    decoded = []
    for line in lines:
        try:
            value = orjson.loads(line)
        except orjson.JSONDecodeError:
            continue
        if isinstance(value, dict):
            decoded.append(value)
    out = tmp_path / 'profile.json'
    argv = ['--input', str(path), '--output', str(out), '--batch_rows', '700']
    assert launcher.run(argv) == 0
    profile = json.loads(out.read_text())
    assert profile['rows'] == len(decoded)
    assert profile['rows'] + profile['undecodable'] == len(lines)
    assert profile['undecodable_by_error'].get('json_decode_error', 0) > 0
    for name in ('entity_id', 'value', 'timestamp'):
        field = profile['fields'][name]
        assert field['nulls'] == sum(1 for r in decoded if r.get(name) is None)
    ids = {r['entity_id'] for r in decoded if r.get('entity_id') is not None}
    assert profile['fields']['entity_id']['distinct_estimate'] == len({repr(i) for i in ids})
    printed = capsys.readouterr().out
    assert f'{len(decoded):,} records' in printed and 'entity_id' in printed


@pytest.mark.parametrize('fmt', ['csv', 'parquet'])
def test_profile_of_tabular_files(tmp_path, fmt):
    table = pa.table({'k': ['a', 'b', None, 'a'], 'x': [1.5, None, 3.0, 10.0]})
    path = tmp_path / f'data.{fmt}'
    if fmt == 'csv':
        path.write_text('k,x\na,1.5\nb,\n,3.0\na,10.0\n')
    else:
        pq.write_table(table, path)
    out = tmp_path / 'p.json'
    assert launcher.run(['--input', str(path), '--output', str(out)]) == 0
    fields = json.loads(out.read_text())['fields']
    assert fields['x']['numeric']['min'] == 1.5 and fields['x']['numeric']['max'] == 10.0
    assert fields['x']['nulls'] == 1
    assert fields['k']['top_values'][0] == ['a', 2]


def test_no_files_is_a_one_line_error(tmp_path):
    with pytest.raises(cli.UsageError, match='matched no files'):
        launcher.run(['--input', str(tmp_path / 'none*.jsonl')])
