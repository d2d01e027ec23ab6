"""``WriteToWarehouse``: the flagship's outputs into the PostgreSQL warehouse schema.

Clean events go to ``events`` (daily partitions created on demand), aggregates to
``aggregates``, detected anomalies to ``anomalies`` and dead letters to ``dead_letters``, each
through :class:`WriteToPostgres`, so every load is a COPY plus an idempotent upsert. Rows the
database refuses come back as dead letters (stage ``sink``).
"""

from __future__ import annotations

import hashlib
from typing import NamedTuple

import apache_beam as beam
import orjson
import pyarrow as pa
import pyarrow.compute as pc

from beam_pipelines.columnar.aggregate import AGGREGATE_SCHEMA
from beam_pipelines.columnar.timestamps import TIMESTAMP_TYPE
from beam_pipelines.dead_letter import ENVELOPE_FIELDS
from beam_pipelines.io.postgres import DEAD_LETTER
from beam_pipelines.io.postgres import WRITTEN
from beam_pipelines.io.postgres import PostgresTarget
from beam_pipelines.io.postgres import WriteToPostgres
from beam_pipelines.io.postgres import event_days
from beam_pipelines.io.warehouse_schema import ensure_event_partitions
from beam_pipelines.transforms.quality import QUALITY_SCHEMA
from beam_pipelines.transforms.quality import QUALITY_WINDOW_SCHEMA

__all__ = [
    'EventPartitions',
    'WarehouseResult',
    'WriteToWarehouse',
    'dead_letter_id',
    'dead_letter_rows',
    'event_rows',
    'events_target',
]

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
ANOMALY_KEY = ('entity_id', 'event_type', 'detector', 'event_time')
ANOMALY_COLUMNS = (*ANOMALY_KEY, 'value', 'score', 'is_anomaly', 'statistics')


class WarehouseResult(NamedTuple):
    written: dict[str, beam.PCollection]  # table -> row counts per loaded batch
    dead_letter: beam.PCollection  # rows the database refused


