"""PostgreSQL sink: ``WriteToPostgres`` loads Arrow tables with COPY and an idempotent upsert.

Each table element is deduplicated on the conflict key (last row wins), written with ``COPY``
(CSV produced by Arrow, no per-row Python) into a temporary staging table, then merged into the
target with ``INSERT ... ON CONFLICT (key) DO UPDATE``, all in one transaction. A retried bundle
or a re-run therefore rewrites the same rows instead of adding copies. While batches hold only
new keys, the sink COPYs them straight into the target instead (a savepoint undoes the try when
a key is already stored, and the staging merge runs): a first load costs the server about a
third less. Several connections load a table at once, each taking its share of the keys.

Transient errors (lost connections, serialization failures, deadlocks) are retried with
exponential backoff up to a bound, on a fresh connection. A batch the database rejects for its
data is split in halves until the offending rows are alone; those rows go to the dead-letter
output with the database's message, and every other row is loaded. Credentials never appear in
messages: URLs are shown through :func:`redact`.
"""

from __future__ import annotations

import collections
import concurrent.futures
import contextlib
import dataclasses
import io
import logging
import re
import time
from typing import Any

import apache_beam as beam
import numpy as np
import orjson
import psycopg2
import psycopg2.errors
import psycopg2.extensions
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.csv as pacsv
from apache_beam import pvalue
from apache_beam.metrics import Metrics
from apache_beam.utils.windowed_value import WindowedValue

from beam_pipelines.columnar.hashing import stable_hash
from beam_pipelines.dead_letter import Stage
from beam_pipelines.dead_letter import make_dead_letter
from beam_pipelines.io import coders  # noqa: F401  (registers the Arrow table coder)
from beam_pipelines.redaction import redact
from beam_pipelines.throttling import RetryPolicy

__all__ = [
    'PostgresTarget',
    'RetryPolicy',
    'WriteToPostgres',
    'connect',
    'copy_and_merge',
    'lanes_of',
    'redact',
    'scrub',
]

_LOGGER = logging.getLogger(__name__)
NAMESPACE = 'beam_pipelines'
DEAD_LETTER = 'dead_letter'
WRITTEN = 'written'

_TRANSIENT = (
    psycopg2.OperationalError,
    psycopg2.InterfaceError,
    psycopg2.errors.SerializationFailure,
    psycopg2.errors.DeadlockDetected,
)
_MIX = np.uint64(0x9E3779B97F4A7C15)  # Fibonacci hashing's multiplier
_FMIX = (
    (np.uint64(33), np.uint64(0xFF51AFD7ED558CCD)),
    (np.uint64(33), np.uint64(0xC4CEB9FE1A85EC53)),
)
_IDENTIFIER = re.compile(r'[A-Za-z_][A-Za-z0-9_]*')  # fullmatch: '$' takes a final newline
_MAX_IDENTIFIER = 63  # NAMEDATALEN - 1


def connect(url: str | None, **kwargs) -> psycopg2.extensions.connection:
    """Opens a connection from a URL/DSN, or from the ``PG*`` environment variables when empty.

    Raises:
        psycopg2.OperationalError: with the password removed from its message.
    """
    try:
        return psycopg2.connect(url or '', **kwargs)
    except psycopg2.Error as exc:
        raise psycopg2.OperationalError(_scrub(str(exc), url)) from None


def scrub(message: str, url: str | None) -> str:
    """``message`` with credentials removed: URLs and DSNs redacted, and ``url``'s password
    wherever else it appears (drivers quote it in their messages)."""
    return _scrub(message, url)


def _scrub(message: str, url: str | None) -> str:
    message = redact(message)
    if url:
        found = re.search(r'://[^:/@]*:([^@]*)@', url) or re.search(
            r'password\s*=\s*(\S+)', url, flags=re.IGNORECASE
        )
        if found and found.group(1):
            message = message.replace(found.group(1), '***')
    return message


def ident(name: str) -> str:
    """Quotes a plain identifier; anything but ``[A-Za-z_][A-Za-z0-9_]*`` of at most 63
    bytes is refused (PostgreSQL would silently truncate a longer one, so two long names
    could name one table)."""
    if not _IDENTIFIER.fullmatch(name) or len(name) > _MAX_IDENTIFIER:
        raise ValueError(f'not a plain SQL identifier of at most 63 bytes: {name!r}')
    return f'"{name}"'


