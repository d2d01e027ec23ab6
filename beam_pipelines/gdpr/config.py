"""What a pipeline needs to protect personal data: picklable, and free of key material.

Workers read the secrets themselves (:meth:`GdprConfig.secrets`), from the file the launcher
named or from ``$BP_GDPR_SECRETS``, so keys never travel in the pipeline graph that runners
store and show (a Dataflow job's graph, a Flink job's serialised DoFns).
"""

from __future__ import annotations

import dataclasses
import os

from beam_pipelines import cli
from beam_pipelines.gdpr.policy import PiiPolicy
from beam_pipelines.gdpr.policy import PolicyError
from beam_pipelines.gdpr.policy import policy_from
from beam_pipelines.gdpr.secrets import ENV_VAR
from beam_pipelines.gdpr.secrets import GdprSecrets
from beam_pipelines.gdpr.secrets import SecretsError
from beam_pipelines.gdpr.secrets import load
from beam_pipelines.options.gdpr import GdprOptions
from beam_pipelines.schema import EventSchema

__all__ = ['GdprConfig', 'field_names', 'gdpr_config']


@dataclasses.dataclass(frozen=True)
class GdprConfig:
    """Attributes:
    policy: the personal-data fields.
    secrets_file: where the secrets are (None: ``$BP_GDPR_SECRETS``).
    store_url: the PostgreSQL database of the key store and tombstones (None: neither).
    store_schema: its schema.
    refresh_secs: how often long-running workers reload the tombstones.
    """

    policy: PiiPolicy
    secrets_file: str | None = None
    store_url: str | None = None
    store_schema: str = 'public'
    refresh_secs: float = 60.0

    def secrets(self) -> GdprSecrets:
        return load(self.secrets_file)


def field_names(flag: str | None) -> list[str]:
    """The fields of a comma-separated ``--pii_fields`` / ``--encrypt_fields`` value."""
    return [n.strip() for n in (flag or '').split(',') if n.strip()]


def gdpr_config(
    options, schema: EventSchema, postgres_url: str | None, pg_schema: str, env=None
) -> GdprConfig | None:
    """The run's GDPR configuration; None when it declares no personal data and has no secrets.

    The secrets are loaded once here, so a run without usable keys fails before it starts.

    Raises:
        cli.UsageError: with a one-line reason.
    """
    env = os.environ if env is None else env
    g = options.view_as(GdprOptions)
    try:
        policy = policy_from(schema, field_names(g.pii_fields), field_names(g.encrypt_fields))
    except PolicyError as exc:
        raise cli.UsageError(f'--pii_fields/--encrypt_fields: {exc}') from None
    store = g.gdpr_store_url or postgres_url
    if not (policy or g.gdpr_secrets_file or (env.get(ENV_VAR) and store)):
        return None
    if store is None:
        # Without tombstones a run cannot tell whose records to drop: an erased subject in this
        # input would be written again.
        raise cli.UsageError(
            'personal-data protection needs the store of tombstones and keys: '
            '--gdpr_store_url or --postgres_url'
        )
    config = GdprConfig(policy, g.gdpr_secrets_file, store, g.gdpr_schema or pg_schema)
    try:
        config.secrets()
    except SecretsError as exc:
        raise cli.UsageError(str(exc)) from None
    return config
