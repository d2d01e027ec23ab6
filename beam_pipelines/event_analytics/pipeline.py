"""The flagship's graph: source, parse, cleanse, validate, deduplicate, aggregate, sinks."""

from __future__ import annotations

import dataclasses
import datetime as dt
from typing import Any
from typing import NamedTuple

import apache_beam as beam
import pyarrow as pa
import pyarrow.compute as pc
from apache_beam.io.filesystems import FileSystems

from beam_pipelines.anomaly.shard import score_schema
from beam_pipelines.columnar.aggregate import AGGREGATE_SCHEMA
from beam_pipelines.columnar.aggregate import KEY_COLUMNS
from beam_pipelines.columnar.panes import PANE_SCHEMA
from beam_pipelines.columnar.panes import RETRACTION_SCHEMA
from beam_pipelines.event_analytics.config import PIPELINE_NAME
from beam_pipelines.event_analytics.config import Config
from beam_pipelines.event_analytics.quality_step import measure as measure_quality
from beam_pipelines.event_analytics.run_files import SUMMARY_FILE
from beam_pipelines.event_analytics.run_files import commit_run
from beam_pipelines.event_analytics.sources import read_source
from beam_pipelines.event_analytics.webhooks import hide_webhook_secrets
from beam_pipelines.features.resample import TIMESERIES_SCHEMA
from beam_pipelines.features.resample import resample
from beam_pipelines.features.rolling import feature_schema
from beam_pipelines.io.alerts import SendAlerts
from beam_pipelines.io.feature_store import WriteFeaturesToRedis
from beam_pipelines.io.postgres import redact
from beam_pipelines.io.redis_sink import WriteToRedis
from beam_pipelines.io.redis_stream import AcknowledgeRedisStream
from beam_pipelines.io.sinks import WriteDeadLetters
from beam_pipelines.io.sinks import WriteRunSummary
from beam_pipelines.io.sinks import WriteTablesToParquet
from beam_pipelines.io.warehouse import WriteToWarehouse
from beam_pipelines.redaction import redact_capability_url
from beam_pipelines.transforms.aggregate import AggregateWindows
from beam_pipelines.transforms.cleanse import CleanseEvents
from beam_pipelines.transforms.completion import RunAfter
from beam_pipelines.transforms.counting import CountAs
from beam_pipelines.transforms.counting import SumCounts
from beam_pipelines.transforms.counting import one
from beam_pipelines.transforms.dedup import DeduplicateEvents
from beam_pipelines.transforms.detect import DetectAnomalies
from beam_pipelines.transforms.features import ExtractFeatures
from beam_pipelines.transforms.features import NormalizeFeatures
from beam_pipelines.transforms.micro_batch import AggregateMicroBatch
from beam_pipelines.transforms.parse import ParseEvents
from beam_pipelines.transforms.parse import parsed_rows
from beam_pipelines.transforms.protect import ForgetErased
from beam_pipelines.transforms.protect import ProtectEvents
from beam_pipelines.transforms.quality import QUALITY_SCHEMA
from beam_pipelines.transforms.quality import QUALITY_WINDOW_SCHEMA
from beam_pipelines.transforms.sharding import shard_table
from beam_pipelines.transforms.stream_aggregate import AggregateStream
from beam_pipelines.transforms.validate import ValidateEvents

__all__ = ['COUNTS', 'Outputs', 'build_pipeline']

