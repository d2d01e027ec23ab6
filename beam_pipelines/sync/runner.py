"""One run of a sync: read what changed, map it, write it, record the job.

Watermark mode reads the rows whose watermark lies in ``(last committed, upper]`` (see
:func:`~beam_pipelines.sync.source.safe_upper_bound`) and commits ``upper`` in the job record
once every batch is in the destination. CDC mode applies the slot's changes up to the current
LSN in LSN order, then advances the slot; its first run (or ``full``) starts with a full copy,
taken after the slot exists so that nothing between the copy and the changes is lost. A run that
fails commits nothing: the next one reads the same rows again and, every write being an upsert
or a delete on the key, converges to the same state.

Counts: ``rows_read = rows_written + rows_failed``, every failed row being dead-lettered.
"""

from __future__ import annotations

import contextlib
import dataclasses
import datetime as dt
import logging
import time
import uuid
from typing import Any

import pyarrow as pa
import pyarrow.compute as pc

from beam_pipelines.io.postgres_cdc import advance_slot
from beam_pipelines.io.postgres_cdc import current_lsn
from beam_pipelines.io.postgres_cdc import ensure_slot
from beam_pipelines.redaction import redact
from beam_pipelines.sync.failures import FileDeadLetters
from beam_pipelines.sync.failures import TableDeadLetters
from beam_pipelines.sync.failures import envelope
from beam_pipelines.sync.jobs import JobLog
from beam_pipelines.sync.mapping import Mapping
from beam_pipelines.sync.mapping import bisect
from beam_pipelines.sync.postgres_dest import PostgresDestination
from beam_pipelines.sync.redis_dest import RedisDestination
from beam_pipelines.sync.retry import RetryPolicy
from beam_pipelines.sync.retry import with_retries
from beam_pipelines.sync.source import WATERMARK_TYPE
from beam_pipelines.sync.source import SourceTable
from beam_pipelines.sync.source import changes_as_tables
from beam_pipelines.sync.source import read_batches
from beam_pipelines.sync.source import safe_upper_bound
from beam_pipelines.sync.source import slot_position
from beam_pipelines.sync.source import source_conn

__all__ = ['JobResult', 'SyncConfig', 'SyncError', 'sync_once']

_LOGGER = logging.getLogger(__name__)
MODES = ('watermark', 'cdc')


class SyncError(RuntimeError):
    """The sync cannot run as configured (missing table, bad key, lock held, ...)."""


@dataclasses.dataclass(frozen=True)
class SyncConfig:
    """Everything one sync needs (the launcher's flags, checked)."""

    name: str
    source_url: str
    source_table: str
    dest_url: str
    source_schema: str = 'public'
    key: tuple[str, ...] = ()
    dest_schema: str | None = None  # PostgreSQL: default the source schema
    dest_table: str | None = None  # default the source table
    create_table: bool = False
    mode: str = 'watermark'
    watermark_column: str = 'loaded_at'
    slot: str | None = None  # CDC: default bp_sync_<name>
    batch_rows: int = 10_000
    mapping: Mapping = dataclasses.field(default_factory=Mapping)
    dead_letter_file: str | None = None  # None: the dead_letters table of jobs_schema
    jobs_schema: str | None = None  # default the source schema
    retry: RetryPolicy = dataclasses.field(default_factory=RetryPolicy)
    ttl_secs: int | None = None
    key_prefix: str = 'bp:'
    redis_timeout_secs: float = 10.0
    full: bool = False

    def __post_init__(self):
        if self.mode not in MODES:
            raise ValueError(f'mode must be one of {MODES}, got {self.mode!r}')
        if not self.redis_timeout_secs > 0:
            raise ValueError(f'redis_timeout_secs must be > 0, got {self.redis_timeout_secs}')
        if self.batch_rows < 1:
            raise ValueError(f'batch_rows must be >= 1, got {self.batch_rows}')
        if not self.dest_url.startswith(('postgresql://', 'postgres://', 'redis', 'unix://')):
            raise ValueError(
                f'dest_url must be postgresql:// or redis://, got {redact(self.dest_url)}'
            )

    @property
    def is_redis(self) -> bool:
        return self.dest_url.startswith(('redis://', 'rediss://', 'unix://'))

    @property
    def target_table(self) -> str:
        return self.dest_table or self.source_table

    @property
    def target_schema(self) -> str:
        return self.dest_schema or self.source_schema

    @property
    def slot_name(self) -> str:
        return self.slot or 'bp_sync_' + ''.join(
            c if c.isalnum() else '_' for c in self.name.lower()
        )

    def describe_source(self) -> str:
        return f'{redact(self.source_url)}#{self.source_schema}.{self.source_table}'

    def describe_destination(self) -> str:
        if self.is_redis:
            return f'{redact(self.dest_url)}#{self.key_prefix}{self.target_table}:*'
        return f'{redact(self.dest_url)}#{self.target_schema}.{self.target_table}'


