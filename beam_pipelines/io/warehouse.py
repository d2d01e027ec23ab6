"""``WriteToWarehouse``: the flagship's outputs into the PostgreSQL warehouse schema.

Clean events go to ``events`` (daily partitions created on demand), aggregates to
``aggregates`` and dead letters to ``dead_letters``, each through :class:`WriteToPostgres`, so
every load is a COPY plus an idempotent upsert. Rows the database refuses come back as
dead letters (stage ``sink``).
"""

from __future__ import annotations

import hashlib
from typing import NamedTuple

import apache_beam as beam
import orjson
import pyarrow as pa

from beam_pipelines.columnar.aggregate import AGGREGATE_SCHEMA
from beam_pipelines.columnar.timestamps import TIMESTAMP_TYPE
from beam_pipelines.dead_letter import ENVELOPE_FIELDS
from beam_pipelines.io.postgres import DEAD_LETTER
from beam_pipelines.io.postgres import WRITTEN
from beam_pipelines.io.postgres import PostgresTarget
from beam_pipelines.io.postgres import WriteToPostgres
from beam_pipelines.io.postgres import event_days
from beam_pipelines.io.warehouse_schema import ensure_event_partitions

__all__ = ['WarehouseResult', 'WriteToWarehouse']

EVENT_COLUMNS = (
    'event_id',
    'event_type',
    'entity_id',
    'event_time',
    'value',
    'source',
    'attributes',
)
DEAD_LETTER_COLUMNS = ('id', *ENVELOPE_FIELDS)  # the envelope, keyed


class WarehouseResult(NamedTuple):
    written: dict[str, beam.PCollection]  # table -> row counts per loaded batch
    dead_letter: beam.PCollection  # rows the database refused


class WriteToWarehouse(beam.PTransform):
    """Writes events, aggregates and dead letters (a dict of PCollections) to PostgreSQL.

    Args:
        url: libpq URL or DSN (missing parts come from the ``PG*`` environment variables).
        schema: the database schema (see ``python -m beam_pipelines.warehouse migrate``).
        pipeline_name: names the pipeline in dead letters.
    """

    def __init__(self, url: str, schema: str, pipeline_name: str):
        super().__init__()
        self._url = url
        self._schema = schema
        self._pipeline_name = pipeline_name

    def expand(self, outputs: dict[str, beam.PCollection]) -> WarehouseResult:
        s = self._schema
        events = PostgresTarget(
            'events', EVENT_COLUMNS, ('event_id', 'event_time'), s, json_columns=('attributes',)
        )
        aggregates = PostgresTarget(
            'aggregates',
            tuple(AGGREGATE_SCHEMA.names),
            ('entity_id', 'event_type', 'window_start', 'window_end'),
            s,
        )
        dead = PostgresTarget(
            'dead_letters', DEAD_LETTER_COLUMNS, ('id',), s, update=False, json_columns=('source',)
        )
        results = {
            'events': (
                outputs['events']
                | 'EventsToRows' >> beam.Map(_event_rows).with_output_types(pa.Table)
                | 'LoadEvents'
                >> WriteToPostgres(
                    self._url, events, self._pipeline_name, before_load=_EventPartitions(s)
                )
            ),
            'aggregates': outputs['aggregates']
            | 'LoadAggregates' >> WriteToPostgres(self._url, aggregates, self._pipeline_name),
            'dead_letters': (
                outputs['dead_letter']
                | 'BatchDeadLetters' >> beam.BatchElements(min_batch_size=1, max_batch_size=10_000)
                | 'DeadLettersToRows' >> beam.Map(_dead_letter_rows).with_output_types(pa.Table)
                | 'LoadDeadLetters' >> WriteToPostgres(self._url, dead, self._pipeline_name)
            ),
        }
        refused = [r[DEAD_LETTER] for r in results.values()] | 'RefusedRows' >> beam.Flatten()
        return WarehouseResult({k: r[WRITTEN] for k, r in results.items()}, refused)


class _EventPartitions:
    """Creates the daily partitions a batch of events needs (picklable, for the DoFn)."""

    def __init__(self, schema: str):
        self._schema = schema

    def __call__(self, cur, table: pa.Table) -> None:
        ensure_event_partitions(cur, self._schema, event_days(table, 'event_time'))


def _event_rows(table: pa.Table) -> pa.Table:
    n = table.num_rows
    columns = {
        'event_id': table.column('event_id'),
        'event_type': table.column('event_type'),
        'entity_id': table.column('entity_id'),
        'event_time': table.column('timestamp'),
        'value': table.column('value').cast(pa.float64()),
        'source': table.column('source')
        if 'source' in table.column_names
        else pa.nulls(n, pa.string()),
        'attributes': table.column('attributes')
        if 'attributes' in table.column_names
        else pa.nulls(n, pa.string()),
    }
    return pa.table(columns)


def dead_letter_id(envelope: dict) -> str:
    """A stable id for an envelope: the same record failing the same way gets the same id."""
    key = orjson.dumps(
        [envelope.get(k) for k in ('pipeline', 'stage', 'error_type', 'source', 'payload')],
        option=orjson.OPT_SORT_KEYS,
        default=str,
    )
    return hashlib.sha256(key).hexdigest()[:32]


def _dead_letter_rows(envelopes: list[dict]) -> pa.Table:
    columns = {name: [e.get(name) for e in envelopes] for name in ENVELOPE_FIELDS}
    columns['source'] = [
        orjson.dumps(s).decode() if s is not None else None for s in columns['source']
    ]
    table = {
        'id': pa.array([dead_letter_id(e) for e in envelopes], pa.string()),
        **{
            name: pa.array(columns[name], pa.string())
            for name in DEAD_LETTER_COLUMNS
            if name not in ('id', 'processing_time', 'event_time')
        },
        'processing_time': pa.array(columns['processing_time'], pa.string()).cast(TIMESTAMP_TYPE),
        'event_time': pa.array(columns['event_time'], pa.string()).cast(TIMESTAMP_TYPE),
    }
    return pa.table({name: table[name] for name in DEAD_LETTER_COLUMNS})
