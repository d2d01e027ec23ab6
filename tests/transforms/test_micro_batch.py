"""``AggregateMicroBatch``: panes over bounded runs, with state carried between runs."""

from __future__ import annotations

import time

import apache_beam as beam
from apache_beam.testing.test_pipeline import TestPipeline
from apache_beam.testing.util import assert_that
from apache_beam.testing.util import equal_to

from beam_pipelines.columnar.aggregate import WindowSpec
from beam_pipelines.columnar.aggregate import finalize
from beam_pipelines.columnar.aggregate import partials_from_events
from beam_pipelines.columnar.panes import TriggerSpec
from beam_pipelines.transforms.micro_batch import AggregateMicroBatch
from beam_pipelines.transforms.micro_batch import commit_state
from tests.transforms.test_stream_aggregate import batch
from tests.transforms.test_stream_aggregate import pane_tuples

FIXED = WindowSpec('fixed', size_secs=60)


def run_once(tables, trigger=None, state_dir=None, commit=True, **kw):
    """Runs one micro-batch; returns (panes, late event times, duplicates, accepted ids)."""
    got = {}
    with TestPipeline() as p:
        out = (
            p
            | beam.Create(tables, reshuffle=False)
            | AggregateMicroBatch(
                FIXED,
                trigger or TriggerSpec(),
                num_shards=2,
                state_dir=state_dir,
                **kw,
            )
        )
        for name, pcoll, fn in (
            ('panes', out.panes, pane_tuples),
            ('late', out.late, lambda e: [e['event_time']]),
            ('duplicates', out.duplicates, lambda n: [n]),
            ('accepted', out.events, lambda t: t.column('event_id').to_pylist()),
            ('state', out.state, lambda s: [s]),
        ):
            _ = (
                pcoll
                | f'Collect[{name}]' >> beam.FlatMap(fn)
                | f'Keep[{name}]' >> beam.Map(_keep, name)
            )
    got = dict(_COLLECTED)
    _COLLECTED.clear()
    if commit and state_dir is not None:
        commit_state(got.get('state', []))
    return got


_COLLECTED: dict[str, list] = {}


def _keep(value, name):
    _COLLECTED.setdefault(name, []).append(value)


def test_a_self_contained_run_gives_one_final_on_time_pane_per_window():
    rows = [('a', 'click', 5, 1.0), ('a', 'click', 65, 2.0), ('b', 'x', 7, 4.0)]
    events = batch(*rows)
    expected = [
        (r['entity_id'], r['window_start'].timestamp(), r['count'], r['sum'], 'on_time', 0, True)
        for r in finalize(partials_from_events(events, FIXED)).to_pylist()
    ]
    with TestPipeline() as p:
        out = p | beam.Create([events]) | AggregateMicroBatch(FIXED, TriggerSpec(), num_shards=2)
        assert_that(out.panes | beam.FlatMap(pane_tuples), equal_to(expected))


def test_state_carries_windows_ids_and_watermark_across_runs(tmp_path):
    state = str(tmp_path / 'state')
    trigger = TriggerSpec(allowed_lateness_secs=60)
    first = run_once(
        [batch(('a', 'click', 5, 1.0), ('a', 'click', 100, 2.0), ids=['x1', 'x2'])],
        trigger,
        state,
    )
    # Watermark 100: window [0, 60) is on time, and open until 120 (lateness 60 s).
    assert sorted(first['panes']) == [('a', 0.0, 1, 1.0, 'on_time', 0, False)]
    second = run_once(
        [
            batch(
                ('a', 'click', 10, 4.0),  # late but within the lateness: a late pane
                ('a', 'click', 5, 1.0),  # a copy of x1: a duplicate
                ('a', 'click', 200, 8.0),  # moves the watermark to 200: [0, 60) closes
                ids=['x3', 'x1', 'x4'],
            )
        ],
        trigger,
        state,
    )
    assert second['duplicates'] == [1]
    assert sorted(second['accepted']) == ['x3', 'x4']
    assert sorted(second['panes']) == [
        ('a', 0.0, 2, 5.0, 'late', 1, True),
        ('a', 60.0, 1, 2.0, 'on_time', 0, True),
    ]
    third = run_once([batch(('a', 'click', 30, 16.0), ids=['x5'])], trigger, state)
    assert third['late'] == ['1970-01-01T00:00:30.000000Z']
    assert third.get('panes', []) == []


def test_an_uncommitted_run_leaves_the_state_as_it_was(tmp_path):
    state = str(tmp_path / 'state')
    events = [batch(('a', 'click', 5, 1.0), ('a', 'click', 130, 2.0), ids=['x1', 'x2'])]
    failed = run_once(events, state_dir=state, commit=False)
    again = run_once(events, state_dir=state)
    assert sorted(failed['panes']) == sorted(again['panes'])
    assert again.get('duplicates', []) == []


def test_early_panes_every_run_while_the_window_is_open(tmp_path):
    state = str(tmp_path / 'state')
    trigger = TriggerSpec(early_firing_secs=5)
    lag = {'out_of_orderness_secs': 100}
    one = run_once([batch(('a', 'click', 5, 1.0), ids=['x1'])], trigger, state, **lag)
    two = run_once([batch(('a', 'click', 6, 2.0), ids=['x2'])], trigger, state, **lag)
    assert one['panes'] == [('a', 0.0, 1, 1.0, 'early', 0, False)]
    assert two['panes'] == [('a', 0.0, 2, 3.0, 'early', 1, False)]


def test_an_event_from_the_future_does_not_close_the_windows(tmp_path):
    state = str(tmp_path / 'state')
    future = time.time() + 86_400  # a device whose clock is a day ahead
    got = run_once(
        [batch(('a', 'click', 5, 1.0), ('b', 'click', future, 1.0), ids=['x1', 'x2'])],
        state_dir=state,
    )
    assert got.get('panes', []) == []  # no window is due: the watermark did not jump