@dataclasses.dataclass(frozen=True)
class PostgresTarget:
    """Where and how a table lands.

    Attributes:
        table: target table name.
        columns: columns to load, in order (the element tables must have them).
        key: the conflict key (a unique constraint of the target).
        schema: the database schema holding the table.
        update: on conflict, update the non-key columns (True) or keep the existing row.
        json_columns: columns cast to ``jsonb`` when merged.
        on_conflict: a custom ``DO UPDATE ...`` clause (overrides ``update``); it may refer to the
            stored row by the table's name and to the incoming one as ``EXCLUDED``.
        delete: the rows name keys to delete (``columns`` must be the key), not rows to upsert.
    """

    table: str
    columns: tuple[str, ...]
    key: tuple[str, ...]
    schema: str = 'public'
    update: bool = True
    json_columns: tuple[str, ...] = ()
    on_conflict: str | None = None
    delete: bool = False

    def __post_init__(self):
        for name in (self.table, self.schema, *self.columns, *self.key):
            ident(name)
        missing = set(self.key) - set(self.columns)
        if missing:
            raise ValueError(f'key columns {sorted(missing)} are not among the loaded columns')

    @property
    def qualified(self) -> str:
        return f'{ident(self.schema)}.{ident(self.table)}'

    def merge_sql(self, staging: str) -> str:
        if self.delete:
            match = ' AND '.join(f't.{ident(c)} = s.{ident(c)}' for c in self.key)
            return f'DELETE FROM {self.qualified} t USING {staging} s WHERE {match}'
        cols = ', '.join(ident(c) for c in self.columns)
        select = ', '.join(
            f'{ident(c)}::jsonb' if c in self.json_columns else ident(c) for c in self.columns
        )
        conflict = ', '.join(ident(c) for c in self.key)
        rest = [c for c in self.columns if c not in self.key]
        if self.on_conflict is not None:
            action = self.on_conflict
        elif self.update and rest:
            action = 'DO UPDATE SET ' + ', '.join(f'{ident(c)} = EXCLUDED.{ident(c)}' for c in rest)
        else:
            action = 'DO NOTHING'
        return (
            f'INSERT INTO {self.qualified} ({cols}) SELECT {select} FROM {staging} '
            f'ON CONFLICT ({conflict}) {action}'
        )


class WriteToPostgres(beam.PTransform):
    """Loads Arrow table elements into a PostgreSQL table, idempotently.

    Returns a dict-like result: ``result['written']`` (row counts per loaded batch) and
    ``result['dead_letter']`` (envelopes for rows the database refused).

    Args:
        url: a libpq URL or DSN; empty to use the ``PG*`` environment variables.
        target: the table and its key.
        pipeline_name: names the pipeline in dead letters.
        retry: the policy for transient errors.
        before_load: optional picklable ``(cursor, table) -> None`` run in each transaction
            before the load (for example, to create the partitions a batch needs).
        connections: connections (and threads) each worker's instance loads on, each taking
            the rows of its share of the keys. Several let a server use several cores on one
            load; each worker thread opens this many, so mind ``max_connections``.
    """

    def __init__(
        self,
        url: str | None,
        target: PostgresTarget,
        pipeline_name: str,
        retry: RetryPolicy = RetryPolicy(),
        before_load=None,
        connections: int = 1,
    ):
        super().__init__()
        self._fn = _WriteFn(url, target, pipeline_name, retry, before_load, connections)

    def expand(self, tables):
        return tables | 'CopyAndUpsert' >> beam.ParDo(self._fn).with_outputs(
            DEAD_LETTER, main=WRITTEN
        )


