"""The flagship's command line: parse flags, prepare the warehouse, run once or ``--every``
interval, print each run's summary."""

from __future__ import annotations

import contextlib
import dataclasses
import logging
import sys
import tempfile
import time
from typing import TYPE_CHECKING
from typing import Any

import apache_beam as beam
import psycopg2
from apache_beam.io.filesystems import FileSystems
from apache_beam.options.pipeline_options import StandardOptions

from beam_pipelines import cli
from beam_pipelines.event_analytics.config import LOCAL_RUNNERS
from beam_pipelines.event_analytics.config import PIPELINE_NAME
from beam_pipelines.event_analytics.config import Config
from beam_pipelines.event_analytics.pipeline import build_pipeline
from beam_pipelines.event_analytics.run_files import SUMMARY_FILE
from beam_pipelines.event_analytics.run_files import clear_current
from beam_pipelines.event_analytics.run_files import clear_outputs
from beam_pipelines.event_analytics.run_files import read_summary
from beam_pipelines.gdpr.secrets import SecretsError
from beam_pipelines.gdpr.tombstones import load_tombstones
from beam_pipelines.io.postgres import connect
from beam_pipelines.io.postgres import ident
from beam_pipelines.io.postgres import redact
from beam_pipelines.io.warehouse_schema import migrate
from beam_pipelines.observability.prometheus import RunMetrics
from beam_pipelines.observability.report import REPORT_FILE
from beam_pipelines.observability.report import write_report
from beam_pipelines.options import ObservabilityOptions
from beam_pipelines.sync.retry import RetryPolicy
from beam_pipelines.sync.retry import with_retries

if TYPE_CHECKING:
    from beam_pipelines.event_analytics.lineage_step import RunLineage

__all__ = ['format_summary', 'prepare_warehouse', 'run']

_LOGGER = logging.getLogger(__name__)


def prepare_warehouse(config: Config) -> None:
    """Creates or migrates the warehouse (and the GDPR store) before the run (idempotent), and
    refuses a run that could bring erased subjects back."""
    gdpr = config.gdpr
    warehouse = store = None
    if config.postgres_url is not None:
        warehouse = _migrated(config.postgres_url, config.pg_schema, '--postgres_url')
    if gdpr is not None and gdpr.store_url is not None:
        same = (gdpr.store_url, gdpr.store_schema) == (config.postgres_url, config.pg_schema)
        flag = '--postgres_url' if same else '--gdpr_store_url'
        store = warehouse if same else _migrated(gdpr.store_url, gdpr.store_schema, flag)
        try:
            store.check_keys(gdpr.secrets().pseudonym_keys)
        except SecretsError as exc:
            raise cli.UsageError(str(exc)) from None
    if warehouse and not (store and warehouse.pseudonyms <= store.pseudonyms):
        raise cli.UsageError(
            f'the warehouse holds {len(warehouse.pseudonyms)} tombstones of erased subjects that '
            'this run would not enforce: pass the GDPR secrets (--gdpr_secrets_file or '
            '$BP_GDPR_SECRETS) and the store that holds them'
        )


def _connect_with_retries(url: str):
    """A connection, retried with the sinks' backoff: a database that is restarting ("the
    database system is starting up") is not a reason to fail the run at its start."""
    return with_retries(
        lambda: connect(url), RetryPolicy(), (psycopg2.OperationalError,), redact(url)
    )


def _migrated(url: str, schema: str, flag: str):
    """Migrates ``schema``; returns its tombstones."""
    try:
        ident(schema)
        conn = _connect_with_retries(url)
    except (psycopg2.Error, ValueError) as exc:
        raise cli.UsageError(f'{flag} {redact(url)}: {str(exc).strip()}') from None
    try:
        migrate(conn, schema)
        return load_tombstones(conn, schema)
    finally:
        conn.close()


def format_summary(summary: dict[str, Any], seconds: float) -> str:
    c = summary['counts']
    read = c.get('read', 0)
    rate = read / seconds if seconds > 0 else 0.0
    streaming = summary['options'].get('streaming') or summary['options'].get('state_dir')
    erased = 'erased' in c
    terms = (
        'valid + dead_letter + duplicates'
        + (' + late' if streaming else '')
        + (' + erased' if erased else '')
    )
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
            + (f'erased {c["erased"]:,}   ' if erased else '')
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
    metrics = _metrics(options)
    try:
        return _run(options, config, metrics)
    finally:
        if metrics is not None:
            linger = options.view_as(ObservabilityOptions).metrics_linger_secs
            if metrics.server is not None and linger > 0:
                time.sleep(linger)
            metrics.close()


def _metrics(options) -> RunMetrics | None:
    obs = options.view_as(ObservabilityOptions)
    if obs.metrics_file is None and obs.metrics_port is None:
        return None
    try:
        return RunMetrics(PIPELINE_NAME, obs.metrics_file, obs.metrics_port, obs.metrics_host)
    except OSError as exc:
        raise cli.UsageError(f'--metrics_port {obs.metrics_port}: {exc.strerror or exc}') from None


def _run(options, config: Config, metrics: RunMetrics | None) -> int:
    with _spill_dir(options, config) as spill:
        return _run_with(options, dataclasses.replace(config, spill_dir=spill), metrics)


