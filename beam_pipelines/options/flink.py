"""Flink runner options that Beam's Python SDK does not declare but Flink's job server reads.

The Flink job server declares these (its ``FlinkPipelineOptions``), and the portable runner
forwards them; declaring them here lets the launchers' strict flag check accept them. They are
sent only when given, so other runners never see them. Beam's Flink default is no checkpoints:
pass ``--checkpointing_interval`` for a streaming job that must survive a TaskManager loss.
Beam configures checkpoints from these options only (the cluster's ``execution.checkpointing.*``
settings do not reach a Beam job), and only for streaming jobs.
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
            # The values Beam's Flink 1.x runner accepts (its 2.x runner also takes hashmap).
            choices=('rocksdb', 'filesystem'),
            default=None,
            help='Flink: state backend (rocksdb for state larger than memory); needs '
            '--state_backend_storage_path.',
        )
        parser.add_argument(
            '--state_backend_storage_path',
            default=None,
            help='Flink: durable checkpoint location (s3://..., hdfs://..., file://...).',
        )
        parser.add_argument(
            '--externalized_checkpoints_enabled',
            action='store_true',
            help='Flink: keep checkpoints outside the job, to restart it from one.',
        )
        parser.add_argument(
            '--retain_externalized_checkpoints_on_cancellation',
            action='store_true',
            help='Flink: keep the externalized checkpoints when the job is cancelled.',
        )
