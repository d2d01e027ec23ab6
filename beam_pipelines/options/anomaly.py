"""Options for anomaly detection on the window aggregates, and its alerts."""

from apache_beam.options.pipeline_options import PipelineOptions

from beam_pipelines.io.alerts import FORMATS

VALUE_COLUMNS = ('count', 'value_count', 'sum', 'mean', 'min', 'max', 'stddev', 'p50', 'p95')


class AnomalyOptions(PipelineOptions):
    @classmethod
    def _add_argparse_args(cls, parser):
        parser.add_argument(
            '--detect_anomalies',
            action='store_true',
            help='Score each (entity_id, event_type) series of window aggregates with per-key '
            'detectors; anomalies go to anomalies/ (and PostgreSQL, alerts when configured).',
        )
        parser.add_argument(
            '--detector_spec',
            default=None,
            help='Detectors as a JSON or YAML file (default: the built-in spec measured on NAB).',
        )
        parser.add_argument(
            '--anomaly_value',
            choices=VALUE_COLUMNS,
            default='count',
            help='Which aggregate of a window is scored (default: count, events per window).',
        )
        parser.add_argument(
            '--anomaly_idle_ttl_secs',
            type=float,
            default=7 * 24 * 3600.0,
            help='Forget a series this long (event time) after its last window.',
        )
        parser.add_argument(
            '--alert_webhook_url',
            default=None,
            help='POST each anomaly episode to this webhook (Slack-compatible by default).',
        )
        parser.add_argument(
            '--alert_format', choices=FORMATS, default='slack', help='Webhook body format.'
        )
        parser.add_argument(
            '--alert_cooldown_secs',
            type=float,
            default=3600.0,
            help='After an alert, a series raises no other for this long (event time).',
        )
