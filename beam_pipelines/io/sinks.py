"""File sinks: Arrow tables to Parquet, dead letters to JSON Lines, the run summary to JSON."""

from __future__ import annotations

import datetime as dt
import json
import logging
from typing import Any

import apache_beam as beam
import pyarrow as pa
from apache_beam.io import parquetio
from apache_beam.io import textio
from apache_beam.io.filesystems import FileSystems

from beam_pipelines.dead_letter import to_json_line
from beam_pipelines.io import coders  # noqa: F401  (registers the Arrow table coder)

__all__ = ['WriteDeadLetters', 'WriteRunSummary', 'WriteTablesToParquet', 'balance']

_LOGGER = logging.getLogger(__name__)


class WriteTablesToParquet(beam.PTransform):
    """Writes table elements as Parquet files ``<prefix>-SSSSS-of-NNNNN.parquet``.

    Columns outside ``schema`` (such as the ``_uri``/``_pos`` meta columns) are dropped and the
    rest cast to it, so every file has the same schema. On an unbounded input, give
    ``triggering_frequency`` (seconds): Beam then writes a set of files per window.
    """

    def __init__(
        self,
        file_path_prefix: str,
        schema: pa.Schema,
        codec: str = 'snappy',
        triggering_frequency: int | None = None,
    ):
        super().__init__()
        self._prefix = file_path_prefix
        self._schema = schema
        self._codec = codec
        self._frequency = triggering_frequency

    def expand(self, tables):
        return (
            tables
            | 'ConformToSchema' >> beam.Map(_conform, self._schema).with_output_types(pa.Table)
            | 'WriteParquet'
            >> parquetio.WriteToParquetBatched(
                self._prefix,
                schema=self._schema,
                codec=self._codec,
                file_name_suffix='.parquet',
                triggering_frequency=self._frequency,
            )
        )


def _conform(table: pa.Table, schema: pa.Schema) -> pa.Table:
    return table.select(schema.names).cast(schema)


class WriteDeadLetters(beam.PTransform):
    """Writes dead-letter envelopes as JSON Lines files ``<prefix>-SSSSS-of-NNNNN.jsonl``."""

    def __init__(self, file_path_prefix: str, triggering_frequency: int | None = None):
        super().__init__()
        self._prefix = file_path_prefix
        self._frequency = triggering_frequency

    def expand(self, envelopes):
        return (
            envelopes
            | 'ToJsonLines' >> beam.Map(to_json_line)
            | 'WriteJsonLines'
            >> textio.WriteToText(
                self._prefix, file_name_suffix='.jsonl', triggering_frequency=self._frequency
            )
        )


def balance(counts: dict[str, int]) -> int:
    """``read - (valid + dead_letter + duplicates + late + erased)``: 0 when nothing was lost or
    invented.

    ``late`` (events past the allowed lateness) exists only in streaming runs; ``erased``
    (records of erased subjects, dropped at ingestion) only in runs with GDPR secrets.
    """
    return counts.get('read', 0) - (
        counts.get('valid', 0)
        + counts.get('dead_letter', 0)
        + counts.get('duplicates', 0)
        + counts.get('late', 0)
        + counts.get('erased', 0)
    )


class WriteRunSummary(beam.PTransform):
    """Writes ``run_summary.json`` from the pipeline's counts, inside the pipeline.

    Counting in the pipeline, from the data itself, makes the summary exact on every runner
    (metrics may be attempted rather than committed values) and written even when the launcher
    does not wait for the job, as on Dataflow.

    Args:
        path: where to write the summary.
        context: static facts to include (pipeline name, options, inputs).
    """

    def __init__(self, path: str, context: dict[str, Any]):
        super().__init__()
        self._path = path
        self._context = context

    def expand(self, counts):
        return counts | 'WriteSummary' >> beam.Map(_write_summary, self._path, self._context)


def _write_summary(counts: dict[str, int], path: str, context: dict[str, Any]) -> dict:
    difference = balance(counts)
    summary = {
        **context,
        'counts': counts,
        'balanced': difference == 0,
        'unaccounted': difference,
        'finished_at': dt.datetime.now(dt.UTC).strftime('%Y-%m-%dT%H:%M:%SZ'),
    }
    if difference:
        _LOGGER.error(
            'count identity broken: read=%d but valid+dead_letter+duplicates=%d (difference %d)',
            counts.get('read', 0),
            counts.get('read', 0) - difference,
            difference,
        )
    with FileSystems.create(path, mime_type='application/json') as f:
        f.write(json.dumps(summary, indent=2, sort_keys=True, default=str).encode('utf-8'))
    return summary
