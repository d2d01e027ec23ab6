"""Options for the Redis serving store."""

from apache_beam.options.pipeline_options import PipelineOptions


class RedisOptions(PipelineOptions):
    @classmethod
    def _add_argparse_args(cls, parser):
        parser.add_argument(
            '--redis_url',
            default=None,
            help='Also write the latest window aggregates and a rolling series per '
            'entity/type to Redis (redis://[:password@]host:6379/0).',
        )
        parser.add_argument('--redis_prefix', default='bp:', help='Prefix of every Redis key.')
        parser.add_argument(
            '--redis_ttl_secs', type=int, default=7 * 24 * 3600, help='Expiry of Redis keys.'
        )
        parser.add_argument(
            '--redis_series_len',
            type=int,
            default=1440,
            help='Windows kept per entity/type series (default 1440: a day of minutes).',
        )
