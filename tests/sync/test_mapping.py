"""The transformation step and the retry helper, without servers."""

from __future__ import annotations

import pyarrow as pa
import pytest

from beam_pipelines.sync.mapping import REJECT_COLUMN
from beam_pipelines.sync.mapping import Mapping
from beam_pipelines.sync.mapping import bisect
from beam_pipelines.sync.mapping import load_transform
from beam_pipelines.sync.mapping import parse_pairs
from beam_pipelines.sync.retry import RetryPolicy
from beam_pipelines.sync.retry import with_retries

SAMPLE = pa.table({'id': [1, 2, 3, 4], 'v': ['1', '2', 'x', '4'], 'drop': [0, 0, 0, 0]})


def test_rename_cast_and_projection():
    mapping = Mapping(rename={'v': 'value'}, casts={'value': 'int64'}, columns=('id', 'value'))
    mapping.check(tuple(SAMPLE.column_names))
    assert mapping.key(('id',)) == ('id',)
    ok, rejected = bisect(mapping.apply, SAMPLE, (Exception,))
    assert [t.to_pylist() for t, _ in ok] == [
        [{'id': 1, 'value': 1}, {'id': 2, 'value': 2}],
        [{'id': 4, 'value': 4}],
    ]
    assert [row['id'] for row, _ in rejected] == [3]
    assert 'ArrowInvalid' in rejected[0][1]


def test_a_reject_column_fails_rows_without_splitting():
    def odd(table):
        why = pa.array([None if i % 2 == 0 else 'odd' for i in table.column('id').to_pylist()])
        return table.append_column(REJECT_COLUMN, why)

    ((table, rejected),) = [
        r for r in bisect(Mapping(transform=odd).apply, SAMPLE, (Exception,))[0]
    ]
    assert table.column('id').to_pylist() == [2, 4]
    assert REJECT_COLUMN not in table.column_names
    assert [(r['id'], why) for r, why in rejected] == [(1, 'odd'), (3, 'odd')]


def test_bad_flags_are_refused():
    with pytest.raises(ValueError, match='name=value'):
        parse_pairs('a=b,c', '--rename')
    with pytest.raises(ValueError, match='unknown Arrow type'):
        Mapping(casts={'v': 'nonsense'})
    with pytest.raises(ValueError, match='module:function'):
        load_transform('no_colon')
    with pytest.raises(ValueError, match='key columns'):
        Mapping(columns=('v',)).key(('id',))
    with pytest.raises(ValueError, match='no source columns'):
        Mapping(rename={'nope': 'x'}).check(('id',))
    assert parse_pairs(' a = b , c=d ', '--rename') == {'a': 'b', 'c': 'd'}
    assert Mapping(casts={'t': 'timestamp[ms, tz=UTC]'}).casts


def test_retries_back_off_with_jitter_and_give_up():
    sleeps, calls = [], []

    def flaky():
        calls.append(1)
        if len(calls) < 3:
            raise ConnectionError('lost')
        return 'done'

    policy = RetryPolicy(attempts=3, initial_delay_secs=1.0)
    assert with_retries(flaky, policy, (ConnectionError,), 'test', sleep=sleeps.append) == 'done'
    assert len(sleeps) == 2 and 0.5 <= sleeps[0] <= 1.0 and 1.0 <= sleeps[1] <= 2.0
    calls.clear()
    with pytest.raises(ConnectionError):
        with_retries(
            flaky, RetryPolicy(attempts=2), (ConnectionError,), 'test', sleep=sleeps.append
        )
    with pytest.raises(KeyError):  # not transient: at once
        with_retries(lambda: {}['x'], policy, (ConnectionError,), 'test', sleep=sleeps.append)
