"""Flink runner options that Beam's Python SDK does not declare but Flink's job server reads.

The Flink job server declares these (its ``FlinkPipelineOptions``), and the portable runner
forwards them; declaring them here lets the launchers' strict flag check accept them. They are
sent only when given, so other runners never see them. Beam's Flink default is no checkpoints:
pass ``--checkpointing_interval`` for a streaming job that must survive a TaskManager loss.
"""

from apache_beam.options.pipeline_options import PipelineOptions


class FlinkCheckpointOptions(PipelineOptions):
    @classmethod
    def _add_argparse_args(cls, parser):
        parser.add_argument(
            '--checkpointing_interval',
            type=int,
            default=None,
            help='Flink: milliseconds between checkpoints (default: no checkpoints).',
        )
        parser.add_argument(
            '--checkpointing_mode',
            choices=('EXACTLY_ONCE', 'AT_LEAST_ONCE'),
            default=None,
            help='Flink: checkpoint guarantee (Flink default EXACTLY_ONCE).',
        )
        parser.add_argument(
            '--min_pause_between_checkpoints',
            type=int,
            default=None,
            help='Flink: least milliseconds from one checkpoint to the next.',
        )
        parser.add_argument(
            '--state_backend',
            choices=('rocksdb', 'hashmap'),
            default=None,
            help='Flink: state backend (rocksdb for state larger than memory).',
        )
        parser.add_argument(
            '--state_backend_storage_path',
            default=None,
            help='Flink: durable checkpoint location (s3://..., hdfs://..., file://...).',
        )
