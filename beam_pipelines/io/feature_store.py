"""``WriteFeaturesToRedis``: the online feature store, the latest feature vector per entity.

For each entity, the feature row of its latest event (the last row of a table, by time) goes to
the hash ``{prefix}features:{entity}`` with one field per feature and ``event_time_us``. A Lua
script replaces the whole hash only if the stored vector is not newer, so out-of-order or
replayed tables never roll an entity back, and a field that became null does not keep an old
value. Nulls are stored as empty strings. The keys carry the TTL. Serving reads one
``HGETALL`` and gets exactly the offline row of that event (tested).
"""

from __future__ import annotations

import math

import apache_beam as beam
import pyarrow as pa
import pyarrow.compute as pc
import redis
from apache_beam.metrics import Metrics
from redis.backoff import ExponentialBackoff
from redis.retry import Retry

from beam_pipelines.io.redis_sink import again_on_noscript

__all__ = ['WriteFeaturesToRedis', 'feature_key']

NAMESPACE = 'beam_pipelines'

# KEYS[1] = the entity's hash; ARGV[1] = event time (µs); ARGV[2] = TTL (s); ARGV[3..] = fields.
_REPLACE_IF_NEWER = """
local current = redis.call('HGET', KEYS[1], 'event_time_us')
if current and tonumber(current) > tonumber(ARGV[1]) then return 0 end
redis.call('DEL', KEYS[1])
redis.call('HSET', KEYS[1], 'event_time_us', ARGV[1], unpack(ARGV, 3))
redis.call('EXPIRE', KEYS[1], ARGV[2])
return 1
"""


def feature_key(prefix: str, entity: str) -> str:
    return f'{prefix}features:{entity}'


class WriteFeaturesToRedis(beam.PTransform):
    """Writes the latest feature vector per entity (see the module docstring).

    Args:
        url: Redis URL.
        prefix: key prefix.
        ttl_secs: expiry of the hashes.
    """

    def __init__(self, url: str, prefix: str = 'bp:', ttl_secs: int = 7 * 24 * 3600):
        super().__init__()
        if ttl_secs < 1:
            raise ValueError(f'ttl_secs must be >= 1, got {ttl_secs}')
        self._fn = _WriteLatestFn(url, prefix, ttl_secs)

    def expand(self, features):
        return features | 'LatestPerEntity' >> beam.ParDo(self._fn)


class _WriteLatestFn(beam.DoFn):
    def __init__(self, url, prefix, ttl_secs):
        self._url = url
        self._prefix = prefix
        self._ttl = ttl_secs

    def setup(self):
        self._client = redis.Redis.from_url(
            self._url,
            retry=Retry(ExponentialBackoff(cap=2.0, base=0.05), 5),
            retry_on_error=[redis.ConnectionError, redis.TimeoutError],
        )
        self._script = self._client.register_script(_REPLACE_IF_NEWER)
        self._written = Metrics.counter(NAMESPACE, 'online_feature_vectors')

    def teardown(self):
        self._client.close()

    def process(self, table: pa.Table):
        if table.num_rows == 0:
            return
        times = pc.cast(table.column('event_time'), pa.int64()).to_pylist()
        entities = table.column('entity_id').to_pylist()
        last: dict[str, int] = {}
        for i, (entity, t) in enumerate(zip(entities, times, strict=True)):
            if entity not in last or t >= times[last[entity]]:
                last[entity] = i  # the latest row (the last one among equal times)
        names = [c for c in table.column_names if c not in ('entity_id', 'event_time')]
        rows = table.take(list(last.values())).to_pylist()
        calls = []
        for row, i in zip(rows, last.values(), strict=True):
            fields = []
            for name in names:
                fields += [name, _text(row[name])]
            us = times[i]  # exact microseconds, not through a float
            calls.append(([feature_key(self._prefix, row['entity_id'])], [us, self._ttl, *fields]))
        again_on_noscript(lambda: self._write(calls))  # replace-if-newer: idempotent
        self._written.inc(len(rows))
        yield len(rows)

    def _write(self, calls: list) -> None:
        pipe = self._client.pipeline(transaction=False)
        for keys, args in calls:
            self._script(keys=keys, args=args, client=pipe)
        pipe.execute()


def _text(value) -> str:
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return ''
    return repr(value) if isinstance(value, float) else str(value)
