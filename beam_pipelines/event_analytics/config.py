"""The flagship's configuration: every option read, checked once, into a frozen ``Config``."""

from __future__ import annotations

import dataclasses

from apache_beam.io.filesystems import FileSystems
from apache_beam.options.pipeline_options import StandardOptions

from beam_pipelines import cli
from beam_pipelines.anomaly.spec import DEFAULT_SPEC
from beam_pipelines.anomaly.spec import AnomalySpec
from beam_pipelines.anomaly.spec import SpecError
from beam_pipelines.anomaly.spec import load_spec
from beam_pipelines.columnar.aggregate import WindowSpec
from beam_pipelines.columnar.panes import TriggerSpec
from beam_pipelines.features.normalize import NormalizationStats
from beam_pipelines.features.rolling import FeatureSpec
from beam_pipelines.gdpr.config import GdprConfig
from beam_pipelines.gdpr.config import gdpr_config
from beam_pipelines.io.files import infer_format
from beam_pipelines.io.redis_sink import RedisLayout
from beam_pipelines.io.redis_stream import stream_uri
from beam_pipelines.io.rest_api import RestApiSpec
from beam_pipelines.io.wire_formats import WireFormat
from beam_pipelines.options import AnomalyOptions
from beam_pipelines.options import FeatureOptions
from beam_pipelines.options import FlinkCheckpointOptions
from beam_pipelines.options import InputOptions
from beam_pipelines.options import ObservabilityOptions
from beam_pipelines.options import OutputOptions
from beam_pipelines.options import PostgresOptions
from beam_pipelines.options import RedisOptions
from beam_pipelines.options import RestApiOptions
from beam_pipelines.options import SourceOptions
from beam_pipelines.options import TriggerOptions
from beam_pipelines.options import TuningOptions
from beam_pipelines.options import WindowOptions
from beam_pipelines.quality.config import QualityConfig
from beam_pipelines.quality.config import quality_config
from beam_pipelines.schema import EventSchema
from beam_pipelines.schema import SchemaError
from beam_pipelines.schema import compile_schema
from beam_pipelines.schema import load_model

__all__ = ['PIPELINE_NAME', 'AnomalyConfig', 'Config', 'FeatureConfig']

PIPELINE_NAME = 'event_analytics'
DEFAULT_SESSION_GAP_SECS = 300.0


@dataclasses.dataclass(frozen=True)
class AnomalyConfig:
    """Anomaly detection on the window aggregates (``--detect_anomalies``)."""

    spec: AnomalySpec
    value_column: str = 'count'
    idle_ttl_secs: float = 7 * 24 * 3600.0
    webhook_url: str | None = None
    alert_format: str = 'slack'
    cooldown_secs: float = 3600.0


