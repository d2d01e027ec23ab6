"""Options for ML feature extraction (``--features``, and ``python -m
beam_pipelines.feature_pipeline``)."""

from apache_beam.options.pipeline_options import PipelineOptions

from beam_pipelines.features.resample import AGGREGATES
from beam_pipelines.features.resample import FILLS


class FeatureOptions(PipelineOptions):
    @classmethod
    def _add_argparse_args(cls, parser):
        parser.add_argument(
            '--features',
            action='store_true',
            help='Also extract per-entity rolling features of the clean events into features/ '
            '(and the latest vector per entity into Redis with --redis_url).',
        )
        parser.add_argument(
            '--feature_horizons',
            default='5m,1h,24h',
            help="Rolling horizons, comma-separated durations ('30s', '5m', '1h', '24h').",
        )
        parser.add_argument('--feature_lags', type=int, default=3, help='Previous values kept.')
        parser.add_argument(
            '--feature_event_types',
            default='',
            help='Event types to give a ratio_<type> feature each (comma-separated).',
        )
        parser.add_argument(
            '--feature_anomaly_score',
            action='store_true',
            help="Add anomaly_score: each event's value scored by its entity's anomaly model "
            '(--detector_spec, or the built-in spec).',
        )
        parser.add_argument(
            '--feature_normalization',
            choices=('none', 'minmax', 'zscore'),
            default='zscore',
            help='Add <feature>_norm columns; the statistics are computed by a batch run and '
            'saved as features/_normalization.json.',
        )
        parser.add_argument(
            '--normalization_stats',
            default=None,
            help='Apply these saved statistics (features/_normalization.json of a batch run) '
            'instead of computing them: what streaming and serving use.',
        )
        parser.add_argument(
            '--resample_secs',
            type=float,
            default=None,
            help='Also write timeseries/: each entity resampled to this interval (batch runs).',
        )
        parser.add_argument(
            '--gap_fill', choices=FILLS, default='zero', help='How resampling fills empty buckets.'
        )
        parser.add_argument(
            '--resample_value',
            choices=AGGREGATES,
            default='sum',
            help="A bucket's value: the sum, mean or last of its events' values.",
        )
