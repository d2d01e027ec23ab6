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
        parser.add_argument(
            '--state_dir',
            default=None,
            help='Run incrementally: keep open windows, remembered ids and the watermark here '
            'between runs (any Beam filesystem path); each run fires the panes that are due.',
        )
        parser.add_argument(
            '--out_of_orderness_secs',
            type=float,
            default=0.0,
            help='With --state_dir: the watermark stays this far behind the latest event time.',
        )
        parser.add_argument(
            '--every',
            default=None,
            help="With --state_dir: rerun every interval (e.g. '5s', '1m') until interrupted.",
        )
        parser.add_argument(
            '--runs',
            type=int,
            default=None,
            help='With --every: stop after this many runs (default: run until interrupted).',
        )
