"""OpenLineage run events (START, COMPLETE, FAIL) for a run, with its input and output datasets,
column-level lineage of the derived fields, and a Mermaid diagram of the pipeline graph.

Events go through the openlineage-python client: to a JSON Lines file (``--lineage_file``) or
an HTTP endpoint such as Marquez (``--lineage_url``). Dataset names follow OpenLineage's naming
conventions: files as ``file`` (or ``s3://bucket``, ``gs://bucket``) plus the path, PostgreSQL
tables as ``postgres://host:port`` plus ``database.schema.table``, Redis as
``redis://host:port`` plus the key prefix.
"""

from __future__ import annotations

import datetime as dt
import os
import traceback
import urllib.parse
import uuid

from openlineage.client import OpenLineageClient
from openlineage.client.event_v2 import InputDataset
from openlineage.client.event_v2 import Job
from openlineage.client.event_v2 import OutputDataset
from openlineage.client.event_v2 import Run
from openlineage.client.event_v2 import RunEvent
from openlineage.client.event_v2 import RunState
from openlineage.client.facet_v2 import column_lineage_dataset
from openlineage.client.facet_v2 import error_message_run
from openlineage.client.facet_v2 import job_type_job
from openlineage.client.facet_v2 import output_statistics_output_dataset
from openlineage.client.facet_v2 import processing_engine_run
from openlineage.client.facet_v2 import schema_dataset
from openlineage.client.transport.file import FileConfig
from openlineage.client.transport.file import FileTransport
from openlineage.client.transport.http import HttpConfig
from openlineage.client.transport.http import HttpTransport

from beam_pipelines.observability.report import MERMAID_FILE
from beam_pipelines.redaction import redact
from beam_pipelines.redaction import scrub
from beam_pipelines.redaction import url_secrets

__all__ = [
    'AGGREGATE_LINEAGE',
    'MERMAID_FILE',
    'Lineage',
    'LineageError',
    'dataset_id',
    'inputs_of',
    'mermaid',
    'output_dataset',
    'table_id',
]

PRODUCER = 'https://github.com/beam-pipelines/beam_pipelines'
MAX_FILES = 100  # more input files than this are one dataset, the glob
# How the aggregates' columns derive from the events' (column-level lineage).
AGGREGATE_LINEAGE: dict[str, tuple[tuple[str, ...], str, str]] = {
    'entity_id': (('entity_id',), 'IDENTITY', 'grouping key'),
    'event_type': (('event_type',), 'IDENTITY', 'grouping key'),
    'window_start': (('timestamp',), 'TRANSFORMATION', 'event-time window start'),
    'window_end': (('timestamp',), 'TRANSFORMATION', 'event-time window end'),
    'count': (('event_id',), 'AGGREGATION', 'COUNT of events'),
    'value_count': (('value',), 'AGGREGATION', 'COUNT of non-null values'),
    'sum': (('value',), 'AGGREGATION', 'SUM'),
    'mean': (('value',), 'AGGREGATION', 'AVG'),
    'min': (('value',), 'AGGREGATION', 'MIN'),
    'max': (('value',), 'AGGREGATION', 'MAX'),
    'stddev': (('value',), 'AGGREGATION', 'STDDEV (Chan et al. merge)'),
    'p50': (('value',), 'AGGREGATION', 'median (DDSketch, 1%)'),
    'p95': (('value',), 'AGGREGATION', '95th percentile (DDSketch, 1%)'),
}


def dataset_id(location: str) -> tuple[str, str]:
    """(namespace, name) of a file, directory, PostgreSQL table or Redis URL."""
    parts = urllib.parse.urlsplit(location)
    if parts.scheme in ('s3', 'gs'):
        return f'{parts.scheme}://{parts.netloc}', parts.path.lstrip('/')
    if parts.scheme in ('postgresql', 'postgres'):
        host = parts.hostname or os.environ.get('PGHOST') or 'localhost'
        port = parts.port or int(os.environ.get('PGPORT') or 5432)
        return f'postgres://{host}:{port}', parts.path.lstrip('/') or os.environ.get(
            'PGDATABASE', 'postgres'
        )
    if parts.scheme in ('redis', 'rediss'):
        return f'redis://{parts.hostname or "localhost"}:{parts.port or 6379}', parts.path or '/0'
    return 'file', os.path.abspath(location)


def table_id(url: str, schema: str, table: str) -> tuple[str, str]:
    """(namespace, name) of a PostgreSQL table: ``postgres://host:port``, ``db.schema.table``."""
    namespace, database = dataset_id(url if '://' in url else 'postgresql://')
    return namespace, f'{database or "postgres"}.{schema}.{table}'


def _schema_facet(fields: list[tuple[str, str]]):
    return schema_dataset.SchemaDatasetFacet(
        fields=[schema_dataset.SchemaDatasetFacetFields(name=n, type=t) for n, t in fields]
    )


class LineageError(RuntimeError):
    """An event could not be emitted to the HTTP endpoint (the message holds no credentials)."""


