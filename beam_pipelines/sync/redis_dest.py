"""A Redis destination: one hash per row, rewritten whole, so a re-run converges.

Layout:

* key ``{prefix}{table}:{key values joined by ':'}`` (e.g. ``bp:aggregates:e1:click:
  20260101T120000Z:20260101T120100Z``). In key parts, timestamps are ISO 8601 basic format in
  UTC (``YYYYMMDDTHHMMSS[.ffffff]Z``: no ':' of their own), and ``%`` and ``:`` inside a value
  are percent-encoded (``%25``, ``%3A``) so that a key always splits back into its parts.
* fields: the destination columns; values as strings: text as is, integers in decimal, floats
  in their shortest round-trip form (``1`` for 1.0, ``nan``, ``inf``), booleans ``true`` /
  ``false``, timestamps RFC 3339 in UTC with microseconds (``2026-01-01T12:00:00.000000Z``),
  dates ``YYYY-MM-DD``, other types (json, numeric, ...) in PostgreSQL's text form.
* NULL: the field is absent (``HGET`` gives nil); every write is ``DEL`` + ``HSET`` of the whole
  row in one ``MULTI``, so a field that became NULL disappears and no reader sees half a row.
* deletes: ``DEL`` of the key. With ``ttl_secs`` every written hash also gets ``EXPIRE``.

Commands go in pipelined transactions of ``chunk_rows`` rows. The client itself does not retry:
the sync retries a whole batch (idempotent) with its own backoff.
"""

from __future__ import annotations

import contextlib

import pyarrow as pa
import pyarrow.compute as pc
import redis
from redis.backoff import NoBackoff
from redis.retry import Retry

__all__ = ['RedisDestination', 'key_strings', 'value_strings']


def value_strings(column: pa.ChunkedArray | pa.Array) -> list[str | None]:
    """A column's values as the strings stored in the hashes (None for NULL)."""
    kind = column.type
    if pa.types.is_timestamp(kind):
        fmt = '%Y-%m-%dT%H:%M:%SZ' if kind.tz else '%Y-%m-%dT%H:%M:%S'
        return pc.strftime(column.cast(_micros(kind)), fmt).to_pylist()
    if pa.types.is_string(kind) or pa.types.is_large_string(kind):
        return column.to_pylist()
    return pc.cast(column, pa.string()).to_pylist()


def _micros(kind: pa.DataType) -> pa.DataType:
    # Microseconds (PostgreSQL's precision: %S then prints six decimals), in UTC when zoned.
    return pa.timestamp('us', 'UTC' if kind.tz else None)


def _key_part(column) -> pa.Array:
    if pa.types.is_timestamp(column.type):
        text = pc.strftime(column.cast(_micros(column.type)), '%Y%m%dT%H%M%SZ')
        return pc.replace_substring(text, '.000000Z', 'Z')
    text = pa.array(value_strings(column), pa.string())
    return pc.replace_substring(pc.replace_substring(text, '%', '%25'), ':', '%3A')


def key_strings(table: pa.Table, key: tuple[str, ...], prefix: str) -> list[str]:
    """The hash key of each row."""
    parts = [_key_part(table.column(k)) for k in key]
    joined = pc.binary_join_element_wise(*parts, ':')
    return pc.binary_join_element_wise(pa.scalar(prefix), joined, '').to_pylist()


class RedisDestination:
    """Writes batches as hashes (see the module docstring for the layout).

    Args:
        url: a Redis URL.
        prefix: key prefix, before the table name.
        table: the destination's name in keys.
        key: the key columns, in key order.
        ttl_secs: expiry of each written hash (None: none).
        chunk_rows: rows per pipelined transaction.
        client_name: how the connection shows in ``CLIENT LIST``.
        socket_timeout_secs: how long a command may block before it counts as lost.
    """

    transient = (redis.ConnectionError, redis.TimeoutError)
    rejected = (redis.ResponseError, redis.DataError)

    def __init__(
        self,
        url: str,
        prefix: str,
        table: str,
        key: tuple[str, ...],
        ttl_secs: int | None = None,
        chunk_rows: int = 1000,
        client_name: str = 'bp_sync',
        socket_timeout_secs: float = 30.0,
    ):
        if ttl_secs is not None and ttl_secs <= 0:
            raise ValueError(f'ttl_secs must be > 0, got {ttl_secs}')
        if chunk_rows < 1:
            raise ValueError(f'chunk_rows must be >= 1, got {chunk_rows}')
        self._prefix = f'{prefix}{table}:'
        self._key = key
        self._ttl = ttl_secs
        self._chunk = chunk_rows
        self._client = redis.Redis.from_url(
            url,
            retry=Retry(NoBackoff(), 0),
            client_name=client_name,
            socket_timeout=socket_timeout_secs,
            socket_connect_timeout=socket_timeout_secs,
        )
        self._client.ping()

    def reset(self, _error=None) -> None:
        """Drops the pooled connections (after a transient error); the next call reconnects."""
        self._client.connection_pool.disconnect()

    def close(self) -> None:
        with contextlib.suppress(redis.RedisError):
            self._client.close()

    def upsert(self, table: pa.Table) -> None:
        """Writes each row's hash whole (``DEL`` + ``HSET`` [+ ``EXPIRE``])."""
        keys = key_strings(table, self._key, self._prefix)
        names = table.column_names
        values = [value_strings(table.column(c)) for c in names]
        for start in range(0, len(keys), self._chunk):
            pipe = self._client.pipeline(transaction=True)
            for i in range(start, min(start + self._chunk, len(keys))):
                fields = {n: col[i] for n, col in zip(names, values) if col[i] is not None}
                pipe.delete(keys[i])
                pipe.hset(keys[i], mapping=fields)
                if self._ttl is not None:
                    pipe.expire(keys[i], self._ttl)
            pipe.execute()

    def delete(self, keys: pa.Table) -> None:
        """Deletes the hashes of these keys."""
        names = key_strings(keys, self._key, self._prefix)
        for start in range(0, len(names), self._chunk):
            self._client.delete(*names[start : start + self._chunk])
