"""Options that tune batching and shuffles (results do not depend on them)."""

from apache_beam.options.pipeline_options import PipelineOptions


class TuningOptions(PipelineOptions):
    @classmethod
    def _add_argparse_args(cls, parser):
        parser.add_argument(
            '--batch_rows',
            type=int,
            default=50_000,
            help='Most records per columnar batch.',
        )
        parser.add_argument(
            '--num_shards',
            type=int,
            default=16,
            help='Shards of the columnar shuffles (deduplication and aggregate merging).',
        )