class WriteToWarehouse(beam.PTransform):
    """Writes events, aggregates and dead letters (a dict of PCollections) to PostgreSQL.

    Args:
        url: libpq URL or DSN (missing parts come from the ``PG*`` environment variables).
        schema: the database schema (see ``python -m beam_pipelines.warehouse migrate``).
        pipeline_name: names the pipeline in dead letters.
        accumulation: None for final aggregates (batch); 'accumulating' or 'discarding' when the
            aggregates are panes (``PANE_SCHEMA``): an accumulating pane replaces the stored row
            if it is not older; a discarding pane is added to it (each pane once). The optional
            ``retractions`` output (merged-away sessions) is deleted.
        connections: connections per table load (see :class:`WriteToPostgres`).
    """

    def __init__(
        self,
        url: str,
        schema: str,
        pipeline_name: str,
        accumulation: str | None = None,
        connections: int = 2,
    ):
        super().__init__()
        if accumulation not in (None, 'accumulating', 'discarding'):
            raise ValueError(f'accumulation must be accumulating or discarding: {accumulation!r}')
        self._url = url
        self._schema = schema
        self._pipeline_name = pipeline_name
        self._accumulation = accumulation
        self._connections = connections

    def expand(self, outputs: dict[str, beam.PCollection]) -> WarehouseResult:
        s = self._schema
        events = events_target(s)
        aggregates = aggregates_target(s, self._accumulation)
        dead = PostgresTarget(
            'dead_letters', DEAD_LETTER_COLUMNS, ('id',), s, update=False, json_columns=('source',)
        )
        results = {
            'events': (
                outputs['events']
                | 'EventsToRows' >> beam.Map(event_rows).with_output_types(pa.Table)
                | 'LoadEvents' >> self._write(events, before_load=EventPartitions(s))
            ),
            'aggregates': outputs['aggregates'] | 'LoadAggregates' >> self._write(aggregates),
            'dead_letters': (
                outputs['dead_letter']
                | 'BatchDeadLetters' >> beam.BatchElements(min_batch_size=1, max_batch_size=10_000)
                | 'DeadLettersToRows' >> beam.Map(dead_letter_rows).with_output_types(pa.Table)
                | 'LoadDeadLetters' >> self._write(dead)
            ),
        }
        if 'anomalies' in outputs:
            anomalies = PostgresTarget(
                'anomalies', ANOMALY_COLUMNS, ANOMALY_KEY, s, json_columns=('statistics',)
            )
            results['anomalies'] = (
                outputs['anomalies']
                | 'AnomaliesToRows' >> beam.Map(_anomaly_rows).with_output_types(pa.Table)
                | 'LoadAnomalies' >> self._write(anomalies)
            )
        if 'quality' in outputs:
            quality = PostgresTarget(
                'quality',
                tuple(QUALITY_SCHEMA.names),
                ('pipeline', 'run_key', 'source'),
                s,
                json_columns=('details', 'breaches'),
            )
            results['quality'] = outputs['quality'] | 'LoadQuality' >> self._write(quality)
        if 'quality_windows' in outputs:
            windows = PostgresTarget(
                'quality_windows',
                tuple(QUALITY_WINDOW_SCHEMA.names),
                ('pipeline', 'run_key', 'source', 'window_start'),
                s,
                json_columns=('details', 'breaches'),
            )
            results['quality_windows'] = outputs['quality_windows'] | 'LoadQualityWindows' >> (
                self._write(windows)
            )
        if 'retractions' in outputs:
            retracted = PostgresTarget('aggregates', WINDOW_KEY, WINDOW_KEY, s, delete=True)
            results['retractions'] = outputs['retractions'] | 'DeleteRetracted' >> (
                self._write(retracted)
            )
        refused = [r[DEAD_LETTER] for r in results.values()] | 'RefusedRows' >> beam.Flatten()
        return WarehouseResult({k: r[WRITTEN] for k, r in results.items()}, refused)

    def _write(self, target: PostgresTarget, before_load=None) -> WriteToPostgres:
        return WriteToPostgres(
            self._url, target, self._pipeline_name, before_load=before_load,
            connections=self._connections,
        )  # fmt: skip


WINDOW_KEY = ('entity_id', 'event_type', 'window_start', 'window_end')
PANE_COLUMNS = ('pane_timing', 'pane_index', 'is_final')
_STATS = tuple(c for c in AGGREGATE_SCHEMA.names if c not in WINDOW_KEY)


