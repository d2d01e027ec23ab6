"""Kafka and Pub/Sub sources through Beam's own connectors, as :class:`RawBatch` elements.

``ReadFromKafka`` is Beam's cross-language (Java) Kafka connector: the runner needs Java, and
the expansion service jar is fetched from Maven unless ``--kafka_expansion_service`` points to
a running one (``java -jar beam-sdks-java-io-expansion-service-2.77.0.jar PORT``). Offsets are
committed to Kafka when a bundle is finalized (after the runner committed its output), so a
restarted job resumes where the last durable output ended. ``ReadFromPubSub`` is Beam's native
connector on Dataflow (messages are acknowledged by the service after the bundle commits).

Both are unbounded: they run with ``--streaming`` on Flink or Dataflow. Messages are grouped
into batches of raw lines (``BatchElements`` within a bundle) for the columnar parser. Each
message is one JSON event, as in the Redis stream.
"""

from __future__ import annotations

import time

import apache_beam as beam

from beam_pipelines.columnar.batch import RawBatch

__all__ = ['ReadMessages', 'kafka_reader', 'pubsub_reader']


def kafka_reader(
    bootstrap_servers: str, topic: str, group: str, expansion_service: str | None = None
) -> beam.PTransform:
    """Beam's ``ReadFromKafka`` for a topic, values as bytes, offsets committed on finalize."""
    from apache_beam.io.kafka import ReadFromKafka  # imported here: only Kafka runs need it

    return ReadFromKafka(
        consumer_config={
            'bootstrap.servers': bootstrap_servers,
            'group.id': group,
            'auto.offset.reset': 'earliest',
            'enable.auto.commit': 'false',
        },
        topics=[topic],
        commit_offset_in_finalize=True,
        timestamp_policy='CreateTime',
        expansion_service=expansion_service,
    )


def pubsub_reader(subscription: str) -> beam.PTransform:
    """Beam's ``ReadFromPubSub`` for a subscription (``projects/P/subscriptions/S``)."""
    from apache_beam.io.gcp.pubsub import ReadFromPubSub

    return ReadFromPubSub(subscription=subscription)


class ReadMessages(beam.PTransform):
    """Applies a message reader and turns its messages into :class:`RawBatch` elements.

    Args:
        reader: the connector (see :func:`kafka_reader`, :func:`pubsub_reader`); its elements
            are message bytes, or ``(key, value)`` pairs as Kafka's are.
        uri: names the source in batches and dead letters (``kafka://topic``).
        batch_rows: most messages per batch.
    """

    def __init__(self, reader: beam.PTransform, uri: str, batch_rows: int = 10_000):
        super().__init__()
        self._reader = reader
        self._uri = uri
        self._batch_rows = batch_rows

    def expand(self, pbegin):
        return (
            pbegin | 'Read' >> self._reader | 'Batch' >> BatchMessages(self._uri, self._batch_rows)
        )


class BatchMessages(beam.PTransform):
    """Message bytes (or ``(key, value)`` pairs) into :class:`RawBatch` elements."""

    def __init__(self, uri: str, batch_rows: int = 10_000):
        super().__init__()
        self._uri = uri
        self._batch_rows = batch_rows

    def expand(self, messages):
        return (
            messages
            | 'Values' >> beam.Map(_value)
            | 'Group' >> beam.BatchElements(min_batch_size=1, max_batch_size=self._batch_rows)
            | 'ToRawBatch' >> beam.Map(_raw_batch, self._uri).with_output_types(RawBatch)
        )


def _value(message) -> bytes:
    if isinstance(message, tuple):
        message = message[1]
    return bytes(message) if message is not None else b''


def _raw_batch(lines: list[bytes], uri: str) -> RawBatch:
    # Positions order copies for deduplication (the first copy read is kept): arrival time in
    # microseconds, then the index in the batch.
    base = time.time_ns() // 1000 * 1024
    return RawBatch(uri, 'jsonl', [base + i for i in range(len(lines))], lines=lines)
