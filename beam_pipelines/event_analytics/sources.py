"""The flagship's sources: files, a Redis stream (bounded or not), a REST API, Kafka, Pub/Sub;
each as raw batches in the wire format decoded."""

from __future__ import annotations

from typing import NamedTuple

import apache_beam as beam
from apache_beam.io.filesystems import FileSystems

from beam_pipelines.columnar.batch import RawBatch
from beam_pipelines.event_analytics.config import Config
from beam_pipelines.io.files import ReadEventFiles
from beam_pipelines.io.message_sources import ReadMessages
from beam_pipelines.io.message_sources import kafka_reader
from beam_pipelines.io.message_sources import pubsub_reader
from beam_pipelines.io.redis_stream import ReadFromRedisStream
from beam_pipelines.io.redis_stream import StreamRead
from beam_pipelines.io.redis_stream_sdf import ReadRedisStreamContinuously
from beam_pipelines.io.rest_source import ReadFromRestApi

__all__ = ['REST_CURSOR_FILE', 'SourceRead', 'read_source']

REST_CURSOR_FILE = 'rest_cursor.json'


class SourceRead(NamedTuple):
    raw: beam.PCollection  # RawBatch elements, decoded from the wire format
    stream_read: StreamRead | None = None  # a bounded stream read: acknowledged after outputs
    state: beam.PCollection | None = None  # (pending, final) files to commit with the run


def read_source(p: beam.Pipeline, config: Config) -> SourceRead:
    """Applies the configured source to ``p``."""
    read = _read(p, config)
    if config.wire.kind == 'json':
        return read
    decoded = read.raw | 'DecodeWire' >> beam.Map(config.wire.decode_batch).with_output_types(
        RawBatch
    )
    return read._replace(raw=decoded)


def _read(p: beam.Pipeline, config: Config) -> SourceRead:
    group = (config.redis_url, config.stream_name, config.consumer_group, config.consumer_name)
    if config.source == 'redis_stream' and config.streaming:
        # Acknowledged by bundle finalization once the runner has committed the outputs.
        raw = p | 'ReadStream' >> ReadRedisStreamContinuously(
            *group,
            batch_rows=config.batch_rows,
            out_of_orderness_secs=config.out_of_orderness_secs,
            stop_when_idle=config.stop_at_end,
        )
        return SourceRead(raw)
    if config.source == 'redis_stream':
        stream_read = p | 'ReadStream' >> ReadFromRedisStream(*group, batch_rows=config.batch_rows)
        return SourceRead(stream_read.batches, stream_read=stream_read)
    if config.source == 'rest_api':
        # Bounded runs poll once; incremental ones keep the API's cursor with their state.
        state_file = (
            FileSystems.join(config.state_dir, REST_CURSOR_FILE) if config.state_dir else None
        )
        rest = p | 'ReadApi' >> ReadFromRestApi(
            config.rest,
            poll_secs=config.rest_poll_secs if config.unbounded else None,
            token_file=config.rest_token_file,
            state_file=state_file,
        )
        return SourceRead(rest.batches, state=rest.state if state_file else None)
    if config.source in ('kafka', 'pubsub'):
        if config.source == 'kafka':
            servers, topic, expansion = config.kafka
            reader, label = kafka_reader(servers, topic, config.consumer_group, expansion), 'Kafka'
        else:
            reader, label = pubsub_reader(config.pubsub_subscription), 'PubSub'
        return SourceRead(
            p | f'Read{label}' >> ReadMessages(reader, config.input, config.batch_rows)
        )
    raw = p | 'ReadFiles' >> ReadEventFiles(
        config.input,
        config.input_format,
        batch_rows=config.batch_rows,
        total_bytes=config.input_bytes or None,
    )
    return SourceRead(raw)
