"""The flagship reading a Redis stream through a consumer group (real Redis, never mocked)."""

from __future__ import annotations

import json
import uuid

import pytest

from beam_pipelines import event_analytics
from beam_pipelines.generate_events import GeneratorConfig
from beam_pipelines.generate_events import generate_records
from beam_pipelines.io.redis_stream import entry_position
from tests.io.test_redis import REDIS_URL
from tests.io.test_redis import client  # noqa: F401  (fixture)
from tests.io.test_redis import prefix  # noqa: F401  (fixture)


def test_entry_positions_sort_like_ids():
    ids = ['1-0', '1-1', '2-0', '1714521600000-7']
    assert sorted(ids, key=entry_position) == ids


def _fill(client, stream, records):  # noqa: F811
    import orjson

    pipe = client.pipeline(transaction=False)
    for r in records:
        pipe.xadd(stream, {'event': r if isinstance(r, bytes) else orjson.dumps(r)})
    pipe.execute()


def _stream_args(stream, prefix, out):  # noqa: F811
    return [
        '--source',
        'redis_stream',
        '--redis_url',
        REDIS_URL,
        '--stream_name',
        stream,
        '--consumer_group',
        'g',
        '--consumer_name',
        'c',
        '--stop_at_end',
        '--redis_prefix',
        prefix,
        '--output_dir',
        str(out),
    ]


def _run(tmp_path, stream, prefix, name='out'):  # noqa: F811
    out = tmp_path / name
    code = event_analytics.run(_stream_args(stream, prefix, out))
    return code, json.loads((out / 'run_summary.json').read_text())


def test_stream_read_is_acknowledged_only_after_outputs(tmp_path, client, prefix):  # noqa: F811
    stream = f'{prefix}events'
    records, _ = generate_records(GeneratorConfig(events=800, seed=13, entities=10))
    _fill(client, stream, records)
    # A run whose outputs cannot be written fails and acknowledges nothing.
    blocked = tmp_path / 'blocked'
    blocked.write_text('a file where the output directory should be')
    with pytest.raises(Exception):  # noqa: B017  (any write error)
        event_analytics.run(_stream_args(stream, prefix, blocked))
    # Whether or not that run got as far as reading (the runner may order its stages either
    # way), nothing it read was acknowledged: the next run reads every entry.
    groups = [g['name'] for g in client.xinfo_groups(stream)]
    if b'g' in groups or 'g' in groups:
        assert client.xpending(stream, 'g')['pending'] in (0, len(records))
    code, summary = _run(tmp_path, stream, prefix)
    assert code == 0
    counts = summary['counts']
    assert counts['read'] == len(records)
    assert summary['balanced']
    assert client.xpending(stream, 'g')['pending'] == 0
    # Nothing new: a second run reads nothing; new entries are read exactly once.
    assert _run(tmp_path, stream, prefix, 'again')[1]['counts']['read'] == 0
    more, _ = generate_records(GeneratorConfig(events=100, seed=14, entities=10))
    _fill(client, stream, more)
    assert _run(tmp_path, stream, prefix, 'more')[1]['counts']['read'] == len(more)


def test_stream_source_flags(tmp_path):
    with pytest.raises(Exception, match='--stop_at_end'):
        event_analytics.run(
            [
                '--source',
                'redis_stream',
                '--redis_url',
                REDIS_URL,
                '--stream_name',
                f'x{uuid.uuid4().hex}',
                '--output_dir',
                str(tmp_path),
            ]
        )