def aggregates_target(schema: str, accumulation: str | None) -> PostgresTarget:
    """How aggregate rows (final, or panes of either accumulation mode) land."""
    t = 'aggregates'
    if accumulation is None:  # final results: replace, and forget any pane a stream stored
        sets = [f'{c} = EXCLUDED.{c}' for c in _STATS] + [f'{c} = NULL' for c in PANE_COLUMNS]
        return PostgresTarget(
            t, tuple(AGGREGATE_SCHEMA.names), WINDOW_KEY, schema, on_conflict=_update(sets)
        )
    columns = (*AGGREGATE_SCHEMA.names, *PANE_COLUMNS)
    if accumulation == 'accumulating':
        # A pane holds the whole window: it replaces an older pane; a replayed or
        # out-of-order older pane changes nothing.
        sets = [f'{c} = EXCLUDED.{c}' for c in (*_STATS, *PANE_COLUMNS)]
        where = f'{t}.pane_index IS NULL OR EXCLUDED.pane_index >= {t}.pane_index'
        return PostgresTarget(t, columns, WINDOW_KEY, schema, on_conflict=_update(sets, where))
    # Discarding: a pane holds what is new; add it once (a replayed pane has an index already
    # applied). Counts, sums, min/max and mean merge exactly, stddev with Chan et al.'s formula;
    # quantiles cannot be merged from two quantiles, so they become NULL once two panes with
    # values meet.
    na, nb = f'{t}.value_count', 'EXCLUDED.value_count'
    n = f'({na} + {nb})'
    m2 = (
        f'coalesce({t}.stddev, 0) ^ 2 * greatest({na} - 1, 0)'
        f' + coalesce(EXCLUDED.stddev, 0) ^ 2 * greatest({nb} - 1, 0)'
        f' + CASE WHEN {na} > 0 AND {nb} > 0 THEN (EXCLUDED.mean - {t}.mean) ^ 2'
        f' * {na}::float8 * {nb} / {n} ELSE 0 END'
    )

    def quantile(c: str) -> str:
        return f'{c} = CASE WHEN {na} = 0 THEN EXCLUDED.{c} WHEN {nb} = 0 THEN {t}.{c} END'

    sets = [
        f'count = {t}.count + EXCLUDED.count',
        f'value_count = {n}',
        f'sum = CASE WHEN {n} > 0 THEN coalesce({t}.sum, 0) + coalesce(EXCLUDED.sum, 0) END',
        f'min = least({t}.min, EXCLUDED.min)',
        f'max = greatest({t}.max, EXCLUDED.max)',
        f'mean = CASE WHEN {n} > 0 THEN (coalesce({t}.sum, 0) + coalesce(EXCLUDED.sum, 0))'
        f' / {n} END',
        f'stddev = CASE WHEN {n} >= 2 THEN sqrt(({m2}) / ({n} - 1)) END',
        quantile('p50'),
        quantile('p95'),
        *(f'{c} = EXCLUDED.{c}' for c in PANE_COLUMNS),
    ]
    where = f'{t}.pane_index IS NULL OR EXCLUDED.pane_index > {t}.pane_index'
    return PostgresTarget(t, columns, WINDOW_KEY, schema, on_conflict=_update(sets, where))


def _update(sets: list[str], where: str | None = None) -> str:
    return 'DO UPDATE SET ' + ', '.join(sets) + (f' WHERE {where}' if where else '')


class EventPartitions:
    """Creates the daily partitions a batch of events needs (picklable, for the DoFn)."""

    def __init__(self, schema: str):
        self._schema = schema

    def __call__(self, cur, table: pa.Table) -> None:
        ensure_event_partitions(cur, self._schema, event_days(table, 'event_time'))


def events_target(schema: str) -> PostgresTarget:
    """How clean events land: upserted on (event_id, event_time)."""
    return PostgresTarget(
        'events', EVENT_COLUMNS, ('event_id', 'event_time'), schema, json_columns=('attributes',)
    )


def event_rows(table: pa.Table) -> pa.Table:
    """Clean event tables as ``events`` rows."""
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


def _anomaly_rows(table: pa.Table) -> pa.Table:
    """Scored points (``anomaly.shard.score_schema``) as ``anomalies`` rows; the detector that
    scored highest names the row (deterministic, so re-runs upsert the same rows)."""
    return pa.table(
        {
            'entity_id': table.column('entity_id'),
            'event_type': table.column('event_type'),
            'detector': pc.fill_null(table.column('detector'), 'none'),
            'event_time': table.column('event_time'),
            'value': table.column('value'),
            'score': table.column('anomaly_score'),
            'is_anomaly': pc.fill_null(table.column('is_anomaly'), False),
            'statistics': table.column('statistics'),
        }
    )


def dead_letter_id(envelope: dict) -> str:
    """A stable id for an envelope: the same record failing the same way gets the same id."""
    key = orjson.dumps(
        [envelope.get(k) for k in ('pipeline', 'stage', 'error_type', 'source', 'payload')],
        option=orjson.OPT_SORT_KEYS,
        default=str,
    )
    return hashlib.sha256(key).hexdigest()[:32]


def dead_letter_rows(envelopes: list[dict]) -> pa.Table:
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
