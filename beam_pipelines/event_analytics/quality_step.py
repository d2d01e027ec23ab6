"""The flagship's quality step: measure, notify breaches, shape the rows for the sinks."""

from __future__ import annotations

from typing import NamedTuple

import apache_beam as beam
import pyarrow as pa

from beam_pipelines.event_analytics.config import PIPELINE_NAME
from beam_pipelines.event_analytics.config import Config
from beam_pipelines.event_analytics.webhooks import hide_webhook_secrets
from beam_pipelines.io.notify import NotifyBreaches
from beam_pipelines.transforms.counting import CountAs
from beam_pipelines.transforms.counting import one
from beam_pipelines.transforms.quality import QUALITY_WINDOW_SCHEMA
from beam_pipelines.transforms.quality import MeasureQuality
from beam_pipelines.transforms.quality import QualityInputs
from beam_pipelines.transforms.quality import quality_table

__all__ = ['Measured', 'measure']


class Measured(NamedTuple):
    table: beam.PCollection  # one QUALITY_SCHEMA table of every source's row
    windows_table: beam.PCollection  # one QUALITY_WINDOW_SCHEMA table (maybe empty)
    counted: list  # count PCollections for the summary
    names: list[str]
    dead_letters: list  # notifications that could not be delivered


def measure(valid, events, dead_letter, config: Config, write: bool) -> Measured:
    q = config.quality
    measured = QualityInputs(valid, events, dead_letter) | 'MeasureQuality' >> MeasureQuality(
        q.spec, q.fields, q.window_secs
    )
    rows = measured.runs
    table = (
        rows
        | 'AllQualityRows' >> beam.combiners.ToList()
        | 'QualityTable'
        >> beam.Map(quality_table, PIPELINE_NAME, config.output_dir).with_output_types(pa.Table)
    )
    windows_table = (
        measured.windows
        | 'AllQualityWindowRows' >> beam.combiners.ToList()
        | 'QualityWindowTable'
        >> beam.Map(
            quality_table, PIPELINE_NAME, config.output_dir, QUALITY_WINDOW_SCHEMA
        ).with_output_types(pa.Table)
    )
    counted = [
        rows | 'CountQualityRows' >> CountAs('quality_rows', one),
        rows
        | 'OnlyBreached' >> beam.Filter(lambda row: bool(row['breaches']))
        | 'CountBreached' >> CountAs('quality_breached_sources', one),
    ]
    names = ['quality_rows', 'quality_breached_sources']
    dead_letters = []
    if write and (q.webhook_url or q.smtp):
        notified = rows | 'NotifyBreaches' >> NotifyBreaches(PIPELINE_NAME, q.webhook_url, q.smtp)
        counted.append(notified.sent | 'CountNotified' >> CountAs('quality_alerts_sent', one))
        names.append('quality_alerts_sent')
        undelivered = notified.dead_letter
        if q.webhook_url:  # its dead letters would show the webhook's token (see the function)
            undelivered = undelivered | 'HideQualityWebhookSecrets' >> hide_webhook_secrets(
                q.webhook_url
            )
        dead_letters.append(undelivered)
    return Measured(table, windows_table, counted, names, dead_letters)