@dataclasses.dataclass
class JobResult:
    """What a run did (the ``sync_jobs`` row, plus the retries and the time taken)."""

    job_id: str
    status: str = 'running'
    rows_read: int = 0
    rows_written: int = 0
    rows_failed: int = 0
    watermark_from: str | None = None
    watermark_to: str | None = None
    lag_secs: float = 0.0
    retries: int = 0
    seconds: float = 0.0
    newest: Any = None  # the newest watermark value read
    dead_letters: str = ''


def sync_once(config: SyncConfig) -> JobResult:
    """Runs the sync once and records it in ``sync_jobs``.

    Returns:
        The finished job (status ``succeeded``).

    Raises:
        SyncError: configuration the source or destination refuses (before any job starts).
        Exception: whatever made the run fail, after the job was recorded as failed.
    """
    started = time.monotonic()
    with contextlib.ExitStack() as stack:
        jobs_conn = stack.enter_context(contextlib.closing(_conn(config, 'jobs')))
        read_conn = stack.enter_context(contextlib.closing(_conn(config, 'read')))
        try:
            jobs = JobLog(jobs_conn, config.jobs_schema or config.source_schema)
            if not jobs.lock(config.name):
                raise SyncError(f'another run of sync {config.name!r} is in progress')
            source = SourceTable.describe(
                read_conn, config.source_schema, config.source_table, config.key
            )
            if config.mode == 'watermark':
                _check_watermark(source, config.watermark_column)
            config.mapping.check(source.columns)
            dest = _destination(config, source, config.mapping.key(source.key))
        except ValueError as exc:
            raise SyncError(str(exc)) from None
        stack.callback(dest.close)
        dead = (
            FileDeadLetters(config.dead_letter_file)
            if config.dead_letter_file
            else TableDeadLetters(_conn(config, 'dead_letters'), jobs_schema(config))
        )
        stack.callback(dead.close)
        job = JobResult(job_id=uuid.uuid4().hex, dead_letters=dead.where)
        run = _Run(config, source, dest, dead, job)
        job.watermark_from = (
            slot_position(jobs_conn, config.slot_name)
            if config.mode == 'cdc'
            else (None if config.full else jobs.committed(config.name, 'watermark'))
        )
        jobs.start(
            job.job_id,
            config.name,
            config.describe_source(),
            config.describe_destination(),
            config.mode,
            job.watermark_from,
        )
        try:
            if config.mode == 'watermark':
                run.watermark(jobs_conn, read_conn)
            else:
                run.cdc(
                    read_conn, initial=config.full or jobs.committed(config.name, 'cdc') is None
                )
        except BaseException as exc:
            job.status = 'failed'
            jobs.finish(
                job.job_id, error=redact(f'{type(exc).__name__}: {exc}'.strip()), **_counts(job)
            )
            raise
        job.status = 'succeeded'
        job.lag_secs = _lag(job.newest)
        job.seconds = time.monotonic() - started
        jobs.finish(
            job.job_id, watermark_to=job.watermark_to, lag_secs=job.lag_secs, **_counts(job)
        )
    return job


def jobs_schema(config: SyncConfig) -> str:
    return config.jobs_schema or config.source_schema


def _conn(config: SyncConfig, role: str):
    return source_conn(config.source_url, f'{config.name}:{role}')


def _check_watermark(source: SourceTable, column: str) -> None:
    kind = source.pg_types.get(column)
    if kind is None:
        raise ValueError(f'--watermark_column {column!r} is not a column of {source.table}')
    if kind != WATERMARK_TYPE:
        # The safe upper bound relies on the column being its writer's now().
        raise ValueError(f'--watermark_column {column!r} must be timestamptz, not {kind}')


def _destination(config: SyncConfig, source: SourceTable, key: tuple[str, ...]):
    client_name = f'bp_sync:{config.name}:dest'
    if config.is_redis:
        return RedisDestination(
            config.dest_url,
            config.key_prefix,
            config.target_table,
            key,
            config.ttl_secs,
            client_name=client_name,
            socket_timeout_secs=config.redis_timeout_secs,
        )
    if config.dest_url == config.source_url and (config.target_schema, config.target_table) == (
        source.schema,
        source.table,
    ):
        raise ValueError('the destination table is the source table')
    return PostgresDestination(
        config.dest_url,
        config.target_schema,
        config.target_table,
        key,
        source,
        config.mapping,
        config.create_table,
        client_name,
    )


