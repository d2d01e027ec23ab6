"""Quality measures against plain computations, merges in any order, scores and breaches."""

from __future__ import annotations

import datetime as dt
import random
import re

import pyarrow as pa
import pytest

from beam_pipelines.columnar.timestamps import TIMESTAMP_TYPE
from beam_pipelines.quality.measure import QualityPartial
from beam_pipelines.quality.measure import measure_dead_letters
from beam_pipelines.quality.measure import measure_events
from beam_pipelines.quality.measure import measure_valid
from beam_pipelines.quality.measure import score
from beam_pipelines.quality.spec import SpecError
from beam_pipelines.quality.spec import parse_quality_spec

NOW = 1_800_000_000.0
SPEC = parse_quality_spec(
    {
        'weights': {'validity': 2, 'accuracy': 2},
        'timeliness': {'max_lag_secs': 60},
        'rules': [
            {'name': 'range', 'field': 'value', 'min': 0, 'max': 100},
            {'name': 'allowed', 'field': 'source', 'allowed': ['web', 'ios']},
            {
                'name': 'buys_have_values',
                'field': 'value',
                'not_null': True,
                'where': {'field': 'event_type', 'in': ['buy']},
            },
            {'name': 'ordered', 'left': 'low', 'op': '<=', 'right': 'high'},
        ],
        'thresholds': {'score': 0.9, 'validity': 0.5},
    }
)
FIELDS = ('value', 'source')


def events(rows):
    """(uri, event_type, value, source, low, high, lag secs)."""
    return pa.table(
        {
            '_uri': [r[0] for r in rows],
            'event_type': [r[1] for r in rows],
            'value': pa.array([r[2] for r in rows], pa.float64()),
            'source': [r[3] for r in rows],
            'low': pa.array([r[4] for r in rows], pa.int64()),
            'high': pa.array([r[5] for r in rows], pa.int64()),
            'timestamp': pa.array([round((NOW - r[6]) * 1e6) for r in rows], pa.int64()).cast(
                TIMESTAMP_TYPE
            ),
        }
    )


ROWS = [
    ('a.jsonl', 'view', 5.0, 'web', 1, 2, 10),  # passes
    ('a.jsonl', 'buy', None, 'web', 1, 2, 30),  # buy without a value
    ('a.jsonl', 'view', 500.0, 'ios', 3, 2, 90),  # out of range, unordered, late
    ('a.jsonl', 'view', None, None, None, 2, 5),  # nulls pass the other rules
    ('b.csv', 'view', -1.0, 'tv', 1, 1, 1),  # out of range, not allowed
]


def test_measures_equal_a_plain_count():
    parts = measure_events(events(ROWS), SPEC, FIELDS, now=NOW)
    a, b = parts[('a.jsonl', None)], parts[('b.csv', None)]
    assert (a.rows, b.rows) == (4, 1)
    assert a.nulls == {'value': 2, 'source': 1}
    assert a.violations == {'range': 1, 'allowed': 0, 'buys_have_values': 1, 'ordered': 1}
    assert b.violations == {'range': 1, 'allowed': 1, 'buys_have_values': 0, 'ordered': 0}
    assert (a.failing, b.failing) == (2, 1)
    assert (a.timely, b.timely) == (3, 1)
    assert a.lag_max == pytest.approx(90, abs=1e-3)


def test_a_source_scores_its_measures_and_breaches():
    part = measure_events(events(ROWS[:4]), SPEC, FIELDS, now=NOW)[('a.jsonl', None)]
    part.merge(measure_valid(events(ROWS[:4] + ROWS[:1]))[('a.jsonl', None)])  # one duplicate
    dead = [
        {'error_type': 'type_error', 'source': {'uri': 'a.jsonl'}},
        {'error_type': 'json_decode_error', 'source': {'uri': 'a.jsonl'}},
    ]
    part.merge(measure_dead_letters(dead)[('a.jsonl', None)])
    row = score('a.jsonl', part, SPEC, FIELDS)
    read = 5 + 2
    assert row['records_read'] == read and row['duplicates'] == 1 and row['events'] == 4
    expected = {
        'validity': 1 - 2 / read,
        'consistency': 1 - 1 / read,
        'uniqueness': 4 / 5,
        'completeness': 1 - 3 / 8,
        'accuracy': 1 - 2 / 4,
        'timeliness': 3 / 4,
    }
    for name, value in expected.items():
        assert row[name] == pytest.approx(value), name
    weights = {'validity': 2, 'accuracy': 2}
    total = sum(weights.get(k, 1) * v for k, v in expected.items())
    assert row['score'] == pytest.approx(total / (sum(weights.values()) + 4))
    assert [b['measure'] for b in row['breaches']] == ['score']
    assert row['null_ratios'] == {'value': 0.5, 'source': 0.25}
    assert row['lag_p50_secs'] == pytest.approx(10, rel=0.011)
    assert row['dead_letters_by_type'] == {'type_error': 1, 'json_decode_error': 1}


