"""Options that say where results go."""

from apache_beam.options.pipeline_options import PipelineOptions


class OutputOptions(PipelineOptions):
    @classmethod
    def _add_argparse_args(cls, parser):
        parser.add_argument(
            '--output_dir',
            default='out',
            help='Directory (local or any Beam filesystem) for events/, aggregates/, '
            'dead_letter/ and run_summary.json. Those four are replaced on each run.',
        )
