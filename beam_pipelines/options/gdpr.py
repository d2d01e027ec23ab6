"""Options that protect personal data (see :mod:`beam_pipelines.gdpr`)."""

from apache_beam.options.pipeline_options import PipelineOptions


class GdprOptions(PipelineOptions):
    @classmethod
    def _add_argparse_args(cls, parser):
        parser.add_argument(
            '--pii_fields',
            default=None,
            help='Comma-separated personal-data fields replaced by keyed HMAC-SHA-256 '
            'pseudonyms at ingestion (schema fields or attributes; entity_id may be one).',
        )
        parser.add_argument(
            '--encrypt_fields',
            default=None,
            help='Comma-separated personal-data fields encrypted (AES-GCM) with a per-subject '
            'key; erasing the subject deletes the key. Needs a key store (PostgreSQL).',
        )
        parser.add_argument(
            '--gdpr_secrets_file',
            default=None,
            help='The pseudonym and master keys (JSON; `python -m beam_pipelines.gdpr keygen`), '
            'a local path or a Beam filesystem path; default: $BP_GDPR_SECRETS. Never logged.',
        )
        parser.add_argument(
            '--gdpr_store_url',
            default=None,
            help='PostgreSQL of the key store and tombstones; default: --postgres_url.',
        )
        parser.add_argument(
            '--gdpr_schema',
            default=None,
            help='Schema of the key store and tombstones; default: --pg_schema.',
        )
