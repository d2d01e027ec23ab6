"""The flagship's datasets for OpenLineage: what a run reads and writes, with row counts and
column lineage."""

from __future__ import annotations

import apache_beam as beam
from apache_beam.io.filesystems import FileSystems

from beam_pipelines.columnar.aggregate import AGGREGATE_SCHEMA
from beam_pipelines.event_analytics.config import PIPELINE_NAME
from beam_pipelines.event_analytics.config import Config
from beam_pipelines.observability.lineage import AGGREGATE_LINEAGE
from beam_pipelines.observability.lineage import MERMAID_FILE
from beam_pipelines.observability.lineage import Lineage
from beam_pipelines.observability.lineage import inputs_of
from beam_pipelines.observability.lineage import mermaid
from beam_pipelines.observability.lineage import output_dataset
from beam_pipelines.observability.lineage import table_id
from beam_pipelines.options import ObservabilityOptions

__all__ = ['RunLineage']


def _fields(schema) -> list[tuple[str, str]]:
    return [(f.name, str(f.type)) for f in schema]


class RunLineage:
    """Emits a run's events (the launcher builds one only when lineage is asked for: importing
    openlineage costs other runs start-up time)."""

    def __init__(self, lineage: Lineage, config: Config):
        self._lineage = lineage
        self._config = config
        event_fields = _fields(config.schema.event_arrow_schema())
        if config.source == 'files':
            pattern = config.input
            files = [m.path for m in FileSystems.match([pattern])[0].metadata_list]
            self._inputs = inputs_of(files, pattern, event_fields)
        else:
            self._inputs = inputs_of([], config.input, event_fields)
        self._event_fields = event_fields

    @classmethod
    def of(cls, options, config: Config, pipeline: beam.Pipeline) -> RunLineage:
        obs = options.view_as(ObservabilityOptions)
        with FileSystems.create(config.path(MERMAID_FILE), 'text/plain') as f:
            f.write(mermaid(pipeline).encode())
        lineage = Lineage(PIPELINE_NAME, obs.lineage_namespace, obs.lineage_file, obs.lineage_url)
        return cls(lineage, config)

    def _outputs(self, counts: dict | None) -> list:
        c, config = counts or {}, self._config
        identity = {f: ((f,), 'IDENTITY', 'cleansed and validated') for f, _ in self._event_fields}
        places = [
            (config.path('events'), self._event_fields, c.get('valid'), identity),
            (
                config.path('aggregates'),
                _fields(AGGREGATE_SCHEMA),
                c.get('aggregates'),
                AGGREGATE_LINEAGE,
            ),
            (config.path('dead_letter'), None, c.get('dead_letter'), None),
        ]
        if config.postgres_url:
            for table, rows, lineage in (
                ('events', c.get('postgres_events'), identity),
                ('aggregates', c.get('postgres_aggregates'), AGGREGATE_LINEAGE),
                ('dead_letters', c.get('postgres_dead_letters'), None),
            ):
                where = table_id(config.postgres_url, config.pg_schema, table)
                places.append((where, None, rows, lineage))
        if config.redis_url:
            places.append((config.redis_url, None, c.get('redis_commands'), None))
        return [
            output_dataset(where, fields, rows, self._inputs, lineage)
            for where, fields, rows, lineage in places
        ]

    def start(self) -> None:
        self._lineage.run_id = Lineage.new_run_id()
        self._lineage.start(self._inputs, self._outputs(None), beam.__version__)

    def complete(self, counts: dict | None) -> None:
        self._lineage.complete(self._inputs, self._outputs(counts))

    def fail(self, error: BaseException) -> None:
        self._lineage.fail(self._inputs, self._outputs(None), error)
