"""Options that say what to read and how to interpret it."""

from apache_beam.options.pipeline_options import PipelineOptions

from beam_pipelines.io.files import FORMATS

DEFAULT_SCHEMA = 'beam_pipelines.schema:Event'


class InputOptions(PipelineOptions):
    @classmethod
    def _add_argparse_args(cls, parser):
        parser.add_argument(
            '--input',
            help='Glob of input files: local, gs:// or s3:// (any Beam filesystem).',
        )
        parser.add_argument(
            '--input_format',
            choices=FORMATS,
            default=None,
            help='Input format; by default inferred per file from its extension '
            '(.jsonl/.ndjson/.json, .csv, .avro, .parquet; .gz etc. allowed for text).',
        )
        parser.add_argument(
            '--schema',
            default=DEFAULT_SCHEMA,
            help='Event schema as module:Class naming a pydantic v2 model '
            f'(default {DEFAULT_SCHEMA}).',
        )
