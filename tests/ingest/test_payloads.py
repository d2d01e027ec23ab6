"""Request bodies into raw events: shapes, limits, every problem listed, all or nothing."""

from __future__ import annotations

import orjson
import pytest

from beam_pipelines.ingest.payloads import PayloadError
from beam_pipelines.ingest.payloads import PayloadLimits
from beam_pipelines.ingest.payloads import parse_batch
from beam_pipelines.ingest.payloads import parse_single

LIMITS = PayloadLimits(max_events=3, max_event_bytes=64)


def test_a_single_event_is_one_compact_line():
    assert parse_single(b'{\n  "event_id": "e1",\n  "value": 1\n}', LIMITS) == [
        b'{"event_id":"e1","value":1}'
    ]


@pytest.mark.parametrize(
    'body, match',
    [(b'', 'empty'), (b'{"a":', 'not JSON'), (b'[{"a":1}]', 'JSON object'), (b'"x"', 'a string')],
)
def test_a_single_event_must_be_an_object(body, match):
    with pytest.raises(PayloadError, match=match) as err:
        parse_single(body, LIMITS)
    assert err.value.status == 400


def test_batches_as_an_array_an_envelope_or_json_lines():
    events = [{'event_id': 'e1'}, {'event_id': 'e2'}]
    expected = [orjson.dumps(e) for e in events]
    assert parse_batch(orjson.dumps(events), 'application/json', LIMITS) == expected
    assert parse_batch(orjson.dumps({'events': events}), 'application/json', LIMITS) == expected
    lines = b'{"event_id":"e1"}\n\n{"event_id":"e2"}\r\n'
    assert parse_batch(lines, 'application/x-ndjson', LIMITS) == expected


def test_every_problem_is_listed_and_nothing_is_taken():
    with pytest.raises(PayloadError) as err:
        parse_batch(b'[{"ok":1}, 5, "x"]', 'application/json', LIMITS)
    assert err.value.status == 400
    assert [p['index'] for p in err.value.problems] == [1, 2]
    with pytest.raises(PayloadError) as err:
        parse_batch(b'{"ok":1}\nnot json\n[1]\n', 'application/x-ndjson', LIMITS)
    assert [p['line'] for p in err.value.problems] == [2, 3]


def test_limits_answer_413():
    too_many = orjson.dumps([{'i': i} for i in range(4)])
    big = orjson.dumps({'x': 'y' * 100})
    for call in (
        lambda: parse_batch(too_many, 'application/json', LIMITS),
        lambda: parse_batch(b'\n'.join([b'{}'] * 4), 'application/x-ndjson', LIMITS),
        lambda: parse_single(big, LIMITS),
    ):
        with pytest.raises(PayloadError) as err:
            call()
        assert err.value.status == 413
    with pytest.raises(PayloadError, match='cannot be taken'):
        parse_batch(orjson.dumps([{'x': 'y' * 100}]), 'application/json', LIMITS)
