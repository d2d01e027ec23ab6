"""Options that export a run's metrics to Prometheus (local runs and the --every mode; on Flink
use Flink's Prometheus reporter, on Dataflow Cloud Monitoring)."""

from apache_beam.options.pipeline_options import PipelineOptions


class ObservabilityOptions(PipelineOptions):
    @classmethod
    def _add_argparse_args(cls, parser):
        parser.add_argument(
            '--metrics_file',
            default=None,
            help="Write each run's metrics here in Prometheus text format (atomically; for "
            "node_exporter's textfile collector or a Pushgateway).",
        )
        parser.add_argument(
            '--metrics_port',
            type=int,
            default=None,
            help="Serve the latest run's metrics over HTTP on this port (/metrics).",
        )
        parser.add_argument(
            '--metrics_host',
            default='127.0.0.1',
            help='Address of the --metrics_port endpoint.',
        )
        parser.add_argument(
            '--metrics_linger_secs',
            type=float,
            default=0.0,
            help='Keep serving --metrics_port this long after the last run, to be scraped.',
        )
        parser.add_argument(
            '--lineage_file',
            default=None,
            help='Append OpenLineage run events (START, COMPLETE, FAIL) to this JSON Lines file, '
            'and write the pipeline graph as Mermaid to lineage.mmd in --output_dir.',
        )
        parser.add_argument(
            '--lineage_url',
            default=None,
            help='POST OpenLineage run events to this endpoint (e.g. Marquez: http://host:5000).',
        )
        parser.add_argument(
            '--lineage_namespace', default='beam_pipelines', help='The OpenLineage job namespace.'
        )
        parser.add_argument(
            '--no_report',
            action='store_true',
            help='Do not write report.html (counts, dead letters, charts, quality, lineage) in '
            '--output_dir after each run.',
        )
