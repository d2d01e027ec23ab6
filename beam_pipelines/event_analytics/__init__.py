"""The flagship pipeline: events in; clean events, windowed aggregates and dead letters out.

Reads JSON Lines, CSV, Avro or Parquet files, parses, cleanses and validates them against a
pydantic schema, drops duplicate ``event_id``s (first copy kept), aggregates per
(``entity_id``, ``event_type``) in event-time windows, and writes under ``--output_dir``:
``events/`` (Parquet), ``aggregates/`` (Parquet), ``dead_letter/`` (JSON Lines) and
``run_summary.json``. Events travel as Arrow tables end to end (see ``beam_pipelines.columnar``).

Run locally::

    python -m beam_pipelines.event_analytics --input 'data/*.jsonl' --output_dir out

On Dataflow (same flags plus the usual Google Cloud ones)::

    python -m beam_pipelines.event_analytics --runner DataflowRunner \\
        --project PROJECT --region REGION --temp_location gs://BUCKET/tmp \\
        --input 'gs://BUCKET/events/*.jsonl' --output_dir gs://BUCKET/out
"""

from beam_pipelines.event_analytics.config import PIPELINE_NAME
from beam_pipelines.event_analytics.config import Config
from beam_pipelines.event_analytics.launcher import run
from beam_pipelines.event_analytics.pipeline import Outputs
from beam_pipelines.event_analytics.pipeline import build_pipeline

__all__ = ['PIPELINE_NAME', 'Config', 'Outputs', 'build_pipeline', 'run']
