"""``WriteToRedis``: dashboard-ready window aggregates in Redis, idempotent under retries.

For each (entity_id, event_type) it keeps:

* ``{prefix}latest:{entity_id}:{event_type}`` — a hash with the latest window's aggregates. A
  small Lua script writes it only if the incoming window is not older than the stored one, so
  retried or re-ordered bundles never roll it back;
* ``{prefix}series:{entity_id}:{event_type}`` — a sorted set of window starts (epoch ms, scored
  by themselves) trimmed to the last ``series_length`` windows, with the values of each window in
  the hash ``{prefix}series_data:{entity_id}:{event_type}`` (field: window start). ``ZADD`` and
  ``HSET`` of the same window are idempotent: a re-run rewrites, never adds.

Every key gets the TTL. Commands go through redis-py pipelines in chunks; connection errors are
retried by redis-py's own ``Retry`` with exponential backoff.
"""

from __future__ import annotations

import dataclasses
import itertools
import logging
import time
from collections.abc import Callable
from typing import TypeVar

import apache_beam as beam
import numpy as np
import orjson
import pyarrow as pa
import pyarrow.compute as pc
import redis
from apache_beam.metrics import Metrics
from redis.backoff import ExponentialBackoff
from redis.retry import Retry

from beam_pipelines.columnar.json_objects import json_objects

__all__ = ['RedisLayout', 'WriteToRedis', 'again_on_noscript', 'server_run_id']

T = TypeVar('T')

_LOGGER = logging.getLogger(__name__)
NAMESPACE = 'beam_pipelines'

