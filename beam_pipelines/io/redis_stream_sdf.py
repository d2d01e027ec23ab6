"""``ReadRedisStreamContinuously``: an unbounded Redis Streams source for streaming runners.

A splittable DoFn reads the stream through a consumer group (``XREADGROUP``): first the entries
this consumer was given earlier and never acknowledged, then new ones, in batches. Its
restriction is the range of entry positions still to read (``ms * 2**20 + seq``, see
``entry_position``): each batch claims its last position, and when the stream is idle the DoFn
hands the rest back to the runner with ``defer_remainder`` and is resumed ``poll_secs`` later.

The watermark comes from event time: a manual watermark estimator is set, after each batch,
to the largest event time read so far minus ``out_of_orderness_secs`` (never backwards). Events
behind it are not lost: ``AggregateStream`` sends those past the allowed lateness to ``late``.

Entries are acknowledged (``XACK``) by a bundle finalizer, which the runner calls only after it
has durably committed the bundle's output (a Flink checkpoint, a Dataflow commit): a crash
before that leaves them pending, and they are read again (at-least-once; deduplication by
``event_id`` and the pane-aware sinks absorb the repeats).

With ``stop_when_idle`` the read ends at the first empty poll (a bounded read, for tests and
batch reruns); without it the read never ends, which needs a streaming runner.
"""

from __future__ import annotations

import time

import apache_beam as beam
import orjson
import redis
from apache_beam.io.restriction_trackers import OffsetRange
from apache_beam.io.restriction_trackers import OffsetRestrictionTracker
from apache_beam.io.watermark_estimators import ManualWatermarkEstimator
from apache_beam.metrics import Metrics
from apache_beam.transforms.core import RestrictionProvider
from apache_beam.transforms.core import WatermarkEstimatorProvider
from apache_beam.utils.timestamp import Duration
from apache_beam.utils.timestamp import Timestamp

from beam_pipelines.columnar.batch import RawBatch
from beam_pipelines.columnar.timestamps import parse_timestamp
from beam_pipelines.io.redis_stream import NAMESPACE
from beam_pipelines.io.redis_stream import _ensure_group
from beam_pipelines.io.redis_stream import entry_position
from beam_pipelines.io.redis_stream import stream_uri
from beam_pipelines.io.stream_append import FIELD

__all__ = ['ReadRedisStreamContinuously', 'event_time_watermark']

END = 2**63 - 1
FUTURE_SKEW_SECS = 300  # event times further ahead of the wall clock do not move the watermark


class ReadRedisStreamContinuously(beam.PTransform):
    """Reads a Redis stream, unbounded, into :class:`RawBatch` elements (see module docstring).

    Args:
        url, stream, group, consumer: Redis URL, stream, consumer group, this consumer's name.
        batch_rows: entries per ``XREADGROUP`` call and per batch.
        poll_secs: how long an idle read waits before it looks again.
        out_of_orderness_secs: how far the watermark stays behind the latest event time.
        stop_when_idle: end the read when the stream has nothing new (a bounded read).
    """

    def __init__(
        self,
        url: str,
        stream: str,
        group: str,
        consumer: str,
        batch_rows: int = 10_000,
        poll_secs: float = 0.5,
        out_of_orderness_secs: float = 0.0,
        stop_when_idle: bool = False,
    ):
        super().__init__()
        if not (url and stream and group and consumer):
            raise ValueError('url, stream, group and consumer are required')
        if batch_rows < 1 or poll_secs <= 0 or out_of_orderness_secs < 0:
            raise ValueError('batch_rows >= 1, poll_secs > 0 and out_of_orderness_secs >= 0')
        self._fn = _read_fn(
            url,
            stream,
            group,
            consumer,
            batch_rows,
            poll_secs,
            out_of_orderness_secs,
            stop_when_idle=stop_when_idle,
        )

    def expand(self, pbegin):
        return (
            pbegin
            | 'Start' >> beam.Impulse()
            | 'ReadEntries' >> beam.ParDo(self._fn).with_output_types(RawBatch)
        )


def _read_fn(*args, stop_when_idle: bool):
    return (
        _ReadStreamFn(*args, stop_when_idle)
        if stop_when_idle
        else _ReadForeverFn(*args, stop_when_idle)
    )


class _EntryRange(RestrictionProvider):
    """Entry positions still to read; a stream cannot be split (one consumer reads it)."""

    def initial_restriction(self, element):
        return OffsetRange(0, END)

    def create_tracker(self, restriction):
        return OffsetRestrictionTracker(restriction)

    def restriction_size(self, element, restriction):
        return 1

    def split(self, element, restriction):
        yield restriction

    def truncate(self, element, restriction):
        return None  # on drain, stop reading: what is unread stays in the stream


