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

from __future__ import annotations

import dataclasses
import datetime as dt
import json
import logging
import sys
import time
from typing import Any
from typing import NamedTuple

import apache_beam as beam
import psycopg2
from apache_beam.io.filesystems import FileSystems
from apache_beam.options.pipeline_options import StandardOptions

from beam_pipelines import cli
from beam_pipelines.columnar.aggregate import AGGREGATE_SCHEMA
from beam_pipelines.columnar.aggregate import KEY_COLUMNS
from beam_pipelines.columnar.aggregate import WindowSpec
from beam_pipelines.columnar.batch import RawBatch
from beam_pipelines.columnar.panes import PANE_SCHEMA
from beam_pipelines.columnar.panes import RETRACTION_SCHEMA
from beam_pipelines.columnar.panes import TriggerSpec
from beam_pipelines.io.files import ReadEventFiles
from beam_pipelines.io.files import infer_format
from beam_pipelines.io.message_sources import ReadMessages
from beam_pipelines.io.message_sources import kafka_reader
from beam_pipelines.io.message_sources import pubsub_reader
from beam_pipelines.io.postgres import connect
from beam_pipelines.io.postgres import ident
from beam_pipelines.io.postgres import redact
from beam_pipelines.io.redis_sink import RedisLayout
from beam_pipelines.io.redis_sink import WriteToRedis
from beam_pipelines.io.redis_stream import AcknowledgeRedisStream
from beam_pipelines.io.redis_stream import ReadFromRedisStream
from beam_pipelines.io.redis_stream import stream_uri
from beam_pipelines.io.redis_stream_sdf import ReadRedisStreamContinuously
from beam_pipelines.io.sinks import WriteDeadLetters
from beam_pipelines.io.sinks import WriteRunSummary
from beam_pipelines.io.sinks import WriteTablesToParquet
from beam_pipelines.io.warehouse import WriteToWarehouse
from beam_pipelines.io.warehouse_schema import migrate
from beam_pipelines.io.wire_formats import WireFormat
from beam_pipelines.options import InputOptions
from beam_pipelines.options import OutputOptions
from beam_pipelines.options import PostgresOptions
from beam_pipelines.options import RedisOptions
from beam_pipelines.options import SourceOptions
from beam_pipelines.options import TriggerOptions
from beam_pipelines.options import TuningOptions
from beam_pipelines.options import WindowOptions
from beam_pipelines.schema import EventSchema
from beam_pipelines.schema import SchemaError
from beam_pipelines.schema import compile_schema
from beam_pipelines.schema import load_model
from beam_pipelines.transforms.aggregate import AggregateWindows
from beam_pipelines.transforms.cleanse import CleanseEvents
from beam_pipelines.transforms.completion import RunAfter
from beam_pipelines.transforms.counting import CountAs
from beam_pipelines.transforms.counting import SumCounts
from beam_pipelines.transforms.counting import one
from beam_pipelines.transforms.dedup import DeduplicateEvents
from beam_pipelines.transforms.micro_batch import AggregateMicroBatch
from beam_pipelines.transforms.micro_batch import commit_state
from beam_pipelines.transforms.parse import ParseEvents
from beam_pipelines.transforms.parse import parsed_rows
from beam_pipelines.transforms.stream_aggregate import AggregateStream
from beam_pipelines.transforms.validate import ValidateEvents

__all__ = ['PIPELINE_NAME', 'Config', 'Outputs', 'build_pipeline', 'run']

_LOGGER = logging.getLogger(__name__)

PIPELINE_NAME = 'event_analytics'
OUTPUT_PARTS = ('events', 'aggregates', 'dead_letter', 'late', 'retractions')
SUMMARY_FILE = 'run_summary.json'
COUNTS = ('read', 'valid', 'dead_letter', 'duplicates', 'aggregates')
STREAMING_COUNTS = (*COUNTS, 'late', 'retractions')
DEFAULT_SESSION_GAP_SECS = 300.0
FILE_WINDOW_SECS = 60  # unbounded runs: one set of output files per minute