@dataclasses.dataclass(frozen=True)
class FeatureConfig:
    """ML feature extraction on the clean events (``--features``)."""

    spec: FeatureSpec
    normalization: str = 'zscore'  # or 'minmax', 'none'
    stats: NormalizationStats | None = None  # given; None: computed (batch)
    resample_secs: float | None = None
    gap_fill: str = 'zero'
    resample_value: str = 'sum'


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
    pg_connections: int = 2
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
    rest: RestApiSpec | None = None
    rest_poll_secs: float = 60.0
    rest_token_file: str | None = None
    anomaly: AnomalyConfig | None = None
    features: FeatureConfig | None = None
    quality: QualityConfig | None = None
    gdpr: GdprConfig | None = None
    report: bool = True
    spill_dir: str | None = None  # the DirectRunner's dedup shuffle on disk (set by the launcher)

    @property
    def part_prefix(self) -> str:
        """Output file prefix. Incremental runs write under ``_current/`` (hidden from readers)
        and :func:`commit_run` moves the files to ``run-<id>-...`` names once all are written."""
        return '_current/part' if self.state_dir is not None else 'part'

    @property
    def unbounded(self) -> bool:
        """The input never ends (a streaming read of a stream, an API, Kafka or Pub/Sub)."""
        if not self.streaming:
            return False
        return self.source in ('kafka', 'pubsub') or (
            self.source in ('redis_stream', 'rest_api') and not self.stop_at_end
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
        flink = options.view_as(FlinkCheckpointOptions)
        if flink.state_backend and not flink.state_backend_storage_path:
            # Beam's Flink runner refuses it too, but only once the job has been submitted.
            raise cli.UsageError('--state_backend needs --state_backend_storage_path')
        src = options.view_as(SourceOptions)
        streaming_run = bool(options.view_as(StandardOptions).streaming)
        trig = options.view_as(TriggerOptions)
        rest = None
        if src.source in ('redis_stream', 'rest_api'):
            if src.source == 'redis_stream' and not (rd.redis_url and src.stream_name):
                raise cli.UsageError('--source redis_stream needs --redis_url and --stream_name')
            if src.source == 'rest_api':
                rest = _rest_spec(options.view_as(RestApiOptions))
            # Incremental runs (--state_dir, with or without --every) read what is there now.
            if not (src.stop_at_end or trig.state_dir or streaming_run):
                raise cli.UsageError(
                    'an unbounded read needs a streaming runner: pass --stop_at_end to read '
                    'everything pending and stop, or --state_dir DIR (and --every 5s) to do that '
                    'incrementally'
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
        if src.source in ('kafka', 'pubsub') and not streaming_run:
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
        if streaming and runner.split('.')[-1] in LOCAL_RUNNERS:
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
            input=rest.name if rest else _source_uri(src, inp, rd),
            rest=rest,
            rest_poll_secs=options.view_as(RestApiOptions).rest_poll_secs,
            rest_token_file=options.view_as(RestApiOptions).rest_token_file,
            anomaly=_anomaly_config(options, trigger, trig.state_dir),
            features=_feature_config(options, streaming, trig.state_dir),
            quality=quality_config(options, schema, streaming or trig.state_dir is not None),
            gdpr=gdpr_config(options, schema, pg.postgres_url, pg.pg_schema),
            report=not options.view_as(ObservabilityOptions).no_report,
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
            pg_connections=pg.pg_connections,
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


LOCAL_RUNNERS = ('DirectRunner', 'BundleBasedDirectRunner', 'SwitchingDirectRunner')


def _every_secs(trig) -> float | None:
    if trig.every is None:
        if trig.runs is not None:
            raise cli.UsageError('--runs needs --every')
        return None
    if trig.state_dir is None:
        raise cli.UsageError('--every needs --state_dir (where state is kept between runs)')
    secs = cli.duration_secs(trig.every, '--every')
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


_PAGE_PARAMS = {'offset': 'offset', 'page': 'page', 'cursor': 'cursor'}


def _rest_spec(rest) -> RestApiSpec:
    if not rest.rest_url:
        raise cli.UsageError('--source rest_api needs --rest_url')
    if not rest.rest_poll_secs > 0:
        raise cli.UsageError(f'--rest_poll_secs must be > 0, got {rest.rest_poll_secs}')
    page_param = rest.rest_page_param or _PAGE_PARAMS.get(rest.rest_pagination, 'offset')
    try:
        return RestApiSpec(
            url=rest.rest_url,
            pagination=rest.rest_pagination,
            items_field=rest.rest_items_field,
            page_size=rest.rest_page_size,
            limit_param=rest.rest_limit_param,
            offset_param=page_param,
            page_param=page_param,
            cursor_param=page_param,
            next_cursor_field=rest.rest_next_cursor_field,
            since_param=rest.rest_since_param,
            watermark_field=rest.rest_watermark_field,
            id_field=rest.rest_id_field,
            requests_per_sec=rest.rest_requests_per_sec,
            max_pages=rest.rest_max_pages,
        )
    except ValueError as exc:
        raise cli.UsageError(f'--rest_*: {exc}') from None


def _anomaly_config(options, trigger: TriggerSpec, state_dir: str | None) -> AnomalyConfig | None:
    an = options.view_as(AnomalyOptions)
    if not an.detect_anomalies:
        scored_features = options.view_as(FeatureOptions).feature_anomaly_score
        if (an.detector_spec and not scored_features) or an.alert_webhook_url:
            raise cli.UsageError(
                '--detector_spec and --alert_webhook_url need --detect_anomalies (or, for the '
                'spec, --feature_anomaly_score)'
            )
        return None
    if state_dir is not None:
        raise cli.UsageError(
            "--detect_anomalies does not run incrementally yet (--state_dir): the detectors' "
            'per-series state is not carried between runs; use a batch run or --streaming'
        )
    if not trigger.accumulating:
        raise cli.UsageError(
            '--detect_anomalies scores whole windows: it needs --accumulation accumulating'
        )
    try:
        spec = load_spec(an.detector_spec) if an.detector_spec else DEFAULT_SPEC
    except SpecError as exc:
        raise cli.UsageError(f'--detector_spec {exc}') from None
    cli.require_http_url('--alert_webhook_url', an.alert_webhook_url)
    if not an.anomaly_idle_ttl_secs > 0 or an.alert_cooldown_secs < 0:
        raise cli.UsageError('--anomaly_idle_ttl_secs must be > 0 and --alert_cooldown_secs >= 0')
    return AnomalyConfig(
        spec=spec,
        value_column=an.anomaly_value,
        idle_ttl_secs=an.anomaly_idle_ttl_secs,
        webhook_url=an.alert_webhook_url,
        alert_format=an.alert_format,
        cooldown_secs=an.alert_cooldown_secs,
    )


def _feature_config(options, streaming: bool, state_dir: str | None) -> FeatureConfig | None:
    fo = options.view_as(FeatureOptions)
    if not fo.features:
        if fo.normalization_stats or fo.resample_secs:
            raise cli.UsageError('--normalization_stats and --resample_secs need --features')
        return None
    if state_dir is not None:
        raise cli.UsageError(
            "--features does not run incrementally yet (--state_dir): the entities' history "
            'is not carried between runs; use a batch run or --streaming'
        )
    horizons = tuple(
        cli.duration_secs(h, '--feature_horizons') for h in fo.feature_horizons.split(',')
    )
    types = tuple(t.strip() for t in fo.feature_event_types.split(',') if t.strip())
    anomaly = None
    if fo.feature_anomaly_score:
        path = options.view_as(AnomalyOptions).detector_spec
        try:
            anomaly = load_spec(path) if path else DEFAULT_SPEC
        except SpecError as exc:
            raise cli.UsageError(f'--detector_spec {exc}') from None
    try:
        spec = FeatureSpec(
            horizons_secs=horizons, lags=fo.feature_lags, event_types=types, anomaly=anomaly
        )
    except ValueError as exc:
        raise cli.UsageError(f'--feature_*: {exc}') from None
    stats = None
    if fo.normalization_stats:
        try:
            with FileSystems.open(fo.normalization_stats) as f:
                stats = NormalizationStats.from_json(f.read())
        except Exception as exc:
            raise cli.UsageError(f'--normalization_stats {fo.normalization_stats}: {exc}') from None
    elif streaming and fo.feature_normalization != 'none':
        raise cli.UsageError(
            'a stream cannot compute normalisation statistics over all its features: give '
            '--normalization_stats (the features/_normalization.json of a batch run) or '
            '--feature_normalization none'
        )
    if fo.resample_secs is not None and (streaming or not fo.resample_secs > 0):
        raise cli.UsageError('--resample_secs must be > 0, and is for batch runs')
    return FeatureConfig(
        spec=spec,
        normalization=fo.feature_normalization,
        stats=stats,
        resample_secs=fo.resample_secs,
        gap_fill=fo.gap_fill,
        resample_value=fo.resample_value,
    )