def _counts(job: JobResult) -> dict[str, Any]:
    return {
        'status': job.status,
        'rows_read': job.rows_read,
        'rows_written': job.rows_written,
        'rows_failed': job.rows_failed,
    }


def _lag(newest) -> float:
    if newest is None:
        return 0.0
    return max(0.0, (dt.datetime.now(dt.UTC) - newest).total_seconds())


class _Run:
    """The batches of one run, in order, each written (with retries) before the next is read."""

    def __init__(self, config: SyncConfig, source: SourceTable, dest, dead, job: JobResult):
        self._config = config
        self._source = source
        self._dest = dest
        self._dead = dead
        self._job = job
        self._origin = {
            'sync': config.name,
            'source': f'{source.schema}.{source.table}',
            'destination': config.describe_destination(),
        }

    def watermark(self, jobs_conn, read_conn) -> None:
        c = self._config
        upper = safe_upper_bound(jobs_conn)
        for batch in read_batches(
            read_conn,
            self._source,
            c.watermark_column,
            self._job.watermark_from,
            upper,
            c.batch_rows,
        ):
            self._note_newest(batch)
            self.upsert(batch)
        self._job.watermark_to = upper.isoformat()

    def cdc(self, read_conn, initial: bool) -> None:
        c = self._config
        created = ensure_slot(c.source_url, c.slot_name)
        if created or initial:
            # The slot exists first: changes made during the copy are replayed after it.
            for batch in read_batches(read_conn, self._source, None, None, None, c.batch_rows):
                self._note_newest(batch)
                self.upsert(batch)
        upper = current_lsn(c.source_url)
        for op, table, _lsn in changes_as_tables(
            c.source_url, c.slot_name, upper, self._source, c.batch_rows
        ):
            if op == 'delete':
                self.delete(table)
            else:
                self._note_newest(table)
                self.upsert(table)
        # Every change up to ``upper`` is committed in the destination: acknowledge them.
        advance_slot(c.source_url, c.slot_name, upper)
        self._job.watermark_to = upper

    def upsert(self, batch: pa.Table) -> None:
        """Maps, writes and dead-letters one batch of whole rows."""
        self._job.rows_read += batch.num_rows
        results, refused = bisect(self._config.mapping.apply, batch, (Exception,))
        failures = [(row, why, 'transform_raised') for row, why in refused]
        for table, rejected in results:
            failures += [(row, why, 'transform_rejected') for row, why in rejected]
            if table.num_rows:
                failures += self._write(self._dest.upsert, table)
        self._fail(failures)

    def delete(self, keys: pa.Table) -> None:
        """Deletes one batch of keys in the destination."""
        self._job.rows_read += keys.num_rows
        self._fail(self._write(self._dest.delete, self._config.mapping.apply_to_keys(keys)))

    def _write(self, op, table: pa.Table) -> list:
        def attempt(part: pa.Table):
            with_retries(
                lambda: op(part),
                self._config.retry,
                self._dest.transient,
                f'sync {self._config.name} destination',
                on_retry=self._retried,
            )
            self._job.rows_written += part.num_rows

        _, refused = bisect(attempt, table, self._dest.rejected)
        return [(row, why, 'destination_rejected') for row, why in refused]

    def _retried(self, error: BaseException) -> None:
        self._job.retries += 1
        self._dest.reset(error)

    def _fail(self, failures: list) -> None:
        if not failures:
            return
        envelopes = [
            envelope(row, why, kind, self._origin, self._config.name) for row, why, kind in failures
        ]
        # Losing them is not an option: if they cannot be written, the run fails.
        self._dead.write(envelopes)
        self._job.rows_failed += len(failures)
        _LOGGER.warning(
            'sync %s: %d row(s) failed, dead-lettered to %s (first: %s)',
            self._config.name,
            len(failures),
            self._dead.where,
            failures[0][1],
        )

    def _note_newest(self, batch: pa.Table) -> None:
        column = self._config.watermark_column
        if column not in batch.column_names:
            return
        newest = pc.max(batch.column(column)).as_py()
        if newest is not None and (self._job.newest is None or newest > self._job.newest):
            self._job.newest = newest
