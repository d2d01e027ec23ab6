"""``PipelineOptions`` subclasses, one per concern; each only overrides ``_add_argparse_args``."""

from beam_pipelines.options.anomaly import AnomalyOptions
from beam_pipelines.options.features import FeatureOptions
from beam_pipelines.options.flink import FlinkCheckpointOptions
from beam_pipelines.options.gdpr import GdprOptions
from beam_pipelines.options.input import InputOptions
from beam_pipelines.options.observability import ObservabilityOptions
from beam_pipelines.options.output import OutputOptions
from beam_pipelines.options.postgres import PostgresOptions
from beam_pipelines.options.quality import QualityOptions
from beam_pipelines.options.redis import RedisOptions
from beam_pipelines.options.rest_api import RestApiOptions
from beam_pipelines.options.source import SourceOptions
from beam_pipelines.options.streaming import TriggerOptions
from beam_pipelines.options.tuning import TuningOptions
from beam_pipelines.options.windowing import WindowOptions

__all__ = [
    'AnomalyOptions',
    'FeatureOptions',
    'FlinkCheckpointOptions',
    'GdprOptions',
    'InputOptions',
    'ObservabilityOptions',
    'OutputOptions',
    'PostgresOptions',
    'QualityOptions',
    'RedisOptions',
    'RestApiOptions',
    'SourceOptions',
    'TriggerOptions',
    'TuningOptions',
    'WindowOptions',
]
