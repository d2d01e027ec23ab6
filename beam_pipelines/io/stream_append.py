"""Appending events to the Redis stream the pipeline reads, with a backlog high-water mark.

Used by the ingestion front doors (the HTTP service, the MQTT bridge): they append raw JSON
events as the ``event`` field of stream entries (the format ``ReadFromRedisStream`` reads) and
push back on producers while the pipeline's consumer group is behind by more than
``high_water`` entries.
"""

from __future__ import annotations

import redis
from redis.backoff import ExponentialBackoff
from redis.retry import Retry

__all__ = ['StreamAppender']


class StreamAppender:
    """Appends raw events to a Redis stream and reports the consumer group's backlog.

    Args:
        url: Redis URL.
        stream: the stream name.
        group: the pipeline's consumer group; its backlog is what has not been delivered to it
            yet plus what it has not acknowledged. Without the group yet, the stream length.
        high_water: the backlog above which :meth:`over_high_water` is true.
    """

    def __init__(
        self, url: str, stream: str, group: str = 'beam_pipelines', high_water: int = 1_000_000
    ):
        if high_water < 1:
            raise ValueError(f'high_water must be >= 1, got {high_water}')
        self.stream = stream
        self.group = group
        self.high_water = high_water
        self._client = redis.Redis.from_url(
            url,
            retry=Retry(ExponentialBackoff(cap=2.0, base=0.05), 3),
            retry_on_error=[redis.ConnectionError, redis.TimeoutError],
        )

    def append(self, events: list[bytes]) -> list[str]:
        """Appends the events (one entry each, in order) in one round trip; returns the ids."""
        if not events:
            return []
        pipe = self._client.pipeline(transaction=False)
        for event in events:
            pipe.xadd(self.stream, {'event': event})
        return [i.decode() if isinstance(i, bytes) else i for i in pipe.execute()]

    def backlog(self) -> int:
        """Entries the consumer group has not yet acknowledged (lag + pending)."""
        try:
            groups = self._client.xinfo_groups(self.stream)
        except redis.ResponseError:  # no such stream yet
            return 0
        for g in groups:
            name = g['name'].decode() if isinstance(g['name'], bytes) else g['name']
            if name == self.group:
                lag = g.get('lag')
                if lag is None:  # Redis < 7, or a lag Redis cannot compute: be conservative
                    lag = self._client.xlen(self.stream)
                return int(lag) + int(g.get('pending', 0))
        return int(self._client.xlen(self.stream))

    def over_high_water(self) -> bool:
        return self.backlog() > self.high_water

    def ping(self) -> bool:
        try:
            return bool(self._client.ping())
        except redis.RedisError:
            return False

    def close(self) -> None:
        self._client.close()