class _WriteFn(beam.DoFn):
    """COPY + upsert of each table on ``connections`` lanes, each a connection and a thread of
    its own: the database's work on one batch overlaps the pipeline's work on the next (and the
    other sinks' writes), so on the DirectRunner, where a stage runs on one thread, the server
    uses cores the pipeline does not. A table is split among the lanes by its conflict key
    (:func:`lanes_of`), so one key always takes one lane and a key's rows load in the order
    they came; a batch then lands in one transaction per lane, not one in all. At most
    ``_IN_FLIGHT`` batches wait; a bundle ends only when all its loads have, and a load's error
    fails its bundle (which is retried: loads are idempotent)."""

    _IN_FLIGHT = 2

    def __init__(
        self,
        url,
        target: PostgresTarget,
        pipeline_name: str,
        retry: RetryPolicy,
        before_load,
        connections: int = 1,
    ):
        if connections < 1:
            raise ValueError(f'connections must be at least 1: {connections}')
        self._url = url
        self._target = target
        self._pipeline_name = pipeline_name
        self._retry = retry
        self._before_load = before_load
        self._connections = connections
        self._lanes: list[_Lane] = []

    def setup(self):
        self._rows = Metrics.counter(NAMESPACE, f'postgres_rows_{self._target.table}')
        self._retries = Metrics.counter(NAMESPACE, 'postgres_retries')
        self._latency = Metrics.distribution(NAMESPACE, 'postgres_write_ms')
        self._lanes = [
            _Lane(self._url, self._target, self._retry, self._before_load, i)
            for i in range(self._connections)
        ]
        self._pending: collections.deque = collections.deque()

    def teardown(self):
        for lane in self._lanes:
            lane.close()
        self._lanes = []

    def start_bundle(self):
        self._pending = collections.deque()  # a failed bundle's loads are not this one's

    def process(self, table: pa.Table, window=beam.DoFn.WindowParam, at=beam.DoFn.TimestampParam):
        if table.num_rows == 0:
            return
        table = _last_per_key(table.select(list(self._target.columns)), self._target.key)
        loads = [lane.submit(part) for lane, part in zip(self._lanes, self._split(table))]
        self._pending.append(([load for load in loads if load is not None], window, at))
        while len(self._pending) > self._IN_FLIGHT:
            yield from self._outputs(*self._pending.popleft())

    def finish_bundle(self):
        while self._pending:
            yield from self._outputs(*self._pending.popleft())

    def _split(self, table: pa.Table) -> list[pa.Table]:
        if len(self._lanes) == 1:
            return [table]
        lane = lanes_of(table, self._target.key, len(self._lanes))
        return [table.filter(pa.array(lane == i)) for i in range(len(self._lanes))]

    def _outputs(self, loads, window, at):
        """A batch's finished loads' outputs, in its element's window (they may leave with a
        later element, or at the end of the bundle). Metrics are counted here: Beam's metrics
        count only on the bundle's own thread."""
        loaded = 0
        for load in loads:
            rows, rejected, retries, millis = load.result()  # a failed load fails the bundle
            self._retries.inc(retries)
            self._latency.update(millis)
            self._rows.inc(rows)
            loaded += rows
            for row, message in rejected:
                envelope = make_dead_letter(
                    stage=Stage.SINK,
                    error_type='postgres_rejected',
                    error_message=_scrub(message, self._url),
                    payload=orjson.dumps(row, default=str),
                    source={'sink': 'postgres', 'table': self._target.table},
                    pipeline=self._pipeline_name,
                    event_time=_event_time(row),
                )
                yield pvalue.TaggedOutput(DEAD_LETTER, WindowedValue(envelope, at, (window,)))
        if loaded:
            yield WindowedValue(loaded, at, (window,))


