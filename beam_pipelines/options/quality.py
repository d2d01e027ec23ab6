"""Options that measure data quality and notify about breaches."""

from apache_beam.options.pipeline_options import PipelineOptions


class QualityOptions(PipelineOptions):
    @classmethod
    def _add_argparse_args(cls, parser):
        parser.add_argument(
            '--quality',
            action='store_true',
            help='Measure data quality per source (completeness, validity, uniqueness, '
            'timeliness, consistency, accuracy, score) into quality/ (and PostgreSQL).',
        )
        parser.add_argument(
            '--quality_spec',
            default=None,
            help='Expectations (YAML or JSON): weights, fields, rules, thresholds; implies '
            '--quality. A measure below its threshold is a breach, which is notified.',
        )
        parser.add_argument(
            '--quality_window_secs',
            type=float,
            default=3600.0,
            help='Also measure per source and event-time window of this size (quality_windows/; '
            '0: the whole run only).',
        )
        parser.add_argument(
            '--quality_webhook_url',
            default=None,
            help='POST each source with breaches here (Slack-compatible text plus JSON fields).',
        )
        parser.add_argument(
            '--smtp_url',
            default=None,
            help='Email breaches through this server: smtp://[user:pass@]host[:port]'
            '[?starttls=1] or smtps://...',
        )
        parser.add_argument('--alert_email_from', default=None, help='Sender of breach emails.')
        parser.add_argument(
            '--alert_email_to', default=None, help='Recipients of breach emails, comma-separated.'
        )
