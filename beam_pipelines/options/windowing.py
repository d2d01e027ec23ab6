"""Options for event-time windowing of aggregates."""

from apache_beam.options.pipeline_options import PipelineOptions


class WindowOptions(PipelineOptions):
    @classmethod
    def _add_argparse_args(cls, parser):
        parser.add_argument(
            '--window_type',
            choices=('fixed', 'sliding', 'session'),
            default='fixed',
            help='Event-time window kind for aggregates.',
        )
        parser.add_argument(
            '--window_size_secs',
            type=float,
            default=60.0,
            help='Window size in seconds (fixed and sliding windows).',
        )
        parser.add_argument(
            '--window_period_secs',
            type=float,
            default=None,
            help='How often a sliding window starts, in seconds (default: half the size).',
        )
        parser.add_argument(
            '--session_gap_secs',
            type=float,
            default=None,
            help='Inactivity gap that closes a session window, in seconds (default 300).',
        )
