"""Partitions and the resumable record, without processes or Beam."""

from __future__ import annotations

import datetime as dt
import json

import pytest

from beam_pipelines.backfill.partitions import fill
from beam_pipelines.backfill.partitions import parse_day
from beam_pipelines.backfill.partitions import partitions
from beam_pipelines.backfill.record import Record

NOW = dt.datetime(2026, 12, 1, 21, 47, 5)


@pytest.mark.parametrize(
    ('text', 'step', 'want'),
    [
        ('2026-11-01', 'daily', dt.datetime(2026, 11, 1)),
        ('2026-11-01T05', 'hourly', dt.datetime(2026, 11, 1, 5)),
        ('today', 'daily', dt.datetime(2026, 12, 1)),
        ('yesterday', 'daily', dt.datetime(2026, 11, 30)),
        ('-3d', 'daily', dt.datetime(2026, 11, 28)),
        ('-1h', 'hourly', dt.datetime(2026, 12, 1, 20)),
    ],
)
def test_partition_starts(text, step, want):
    assert parse_day(text, step, NOW) == want


def test_a_bad_date_names_the_text():
    with pytest.raises(ValueError, match="'11/01/2026' is not a date"):
        parse_day('11/01/2026', 'daily', NOW)


def test_ranges_include_both_ends():
    days = partitions(dt.datetime(2026, 11, 1), dt.datetime(2026, 11, 7), 'daily')
    assert [p.name for p in days] == [f'2026-11-0{d}' for d in range(1, 8)]
    hours = partitions(dt.datetime(2026, 11, 1, 22), dt.datetime(2026, 11, 2, 1), 'hourly')
    assert [p.name for p in hours] == [
        '2026-11-01T22',
        '2026-11-01T23',
        '2026-11-02T00',
        '2026-11-02T01',
    ]
    with pytest.raises(ValueError, match='before --from'):
        partitions(dt.datetime(2026, 11, 2), dt.datetime(2026, 11, 1), 'daily')


def test_fields_fill_templates():
    (p,) = partitions(dt.datetime(2026, 2, 3, 4), dt.datetime(2026, 2, 3, 4), 'hourly')
    assert (
        fill('s3://b/dt={date}/h={hour}/{year}{month}{day}', p)
        == 's3://b/dt=2026-02-03/h=04/20260203'
    )
    assert fill('{partition}', p) == '2026-02-03T04'
    assert fill('--num_shards=3', p) == '--num_shards=3'
    assert fill('{{literal}}/{date}', p) == '{literal}/2026-02-03'
    with pytest.raises(ValueError, match=r"unknown field\(s\) \['dat'\]"):
        fill('in/{dat}', p)


def test_the_record_keeps_the_last_attempt_and_survives_a_torn_line(tmp_path):
    record = Record(str(tmp_path / 'r' / 'record.jsonl'))
    record.add({'partition': 'a', 'status': 'failed', 'args': 'x'})
    record.add({'partition': 'a', 'status': 'succeeded', 'args': 'x'})
    record.add({'partition': 'b', 'status': 'succeeded', 'args': 'old'})
    record.add({'partition': 'c', 'status': 'succeeded', 'args': 'x'})
    record.add({'partition': 'c', 'status': 'failed', 'args': 'x'})
    with open(record.path, 'a') as f:
        f.write(json.dumps({'partition': 'd', 'status': 'succeeded', 'args': 'x'})[:20])
    # b ran with other arguments; c failed last; d's line was cut by a kill.
    assert record.done({'a': 'x', 'b': 'new', 'c': 'x', 'd': 'x'}) == {'a'}