@dataclasses.dataclass(frozen=True)
class Config:
    """Everything the pipeline needs, checked once, from options."""

    input: str
    input_format: str | None
    schema: EventSchema
    window: WindowSpec
    output_dir: str
    batch_rows: int
    num_shards: int
    input_files: int = 0
    input_bytes: int = 0
    postgres_url: str | None = None
    pg_schema: str = 'public'
    redis_url: str | None = None
    redis_layout: RedisLayout = dataclasses.field(default_factory=RedisLayout)
    source: str = 'files'
    stream_name: str | None = None
    consumer_group: str = 'beam_pipelines'
    consumer_name: str = 'event_analytics'
    streaming: bool = False
    trigger: TriggerSpec = dataclasses.field(default_factory=TriggerSpec)
    dedup_horizon_secs: float = 3600.0
    state_dir: str | None = None
    kafka: tuple[str | None, str | None, str | None] = (None, None, None)
    pubsub_subscription: str | None = None
    wire: WireFormat = dataclasses.field(default_factory=WireFormat)
    stop_at_end: bool = False
    out_of_orderness_secs: float = 0.0
    every_secs: float | None = None
    runs: int | None = None

    @property
    def part_prefix(self) -> str:
        """Output file prefix. Incremental runs write under ``_current/`` (hidden from readers)
        and :func:`commit_run` moves the files to ``run-<id>-...`` names once all are written."""
        return '_current/part' if self.state_dir is not None else 'part'

    @property
    def unbounded(self) -> bool:
        """The input never ends (a streaming read of a stream, Kafka or Pub/Sub)."""
        if not self.streaming:
            return False
        return self.source in ('kafka', 'pubsub') or (
            self.source == 'redis_stream' and not self.stop_at_end
        )

    @property
    def accumulation(self) -> str | None:
        """How sinks apply panes: None (final results), 'accumulating' or 'discarding'."""
        if not self.panes:
            return None
        return 'accumulating' if self.trigger.accumulating else 'discarding'

    @property
    def panes(self) -> bool:
        """Aggregates come as panes (streaming or incremental runs), not one final result."""
        return self.streaming or self.state_dir is not None

    @classmethod
    def from_options(cls, options, match_input: bool = True) -> Config:
        """Builds and checks the configuration.

        Raises:
            cli.UsageError: with a one-line reason.
        """
        inp = options.view_as(InputOptions)
        out = options.view_as(OutputOptions)
        win = options.view_as(WindowOptions)
        tune = options.view_as(TuningOptions)
        pg = options.view_as(PostgresOptions)
        rd = options.view_as(RedisOptions)
        try:
            layout = RedisLayout(rd.redis_prefix, rd.redis_ttl_secs, rd.redis_series_len)
        except ValueError as exc:
            raise cli.UsageError(f'--redis_ttl_secs and --redis_series_len: {exc}') from None
        src = options.view_as(SourceOptions)
        if src.source == 'redis_stream':
            if not (rd.redis_url and src.stream_name):
                raise cli.UsageError('--source redis_stream needs --redis_url and --stream_name')
            trig = options.view_as(TriggerOptions)
            streaming_run = options.view_as(StandardOptions).streaming
            if not (src.stop_at_end or trig.every or streaming_run):
                raise cli.UsageError(
                    'an unbounded read needs a streaming runner: pass --stop_at_end to read '
                    'everything pending and stop, or --state_dir DIR --every 5s to do that on a '
                    'schedule'
                )
        elif src.source == 'kafka':
            if not (src.kafka_bootstrap_servers and src.kafka_topic):
                raise cli.UsageError(
                    '--source kafka needs --kafka_bootstrap_servers and --kafka_topic'
                )
        elif src.source == 'pubsub':
            if not src.pubsub_subscription:
                raise cli.UsageError('--source pubsub needs --pubsub_subscription')
        elif not inp.input:
            raise cli.UsageError('--input is required (a file glob)')
        wire = _wire_format(src)
        if src.source in ('kafka', 'pubsub') and not options.view_as(StandardOptions).streaming:
            raise cli.UsageError(
                f'--source {src.source} is unbounded: run it with --streaming on Flink or Dataflow'
            )
        try:
            schema = compile_schema(load_model(inp.schema))
        except SchemaError as exc:
            raise cli.UsageError(str(exc)) from None
        try:
            window = WindowSpec(
                kind=win.window_type,
                size_secs=win.window_size_secs,
                period_secs=(win.window_period_secs or win.window_size_secs / 2)
                if win.window_type == 'sliding'
                else win.window_period_secs,
                gap_secs=(win.session_gap_secs or DEFAULT_SESSION_GAP_SECS)
                if win.window_type == 'session'
                else win.session_gap_secs,
            )
        except ValueError as exc:
            raise cli.UsageError(str(exc)) from None
        trig = options.view_as(TriggerOptions)
        try:
            trigger = TriggerSpec(
                allowed_lateness_secs=trig.allowed_lateness_secs,
                early_firing_secs=trig.early_firing_secs,
                late_firing_secs=trig.late_firing_secs,
                accumulating=trig.accumulation == 'accumulating',
            )
        except ValueError as exc:
            raise cli.UsageError(str(exc)) from None
        streaming = bool(options.view_as(StandardOptions).streaming)
        every = _every_secs(trig)
        runner = str(options.view_as(StandardOptions).runner or 'DirectRunner')
        if streaming and runner.split('.')[-1] in _LOCAL_RUNNERS:
            raise cli.UsageError(
                "--streaming needs a streaming runner (Flink, Dataflow): Beam's Python "
                'DirectRunner does not hold the watermark for user timers, so panes fired at the '
                'end of the input could be lost. Locally, run with --state_dir DIR (and --every '
                '5s): the same panes, fired per run'
            )
        if trig.state_dir is not None and streaming:
            raise cli.UsageError(
                '--state_dir is for incremental bounded runs; a --streaming job keeps its state '
                'in the runner'
            )
        if trig.out_of_orderness_secs < 0:
            raise cli.UsageError(
                f'--out_of_orderness_secs must be >= 0, got {trig.out_of_orderness_secs}'
            )
        if streaming or trig.state_dir is not None:
            if window.kind == 'session' and not trigger.accumulating:
                raise cli.UsageError(
                    '--window_type session needs --accumulation accumulating: a discarding pane '
                    'of a merged session cannot be added to the sessions it replaced'
                )
            if not trig.dedup_horizon_secs > 0:
                raise cli.UsageError(
                    f'--dedup_horizon_secs must be > 0, got {trig.dedup_horizon_secs}'
                )
        if tune.batch_rows < 1:
            raise cli.UsageError(f'--batch_rows must be >= 1, got {tune.batch_rows}')
        if tune.num_shards < 1:
            raise cli.UsageError(f'--num_shards must be >= 1, got {tune.num_shards}')
        files = total = 0
        if match_input and src.source == 'files':
            files, total = _match_input(inp.input, inp.input_format)
        return cls(
            input=_source_uri(src, inp, rd),
            kafka=(src.kafka_bootstrap_servers, src.kafka_topic, src.kafka_expansion_service),
            pubsub_subscription=src.pubsub_subscription,
            wire=wire,
            stop_at_end=bool(src.stop_at_end),
            source=src.source,
            stream_name=src.stream_name,
            consumer_group=src.consumer_group,
            consumer_name=src.consumer_name,
            input_format=inp.input_format,
            schema=schema,
            window=window,
            output_dir=out.output_dir.rstrip('/') or '/',
            batch_rows=tune.batch_rows,
            num_shards=tune.num_shards,
            postgres_url=pg.postgres_url,
            pg_schema=pg.pg_schema,
            redis_url=rd.redis_url,
            redis_layout=layout,
            input_files=files,
            input_bytes=total,
            streaming=streaming,
            trigger=trigger,
            dedup_horizon_secs=trig.dedup_horizon_secs,
            state_dir=trig.state_dir.rstrip('/') if trig.state_dir else None,
            out_of_orderness_secs=trig.out_of_orderness_secs,
            every_secs=every,
            runs=trig.runs,
        )

    def path(self, *parts: str) -> str:
        return FileSystems.join(self.output_dir, *parts)


