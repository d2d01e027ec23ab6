"""Options for the PostgreSQL warehouse."""

from apache_beam.options.pipeline_options import PipelineOptions


class PostgresOptions(PipelineOptions):
    @classmethod
    def _add_argparse_args(cls, parser):
        parser.add_argument(
            '--postgres_url',
            default=None,
            help='Also load events, aggregates and dead letters into PostgreSQL: a libpq URL '
            'or DSN (postgresql://user:pass@host:5432/db); parts it leaves out come from the '
            'PG* environment variables, so postgresql:// alone uses them all.',
        )
        parser.add_argument(
            '--pg_schema',
            default='public',
            help='Database schema of the warehouse tables (created and migrated at start).',
        )
        parser.add_argument(
            '--pg_connections',
            type=int,
            default=2,
            help='Connections each table load uses per worker thread, each taking its share '
            'of the keys (a key always takes the same one, so its rows land in order); more '
            'let the server load on more cores. Mind max_connections: a worker thread opens '
            'this many per table.',
        )