class Lineage:
    """A run's lineage, emitted through a file or HTTP transport.

    Args:
        job: the job's name (the pipeline).
        namespace: the job's namespace.
        file: a JSON Lines file to append events to (None: none).
        url: an OpenLineage HTTP endpoint's base URL (None: none).
    """

    def __init__(self, job: str, namespace: str, file: str | None, url: str | None):
        if not (file or url):
            raise ValueError('give a file, a url or both')
        self._clients = []
        if file:
            os.makedirs(os.path.dirname(os.path.abspath(file)), exist_ok=True)
            self._clients.append(
                OpenLineageClient(
                    transport=FileTransport(FileConfig(log_file_path=file, append=True))
                )
            )
        if url:
            self._clients.append(OpenLineageClient(transport=HttpTransport(HttpConfig(url=url))))
        self._url = url
        self.job = Job(
            namespace=namespace,
            name=job,
            facets={
                'jobType': job_type_job.JobTypeJobFacet(
                    processingType='BATCH', integration='APACHE_BEAM', jobType='JOB'
                )
            },
        )
        self.run_id = self.new_run_id()

    @staticmethod
    def new_run_id() -> str:
        return str(uuid.uuid4())

    def _emit(self, state, inputs, outputs, run_facets=None) -> dict:
        event = RunEvent(
            eventType=state,
            eventTime=dt.datetime.now(dt.UTC).isoformat(),
            run=Run(runId=self.run_id, facets=run_facets or {}),
            job=self.job,
            inputs=inputs,
            outputs=outputs,
            producer=PRODUCER,
        )
        for client in self._clients:
            try:
                client.emit(event)
            except Exception as exc:
                if not self._url:
                    raise
                # The HTTP client's errors quote the request's path ("Max retries exceeded with
                # url: /<token>/api/v1/lineage"), and they end on stderr and in the FAIL event.
                message = scrub(redact(f'{type(exc).__name__}: {exc}'), url_secrets(self._url))
                raise LineageError(
                    f'lineage endpoint {redact(self._url)}: {message}'.strip()
                ) from None
        return event

    def start(self, inputs: list, outputs: list, beam_version: str) -> None:
        engine = processing_engine_run.ProcessingEngineRunFacet(
            version=beam_version, name='Apache Beam'
        )
        self._emit(RunState.START, inputs, outputs, {'processing_engine': engine})

    def complete(self, inputs: list, outputs: list) -> None:
        self._emit(RunState.COMPLETE, inputs, outputs)

    def fail(self, inputs: list, outputs: list, error: BaseException) -> None:
        # Redacted: the event leaves the process (a file others read, an HTTP endpoint), and an
        # error's text may quote a connection URL.
        facet = error_message_run.ErrorMessageRunFacet(
            message=redact(str(error)[:2000]) or type(error).__name__,
            programmingLanguage='python',
            stackTrace=redact(''.join(traceback.format_exception(error))[-8000:]),
        )
        self._emit(RunState.FAIL, inputs, outputs, {'errorMessage': facet})


def inputs_of(files: list[str], pattern: str, fields: list[tuple[str, str]]) -> list:
    schema = {'schema': _schema_facet(fields)}
    chosen = files if 0 < len(files) <= MAX_FILES else [pattern]
    return [InputDataset(*dataset_id(f), facets=schema) for f in chosen]


def output_dataset(
    location: str | tuple[str, str],
    fields: list[tuple[str, str]] | None = None,
    rows: int | None = None,
    derived_from: list[InputDataset] | None = None,
    lineage: dict | None = None,
) -> OutputDataset:
    """An output, with its schema, row count and how its columns derive from the inputs'."""
    facets: dict = {}
    if fields:
        facets['schema'] = _schema_facet(fields)
    if lineage and derived_from:
        facets['columnLineage'] = column_lineage_dataset.ColumnLineageDatasetFacet(
            fields={
                column: column_lineage_dataset.Fields(
                    inputFields=[
                        column_lineage_dataset.InputField(
                            namespace=d.namespace,
                            name=d.name,
                            field=source,
                            transformations=[
                                column_lineage_dataset.Transformation(
                                    type='DIRECT' if kind != 'AGGREGATION' else 'INDIRECT',
                                    subtype=kind,
                                    description=description,
                                )
                            ],
                        )
                        for d in derived_from
                        for source in sources
                    ],
                    transformationDescription=description,
                    transformationType=kind,
                )
                for column, (sources, kind, description) in lineage.items()
            }
        )
    output_facets = {}
    if rows is not None:
        output_facets['outputStatistics'] = (
            output_statistics_output_dataset.OutputStatisticsOutputDatasetFacet(rowCount=rows)
        )
    where = dataset_id(location) if isinstance(location, str) else location
    return OutputDataset(*where, facets=facets, outputFacets=output_facets)


def _bookkeeping(label: str) -> bool:
    # The summary's counting steps: left out of the diagram (their edges pass through).
    return label.startswith(('Count', 'With')) or label in ('FlattenCounts', 'SumCounts')


def mermaid(pipeline) -> str:
    """The pipeline's top-level steps and the collections between them, as a Mermaid
    flowchart (the summary's counting steps contracted away)."""
    root = pipeline._root_transform()  # Beam keeps the graph's root here
    steps = list(root.parts)
    ids = {id(step): i for i, step in enumerate(steps)}

    def top(applied):
        while applied is not None and id(applied) not in ids:
            applied = applied.parent
        return applied

    edges: set[tuple[int, int]] = set()
    for step in steps:
        stack = [step]
        while stack:
            node = stack.pop()
            stack.extend(node.parts)
            for pcoll in node.main_inputs.values():
                producer = top(getattr(pcoll, 'producer', None))
                if producer is not None and producer is not step:
                    edges.add((ids[id(producer)], ids[id(step)]))
    for i, step in enumerate(steps):
        if _bookkeeping(step.full_label):
            before = {a for a, b in edges if b == i}
            after = {b for a, b in edges if a == i}
            edges = {e for e in edges if i not in e} | {(a, b) for a in before for b in after}
    shown = [i for i, s in enumerate(steps) if not _bookkeeping(s.full_label)]
    lines = ['flowchart LR']
    for i in shown:
        label = steps[i].full_label.replace('"', "'")
        lines.append(f'  s{i}["{label}"]')
    lines += [f'  s{a} --> s{b}' for a, b in sorted(edges) if a != b]
    return '\n'.join(lines) + '\n'