def _wire_format(src) -> WireFormat:
    if src.wire_format != 'json' and src.source == 'files':
        raise cli.UsageError('--wire_format is for stream sources; files go by their extension')
    schema_text = None
    if src.avro_schema:
        try:
            with FileSystems.open(src.avro_schema) as f:
                schema_text = f.read().decode('utf-8')
        except Exception as exc:
            raise cli.UsageError(f'--avro_schema {src.avro_schema}: {exc}') from None
    columns = tuple(c.strip() for c in (src.csv_columns or '').split(',') if c.strip())
    try:
        return WireFormat(src.wire_format, columns, schema_text, src.schema_registry_url)
    except ValueError as exc:
        raise cli.UsageError(f'--wire_format {src.wire_format}: {exc}') from None


def _source_uri(src, inp, rd) -> str:
    if src.source == 'redis_stream':
        return stream_uri(rd.redis_url, src.stream_name)
    if src.source == 'kafka':
        return f'kafka://{src.kafka_bootstrap_servers}/{src.kafka_topic}'
    if src.source == 'pubsub':
        return f'pubsub://{src.pubsub_subscription}'
    return inp.input


_UNITS = {'ms': 0.001, 's': 1.0, 'm': 60.0, 'h': 3600.0}
_LOCAL_RUNNERS = ('DirectRunner', 'BundleBasedDirectRunner', 'SwitchingDirectRunner')


