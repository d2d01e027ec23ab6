"""Options that choose where events come from: files, a Redis stream, a REST API, Kafka or
Pub/Sub."""

from apache_beam.options.pipeline_options import PipelineOptions


class SourceOptions(PipelineOptions):
    @classmethod
    def _add_argparse_args(cls, parser):
        parser.add_argument(
            '--source',
            choices=('files', 'redis_stream', 'rest_api', 'kafka', 'pubsub'),
            default='files',
            help='files (--input), redis_stream (--redis_url, --stream_name), rest_api '
            '(--rest_url), kafka (--kafka_bootstrap_servers, --kafka_topic; needs Java) or '
            'pubsub (--pubsub_subscription); kafka and pubsub need --streaming.',
        )
        parser.add_argument('--kafka_bootstrap_servers', default=None, help='host:port[,...]')
        parser.add_argument('--kafka_topic', default=None, help='Kafka topic to read.')
        parser.add_argument(
            '--kafka_expansion_service',
            default=None,
            help="host:port of a running Beam Java expansion service (default: Beam's jar, "
            'fetched from Maven).',
        )
        parser.add_argument(
            '--wire_format',
            choices=('json', 'csv', 'avro'),
            default='json',
            help='How stream entries and messages encode events (not files: their format '
            'comes from the extension).',
        )
        parser.add_argument(
            '--csv_columns', default=None, help='--wire_format csv: the columns, comma-separated.'
        )
        parser.add_argument(
            '--avro_schema', default=None, help='--wire_format avro: an .avsc file for all records.'
        )
        parser.add_argument(
            '--schema_registry_url',
            default=None,
            help='--wire_format avro: a Confluent-compatible schema registry; records carry '
            'a schema id (magic byte 0, 4-byte id).',
        )
        parser.add_argument(
            '--pubsub_subscription',
            default=None,
            help='projects/PROJECT/subscriptions/NAME to read.',
        )
        parser.add_argument('--stream_name', default=None, help='Redis stream to read.')
        parser.add_argument(
            '--consumer_group', default='beam_pipelines', help='Redis consumer group.'
        )
        parser.add_argument(
            '--consumer_name',
            default='event_analytics',
            help="This pipeline's consumer in the group (its unacknowledged entries are "
            're-read by the next run with the same name).',
        )
        parser.add_argument(
            '--stop_at_end',
            action='store_true',
            help='Read everything pending in the stream (or poll the API once), write the '
            'outputs, acknowledge, stop.',
        )