class _Lane:
    """One connection and the one thread that loads on it: a lane's loads run in order. The
    connection opens with the first load, inside the retries (a worker set up while the
    database restarts would otherwise fail its bundle at once)."""

    def __init__(self, url, target: PostgresTarget, retry: RetryPolicy, before_load, index: int):
        self._url = url
        self._target = target
        self._retry = retry
        self._before_load = before_load
        self._straight_in = _StraightIn()
        self._conn = None
        self._pool = concurrent.futures.ThreadPoolExecutor(
            max_workers=1, thread_name_prefix=f'postgres-{target.table}-{index}'
        )

    def submit(self, table: pa.Table) -> concurrent.futures.Future | None:
        """Queues the load of ``table`` (None for an empty part: nothing to load)."""
        return self._pool.submit(self._timed_load, table) if table.num_rows else None

    def close(self):
        self._pool.shutdown(wait=True)
        self._close()

    def _connect(self):
        self._close()
        self._conn = connect(self._url)

    def _close(self):
        if self._conn is not None:
            with contextlib.suppress(psycopg2.Error):
                self._conn.close()
            self._conn = None

    def _timed_load(self, table: pa.Table) -> tuple[int, list, int, int]:
        started = time.monotonic()
        loaded, rejected, retries = self._load_with_retries(table)
        return loaded, rejected, retries, int((time.monotonic() - started) * 1000)

    def _load_with_retries(self, table: pa.Table) -> tuple[int, list, int]:
        delays = self._retry.delays()
        retries = 0
        while True:
            try:
                if self._conn is None or self._conn.closed:
                    self._connect()
                return (*self._load(table), retries)
            except _TRANSIENT as exc:
                delay = next(delays, None)
                if delay is None:
                    raise psycopg2.OperationalError(
                        f'giving up on {self._target.table} after {self._retry.attempts} '
                        f'attempts: {_scrub(str(exc), self._url)}'
                    ) from None
                retries += 1
                _LOGGER.warning(
                    'transient PostgreSQL error on %s, retrying in %.1f s: %s',
                    self._target.table,
                    delay,
                    _scrub(str(exc), self._url),
                )
                self._close()
                time.sleep(delay)

    def _load(self, table: pa.Table) -> tuple[int, list]:
        """Loads a batch in one transaction; bisects it when the data is refused."""
        try:
            with self._conn, self._conn.cursor() as cur:
                self._copy_and_merge(cur, table)
            return table.num_rows, []
        except _TRANSIENT:
            raise
        except psycopg2.Error as exc:
            if table.num_rows == 1:
                return 0, [(table.to_pylist()[0], f'{type(exc).__name__}: {exc}'.strip())]
            # Refused data: a straight-in try was refused too, and the halves need not try.
            self._straight_in.record(False)
            half = table.num_rows // 2
            ok_a, bad_a = self._load(table.slice(0, half))
            ok_b, bad_b = self._load(table.slice(half))
            return ok_a + ok_b, bad_a + bad_b

    def _copy_and_merge(self, cur, table: pa.Table) -> None:
        tried = not self._target.delete and self._straight_in.worth_trying()
        went = copy_and_merge(cur, self._target, table, self._before_load, direct=tried)
        if tried:
            self._straight_in.record(went)


class _StraightIn:
    """When a lane tries a load straight into the table (``copy_and_merge(direct=True)``):
    while that works, always; after a refusal (keys already stored: a re-run, panes rewriting
    their windows), only after 1, 2, 4 ... 64 batches, so a table of updates pays for a failed
    try (which stops at the first stored key) once in 64 loads at most."""

    _LONGEST = 64

    def __init__(self):
        self._skip = 0
        self._wait = 0

    def worth_trying(self) -> bool:
        if self._wait:
            self._wait -= 1
            return False
        return True

    def record(self, went_in: bool) -> None:
        self._skip = 0 if went_in else min(max(1, 2 * self._skip), self._LONGEST)
        self._wait = self._skip


def copy_and_merge(
    cur, target: PostgresTarget, table: pa.Table, before_load=None, direct: bool = False
) -> bool:
    """COPYs ``table`` into a temporary staging table and merges it into ``target`` (the
    upsert or delete of :meth:`PostgresTarget.merge_sql`), in the caller's transaction.

    With ``direct``, an upsert first COPYs the rows straight into ``target``, under a
    savepoint: when none of the keys is stored yet (a first load), that is all, and it saves
    the server about a third of its work. Any refusal (a stored key, or data the table does not
    take) rolls it back, and the staging merge runs as without ``direct``. Returns whether the
    rows went straight in."""
    if before_load is not None:
        before_load(cur, table)
    if not target.delete:  # ON CONFLICT cannot touch one row twice in a statement
        table = _last_per_key(table, target.key)
        if direct and _copy_straight_in(cur, target, table):
            return True
    staging = ident(f'_stage_{target.table}')
    if target.delete:  # only the key columns (the table's NOT NULLs don't apply)
        cols = ', '.join(ident(c) for c in target.columns)
        cur.execute(
            f'CREATE TEMP TABLE IF NOT EXISTS {staging} ON COMMIT DELETE ROWS AS '
            f'SELECT {cols} FROM {target.qualified} WITH NO DATA'
        )
    else:
        cur.execute(
            f'CREATE TEMP TABLE IF NOT EXISTS {staging} '
            f'(LIKE {target.qualified} INCLUDING DEFAULTS) ON COMMIT DELETE ROWS'
        )
    for name in target.json_columns:
        cur.execute(f'ALTER TABLE {staging} ALTER COLUMN {ident(name)} TYPE text')
    _copy(cur, staging, target.columns, table)
    cur.execute(target.merge_sql(staging))
    return False