def _every_secs(trig) -> float | None:
    if trig.every is None:
        if trig.runs is not None:
            raise cli.UsageError('--runs needs --every')
        return None
    if trig.state_dir is None:
        raise cli.UsageError('--every needs --state_dir (where state is kept between runs)')
    text = trig.every.strip().lower()
    unit = next((u for u in ('ms', 's', 'm', 'h') if text.endswith(u)), '')
    try:
        secs = float(text[: len(text) - len(unit)]) * _UNITS.get(unit, 1.0)
    except ValueError:
        secs = -1.0
    if not secs > 0:
        raise cli.UsageError(
            f"--every must be a positive duration like '5s' or '1m', got {trig.every!r}"
        )
    if trig.runs is not None and trig.runs < 1:
        raise cli.UsageError(f'--runs must be >= 1, got {trig.runs}')
    return secs


def _match_input(pattern: str, input_format: str | None) -> tuple[int, int]:
    try:
        matched = FileSystems.match([pattern])[0].metadata_list
    except Exception as exc:
        raise cli.UsageError(f'--input {pattern!r} cannot be read: {exc}') from None
    files = [m for m in matched if m.size_in_bytes is not None]
    if not files:
        raise cli.UsageError(f'--input {pattern!r} matched no files')
    if input_format is None:
        unknown = [m.path for m in files if infer_format(m.path) is None]
        if unknown:
            raise cli.UsageError(
                f'cannot tell the format of {unknown[0]} from its extension: pass --input_format'
            )
    for m in files:
        try:
            FileSystems.open(m.path).close()
        except Exception as exc:
            raise cli.UsageError(f'cannot read {m.path}: {exc}') from None
    return len(files), sum(m.size_in_bytes for m in files)


class Outputs(NamedTuple):
    """What :func:`build_pipeline` produces (before the sinks)."""

    events: beam.PCollection
    aggregates: beam.PCollection
    dead_letter: beam.PCollection
    counts: beam.PCollection | None  # one dict {name: total} per name; None when unbounded
    late: beam.PCollection | None = None  # streaming: envelopes of events past the lateness
    retractions: beam.PCollection | None = None  # streaming: sessions merged after a pane