# Arguments that hold many values hold them newline-separated, as one argument: redis-py
# encodes every argument of every command in Python, which, not Redis, was the sink's cost.
# (No value contains a newline: window starts, numbers as text, JSON without whitespace.)
_SPLIT_LUA = """
local function split(text)
  local out = {}
  for piece in string.gmatch(text, '[^\\n]+') do
    out[#out + 1] = piece
  end
  return out
end
"""
# KEYS[1] = latest hash; ARGV[1] = window start (ms); ARGV[2] = TTL (s); ARGV[3] = the fields,
# name and value alternating (an empty value: null).
_LATEST_LUA = (
    _SPLIT_LUA
    + """
local current = redis.call('HGET', KEYS[1], 'window_start_ms')
if (not current) or tonumber(current) <= tonumber(ARGV[1]) then
  local fields = split(ARGV[3])
  for i = 1, #fields, 2 do
    if fields[i + 1] == '-' then fields[i + 1] = '' end
  end
  redis.call('HSET', KEYS[1], 'window_start_ms', ARGV[1], unpack(fields))
end
redis.call('EXPIRE', KEYS[1], ARGV[2])
return 1
"""
)
# KEYS[1] = series, KEYS[2] = series data; ARGV[1] = windows kept; ARGV[2] = TTL (s).
# The oldest windows leave the sorted set and their data leaves the hash together.
_TRIM_BODY = """
local old = redis.call('ZRANGE', KEYS[1], 0, -tonumber(ARGV[1]) - 1)
for i = 1, #old, 1000 do
  local chunk = {unpack(old, i, math.min(i + 999, #old))}
  redis.call('ZREM', KEYS[1], unpack(chunk))
  redis.call('HDEL', KEYS[2], unpack(chunk))
end
redis.call('EXPIRE', KEYS[1], ARGV[2])
redis.call('EXPIRE', KEYS[2], ARGV[2])
return #old
"""
_TRIM_LUA = _TRIM_BODY
# The windows of one key, then the trim: KEYS and ARGV[1..2] as above, ARGV[3] = window start
# (ms) and window JSON alternating. Each window is added to the sorted set (scored by its start)
# and its JSON to the hash: one call per key, where there were two commands per window and a
# trim call per key.
_SERIES_LUA = (
    _SPLIT_LUA
    + """
local windows = split(ARGV[3])
local zargs, hargs = {}, {}
for i = 1, #windows, 2 do
  zargs[#zargs + 1] = windows[i]
  zargs[#zargs + 1] = windows[i]
  hargs[#hargs + 1] = windows[i]
  hargs[#hargs + 1] = windows[i + 1]
end
for i = 1, #zargs, 1000 do
  redis.call('ZADD', KEYS[1], unpack(zargs, i, math.min(i + 999, #zargs)))
  redis.call('HSET', KEYS[2], unpack(hargs, i, math.min(i + 999, #hargs)))
end
"""
    + _TRIM_BODY
)
# Panes (streaming and incremental runs). One call per window row:
# KEYS[1] = series, KEYS[2] = series data, KEYS[3] = latest hash;
# ARGV[1] = window start (ms), ARGV[2] = the pane as JSON (stats, pane_index, window_end_ms),
# ARGV[3] = 'accumulating' | 'discarding', ARGV[4] = TTL (s).
# A pane whose index is not above the stored one is a replay or arrived out of order: ignored.
# Accumulating panes replace the stored values; discarding panes are merged into them (counts and
# sums added, min/max, mean, stddev by Chan et al.; quantiles cannot be merged: null).
_PANE_LUA = """
local function num(v)
  if v == nil or v == cjson.null then return nil end
  return tonumber(v)
end
local function pick(f, a, b)
  if a == nil then return b end
  if b == nil then return a end
  return f(a, b)
end
local function merge(a, b)
  local na, nb = num(a.value_count) or 0, num(b.value_count) or 0
  local n = na + nb
  local r = {}
  for k, v in pairs(b) do r[k] = v end
  r.count = (num(a.count) or 0) + (num(b.count) or 0)
  r.value_count = n
  r.min = pick(math.min, num(a.min), num(b.min)) or cjson.null
  r.max = pick(math.max, num(a.max), num(b.max)) or cjson.null
  if n > 0 then
    r.sum = (num(a.sum) or 0) + (num(b.sum) or 0)
    r.mean = r.sum / n
  else
    r.sum, r.mean = cjson.null, cjson.null
  end
  local m2 = (num(a.stddev) or 0) ^ 2 * math.max(na - 1, 0)
    + (num(b.stddev) or 0) ^ 2 * math.max(nb - 1, 0)
  if na > 0 and nb > 0 then
    m2 = m2 + (num(b.mean) - num(a.mean)) ^ 2 * na * nb / n
  end
  if n >= 2 then r.stddev = math.sqrt(m2 / (n - 1)) else r.stddev = cjson.null end
  for _, q in ipairs({'p50', 'p95'}) do
    if na == 0 then r[q] = b[q] elseif nb == 0 then r[q] = a[q] else r[q] = cjson.null end
  end
  return r
end
local new = cjson.decode(ARGV[2])
local encoded = ARGV[2]
local old_raw = redis.call('HGET', KEYS[2], ARGV[1])
if old_raw then
  local old = cjson.decode(old_raw)
  if num(old.pane_index) ~= nil and num(old.pane_index) >= num(new.pane_index) then
    return 0
  end
  if ARGV[3] == 'discarding' then
    new = merge(old, new)
    encoded = cjson.encode(new)
  end
end
redis.call('ZADD', KEYS[1], ARGV[1], ARGV[1])
redis.call('HSET', KEYS[2], ARGV[1], encoded)
local current = redis.call('HGET', KEYS[3], 'window_start_ms')
if (not current) or tonumber(current) <= tonumber(ARGV[1]) then
  local fields = {'window_start_ms', ARGV[1]}
  for k, v in pairs(new) do
    if v == cjson.null then v = '' elseif type(v) == 'boolean' then v = tostring(v) end
    fields[#fields + 1] = k
    fields[#fields + 1] = v
  end
  redis.call('HSET', KEYS[3], unpack(fields))
end
for i = 1, 3 do redis.call('EXPIRE', KEYS[i], ARGV[4]) end
return 1
"""
_STATS = ('count', 'value_count', 'sum', 'min', 'max', 'mean', 'stddev', 'p50', 'p95')
_PANE = ('pane_timing', 'pane_index', 'is_final')


def server_run_id(url: str) -> str:
    """The Redis server's ``run_id``: random per server start. A run that sees it change has
    written to a server that restarted meanwhile; a server that keeps nothing on disk (as
    a cache often does) then lost what the run wrote before the restart.

    Raises:
        redis.RedisError: the server cannot be reached.
    """
    client = redis.Redis.from_url(url, socket_timeout=10)
    try:
        return str(client.info('server')['run_id'])
    finally:
        client.close()


@dataclasses.dataclass(frozen=True)
class RedisLayout:
    """Key prefix, TTL and series length.

    Attributes:
        prefix: prepended to every key (one namespace per pipeline or test).
        ttl_secs: expiry of every key written.
        series_length: windows kept per series.
        chunk: commands per pipeline round trip.
    """

    prefix: str = 'bp:'
    ttl_secs: int = 7 * 24 * 3600
    series_length: int = 1440
    chunk: int = 2000

    def __post_init__(self):
        if self.ttl_secs <= 0 or self.series_length <= 0 or self.chunk <= 0:
            raise ValueError('ttl_secs, series_length and chunk must be > 0')

    def latest(self, entity: str, event_type: str) -> str:
        return f'{self.prefix}latest:{entity}:{event_type}'

    def series(self, entity: str, event_type: str) -> str:
        return f'{self.prefix}series:{entity}:{event_type}'

    def series_data(self, entity: str, event_type: str) -> str:
        return f'{self.prefix}series_data:{entity}:{event_type}'