def _copy_straight_in(cur, target: PostgresTarget, table: pa.Table) -> bool:
    cur.execute('SAVEPOINT bp_straight_in')
    try:
        _copy(cur, target.qualified, target.columns, table)
    except _TRANSIENT:
        raise
    except psycopg2.Error:
        cur.execute('ROLLBACK TO SAVEPOINT bp_straight_in')
        return False
    cur.execute('RELEASE SAVEPOINT bp_straight_in')
    return True


def _copy(cur, into: str, columns: tuple[str, ...], table: pa.Table) -> None:
    """COPY of ``table`` as CSV written by Arrow (no per-row Python)."""
    buffer = io.BytesIO()
    pacsv.write_csv(
        table, buffer, pacsv.WriteOptions(include_header=False, quoting_style='all_valid')
    )
    buffer.seek(0)
    cols = ', '.join(ident(c) for c in columns)
    cur.copy_expert(f'COPY {into} ({cols}) FROM STDIN WITH (FORMAT csv)', buffer)


def _last_per_key(table: pa.Table, key: tuple[str, ...]) -> pa.Table:
    """Keeps the last row of each key: ON CONFLICT cannot touch one row twice in a statement."""
    if table.num_rows < 2:
        return table
    marked = table.append_column('__row', pa.array(np.arange(table.num_rows)))
    last = marked.group_by(list(key), use_threads=False).aggregate([('__row', 'max')])
    keep = np.sort(np.asarray(last.column('__row_max').to_numpy()))
    if len(keep) == table.num_rows:
        return table
    return table.take(pa.array(keep))


def lanes_of(table: pa.Table, key: tuple[str, ...], lanes: int) -> np.ndarray:
    """Each row's lane in ``[0, lanes)``, a function of its key's values alone (one key, one
    lane, in every batch, whatever Arrow type holds it): every key column is hashed, numbers
    and times by their value in numpy, strings by :func:`stable_hash` (one CRC per distinct
    value), anything else as its text."""
    h = np.zeros(table.num_rows, dtype=np.uint64)
    with np.errstate(over='ignore'):
        for name in key:
            h = (h ^ _value_hash(table.column(name))) * _MIX
        for shift, factor in _FMIX:  # MurmurHash3's finaliser: every bit reaches the low ones
            h ^= h >> shift
            h *= factor
        h ^= h >> np.uint64(33)
    return (h % np.uint64(lanes)).astype(np.int64)


def _value_hash(column: pa.ChunkedArray) -> np.ndarray:
    """A uint64 per value (nulls as 0 or ''), the same for equal values of any unit or width."""
    kind = column.type
    if pa.types.is_dictionary(kind):
        return _value_hash(column.cast(kind.value_type))
    if pa.types.is_timestamp(kind):
        bits = column.cast(pa.timestamp('us', kind.tz), safe=False).cast(pa.int64())
    elif pa.types.is_date(kind):
        bits = column.cast(pa.date32()).cast(pa.int32()).cast(pa.int64())
    elif pa.types.is_integer(kind):
        bits = column.cast(pa.int64(), safe=False)
    elif pa.types.is_floating(kind):
        bits = column.cast(pa.float64()).combine_chunks().view(pa.int64())
    elif pa.types.is_string(kind) or pa.types.is_large_string(kind):
        return stable_hash(column)
    else:
        return stable_hash(column.cast(pa.string()))
    return np.asarray(bits.fill_null(0).to_numpy(zero_copy_only=False)).astype(np.uint64)


def _event_time(row: dict[str, Any]) -> str | None:
    for name in ('timestamp', 'event_time', 'window_start'):
        value = row.get(name)
        if value is not None and hasattr(value, 'strftime'):
            return value.strftime('%Y-%m-%dT%H:%M:%S.%fZ')
    return None


def event_days(table: pa.Table, column: str = 'event_time') -> list:
    """The distinct UTC days of a timestamp column (for creating daily partitions)."""
    days = pc.unique(pc.floor_temporal(table.column(column), unit='day'))
    return sorted(d.date() for d in days.to_pylist() if d is not None)