def build_pipeline(p: beam.Pipeline, config: Config, write: bool = True) -> Outputs:
    """Applies the flagship's transforms (and, with ``write``, its sinks) to ``p``."""
    schema = config.schema
    stream_read = None
    if config.source == 'redis_stream' and config.streaming:
        # Acknowledged by bundle finalization once the runner has committed the outputs.
        raw = p | 'ReadStream' >> ReadRedisStreamContinuously(
            config.redis_url,
            config.stream_name,
            config.consumer_group,
            config.consumer_name,
            batch_rows=config.batch_rows,
            out_of_orderness_secs=config.out_of_orderness_secs,
            stop_when_idle=config.stop_at_end,
        )
    elif config.source == 'kafka':
        servers, topic, expansion = config.kafka
        reader = kafka_reader(servers, topic, config.consumer_group, expansion)
        raw = p | 'ReadKafka' >> ReadMessages(reader, config.input, config.batch_rows)
    elif config.source == 'pubsub':
        reader = pubsub_reader(config.pubsub_subscription)
        raw = p | 'ReadPubSub' >> ReadMessages(reader, config.input, config.batch_rows)
    elif config.source == 'redis_stream':
        stream_read = p | 'ReadStream' >> ReadFromRedisStream(
            config.redis_url,
            config.stream_name,
            config.consumer_group,
            config.consumer_name,
            batch_rows=config.batch_rows,
        )
        raw = stream_read.batches
    else:
        raw = p | 'ReadFiles' >> ReadEventFiles(
            config.input,
            config.input_format,
            batch_rows=config.batch_rows,
            total_bytes=config.input_bytes or None,
        )
    if config.wire.kind != 'json':
        raw = raw | 'DecodeWire' >> beam.Map(config.wire.decode_batch).with_output_types(RawBatch)
    parsed = raw | 'Parse' >> ParseEvents(schema, PIPELINE_NAME)
    validated = (
        parsed.batches
        | 'Cleanse' >> CleanseEvents(schema)
        | 'Validate' >> ValidateEvents(schema, PIPELINE_NAME)
    )
    # One shuffle serves both steps: sharding by the aggregation key brings every copy of an
    # event (an exact retransmission has the same key) and every event of a key together.
    late = retractions = state = None
    if config.state_dir is not None:
        stream = validated.valid | 'AggregateIncrementally' >> AggregateMicroBatch(
            config.window,
            config.trigger,
            config.num_shards,
            config.dedup_horizon_secs,
            PIPELINE_NAME,
            state_dir=config.state_dir,
            out_of_orderness_secs=config.out_of_orderness_secs,
        )
        events, aggregates, duplicates = stream.events, stream.panes, stream.duplicates
        late, retractions, state = stream.late, stream.retractions, stream.state
    elif config.streaming:
        stream = validated.valid | 'AggregateStream' >> AggregateStream(
            config.window,
            config.trigger,
            config.num_shards,
            config.dedup_horizon_secs,
            PIPELINE_NAME,
        )
        events, aggregates, duplicates = stream.events, stream.panes, stream.duplicates
        late, retractions = stream.late, stream.retractions
    else:
        deduplicated = validated.valid | 'Deduplicate' >> DeduplicateEvents(
            config.num_shards, shard_by=KEY_COLUMNS
        )
        events, duplicates = deduplicated.events, deduplicated.duplicates
        aggregates = events | 'Aggregate' >> AggregateWindows(
            config.window, config.num_shards, complete_keys=True
        )
    dead_letter = (parsed.dead_letter, validated.dead_letter) | 'AllDeadLetters' >> beam.Flatten()
    sized = [
        parsed.batches | 'CountParsed' >> CountAs('read', parsed_rows),
        parsed.dead_letter | 'CountParseFailures' >> CountAs('read', one),
        events | 'CountValid' >> CountAs('valid'),
        dead_letter | 'CountDeadLetters' >> CountAs('dead_letter', one),
        duplicates | 'CountDuplicates' >> CountAs('duplicates', int),
        aggregates | 'CountAggregates' >> CountAs('aggregates'),
    ]
    names = list(COUNTS)
    if config.panes:
        sized.append(late | 'CountLate' >> CountAs('late', one))
        sized.append(retractions | 'CountRetractions' >> CountAs('retractions'))
        names += ['late', 'retractions']
    all_dead_letters = dead_letter
    if write and config.postgres_url is not None:
        loaded = {
            'events': events,
            'aggregates': aggregates,
            'dead_letter': dead_letter,
            **({'retractions': retractions} if config.panes else {}),
        } | 'WriteWarehouse' >> WriteToWarehouse(
            config.postgres_url, config.pg_schema, PIPELINE_NAME, config.accumulation
        )
        for table, written in loaded.written.items():
            sized.append(written | f'CountLoaded[{table}]' >> CountAs(f'postgres_{table}', int))
            names.append(f'postgres_{table}')
        sized.append(loaded.dead_letter | 'CountRefused' >> CountAs('sink_dead_letter', one))
        names.append('sink_dead_letter')
        all_dead_letters = (dead_letter, loaded.dead_letter) | 'WithSinkDeadLetters' >> (
            beam.Flatten()
        )
    if write and config.redis_url is not None:
        commands = aggregates | 'WriteRedis' >> WriteToRedis(
            config.redis_url, config.redis_layout, config.accumulation
        )
        sized.append(commands | 'CountRedisCommands' >> CountAs('redis_commands', int))
        names.append('redis_commands')
    # An unbounded run has no end to count at: its counts are the Beam metrics, and its files
    # are written per window of --file_window_secs.
    counts = None
    if not config.unbounded:
        counts = sized | 'FlattenCounts' >> beam.Flatten() | 'SumCounts' >> SumCounts(names)
    every = FILE_WINDOW_SECS if config.unbounded else None
    if write:
        written = [
            events
            | 'WriteEvents'
            >> WriteTablesToParquet(
                config.path('events', config.part_prefix),
                schema.event_arrow_schema(),
                triggering_frequency=every,
            ),
            aggregates
            | 'WriteAggregates'
            >> WriteTablesToParquet(
                config.path('aggregates', config.part_prefix),
                PANE_SCHEMA if config.panes else AGGREGATE_SCHEMA,
                triggering_frequency=every,
            ),
            all_dead_letters
            | 'WriteDeadLetters'
            >> WriteDeadLetters(config.path('dead_letter', config.part_prefix), every),
        ]
        if counts is not None:
            # The counts include the PostgreSQL and Redis loads: the summary comes after them.
            written.append(
                counts
                | 'WriteRunSummary'
                >> WriteRunSummary(config.path(SUMMARY_FILE), _summary_context(config))
            )
        if config.panes:
            written += [
                late
                | 'WriteLate' >> WriteDeadLetters(config.path('late', config.part_prefix), every),
                retractions
                | 'WriteRetractions'
                >> WriteTablesToParquet(
                    config.path('retractions', config.part_prefix),
                    RETRACTION_SCHEMA,
                    triggering_frequency=every,
                ),
            ]
        if state is not None:
            # The state moves forward only with the outputs it produced; the stream entries are
            # acknowledged after that, so a crash in between re-reads them as duplicates.
            committed = (*written,) | 'CommitRun' >> RunAfter(
                commit_run,
                config.output_dir,
                on=state | 'AllStateFiles' >> beam.combiners.ToList(),
            )
            written = [committed]  # it completes after every output: waiting on it is enough
        if stream_read is not None:
            _ = (stream_read.read_until, *written) | 'AckStream' >> AcknowledgeRedisStream(
                config.redis_url, config.stream_name, config.consumer_group, config.consumer_name
            )
    return Outputs(events, aggregates, dead_letter, counts, late, retractions)