COUNTS = ('read', 'valid', 'dead_letter', 'duplicates', 'aggregates')
FILE_WINDOW_SECS = 60  # unbounded runs: one set of output files per minute
NORMALIZATION_FILE = '_normalization.json'


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
    source = read_source(p, config)
    parsed = source.raw | 'Parse' >> ParseEvents(schema, PIPELINE_NAME)
    validated = (
        parsed.batches
        | 'Cleanse' >> CleanseEvents(schema)
        | 'Validate' >> ValidateEvents(schema, PIPELINE_NAME)
    )
    dead_letter = (parsed.dead_letter, validated.dead_letter) | 'AllDeadLetters' >> beam.Flatten()
    clean, erased = validated.valid, []
    if config.gdpr is not None:  # erased subjects dropped, personal data protected, first
        protected = clean | 'ProtectPersonalData' >> ProtectEvents(config.gdpr)
        forgotten = dead_letter | 'ForgetErasedDeadLetters' >> ForgetErased(config.gdpr)
        clean, dead_letter = protected.kept, forgotten.kept
        erased = [
            protected.erased | 'CountErasedEvents' >> CountAs('erased', int),
            forgotten.erased | 'CountErasedDeadLetters' >> CountAs('erased', int),
        ]
    # One shuffle serves both steps: sharding by the aggregation key brings every copy of an
    # event (an exact retransmission has the same key) and every event of a key together.
    late = retractions = state = None
    if config.state_dir is not None:
        stream = clean | 'AggregateIncrementally' >> AggregateMicroBatch(
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
        if source.state is not None:  # the source's own position moves with the run
            state = (state, source.state) | 'WithSourceState' >> beam.Flatten()
    elif config.streaming:
        stream = clean | 'AggregateStream' >> AggregateStream(
            config.window,
            config.trigger,
            config.num_shards,
            config.dedup_horizon_secs,
            PIPELINE_NAME,
        )
        events, aggregates, duplicates = stream.events, stream.panes, stream.duplicates
        late, retractions = stream.late, stream.retractions
    else:
        deduplicated = clean | 'Deduplicate' >> DeduplicateEvents(
            config.num_shards, shard_by=KEY_COLUMNS, spill_dir=config.spill_dir
        )
        events, duplicates = deduplicated.events, deduplicated.duplicates
        aggregates = events | 'Aggregate' >> AggregateWindows(
            config.window, config.num_shards, complete_keys=True
        )
    sized = [
        parsed.batches | 'CountParsed' >> CountAs('read', parsed_rows),
        parsed.dead_letter | 'CountParseFailures' >> CountAs('read', one),
        events | 'CountValid' >> CountAs('valid'),
        dead_letter | 'CountDeadLetters' >> CountAs('dead_letter', one),
        duplicates | 'CountDuplicates' >> CountAs('duplicates', int),
        aggregates | 'CountAggregates' >> CountAs('aggregates'),
        *erased,
    ]
    names = list(COUNTS) + (['erased'] if erased else [])
    if config.panes:
        sized.append(late | 'CountLate' >> CountAs('late', one))
        sized.append(retractions | 'CountRetractions' >> CountAs('retractions'))
        names += ['late', 'retractions']
    all_dead_letters = dead_letter
    anomalies = None
    if config.anomaly is not None:
        found = _detect(aggregates, config, write)
        anomalies = found.anomalies
        sized += found.counted
        names += found.names
        all_dead_letters = (dead_letter, *found.dead_letters) | 'WithAnomalyDeadLetters' >> (
            beam.Flatten()
        )
    quality = None
    if config.quality is not None:
        quality = measure_quality(clean, events, dead_letter, config, write)
        sized += quality.counted
        names += quality.names
        all_dead_letters = (all_dead_letters, *quality.dead_letters) | 'WithNotifyDeadLetters' >> (
            beam.Flatten()
        )
    if config.features is not None:
        extracted = _extract(events, config, write)
        sized += extracted.counted
        names += extracted.names
        all_dead_letters = (all_dead_letters, extracted.late) | 'WithFeatureLate' >> (
            beam.Flatten()
        )
        feature_outputs = extracted.written
    else:
        feature_outputs = []
    if write and config.postgres_url is not None:
        loaded = {
            'events': events,
            'aggregates': aggregates,
            'dead_letter': dead_letter,
            **({'retractions': retractions} if config.panes else {}),
            **({'anomalies': anomalies} if anomalies is not None else {}),
            **(
                {'quality': quality.table, 'quality_windows': quality.windows_table}
                if quality is not None
                else {}
            ),
        } | 'WriteWarehouse' >> WriteToWarehouse(
            config.postgres_url,
            config.pg_schema,
            PIPELINE_NAME,
            config.accumulation,
            connections=config.pg_connections,
        )
        for table, written in loaded.written.items():
            sized.append(written | f'CountLoaded[{table}]' >> CountAs(f'postgres_{table}', int))
            names.append(f'postgres_{table}')
        sized.append(loaded.dead_letter | 'CountRefused' >> CountAs('sink_dead_letter', one))
        names.append('sink_dead_letter')
        all_dead_letters = (all_dead_letters, loaded.dead_letter) | 'WithSinkDeadLetters' >> (
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
        written += feature_outputs
        if quality is not None:
            written.append(
                quality.table
                | 'WriteQuality'
                >> WriteTablesToParquet(config.path('quality', config.part_prefix), QUALITY_SCHEMA)
            )
            written.append(
                quality.windows_table
                | 'WriteQualityWindows'
                >> WriteTablesToParquet(
                    config.path('quality_windows', config.part_prefix), QUALITY_WINDOW_SCHEMA
                )
            )
        if anomalies is not None:
            written.append(
                anomalies
                | 'WriteAnomalies'
                >> WriteTablesToParquet(
                    config.path('anomalies', config.part_prefix),
                    score_schema(KEY_COLUMNS),
                    triggering_frequency=every,
                )
            )
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
        if source.stream_read is not None:
            _ = (source.stream_read.read_until, *written) | 'AckStream' >> AcknowledgeRedisStream(
                config.redis_url, config.stream_name, config.consumer_group, config.consumer_name
            )
    return Outputs(events, aggregates, dead_letter, counts, late, retractions)


class _Detected(NamedTuple):
    anomalies: beam.PCollection
    counted: list  # count PCollections for the summary
    names: list[str]
    dead_letters: list  # late points, undeliverable alerts


def _detect(aggregates, config: Config, write: bool) -> _Detected:
    """Anomaly detection on the windows (each entity and type a series), and the alerts."""
    an = config.anomaly
    detected = (
        aggregates
        | 'AnomalyPoints'
        >> beam.FlatMap(anomaly_points, an.value_column, config.panes).with_output_types(pa.Table)
        | 'DetectAnomalies'
        >> DetectAnomalies(
            an.spec,
            KEY_COLUMNS,
            'window_start',
            'value',
            num_shards=config.num_shards,
            idle_ttl_secs=an.idle_ttl_secs,
            pipeline=PIPELINE_NAME,
        )
    )
    counted = [
        detected.anomalies | 'CountAnomalies' >> CountAs('anomalies'),
        detected.late | 'CountAnomalyLate' >> CountAs('anomaly_late', one),
    ]
    names, dead = ['anomalies', 'anomaly_late'], [detected.late]
    if write and an.webhook_url:
        alerts = detected.anomalies | 'SendAlerts' >> SendAlerts(
            an.webhook_url, KEY_COLUMNS, an.alert_format, an.cooldown_secs, PIPELINE_NAME
        )
        undelivered = alerts.dead_letter | 'HideAlertWebhookSecrets' >> hide_webhook_secrets(
            an.webhook_url
        )
        counted += [
            alerts.sent | 'CountAlerts' >> CountAs('alerts_sent', one),
            undelivered | 'CountAlertFailures' >> CountAs('alert_dead_letter', one),
        ]
        names += ['alerts_sent', 'alert_dead_letter']
        dead.append(undelivered)
    return _Detected(detected.anomalies, counted, names, dead)


class _Extracted(NamedTuple):
    counted: list
    names: list[str]
    late: beam.PCollection
    written: list  # the outputs the run must wait for


def _extract(events, config: Config, write: bool) -> _Extracted:
    """ML features of the clean events: offline (features/, with the normalisation statistics),
    online (Redis), and resampled series (timeseries/)."""
    fc = config.features
    extracted = events | 'ExtractFeatures' >> ExtractFeatures(
        fc.spec, num_shards=config.num_shards, pipeline=PIPELINE_NAME
    )
    features, schema = extracted.features, feature_schema(fc.spec)
    written, stats = [], None
    if fc.normalization != 'none':
        normalized = features | 'Normalize' >> NormalizeFeatures(
            fc.spec.numeric_columns(), fc.normalization, fc.stats
        )
        features, stats = normalized.features, normalized.stats
        schema = pa.schema(
            [*schema, *(pa.field(f'{c}_norm', pa.float64()) for c in fc.spec.numeric_columns())]
        )
    counted = [
        features | 'CountFeatureRows' >> CountAs('features'),
        extracted.late | 'CountFeatureLate' >> CountAs('feature_late', one),
    ]
    names = ['features', 'feature_late']
    if not write:
        return _Extracted(counted, names, extracted.late, written)
    every = FILE_WINDOW_SECS if config.unbounded else None
    written.append(
        features
        | 'WriteFeatures'
        >> WriteTablesToParquet(
            config.path('features', config.part_prefix), schema, triggering_frequency=every
        )
    )
    if stats is not None and fc.stats is None:
        path = config.path('features', NORMALIZATION_FILE)
        written.append(stats | 'WriteNormalization' >> beam.Map(_write_stats, path))
    if config.redis_url is not None:
        vectors = features | 'WriteOnlineFeatures' >> WriteFeaturesToRedis(
            config.redis_url, config.redis_layout.prefix, config.redis_layout.ttl_secs
        )
        counted.append(vectors | 'CountOnlineVectors' >> CountAs('online_feature_vectors', int))
        names.append('online_feature_vectors')
    if fc.resample_secs is not None:
        series = (
            events
            | 'ShardEntitiesForSeries'
            >> beam.FlatMap(shard_table, ('entity_id',), config.num_shards).with_output_types(
                tuple[int, pa.Table]
            )
            | 'GroupEntities' >> beam.GroupByKey()
            | 'Resample'
            >> beam.Map(
                lambda shard, secs, fill, agg: resample(
                    pa.concat_tables(shard[1]), secs, fill, agg
                ),
                fc.resample_secs,
                fc.gap_fill,
                fc.resample_value,
            ).with_output_types(pa.Table)
        )
        written.append(
            series
            | 'WriteTimeseries'
            >> WriteTablesToParquet(
                config.path('timeseries', config.part_prefix), TIMESERIES_SCHEMA
            )
        )
        counted.append(series | 'CountTimeseries' >> CountAs('timeseries'))
        names.append('timeseries')
    return _Extracted(counted, names, extracted.late, written)


def _write_stats(stats, path: str) -> str:
    with FileSystems.create(path, mime_type='application/json') as f:
        f.write(stats.to_json())
    return path


def anomaly_points(aggregates: pa.Table, value_column: str, panes: bool):
    """The points scored from window aggregates: per (entity, type) and window start, the chosen
    aggregate. Of a stream's panes only the on-time ones are scored (accumulating: the whole
    window as the watermark closed it), so each window is one point, as in batch."""
    if panes:
        aggregates = aggregates.filter(pc.equal(aggregates.column('pane_timing'), 'on_time'))
    if aggregates.num_rows:
        yield pa.table(
            {
                'entity_id': aggregates.column('entity_id'),
                'event_type': aggregates.column('event_type'),
                'window_start': aggregates.column('window_start'),
                'value': aggregates.column(value_column).cast(pa.float64()),
            }
        )


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
            **({'anomalies': config.path('anomalies') + '/'} if config.anomaly else {}),
            **({'features': config.path('features') + '/'} if config.features else {}),
            'summary': config.path(SUMMARY_FILE),
        },
        **({'anomaly_detection': _anomaly_context(config)} if config.anomaly else {}),
    }


def _anomaly_context(config: Config) -> dict[str, Any]:
    an = config.anomaly
    return {
        'value': an.value_column,
        'spec': an.spec.to_dict(),
        # The webhook URL is its own secret: the summary (and report.html) show its origin.
        'alerts': redact_capability_url(an.webhook_url) if an.webhook_url else None,
        'alert_format': an.alert_format if an.webhook_url else None,
        'alert_cooldown_secs': an.cooldown_secs if an.webhook_url else None,
    }
