"""Redis Streams source (consumer groups), bounded: read everything pending, acknowledge after.

``ReadFromRedisStream`` joins (or creates) a consumer group and reads, as raw JSON-lines
batches, first the entries already delivered to this consumer but never acknowledged (a
previous run that failed), then new entries, up to the stream's last entry when the read began.
It does not acknowledge anything: it also outputs the id it read up to, and
:class:`AcknowledgeRedisStream`, applied to that and to the pipeline's written outputs,
``XACK``s this consumer's pending entries up to that id only after the outputs are complete
(entries a read delivered past it stay pending for the next run). A run that dies before that
leaves its entries pending, and the next run reads them again: at-least-once, made
exactly-once in effect by the idempotent sinks and deduplication by ``event_id``.

Each entry's ``event`` field holds one JSON event. Entry ids (``ms-seq``) become the batch
positions as ``ms * 2**20 + seq``, so deduplication keeps the earliest copy.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import NamedTuple

import apache_beam as beam
import redis
from apache_beam import pvalue
from apache_beam.metrics import Metrics

from beam_pipelines.columnar.batch import RawBatch
from beam_pipelines.io import coders  # noqa: F401  (registers the batch coders)
from beam_pipelines.io.postgres import redact
from beam_pipelines.io.stream_append import FIELD
from beam_pipelines.transforms.completion import RunAfter

__all__ = [
    'AcknowledgeRedisStream',
    'ReadFromRedisStream',
    'StreamRead',
    'entry_position',
    'stream_uri',
]

NAMESPACE = 'beam_pipelines'
READ_UNTIL = 'read_until'
_SEQ_BITS = 20


def entry_position(entry_id: bytes | str) -> int:
    """A sortable integer for a stream entry id ``ms-seq``."""
    if isinstance(entry_id, bytes):
        entry_id = entry_id.decode()
    ms, seq = entry_id.split('-')
    return (int(ms) << _SEQ_BITS) + int(seq)


def stream_uri(url: str, stream: str) -> str:
    return f'{redact(url).rstrip("/")}#{stream}'


def _last_id(client: redis.Redis, stream: str) -> bytes | None:
    newest = client.xrevrange(stream, count=1)
    return newest[0][0] if newest else None


def _ensure_group(client: redis.Redis, stream: str, group: str) -> None:
    try:
        client.xgroup_create(stream, group, id='0', mkstream=True)
    except redis.ResponseError as exc:
        if 'BUSYGROUP' not in str(exc):
            raise


class StreamRead(NamedTuple):
    batches: beam.PCollection  # RawBatch elements
    read_until: beam.PCollection  # one entry id (str), absent for an empty stream


class ReadFromRedisStream(beam.PTransform):
    """Reads a Redis stream through a consumer group into :class:`RawBatch` elements.

    Args:
        url: Redis URL.
        stream, group, consumer: the stream, consumer group and this pipeline's consumer name.
        batch_rows: entries per ``XREADGROUP`` call and per batch.
    """

    def __init__(self, url: str, stream: str, group: str, consumer: str, batch_rows: int = 10_000):
        super().__init__()
        if not (url and stream and group and consumer):
            raise ValueError('url, stream, group and consumer are required')
        if batch_rows < 1:
            raise ValueError('batch_rows must be >= 1')
        self._args = (url, stream, group, consumer, batch_rows)

    def expand(self, pbegin) -> StreamRead:
        results = (
            pbegin
            | 'Start' >> beam.Impulse()
            | 'ReadGroup'
            >> beam.ParDo(_ReadGroupFn(*self._args))
            .with_output_types(RawBatch)
            .with_outputs(READ_UNTIL, main='batches')
        )
        return StreamRead(batches=results.batches, read_until=results[READ_UNTIL])


class _ReadGroupFn(beam.DoFn):
    def __init__(self, url, stream, group, consumer, batch_rows):
        self._url = url
        self._stream = stream
        self._group = group
        self._consumer = consumer
        self._batch_rows = batch_rows

    def setup(self):
        self._client = redis.Redis.from_url(self._url)
        self._entries = Metrics.counter(NAMESPACE, 'redis_stream_entries')

    def teardown(self):
        self._client.close()

    def process(self, _) -> Iterator[RawBatch]:
        _ensure_group(self._client, self._stream, self._group)
        last = _last_id(self._client, self._stream)
        if last is None:
            return
        limit = entry_position(last)
        yield pvalue.TaggedOutput(READ_UNTIL, last.decode())
        # First what this consumer was given before and never acknowledged, then new entries.
        for start in ('0', '>'):
            cursor = start
            while True:
                reply = self._client.xreadgroup(
                    self._group, self._consumer, {self._stream: cursor}, count=self._batch_rows
                )
                entries = [
                    e for e in (reply[0][1] if reply else []) if entry_position(e[0]) <= limit
                ]
                if not entries:
                    break
                yield self._batch(entries)
                if start == '0':
                    cursor = entries[-1][0]
                if entry_position(entries[-1][0]) >= limit:
                    break

    def _batch(self, entries) -> RawBatch:
        self._entries.inc(len(entries))
        lines = [fields.get(FIELD, b'') if fields else b'' for _, fields in entries]
        positions = [entry_position(entry_id) for entry_id, _ in entries]
        return RawBatch(stream_uri(self._url, self._stream), 'jsonl', positions, lines=lines)


class AcknowledgeRedisStream(beam.PTransform):
    """``XACK``s this consumer's pending entries up to the id read, after the outputs.

    Apply it to ``(read.read_until, *written_outputs)``.
    """

    def __init__(self, url: str, stream: str, group: str, consumer: str):
        super().__init__()
        self._args = (url, stream, group, consumer)

    def expand(self, inputs):
        read_until, *outputs = inputs
        return tuple(outputs) | 'AckAfterOutputs' >> RunAfter(
            _acknowledge, *self._args, on=read_until
        )


# KEYS[1] = stream; ARGV = group, last id, consumer. Acknowledges this consumer's pending
# entries up to the id inside Redis, 1000 at a time (acknowledged entries leave the pending list,
# so every round starts again from '-'): nothing crosses the network per entry.
_ACK_LUA = """
local acknowledged = 0
while true do
  local pending = redis.call('XPENDING', KEYS[1], ARGV[1], '-', ARGV[2], 1000, ARGV[3])
  if #pending == 0 then return acknowledged end
  local ids = {}
  for i, entry in ipairs(pending) do ids[i] = entry[1] end
  acknowledged = acknowledged + redis.call('XACK', KEYS[1], ARGV[1], unpack(ids))
end
"""


def _acknowledge(read_until: str, url: str, stream: str, group: str, consumer: str) -> int:
    client = redis.Redis.from_url(url)
    try:
        return int(client.eval(_ACK_LUA, 1, stream, group, read_until, consumer))
    finally:
        client.close()
