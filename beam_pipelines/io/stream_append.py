"""Appending events to the Redis stream the pipeline reads, with a backlog high-water mark.

Used by the ingestion front doors (the HTTP service, the MQTT bridge): they append raw events
as the ``event`` field of stream entries (the format ``ReadFromRedisStream`` reads) and push
back on producers while the pipeline's consumer group is behind by more than ``high_water``
entries. ``StreamAppender`` is the blocking client (the MQTT bridge's thread),
``AsyncStreamAppender`` the asyncio one (the HTTP service); both append a batch with one
server-side script, so a batch is appended whole or not at all, in one round trip.

Streams are never trimmed here: an entry leaves the stream's backlog only when the pipeline
acknowledges it, so trimming could drop events nobody has read. The high-water mark is the
bound instead.
"""

from __future__ import annotations

from collections.abc import Mapping
from collections.abc import Sequence

import redis
import redis.asyncio
from redis.backoff import ExponentialBackoff
from redis.retry import Retry

__all__ = ['FIELD', 'AsyncStreamAppender', 'StreamAppender', 'group_backlog']

# The entry field that holds the raw event. This module imports no Beam (the front doors start
# fast), so the stream readers take the name from here.
FIELD = b'event'


def group_backlog(groups: Sequence[Mapping], group: str, length: int) -> int:
    """The backlog of ``group`` from ``XINFO GROUPS``: entries not yet delivered to it (lag)
    plus delivered but unacknowledged (pending). Without the group yet, the stream's length."""
    for g in groups:
        name = g['name'].decode() if isinstance(g['name'], bytes) else g['name']
        if name == group:
            lag = g.get('lag')
            if lag is None:  # Redis < 7, or a lag Redis cannot compute: be conservative
                lag = length
            return int(lag) + int(g.get('pending', 0))
    return length


def _check(stream: str, high_water: int) -> None:
    if not stream:
        raise ValueError('stream is required')
    if high_water < 1:
        raise ValueError(f'high_water must be >= 1, got {high_water}')


# KEYS[1] = stream; ARGV = k, k field names, then per entry: the event and its k field values.
# One command appends a whole batch inside Redis (a script runs atomically, so the batch is
# appended whole or not at all): per-entry XADDs from the client cost ~20 us each in redis-py's
# command packing and reply parsing, most of an ingestion request's time.
_APPEND_LUA = """
local k = tonumber(ARGV[1])
local ids = {}
local i = 2 + k
while i <= #ARGV do
  local fields = {'FIELD', ARGV[i]}
  for j = 1, k do
    fields[2 * j + 1] = ARGV[1 + j]
    fields[2 * j + 2] = ARGV[i + j]
  end
  ids[#ids + 1] = redis.call('XADD', KEYS[1], '*', unpack(fields))
  i = i + 1 + k
end
return ids
""".replace('FIELD', FIELD.decode())


def _script_args(events: Sequence[bytes], extra) -> list:
    """The script's ARGV for events with extra fields: one mapping for all, or one per event
    (with the same names)."""
    if not extra:
        return [0, *events]
    if isinstance(extra, Mapping):
        names, values = list(extra), [list(extra.values())] * len(events)
    else:
        if len(extra) != len(events):
            raise ValueError(f'{len(extra)} extra field sets for {len(events)} events')
        names = list(extra[0])
        if any(list(x) != names for x in extra):
            raise ValueError('every event needs the same extra field names')
        values = [list(x.values()) for x in extra]
    args = [len(names), *names]
    for event, vals in zip(events, values, strict=True):
        args.append(event)
        args.extend(vals)
    return args


def _ids(replies) -> list[str]:
    return [i.decode() if isinstance(i, bytes) else i for i in replies]


class _Appender:
    _redis = redis.Redis
    _retry = Retry

    def __init__(
        self, url: str, stream: str, group: str = 'beam_pipelines', high_water: int = 1_000_000
    ):
        _check(stream, high_water)
        self.stream = stream
        self.group = group
        self.high_water = high_water
        self._client = self._redis.from_url(
            url,
            retry=self._retry(ExponentialBackoff(cap=2.0, base=0.05), 3),
            retry_on_error=[redis.ConnectionError, redis.TimeoutError],
        )
        self._append = self._client.register_script(_APPEND_LUA)


class StreamAppender(_Appender):
    """Appends raw events to a Redis stream and reports the consumer group's backlog.

    Args:
        url: Redis URL.
        stream: the stream name.
        group: the pipeline's consumer group (its backlog is what it has not acknowledged).
        high_water: the backlog above which :meth:`over_high_water` is true.
    """

    def append(self, events: Sequence[bytes], extra=None) -> list:
        """Appends the events (one entry each, in order) atomically; returns the entry ids.

        Args:
            events: the raw events.
            extra: more fields: one mapping for every entry, or one mapping per event (e.g.
                the MQTT topic).
        """
        if not events:
            return []
        return _ids(self._append(keys=[self.stream], args=_script_args(events, extra)))

    def backlog(self) -> int:
        """Entries the consumer group has not yet acknowledged (lag + pending)."""
        try:
            groups = self._client.xinfo_groups(self.stream)
        except redis.ResponseError:  # no such stream yet
            return 0
        return group_backlog(groups, self.group, int(self._client.xlen(self.stream)))

    def over_high_water(self) -> bool:
        return self.backlog() > self.high_water

    def ping(self) -> bool:
        try:
            return bool(self._client.ping())
        except redis.RedisError:
            return False

    def close(self) -> None:
        self._client.close()


class AsyncStreamAppender(_Appender):
    """:class:`StreamAppender` for asyncio (same arguments, coroutine methods)."""

    _redis = redis.asyncio.Redis
    _retry = redis.asyncio.retry.Retry

    async def append(self, events: Sequence[bytes], extra=None) -> list:
        if not events:
            return []
        return _ids(await self._append(keys=[self.stream], args=_script_args(events, extra)))

    async def backlog(self) -> int:
        try:
            groups = await self._client.xinfo_groups(self.stream)
        except redis.ResponseError:
            return 0
        return group_backlog(groups, self.group, int(await self._client.xlen(self.stream)))

    async def ping(self) -> bool:
        try:
            return bool(await self._client.ping())
        except redis.RedisError:
            return False

    async def close(self) -> None:
        await self._client.aclose()
