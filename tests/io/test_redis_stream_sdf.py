"""The unbounded Redis Streams source (splittable DoFn), read to its end (real Redis)."""

from __future__ import annotations

import orjson
import pytest
from apache_beam import DoFn
from apache_beam import FlatMap
from apache_beam import ParDo
from apache_beam.testing.test_pipeline import TestPipeline
from apache_beam.testing.util import assert_that
from apache_beam.testing.util import equal_to
from apache_beam.utils.timestamp import Timestamp

from beam_pipelines.io.redis_stream_sdf import ReadRedisStreamContinuously
from beam_pipelines.io.redis_stream_sdf import event_time_watermark
from tests.io.test_redis import REDIS_URL
from tests.io.test_redis import client  # noqa: F401  (fixture)
from tests.io.test_redis import prefix  # noqa: F401  (fixture)


def event(i: int, seconds: float | None) -> bytes:
    record = {'event_id': f'e{i}', 'entity_id': 'u', 'event_type': 'click', 'value': i}
    if seconds is not None:
        record['timestamp'] = seconds
    return orjson.dumps(record)


def test_the_watermark_is_the_latest_event_time_minus_the_lag():
    lines = [event(1, 1_700_000_010), b'not json', event(2, None), event(3, 1_700_000_005)]
    assert event_time_watermark(lines, 2_000_000) == Timestamp(1_700_000_008)
    assert event_time_watermark([b'{}'], 0) is None


class _Stamped(DoFn):
    def process(self, batch, ts=DoFn.TimestampParam):
        yield float(ts), len(batch.lines)


def test_reads_pending_then_new_entries_and_acknowledges_after_the_bundle(client, prefix):  # noqa: F811
    stream, group = f'{prefix}stream', 'g'
    client.xgroup_create(stream, group, id='0', mkstream=True)
    first = [event(i, 1_700_000_000 + i) for i in range(3)]
    for line in first:
        client.xadd(stream, {'event': line})
    # A previous run took these and died before acknowledging them.
    client.xreadgroup(group, 'reader', {stream: '>'}, count=3)
    later = [event(i, 1_700_000_000 + i) for i in range(3, 8)]
    for line in later:
        client.xadd(stream, {'event': line})

    with TestPipeline() as p:
        batches = p | ReadRedisStreamContinuously(
            REDIS_URL,
            stream,
            group,
            'reader',
            batch_rows=2,
            out_of_orderness_secs=1,
            stop_when_idle=True,
        )
        assert_that(batches | FlatMap(lambda b: b.lines), equal_to(first + later), label='AllLines')
        assert_that(
            batches
            | 'Stamps' >> ParDo(_Stamped())
            | 'Latest' >> FlatMap(lambda s: [s[0]] if s[0] == 1_700_000_006 else []),
            equal_to([1_700_000_006.0]),
            label='WatermarkStamp',
        )
    assert client.xpending(stream, group)['pending'] == 0


def test_nothing_to_read_ends_a_bounded_read(client, prefix):  # noqa: F811
    with TestPipeline() as p:
        batches = p | ReadRedisStreamContinuously(
            REDIS_URL, f'{prefix}empty', 'g', 'reader', stop_when_idle=True
        )
        assert_that(batches, equal_to([]))


@pytest.mark.parametrize('bad', [dict(batch_rows=0), dict(poll_secs=0), dict(stream='')])
def test_bad_arguments_are_refused(bad):
    args = dict(url=REDIS_URL, stream='s', group='g', consumer='c') | bad
    with pytest.raises(ValueError):
        ReadRedisStreamContinuously(**args)
