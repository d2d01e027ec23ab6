"""Options for streaming runs (``--streaming``): triggers, lateness, panes and dedup horizon."""

from apache_beam.options.pipeline_options import PipelineOptions


class TriggerOptions(PipelineOptions):
    @classmethod
    def _add_argparse_args(cls, parser):
        parser.add_argument(
            '--allowed_lateness_secs',
            type=float,
            default=0.0,
            help='How long after its end a window still takes late data (streaming); later '
            "data goes to the 'late' output.",
        )
        parser.add_argument(
            '--early_firing_secs',
            type=float,
            default=None,
            help='Emit early panes this often, in processing time, before the watermark reaches '
            'the end of a window (streaming; default: no early panes).',
        )
        parser.add_argument(
            '--late_firing_secs',
            type=float,
            default=0.0,
            help='0: a late pane for each late arrival; N: late panes batched every N seconds.',
        )
        parser.add_argument(
            '--accumulation',
            choices=('accumulating', 'discarding'),
            default='accumulating',
            help='Panes hold the whole window (accumulating: sinks replace the previous pane) '
            'or only what is new (discarding: sinks add it).',
        )
        parser.add_argument(
            '--dedup_horizon_secs',
            type=float,
            default=3600.0,
            help='How long, in event time, an event_id is remembered for deduplication '
            '(streaming).',
        )