@contextlib.contextmanager
def _spill_dir(options, config: Config):
    """A temporary directory for the dedup shuffle of a bounded run on the DirectRunner (see
    ``DeduplicateEvents``: it holds a shuffle in memory, several copies at once), removed
    after the run whatever happens; None elsewhere."""
    runner = str(options.view_as(StandardOptions).runner or 'DirectRunner').split('.')[-1]
    if runner not in LOCAL_RUNNERS or config.panes:
        yield None
        return
    with tempfile.TemporaryDirectory(prefix='beam_pipelines-shuffle-') as spill:
        yield spill


def _run_with(options, config: Config, metrics: RunMetrics | None) -> int:
    prepare_warehouse(config)
    if config.state_dir is None:
        clear_outputs(config)
    started = time.monotonic()
    pipeline = beam.Pipeline(options=options)
    build_pipeline(pipeline, config)
    observers = _Observers(metrics, _lineage(options, config, pipeline))
    if config.every_secs is None:
        clear_current(config)
        return _run_once(pipeline.run, config, observers, started)
    # Local continuous mode: a bounded run per tick, state carried in --state_dir. (Imported
    # here: the rerunner's imports cost a batch run ~0.15 s of start-up for nothing.)
    from beam_pipelines.event_analytics.rerun import Rerunner

    rerunner = Rerunner(pipeline, options)
    done = 0
    next_start = time.monotonic()
    while config.runs is None or done < config.runs:
        delay = next_start - time.monotonic()
        if delay > 0:
            time.sleep(delay)
        next_start = time.monotonic() + config.every_secs
        # The pipeline is built (and on the local runners translated) once and run again on each
        # tick. A file input is read again every run: the ids kept drop its duplicates.
        clear_current(config)
        status = _run_once(rerunner.run, config, observers)
        if status != 0:
            return status
        done += 1
    return 0


def _lineage(options, config: Config, pipeline):
    """The run's OpenLineage events, when asked for. (Imported only then: openlineage costs
    every other run ~0.1 s of start-up.)"""
    obs = options.view_as(ObservabilityOptions)
    if not (obs.lineage_file or obs.lineage_url):
        return None
    from beam_pipelines.event_analytics.lineage_step import RunLineage

    return RunLineage.of(options, config, pipeline)


class _Observers:
    """What watches each run: the Prometheus export and the OpenLineage events (either may be
    None)."""

    def __init__(self, metrics: RunMetrics | None, lineage: RunLineage | None):
        self.metrics = metrics
        self.lineage = lineage

    def started(self) -> None:
        if self.metrics is not None:
            self.metrics.started()
        if self.lineage is not None:
            self.lineage.start()

    def finished(self, result, summary, seconds: float, status: int, error) -> None:
        if self.metrics is not None:
            self.metrics.finished(result, summary, seconds, status == 0)
        if self.lineage is None:
            return
        if error is None and status == 0:
            self.lineage.complete((summary or {}).get('counts'))
        else:
            self.lineage.fail(error or RuntimeError(f'{PIPELINE_NAME} exited with status {status}'))


def _run_once(run_pipeline, config: Config, observers: _Observers, started=None) -> int:
    """Runs the built pipeline (``run_pipeline()``), telling the observers; ``started``
    (monotonic) counts its building in the time."""
    started = time.monotonic() if started is None else started
    observers.started()
    result = summary = error = None
    status = cli.EXIT_FAILED
    try:
        status, result, summary = _run_and_report(run_pipeline, config, started)
    except BaseException as exc:
        error = exc
        raise
    finally:
        observers.finished(result, summary, time.monotonic() - started, status, error)
    return status


def _redis_run_id(config: Config) -> str | None:
    """The Redis server's run id, to tell a restart during the run (batch runs to Redis)."""
    if config.redis_url is None or config.unbounded:
        return None
    from beam_pipelines.io.redis_sink import server_run_id

    try:
        return server_run_id(config.redis_url)
    except Exception:  # unreachable: before the run, the sink's retries and errors will tell
        return None


def _report(config: Config) -> None:
    try:
        path = write_report(config.output_dir)
    except Exception:
        _LOGGER.warning('could not write %s', REPORT_FILE, exc_info=True)
        return
    print(f'  report: {path}', flush=True)


def _run_and_report(run_pipeline, config: Config, started: float):
    """(exit status, the pipeline result, the run summary)."""
    redis_before = _redis_run_id(config)
    result = run_pipeline()
    if config.unbounded:
        print(f'{PIPELINE_NAME}: streaming job submitted ({config.input}); metrics are its counts')
        result.wait_until_finish()
        print(f'{PIPELINE_NAME}: streaming job ended: {result.state}')
        return 0, result, None
    result.wait_until_finish()
    seconds = time.monotonic() - started
    summary = read_summary(config)
    if summary is None:
        print(
            f'{PIPELINE_NAME}: finished in {seconds:.1f} s; no summary at '
            f'{config.path(SUMMARY_FILE)}',
            file=sys.stderr,
        )
        return cli.EXIT_FAILED, result, None
    print(format_summary(summary, seconds), flush=True)
    if config.report:
        _report(config)
    if redis_before is not None and _redis_run_id(config) != redis_before:
        print(
            f'{PIPELINE_NAME}: error: Redis ({redact(config.redis_url)}) restarted or went '
            'away during the run, so what the run wrote to it may be gone; run again to write '
            'it all (the writes are idempotent)',
            file=sys.stderr,
        )
        return cli.EXIT_FAILED, result, summary
    if not summary['balanced']:
        print(
            f'{PIPELINE_NAME}: error: records unaccounted for: {summary["unaccounted"]}',
            file=sys.stderr,
        )
        return 3, result, summary
    return 0, result, summary