class _CountedRetry(Retry):
    """redis-py's retry, counting every failed attempt (the last one too) in
    ``redis_failed_attempts``."""

    def __init__(self, retries_counter, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self._counter = retries_counter

    def call_with_retry(self, do, fail, *args, **kwargs):
        def counted_fail(error, *rest):
            self._counter.inc()
            return fail(error, *rest)

        return super().call_with_retry(do, counted_fail, *args, **kwargs)


class WriteToRedis(beam.PTransform):
    """Writes aggregate tables (``AGGREGATE_SCHEMA``) to Redis; outputs commands sent per batch.

    Args:
        url: a Redis URL (``redis://host:6379/0``).
        layout: keys, TTL and series length.
        accumulation: None for final aggregates; 'accumulating' or 'discarding' for panes
            (``PANE_SCHEMA``), which a Lua script applies per window: replaced or added, and
            never twice (see ``_PANE_LUA``).
    """

    def __init__(
        self, url: str, layout: RedisLayout = RedisLayout(), accumulation: str | None = None
    ):
        super().__init__()
        if not url:
            raise ValueError('url must be a Redis URL')
        if accumulation not in (None, 'accumulating', 'discarding'):
            raise ValueError(f'accumulation must be accumulating or discarding: {accumulation!r}')
        self._url = url
        self._layout = layout
        self._accumulation = accumulation

    def expand(self, aggregates):
        return aggregates | 'WriteAggregates' >> beam.ParDo(
            _WriteAggregatesFn(self._url, self._layout, self._accumulation)
        )


def again_on_noscript(write: Callable[[], T], on_retry: Callable[[], None] | None = None) -> T:
    """Runs an idempotent pipelined ``write``, once more if it meets NOSCRIPT: Redis lost its
    script cache (it restarted) between the pipeline loading its scripts and running them, which
    the client's own retry does not redo; the second time loads them first. (A restart that lost
    data fails the run at its end: see the launcher's ``run_id`` check.)"""
    try:
        return write()
    except redis.exceptions.NoScriptError:
        if on_retry is not None:
            on_retry()
        return write()


class _WriteAggregatesFn(beam.DoFn):
    def __init__(self, url: str, layout: RedisLayout, accumulation: str | None = None):
        self._url = url
        self._layout = layout
        self._accumulation = accumulation
        self._client = None

    def setup(self):
        self._retries = Metrics.counter(NAMESPACE, 'redis_failed_attempts')
        self._client = redis.Redis.from_url(
            self._url,
            retry=_CountedRetry(self._retries, ExponentialBackoff(cap=5.0, base=0.1), 5),
            retry_on_error=[redis.ConnectionError, redis.TimeoutError],
            health_check_interval=30,
        )
        self._latest = self._client.register_script(_LATEST_LUA)
        self._trim_script = self._client.register_script(_TRIM_LUA)
        self._series_script = self._client.register_script(_SERIES_LUA)
        self._pane_script = self._client.register_script(_PANE_LUA)
        self._ops = Metrics.counter(NAMESPACE, 'redis_commands')
        self._latency = Metrics.distribution(NAMESPACE, 'redis_write_ms')

    def teardown(self):
        if self._client is not None:
            self._client.close()
            self._client = None

    def process(self, table: pa.Table):
        if table.num_rows == 0:
            return
        started = time.monotonic()
        sent = again_on_noscript(lambda: self._write(table), self._retries.inc)
        self._latency.update(int((time.monotonic() - started) * 1000))
        self._ops.inc(sent)
        yield sent

    def _write(self, table: pa.Table) -> int:
        if self._accumulation is not None:
            return self._write_panes(table)
        return self._write_series(table) + self._write_latest(_latest_per_key(table))

    def _write_series(self, table: pa.Table) -> int:
        """One script call per (entity, type) with all its windows of the batch (see
        ``_SERIES_LUA``)."""
        lay = self._layout
        order = pc.sort_indices(
            table, sort_keys=[('entity_id', 'ascending'), ('event_type', 'ascending')]
        )
        table = table.take(order)
        data, ends = _series_text(table)
        entities = table.column('entity_id').to_pylist()
        types = table.column('event_type').to_pylist()
        bounds = _group_bounds(table)
        pipe = self._client.pipeline(transaction=False)
        for i, (lo, hi) in enumerate(itertools.pairwise(bounds), 1):
            entity, etype = entities[lo], types[lo]
            self._series_script(
                keys=[lay.series(entity, etype), lay.series_data(entity, etype)],
                args=[lay.series_length, lay.ttl_secs, data[ends[lo] : ends[hi] - 1]],
                client=pipe,
            )
            if i % lay.chunk == 0:
                pipe.execute()
        pipe.execute()
        return len(bounds) - 1

    def _write_panes(self, table: pa.Table) -> int:
        lay = self._layout
        panes = table.select(list(_PANE)).to_pylist()
        pipe = self._client.pipeline(transaction=False)
        touched = set()
        sent = 0
        for i, (row, pane) in enumerate(zip(_rows(table), panes, strict=True), 1):
            entity, etype = row['entity_id'], row['event_type']
            value = {**row['stats'], **pane, 'window_end_ms': row['end_ms']}
            self._pane_script(
                keys=[
                    lay.series(entity, etype),
                    lay.series_data(entity, etype),
                    lay.latest(entity, etype),
                ],
                args=[row['start_ms'], orjson.dumps(value), self._accumulation, lay.ttl_secs],
                client=pipe,
            )
            touched.add((entity, etype))
            sent += 1
            if i % lay.chunk == 0:
                sent += self._trim(pipe, touched)
                pipe.execute()
                touched.clear()
        sent += self._trim(pipe, touched)
        pipe.execute()
        return sent

    def _trim(self, pipe, touched) -> int:
        """Keeps the newest ``series_length`` windows; drops the data of the others."""
        lay = self._layout
        for entity, etype in touched:
            self._trim_script(
                keys=[lay.series(entity, etype), lay.series_data(entity, etype)],
                args=[lay.series_length, lay.ttl_secs],
                client=pipe,
            )
        return len(touched)

    def _write_latest(self, table: pa.Table) -> int:
        lay = self._layout
        pipe = self._client.pipeline(transaction=False)
        sent = 0
        for i, row in enumerate(_rows(table), 1):
            fields = []
            for name, value in row['stats'].items():
                # '-' stands for null (an empty piece would vanish in the split); numbers as
                # redis-py would send them: repr.
                fields += [name, '-' if value is None else repr(value)]
            fields += ['window_end_ms', str(row['end_ms'])]
            self._latest(
                keys=[lay.latest(row['entity_id'], row['event_type'])],
                args=[row['start_ms'], lay.ttl_secs, '\n'.join(fields)],
                client=pipe,
            )
            sent += 1
            if i % lay.chunk == 0:
                pipe.execute()
        pipe.execute()
        return sent


def _series_text(table: pa.Table) -> tuple[bytes, list[int]]:
    """Every row as ``start\\nJSON\\n`` (the series script's arguments), in one buffer, and
    where each row starts (with the end last): the rows ``lo:hi`` are
    ``data[ends[lo]:ends[hi] - 1]``, cut without a Python object per row."""
    starts_ms = table.column('window_start').cast(pa.int64()).to_numpy() // 1000
    starts = pa.array(starts_ms).cast(pa.string())
    stats = json_objects(table.select(list(_STATS)))
    rows = pc.binary_join_element_wise(starts, stats, '', '\n').combine_chunks()
    rows = rows.cast(pa.large_binary())  # a fresh array: its offsets start at its first row
    offsets = np.frombuffer(rows.buffers()[1], dtype=np.int64)[: len(rows) + 1]
    data = rows.buffers()[2]
    return (data.to_pybytes() if data is not None else b''), offsets.tolist()


def _group_bounds(table: pa.Table) -> list[int]:
    """Where each (entity_id, event_type) run of a key-sorted table starts, and its end."""
    n = table.num_rows
    changed = np.zeros(n, dtype=bool)
    for name in ('entity_id', 'event_type'):
        column = table.column(name).combine_chunks()
        changed[1:] |= np.asarray(
            pc.not_equal(column.slice(1), column.slice(0, n - 1)).fill_null(True),
            dtype=bool,
        )
    return [0, *np.flatnonzero(changed).tolist(), n] if n else [0]


def _latest_per_key(table: pa.Table) -> pa.Table:
    """The newest window of each (entity_id, event_type) in a table."""
    marked = table.append_column('__row', pa.array(np.arange(table.num_rows)))
    start = marked.column('window_start').cast(pa.int64())
    marked = marked.append_column('__start', start)
    newest = marked.group_by(['entity_id', 'event_type'], use_threads=False).aggregate(
        [('__start', 'max')]
    )
    joined = marked.join(newest, ['entity_id', 'event_type'])
    keep = pc.equal(joined.column('__start'), joined.column('__start_max'))
    return joined.filter(keep).drop_columns(['__row', '__start', '__start_max'])


def _rows(table: pa.Table):
    starts = table.column('window_start').cast(pa.int64()).to_numpy() // 1000
    ends = table.column('window_end').cast(pa.int64()).to_numpy() // 1000
    stats = table.select(list(_STATS)).to_pylist()
    entities = table.column('entity_id').to_pylist()
    types = table.column('event_type').to_pylist()
    for entity, etype, start, end, values in zip(entities, types, starts, ends, stats):
        yield {
            'entity_id': entity,
            'event_type': etype,
            'start_ms': int(start),
            'end_ms': int(end),
            'stats': values,
        }
