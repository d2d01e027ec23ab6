"""Options for ``--source rest_api``: a REST API polled for new records."""

from apache_beam.options.pipeline_options import PipelineOptions

from beam_pipelines.io.rest_api import PAGINATIONS


class RestApiOptions(PipelineOptions):
    @classmethod
    def _add_argparse_args(cls, parser):
        parser.add_argument('--rest_url', default=None, help='The collection URL to poll.')
        parser.add_argument(
            '--rest_pagination',
            choices=PAGINATIONS,
            default='none',
            help='none; offset (?offset=&limit=); page (?page=&limit=); cursor (?cursor= from '
            '--rest_next_cursor_field); link (the Link rel="next" header).',
        )
        parser.add_argument(
            '--rest_items_field',
            default=None,
            help='Dotted path of the record list in the body (default: the body is the list).',
        )
        parser.add_argument('--rest_page_size', type=int, default=100, help='Records per page.')
        parser.add_argument(
            '--rest_page_param',
            default=None,
            help='Name of the offset, page or cursor query parameter (default: offset, page or '
            'cursor).',
        )
        parser.add_argument(
            '--rest_limit_param', default='limit', help='Name of the page size parameter.'
        )
        parser.add_argument(
            '--rest_next_cursor_field',
            default='next_cursor',
            help='--rest_pagination cursor: dotted path of the next cursor in the body.',
        )
        parser.add_argument(
            '--rest_since_param',
            default=None,
            help='Query parameter taking the incremental cursor (the latest record time read); '
            'default: the API takes none and records are filtered on the client.',
        )
        parser.add_argument(
            '--rest_watermark_field',
            default='timestamp',
            help="A record's modification time, which moves the cursor (e.g. updated_at).",
        )
        parser.add_argument(
            '--rest_id_field',
            default='event_id',
            help="A record's id (records at the cursor's exact time are told apart by it).",
        )
        parser.add_argument(
            '--rest_requests_per_sec',
            type=float,
            default=None,
            help='Most requests per second to the API (default: no pacing).',
        )
        parser.add_argument(
            '--rest_max_pages',
            type=int,
            default=10_000,
            help='Most pages in one poll (with --rest_since_param the next poll goes on from the '
            'cursor; without it, more pages fail the poll).',
        )
        parser.add_argument(
            '--rest_poll_secs',
            type=float,
            default=60.0,
            help='--streaming: poll the API this often (PeriodicImpulse).',
        )
        parser.add_argument(
            '--rest_token_file',
            default=None,
            help='File (any Beam filesystem) holding a bearer token for the API, read by the '
            'workers (never part of the job graph).',
        )