def _summary_context(config: Config) -> dict[str, Any]:
    return {
        'pipeline': PIPELINE_NAME,
        'started_at': dt.datetime.now(dt.UTC).strftime('%Y-%m-%dT%H:%M:%SZ'),
        'input': config.input,
        'input_files': config.input_files,
        'input_bytes': config.input_bytes,
        'schema': config.schema.name,
        'row_level_validation': list(config.schema.row_level_reasons),
        'options': {
            'input_format': config.input_format,
            'window': dataclasses.asdict(config.window),
            'output_dir': config.output_dir,
            'batch_rows': config.batch_rows,
            'num_shards': config.num_shards,
            'postgres_url': redact(config.postgres_url) if config.postgres_url else None,
            'pg_schema': config.pg_schema if config.postgres_url else None,
            'redis_url': redact(config.redis_url) if config.redis_url else None,
            'redis_prefix': config.redis_layout.prefix if config.redis_url else None,
            'streaming': config.streaming,
            'state_dir': config.state_dir,
            **(
                {
                    'trigger': dataclasses.asdict(config.trigger),
                    'dedup_horizon_secs': config.dedup_horizon_secs,
                }
                if config.panes
                else {}
            ),
        },
        'outputs': {
            'events': config.path('events') + '/',
            'aggregates': config.path('aggregates') + '/',
            'dead_letter': config.path('dead_letter') + '/',
            **(
                {'late': config.path('late') + '/', 'retractions': config.path('retractions') + '/'}
                if config.panes
                else {}
            ),
            'summary': config.path(SUMMARY_FILE),
        },
    }


