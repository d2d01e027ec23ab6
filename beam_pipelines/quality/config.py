"""The flagship's quality configuration, from its flags (checked at launch)."""

from __future__ import annotations

import dataclasses

from beam_pipelines import cli
from beam_pipelines.io.notify import SmtpTarget
from beam_pipelines.options.quality import QualityOptions
from beam_pipelines.quality.spec import QualitySpec
from beam_pipelines.quality.spec import SpecError
from beam_pipelines.quality.spec import load_quality_spec

__all__ = ['QualityConfig', 'quality_config']


@dataclasses.dataclass(frozen=True)
class QualityConfig:
    spec: QualitySpec
    fields: tuple[str, ...]  # measured for completeness
    webhook_url: str | None = None
    smtp: SmtpTarget | None = None
    window_secs: float | None = 3600.0  # per-window rows too (None: the run only)


def quality_config(options, schema, incremental: bool) -> QualityConfig | None:
    """Raises cli.UsageError for a spec, field or notification target that cannot be used."""
    q = options.view_as(QualityOptions)
    notify = q.quality_webhook_url or q.smtp_url
    if not (q.quality or q.quality_spec):
        if notify:
            raise cli.UsageError('--quality_webhook_url and --smtp_url need --quality_spec')
        return None
    if incremental:
        raise cli.UsageError(
            '--quality measures batch runs for now (not --streaming or --state_dir)'
        )
    try:
        spec = load_quality_spec(q.quality_spec) if q.quality_spec else QualitySpec()
        spec.check_fields(set(schema.field_names))
    except (SpecError, OSError) as exc:
        raise cli.UsageError(f'--quality_spec {q.quality_spec}: {exc}') from None
    fields = spec.completeness_fields
    if fields is None:  # every field that may be null (required ones never are, once valid)
        fields = tuple(f.name for f in schema.fields if not f.required)
    cli.require_http_url('--quality_webhook_url', q.quality_webhook_url)
    smtp = None
    if q.smtp_url:
        try:
            smtp = SmtpTarget.parse(q.smtp_url, q.alert_email_from, q.alert_email_to or '')
        except ValueError as exc:
            raise cli.UsageError(f'--smtp_url: {exc}') from None
    if q.quality_window_secs < 0:
        raise cli.UsageError(f'--quality_window_secs must be >= 0, got {q.quality_window_secs}')
    window = q.quality_window_secs or None
    return QualityConfig(spec, tuple(fields), q.quality_webhook_url, smtp, window)