def test_partials_merge_in_any_order():
    table = events(ROWS * 7)
    whole = measure_events(table, SPEC, FIELDS, now=NOW)
    pieces = [table.slice(i, 4) for i in range(0, table.num_rows, 4)]
    random.Random(2).shuffle(pieces)
    merged: dict[tuple, QualityPartial] = {}
    for piece in pieces:
        for source, part in measure_events(piece, SPEC, FIELDS, now=NOW).items():
            merged.setdefault(source, QualityPartial()).merge(part)
    assert merged == whole


def test_without_a_lag_limit_timeliness_is_reported_not_scored():
    spec = parse_quality_spec({})
    part = measure_events(events(ROWS), spec, FIELDS, now=NOW)[('b.csv', None)]
    row = score('b.csv', part, spec, FIELDS)
    assert row['timeliness'] is None and row['lag_max_secs'] == pytest.approx(1, abs=1e-3)
    assert row['accuracy'] == 1.0  # no rules


@pytest.mark.parametrize(
    ('doc', 'problem'),
    [
        ({'weights': {'speed': 1}}, "unknown dimension 'speed'"),
        ({'rules': [{'field': 'v', 'min': 5, 'max': 1}]}, 'min 5 is above max 1'),
        ({'rules': [{'left': 'a', 'op': '=<', 'right': 'b'}]}, 'a comparison needs'),
        ({'rules': [{'name': 'x', 'field': 'v'}]}, 'give min/max, allowed'),
        ({'rules': [{'field': 'v', 'not_null': True, 'where': {'field': 't'}}]}, 'where must be'),
        ({'thresholds': {'score': 2}}, 'between 0 and 1'),
        ({'timeliness': {'max_lag_secs': 0}}, 'max_lag_secs'),
        ({'rule': []}, "unknown keys ['rule']"),
    ],
)
def test_bad_specs_name_the_problem(doc, problem):
    with pytest.raises(SpecError, match=re.escape(problem)):
        parse_quality_spec(doc)


def test_unknown_fields_are_refused():
    with pytest.raises(SpecError, match=r"unknown field\(s\) \['colour'\]"):
        parse_quality_spec({'rules': [{'field': 'colour', 'allowed': ['red']}]}).check_fields(
            {'value', 'source'}
        )


def test_windows_split_a_source_by_event_time():
    # Lags 10, 30, 90, 5 s before NOW: with 60 s windows, the 90 s one is in an earlier window.
    window_us = 60_000_000
    parts = measure_events(events(ROWS[:4]), SPEC, FIELDS, now=NOW, window_us=window_us)
    assert sorted(p.rows for p in parts.values()) == [1, 3]
    assert {k[0] for k in parts} == {'a.jsonl'}
    assert all(k[1] % window_us == 0 for k in parts)
    dead = [
        {
            'error_type': 'type_error',
            'source': {'uri': 'a.jsonl'},
            'event_time': '2027-01-15T08:00:30Z',
        },
        {'error_type': 'type_error', 'source': {'uri': 'a.jsonl'}, 'event_time': None},
    ]
    at = dt.datetime(2027, 1, 15, 8, 0, tzinfo=dt.UTC)
    minute = (at - dt.datetime(1970, 1, 1, tzinfo=dt.UTC)) // dt.timedelta(microseconds=1)
    found = measure_dead_letters(dead, window_us=window_us)
    # A dead letter without an event time counts for the run only (no window).
    assert set(found) == {('a.jsonl', minute), ('a.jsonl', None)}
