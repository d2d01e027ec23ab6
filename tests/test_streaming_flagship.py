"""The flagship built for streaming runners (Flink, Dataflow): unbounded sources, windowed file
outputs. No streaming runner runs here, so these tests build the pipelines and check them; the
streaming transforms themselves run under TestStream in tests/transforms."""

from __future__ import annotations

import apache_beam as beam
import pytest
from apache_beam.testing.test_pipeline import TestPipeline
from apache_beam.testing.util import assert_that
from apache_beam.testing.util import equal_to

from beam_pipelines import cli
from beam_pipelines import event_analytics
from beam_pipelines.io.message_sources import BatchMessages
from beam_pipelines.io.message_sources import kafka_reader
from tests.test_event_analytics import _cli

STREAM = ['--source', 'redis_stream', '--redis_url', 'redis://127.0.0.1:6379/0']
FLINK = ['--streaming', '--runner', 'FlinkRunner', '--flink_master', 'localhost:8081']


def built(argv):
    options = cli.parse_pipeline_args(argv)
    config = event_analytics.Config.from_options(options)
    p = beam.Pipeline(options=options)
    outputs = event_analytics.build_pipeline(p, config)
    return config, p, outputs


def test_an_unbounded_redis_stream_builds_with_windowed_outputs(tmp_path):
    config, p, outputs = built(
        [
            *FLINK,
            *STREAM,
            '--stream_name',
            's',
            '--output_dir',
            str(tmp_path),
            '--allowed_lateness_secs',
            '60',
        ]
    )
    assert config.unbounded and config.panes
    assert outputs.counts is None  # an unbounded run counts with metrics
    assert not outputs.events.is_bounded and not outputs.aggregates.is_bounded
    labels = {t.unique_name for t in p.to_runner_api().components.transforms.values()}
    assert any(label.startswith('ReadStream/ReadEntries') for label in labels)
    assert any(label.startswith('AggregateStream/PanesPerShard') for label in labels)
    assert not any('WriteRunSummary' in label for label in labels)


def test_a_polled_api_builds_on_periodic_impulse_for_streaming(tmp_path):
    config, p, outputs = built(
        [
            *FLINK,
            '--source',
            'rest_api',
            '--rest_url',
            'https://api.example.com/v1/orders?api_key=SECRET',
            '--rest_pagination',
            'cursor',
            '--rest_poll_secs',
            '30',
            '--output_dir',
            str(tmp_path),
        ]
    )
    assert config.unbounded and config.rest.pagination == 'cursor'
    assert config.input == 'https://api.example.com/v1/orders'  # no query string (API keys)
    assert not outputs.events.is_bounded and outputs.counts is None
    labels = {t.unique_name for t in p.to_runner_api().components.transforms.values()}
    assert any(label.startswith('ReadApi/Every') for label in labels)
    assert any(label.startswith('ReadApi/Poll') for label in labels)


def test_a_stop_at_end_stream_read_is_bounded_and_summarised(tmp_path):
    config, _, outputs = built(
        [*FLINK, *STREAM, '--stream_name', 's', '--stop_at_end', '--output_dir', str(tmp_path)]
    )
    assert not config.unbounded
    assert outputs.counts is not None


def test_pubsub_builds_for_streaming(tmp_path):
    config, _, outputs = built(
        [
            *FLINK,
            '--source',
            'pubsub',
            '--pubsub_subscription',
            'projects/my-project/subscriptions/events',
            '--output_dir',
            str(tmp_path),
        ]
    )
    assert config.unbounded and not outputs.aggregates.is_bounded


def test_kafka_reader_commits_offsets_after_the_bundle():
    reader = kafka_reader('broker:9092', 'events', 'beam_pipelines', 'localhost:8097')
    assert type(reader).__name__ == 'ReadFromKafka'
    assert reader._expansion_service == 'localhost:8097'
    # The external transform's configuration, as it goes to the Java expansion service.
    for text in (b'broker:9092', b'events', b'group.id', b'enable.auto.commit', b'CreateTime'):
        assert text in reader._payload
    assert b'commit_offset_in_finalize' in reader._payload


@pytest.mark.parametrize(
    'args, fragment',
    [
        (['--source', 'kafka', '--kafka_topic', 't'], 'needs --kafka_bootstrap_servers'),
        (
            ['--source', 'kafka', '--kafka_topic', 't', '--kafka_bootstrap_servers', 'b:9092'],
            'run it with --streaming',
        ),
        (['--source', 'pubsub'], 'needs --pubsub_subscription'),
        (
            ['--streaming', '--input', __file__, '--input_format', 'jsonl'],
            'needs a streaming runner',
        ),
    ],
)
def test_streaming_sources_give_one_line_errors(args, fragment):
    result = _cli(*args)
    assert result.returncode == 2
    assert fragment in result.stderr.strip().splitlines()[-1]


def test_messages_become_raw_batches():
    with TestPipeline() as p:
        batches = (
            p
            | beam.Create([(b'k', b'{"a":1}'), (None, b'{"a":2}'), b'{"a":3}'])
            | BatchMessages('kafka://b/t', batch_rows=2)
        )
        assert_that(
            batches | beam.FlatMap(lambda b: b.lines),
            equal_to([b'{"a":1}', b'{"a":2}', b'{"a":3}']),
        )
