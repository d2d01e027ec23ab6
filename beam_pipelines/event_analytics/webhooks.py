"""The flagship's webhooks (anomaly alerts, quality notifications): their secrets kept out of
the dead letters of undeliverable messages."""

from __future__ import annotations

import apache_beam as beam

from beam_pipelines.redaction import scrub
from beam_pipelines.redaction import url_secrets

__all__ = ['hide_webhook_secrets']

# The envelope fields where a sink names its target and quotes the target's answer.
_TARGET_FIELDS = ('error_message', 'source')


def hide_webhook_secrets(url: str) -> beam.PTransform:
    """Takes a webhook URL's secrets out of the dead letters of its undeliverable messages.

    The URL is a capability (its path or query is the token), but the sinks that post to it
    (:mod:`beam_pipelines.io.alerts`, :mod:`beam_pipelines.io.notify`) show it with
    :func:`~beam_pipelines.redaction.redact`, which masks only token-like parts, and their error
    messages quote the endpoint's answer, which may echo the path it was asked for (a 404 page).
    Dead letters go to files, the warehouse and report.html, so every path segment and query
    value of the URL is masked in their message and source.

    Args:
        url: the webhook URL.

    Returns:
        A ``Map`` over dead-letter envelopes.
    """
    return beam.Map(scrub, url_secrets(url, capability=True), _TARGET_FIELDS)