def prepare_warehouse(config: Config) -> None:
    """Creates or migrates the warehouse schema before the run (idempotent)."""
    try:
        ident(config.pg_schema)
        conn = connect(config.postgres_url)
    except (psycopg2.Error, ValueError) as exc:
        raise cli.UsageError(
            f'--postgres_url {redact(config.postgres_url)}: {str(exc).strip()}'
        ) from None
    try:
        migrate(conn, config.pg_schema)
    finally:
        conn.close()


def commit_run(state_files: list[tuple[str, str]], output_dir: str) -> str:
    """Ends an incremental run once its outputs are written: moves them from ``_current/`` to
    ``run-<id>-...`` names, then puts the new state in place. Returns the run id.

    A crash between the two leaves the old state: the next run repeats this one, which the
    sinks absorb (panes carry their index) and the file outputs record twice.
    """
    run_id = _new_run_id()
    current = [FileSystems.join(output_dir, part, '_current', '*') for part in OUTPUT_PARTS]
    moves = [m.path for r in FileSystems.match(current) for m in r.metadata_list]
    if moves:
        FileSystems.rename(moves, [_committed_name(path, run_id) for path in moves])
    commit_state(state_files)
    return run_id


def _committed_name(path: str, run_id: str) -> str:
    current_dir, name = path.rsplit('/', 1)
    return f'{current_dir.rsplit("/", 1)[0]}/run-{run_id}-{name.removeprefix("part-")}'


def clear_current(config: Config) -> None:
    """Deletes what a failed incremental run left under ``_current/``."""
    patterns = [config.path(part, '_current', '*') for part in OUTPUT_PARTS]
    stale = [m.path for r in FileSystems.match(patterns) for m in r.metadata_list]
    if stale:
        FileSystems.delete(stale)


def clear_outputs(config: Config) -> None:
    """Deletes this pipeline's previous outputs (only its own sub-paths) so reruns are clean."""
    patterns = [config.path(part, '*') for part in OUTPUT_PARTS] + [config.path(SUMMARY_FILE)]
    stale = [m.path for r in FileSystems.match(patterns) for m in r.metadata_list]
    if stale:
        _LOGGER.info('removing %d files of a previous run under %s', len(stale), config.output_dir)
        FileSystems.delete(stale)


def read_summary(config: Config) -> dict[str, Any] | None:
    try:
        with FileSystems.open(config.path(SUMMARY_FILE)) as f:
            return json.loads(f.read())
    except Exception:
        return None


