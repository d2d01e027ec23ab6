"""Windowed partial aggregates: hand-computed windows, and merge order independence."""

import math

import numpy as np
import pytest
from hypothesis import given
from hypothesis import settings
from hypothesis import strategies as st

from beam_pipelines.columnar import sketch
from beam_pipelines.columnar.aggregate import WindowSpec
from beam_pipelines.columnar.aggregate import finalize
from beam_pipelines.columnar.aggregate import merge_partials
from beam_pipelines.columnar.aggregate import partials_from_events
from tests.conftest import events_table
from tests.conftest import ts

ROWS = [
    ('a', 'x', 0.0, 1.0),
    ('a', 'x', 10.0, 3.0),
    ('a', 'x', 59.9, None),
    ('a', 'x', 61.0, 5.0),
    ('b', 'x', 5.0, 2.0),
    ('a', 'y', 30.0, -4.0),
]


def aggregate(rows, spec, split=None):
    if split is None:
        parts = [partials_from_events(events_table(rows), spec)]
    else:
        parts = [
            partials_from_events(events_table(rows[i : i + split]), spec)
            for i in range(0, len(rows), split)
        ]
    return finalize(merge_partials(parts, spec)).to_pylist()


def keyed(result):
    return {
        (r['entity_id'], r['event_type'], r['window_start'], r['window_end']): r for r in result
    }


def test_fixed_windows_hand_computed():
    out = keyed(aggregate(ROWS, WindowSpec('fixed', 60)))
    assert len(out) == 4
    w = out[('a', 'x', ts(0), ts(60))]
    assert (w['count'], w['value_count'], w['sum'], w['min'], w['max'], w['mean']) == (
        3,
        2,
        4.0,
        1.0,
        3.0,
        2.0,
    )
    assert w['stddev'] == pytest.approx(math.sqrt(2.0))
    assert w['p50'] == pytest.approx(1.0, rel=0.01)
    assert w['p95'] == pytest.approx(3.0, rel=0.01)
    single = out[('a', 'x', ts(60), ts(120))]
    assert (single['count'], single['sum'], single['stddev'], single['p50']) == (1, 5.0, None, 5.0)
    assert out[('a', 'y', ts(0), ts(60))]['min'] == -4.0


def test_sliding_windows_hand_computed():
    out = keyed(aggregate(ROWS, WindowSpec('sliding', 60, 30)))
    ax = {k[2:]: v['count'] for k, v in out.items() if k[:2] == ('a', 'x')}
    assert ax == {
        (ts(-30), ts(30)): 2,
        (ts(0), ts(60)): 3,
        (ts(30), ts(90)): 2,
        (ts(60), ts(120)): 1,
    }
    assert out[('a', 'x', ts(30), ts(90))]['sum'] == 5.0


def test_session_windows_hand_computed():
    out = keyed(aggregate(ROWS, WindowSpec('session', gap_secs=30)))
    ax = {k[2:]: (v['count'], v['sum']) for k, v in out.items() if k[:2] == ('a', 'x')}
    # 0 and 10 are within 30 s; 59.9 starts a new session that 61 joins.
    assert ax == {(ts(0), ts(40)): (2, 4.0), (ts(59.9), ts(91)): (2, 5.0)}


@pytest.mark.parametrize(
    'spec',
    [WindowSpec('fixed', 60), WindowSpec('sliding', 60, 20), WindowSpec('session', gap_secs=15)],
)
def test_empty_batches_and_all_null_values(spec):
    out = aggregate([('a', 'x', 1.0, None), ('a', 'x', 2.0, None)], spec)
    assert out[0]['count'] == 2
    assert out[0]['value_count'] == 0
    assert out[0]['sum'] is None and out[0]['mean'] is None and out[0]['p50'] is None


_events = st.lists(
    st.tuples(
        st.sampled_from(['a', 'b', 'c']),
        st.sampled_from(['x', 'y']),
        st.floats(0, 600, allow_nan=False).map(lambda v: round(v, 3)),
        st.one_of(st.none(), st.floats(-1e3, 1e3, allow_nan=False)),
    ),
    min_size=1,
    max_size=40,
)


@settings(max_examples=100, deadline=None)
@given(
    _events,
    st.integers(1, 7),
    st.sampled_from(
        [WindowSpec('fixed', 60), WindowSpec('sliding', 90, 30), WindowSpec('session', gap_secs=45)]
    ),
)
def test_partials_merge_to_the_single_pass_result(rows, split, spec):
    """Any split of the input into batches gives the same aggregates (merge is exact)."""
    whole = keyed(aggregate(rows, spec))
    parts = keyed(aggregate(rows, spec, split=split))
    assert whole.keys() == parts.keys()
    for key, expected in whole.items():
        got = parts[key]
        for field in ('count', 'value_count', 'min', 'max', 'p50', 'p95'):
            assert got[field] == expected[field], field
        for field in ('sum', 'mean', 'stddev'):
            if expected[field] is None:
                assert got[field] is None
            else:
                assert got[field] == pytest.approx(expected[field], rel=1e-9, abs=1e-9)


@settings(max_examples=100, deadline=None)
@given(_events, st.sampled_from([WindowSpec('fixed', 60), WindowSpec('sliding', 90, 30)]))
def test_against_plain_python(rows, spec):
    size, period = spec.size_secs, spec.period_secs or spec.size_secs
    expected = {}
    for entity, etype, t, v in rows:
        start = math.floor(t / period) * period
        while start > t - size:
            expected.setdefault((entity, etype, start), []).append(v)
            start -= period
    out = {
        (r['entity_id'], r['event_type'], r['window_start'].timestamp()): r
        for r in aggregate(rows, spec)
    }
    assert set(out) == set(expected)
    for key, values in expected.items():
        got = out[key]
        numbers = [v for v in values if v is not None]
        assert got['count'] == len(values)
        assert got['value_count'] == len(numbers)
        if numbers:
            assert got['sum'] == pytest.approx(sum(numbers), abs=1e-9)
            assert got['max'] == max(numbers)
            if len(numbers) > 1:
                assert got['stddev'] == pytest.approx(np.std(numbers, ddof=1), rel=1e-7, abs=1e-9)
            for q in ('p50', 'p95'):
                exact = np.quantile(numbers, float(q[1:]) / 100, method='inverted_cdf')
                assert got[q] == pytest.approx(
                    exact, rel=sketch.RELATIVE_ACCURACY, abs=sketch.MIN_MAGNITUDE
                )


def test_sketch_relative_error_on_wide_ranges():
    rng = np.random.default_rng(1)
    values = np.concatenate([rng.lognormal(0, 4, 5000), -rng.lognormal(0, 2, 500), [0.0]])
    keys = sketch.bucket_keys(values)
    order = np.argsort(keys, kind='stable')
    uniq, counts = np.unique(keys[order], return_counts=True)
    for q in (0.01, 0.5, 0.95, 0.999):
        got, _ = sketch.quantiles(uniq, counts, np.array([0, len(uniq)]), q)
        exact = np.quantile(values, q, method='inverted_cdf')
        assert got[0] == pytest.approx(exact, rel=sketch.RELATIVE_ACCURACY, abs=1e-9)


def test_window_spec_checks_arguments():
    with pytest.raises(ValueError, match='window_type'):
        WindowSpec('tumbling')
    with pytest.raises(ValueError, match='window_period_secs'):
        WindowSpec('sliding', 60, 90)
    with pytest.raises(ValueError, match='session_gap_secs'):
        WindowSpec('session')