class _EventTimeWatermark(WatermarkEstimatorProvider):
    def initial_estimator_state(self, element, restriction):
        return None

    def create_watermark_estimator(self, state):
        return ManualWatermarkEstimator(state)


def event_time_watermark(lines: list[bytes], lag_us: int) -> Timestamp | None:
    """The watermark a batch supports: its latest parseable event time minus the lag."""
    latest = None
    # Event times past the wall clock (plus a skew) say more about a clock than about time.
    horizon = time.time_ns() // 1000 + FUTURE_SKEW_SECS * 1_000_000
    for line in lines:
        try:
            ts = parse_timestamp(orjson.loads(line).get('timestamp'))
        except (ValueError, TypeError, AttributeError, orjson.JSONDecodeError):
            continue  # a record the pipeline will dead-letter says nothing about time
        us = int(ts.timestamp() * 1_000_000)
        if us <= horizon and (latest is None or us > latest):
            latest = us
    return None if latest is None else Timestamp(micros=latest - lag_us)


_ENTRY_RANGE = _EntryRange()
_EVENT_TIME_WATERMARK = _EventTimeWatermark()


class _ReadStreamFn(beam.DoFn):
    def __init__(self, url, stream, group, consumer, batch_rows, poll_secs, lag_secs, stop):
        self._url = url
        self._stream = stream
        self._group = group
        self._consumer = consumer
        self._batch_rows = batch_rows
        self._poll_secs = poll_secs
        self._lag_us = round(lag_secs * 1_000_000)
        self._stop = stop

    def setup(self):
        self._client = redis.Redis.from_url(self._url)
        self._entries = Metrics.counter(NAMESPACE, 'redis_stream_entries')
        self._uri = stream_uri(self._url, self._stream)

    def teardown(self):
        self._client.close()

    def process(
        self,
        element,
        # Beam passes the restriction and watermark parameters by name, after the others.
        finalizer=beam.DoFn.BundleFinalizerParam,
        tracker=beam.DoFn.RestrictionParam(_ENTRY_RANGE),
        watermark=beam.DoFn.WatermarkEstimatorParam(_EVENT_TIME_WATERMARK),
    ):
        _ensure_group(self._client, self._stream, self._group)
        # A fresh read first takes what this consumer was given and never acknowledged.
        cursor = '0' if tracker.current_restriction().start == 0 else '>'
        deadline = time.monotonic() + 5 * self._poll_secs  # hand control back now and then
        while True:
            reply = self._client.xreadgroup(
                self._group, self._consumer, {self._stream: cursor}, count=self._batch_rows
            )
            entries = reply[0][1] if reply else []
            if not entries and cursor != '>':  # the unacknowledged entries are all re-read
                cursor = '>'
                continue
            if not entries:
                if self._stop:
                    tracker.try_claim(END - 1)  # done: nothing left to read
                    return
                tracker.defer_remainder(Duration(seconds=self._poll_secs))
                return
            if not tracker.try_claim(entry_position(entries[-1][0])):
                return
            if cursor != '>':
                cursor = entries[-1][0]
            lines = [fields.get(FIELD, b'') if fields else b'' for _, fields in entries]
            ids = [entry_id for entry_id, _ in entries]
            finalizer.register(_Acknowledge(self._url, self._stream, self._group, ids))
            self._entries.inc(len(entries))
            mark = event_time_watermark(lines, self._lag_us)
            current = watermark.current_watermark()
            if mark is not None and (current is None or mark > current):
                watermark.set_watermark(mark)
            yield beam.window.TimestampedValue(
                RawBatch(self._uri, 'jsonl', [entry_position(i) for i in ids], lines=lines),
                watermark.current_watermark() or Timestamp(0),
            )
            if time.monotonic() > deadline and not self._stop:
                tracker.defer_remainder()
                return


class _ReadForeverFn(_ReadStreamFn):
    """The same read, declared unbounded, so runners treat its output as a stream."""

    @beam.DoFn.unbounded_per_element()
    def process(
        self,
        element,
        finalizer=beam.DoFn.BundleFinalizerParam,
        tracker=beam.DoFn.RestrictionParam(_ENTRY_RANGE),
        watermark=beam.DoFn.WatermarkEstimatorParam(_EVENT_TIME_WATERMARK),
    ):
        yield from super().process(element, finalizer, tracker, watermark)


class _Acknowledge:
    """Bundle finalization callback: ``XACK`` the entries of a committed bundle."""

    def __init__(self, url: str, stream: str, group: str, ids: list[bytes]):
        self._url = url
        self._stream = stream
        self._group = group
        self._ids = ids

    def __call__(self) -> None:
        client = redis.Redis.from_url(self._url)
        try:
            for i in range(0, len(self._ids), 10_000):
                client.xack(self._stream, self._group, *self._ids[i : i + 10_000])
        finally:
            client.close()