def format_summary(summary: dict[str, Any], seconds: float) -> str:
    c = summary['counts']
    read = c.get('read', 0)
    rate = read / seconds if seconds > 0 else 0.0
    streaming = summary['options'].get('streaming') or summary['options'].get('state_dir')
    terms = 'valid + dead_letter + duplicates' + (' + late' if streaming else '')
    identity = (
        f'read = {terms}: holds'
        if summary['balanced']
        else f'read = {terms}: BROKEN by {summary["unaccounted"]}'
    )
    window = summary['options']['window']
    origin = f'{summary["input_files"]} file(s)' if summary['input_files'] else summary['input']
    return '\n'.join(
        [
            f'{PIPELINE_NAME}: read {read:,} records from {origin} '
            f'in {seconds:.1f} s ({rate:,.0f} records/s)',
            f'  valid {c.get("valid", 0):,}   dead_letter {c.get("dead_letter", 0):,}   '
            f'duplicates {c.get("duplicates", 0):,}   '
            + (f'late {c.get("late", 0):,}   ' if streaming else '')
            + f'({identity})',
            f'  aggregates {c.get("aggregates", 0):,} rows ({window["kind"]} windows)',
            f'  outputs: {summary["outputs"]["events"]}  {summary["outputs"]["aggregates"]}  '
            f'{summary["outputs"]["dead_letter"]}  {summary["outputs"]["summary"]}',
        ]
    )


def run(argv: list[str] | None = None) -> int:
    """Parses flags, runs the pipeline (once, or ``--every`` interval), prints its summaries.

    Returns:
        The exit status: 0, or that of the first run that did not succeed.
    """
    argv = list(sys.argv[1:] if argv is None else argv)
    options = cli.parse_pipeline_args(argv)
    # The launcher itself lists, reads and clears files: give Beam's filesystems the options
    # (S3 endpoint and keys, GCS project) before it does.
    FileSystems.set_options(options)
    config = Config.from_options(options)
    if config.postgres_url is not None:
        prepare_warehouse(config)
    if config.state_dir is None:
        clear_outputs(config)
    started = time.monotonic()
    pipeline = beam.Pipeline(options=options)
    build_pipeline(pipeline, config)
    if config.every_secs is None:
        clear_current(config)
        return _run_once(pipeline, config, started)
    # Local continuous mode: a bounded run per tick, state carried in --state_dir.
    done = 0
    next_start = time.monotonic()
    while config.runs is None or done < config.runs:
        delay = next_start - time.monotonic()
        if delay > 0:
            time.sleep(delay)
        next_start = time.monotonic() + config.every_secs
        # The pipeline is built once and run again on each tick (building it costs about a
        # second). A file input is read again every run: the ids kept drop its duplicates.
        clear_current(config)
        status = _run_once(pipeline, config)
        if status != 0:
            return status
        done += 1
    return 0


def _new_run_id() -> str:
    now = dt.datetime.now(dt.UTC)
    return now.strftime('%Y%m%dT%H%M%S') + f'{now.microsecond:06d}Z'


def _run_once(pipeline: beam.Pipeline, config: Config, started: float | None = None) -> int:
    """Runs the built pipeline; ``started`` (monotonic) counts its building in the time."""
    started = time.monotonic() if started is None else started
    result = pipeline.run()
    if config.unbounded:
        print(f'{PIPELINE_NAME}: streaming job submitted ({config.input}); metrics are its counts')
        result.wait_until_finish()
        print(f'{PIPELINE_NAME}: streaming job ended: {result.state}')
        return 0
    result.wait_until_finish()
    seconds = time.monotonic() - started
    summary = read_summary(config)
    if summary is None:
        print(
            f'{PIPELINE_NAME}: finished in {seconds:.1f} s; no summary at '
            f'{config.path(SUMMARY_FILE)}',
            file=sys.stderr,
        )
        return cli.EXIT_FAILED
    print(format_summary(summary, seconds), flush=True)
    if not summary['balanced']:
        print(
            f'{PIPELINE_NAME}: error: records unaccounted for: {summary["unaccounted"]}',
            file=sys.stderr,
        )
        return 3
    return 0


if __name__ == '__main__':
    cli.configure_logging()
    sys.exit(cli.main(PIPELINE_NAME, run))
