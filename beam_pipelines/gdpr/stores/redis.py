"""A subject's Redis data: keys naming it (window aggregates, series, feature vectors) and
entries of streams (the ingestion stream) that carry its values.

Keys are found with ``SCAN`` (never ``KEYS``, which blocks the server) on glob patterns with
the identifier escaped, then confirmed against the layouts: ``bp:latest:u1:click`` belongs to
``u1``, ``bp:latest:u10:click`` does not, and ``bp:latest:user:42:click`` belongs to
``user:42``. Keys of a sync to Redis (percent-encoded key parts) are found too.
"""

from __future__ import annotations

import re
import urllib.parse
from typing import Any

import redis

from beam_pipelines.gdpr.matching import payload_values
from beam_pipelines.gdpr.subject import Subject

__all__ = ['enforce_redis', 'erase', 'find']

_GLOB = re.compile(r'([*?\[\]\\])')
_SCAN_COUNT = 1000


def _glob_escape(text: str) -> str:
    return _GLOB.sub(r'\\\1', text)


_LAYOUTS = ('latest', 'series', 'series_data')  # {prefix}{layout}:{entity}:{event_type}
_FEATURES = 'features'  # {prefix}features:{entity}


def _belongs(key: str, prefix: str, entity: str) -> bool:
    """Whether a key of the pipelines' layouts (or a sync's, whose key parts are
    percent-encoded) names ``entity``; an entity may itself hold ``:``."""
    rest = key[len(prefix) :]
    if rest == f'{_FEATURES}:{entity}':
        return True
    if any(rest.startswith(f'{layout}:{entity}:') for layout in _LAYOUTS):
        return True
    return entity in (urllib.parse.unquote(part) for part in rest.split(':'))


def _keys(client: redis.Redis, prefix: str, subject: Subject) -> list[str]:
    found = set()
    for value in subject.entity_values:
        pattern = f'{_glob_escape(prefix)}*{_glob_escape(value)}*'
        encoded = urllib.parse.quote(value, safe='')
        patterns = {pattern, f'{_glob_escape(prefix)}*{_glob_escape(encoded)}*'}
        for pattern in patterns:
            for key in client.scan_iter(match=pattern, count=_SCAN_COUNT):
                key = key.decode() if isinstance(key, bytes) else key
                if _belongs(key, prefix, value):
                    found.add(key)
    return sorted(found)


def _stream_keys(client: redis.Redis, prefix: str, streams: tuple[str, ...]) -> list[str]:
    """The streams below the prefix and those named (an ingestion stream named on its own):
    never every stream of the server, which other applications may share."""
    found = {
        key.decode() if isinstance(key, bytes) else key
        for key in client.scan_iter(
            match=f'{_glob_escape(prefix)}*', count=_SCAN_COUNT, _type='stream'
        )
    }
    found.update(s for s in streams if client.type(s) in (b'stream', 'stream'))
    return sorted(found)


def _stream_entries(
    client: redis.Redis, prefix: str, streams: tuple[str, ...], subject: Subject
) -> dict[str, list[tuple[str, dict]]]:
    wanted = set(subject.identifiers)
    out = {}
    for key in _stream_keys(client, prefix, streams):
        hits = []
        last = '-'
        while True:
            batch = client.xrange(key, min=last, max='+', count=_SCAN_COUNT)
            for entry_id, fields in batch:
                entry_id = entry_id.decode() if isinstance(entry_id, bytes) else entry_id
                text = {_text(k): _text(v) for k, v in fields.items()}
                if any(payload_values({'payload': v}) & wanted for v in text.values()):
                    hits.append((entry_id, text))
            if len(batch) < _SCAN_COUNT:
                break
            last = '(' + (
                batch[-1][0].decode() if isinstance(batch[-1][0], bytes) else batch[-1][0]
            )
        if hits:
            out[key] = hits
    return out


def _text(value) -> str:
    return value.decode('utf-8', errors='replace') if isinstance(value, bytes) else str(value)


def _dump(client: redis.Redis, key: str) -> Any:
    kind = _text(client.type(key))
    if kind == 'hash':
        return {_text(k): _text(v) for k, v in client.hgetall(key).items()}
    if kind == 'zset':
        return [[_text(m), s] for m, s in client.zrange(key, 0, -1, withscores=True)]
    if kind == 'string':
        return _text(client.get(key))
    if kind in ('list', 'set'):
        members = client.lrange(key, 0, -1) if kind == 'list' else client.smembers(key)
        return [_text(m) for m in members]
    return None


def find(
    client: redis.Redis, prefix: str, subject: Subject, streams: tuple[str, ...] = ()
) -> dict[str, Any]:
    """The subject's keys with their values, and its stream entries."""
    return {
        'keys': {key: _dump(client, key) for key in _keys(client, prefix, subject)},
        'streams': {
            key: [{'id': i, 'fields': f} for i, f in entries]
            for key, entries in _stream_entries(client, prefix, streams, subject).items()
        },
    }


def erase(
    client: redis.Redis, prefix: str, subject: Subject, streams: tuple[str, ...] = ()
) -> dict[str, int]:
    """Deletes the subject's keys and stream entries; returns counts."""
    keys = _keys(client, prefix, subject)
    deleted = client.delete(*keys) if keys else 0
    entries = 0
    for key, hits in _stream_entries(client, prefix, streams, subject).items():
        entries += client.xdel(key, *(i for i, _ in hits))
    return {'keys': int(deleted), 'stream_entries': int(entries)}


def enforce_redis(
    client: redis.Redis, prefix: str, tombstones, ring, streams: tuple[str, ...] = ()
) -> dict[str, int]:
    """Deletes the keys whose entity, and the stream entries whose values, a tombstone names
    (``gdpr enforce``: what reached Redis after an erasure)."""
    if not tombstones:
        return {'keys': 0, 'stream_entries': 0}
    doomed = []
    for key in client.scan_iter(match=f'{_glob_escape(prefix)}*', count=_SCAN_COUNT):
        key = key.decode() if isinstance(key, bytes) else key
        rest = key[len(prefix) :]
        layout, _, tail = rest.partition(':')
        entity = tail if layout == _FEATURES else tail.rpartition(':')[0]
        parts = [urllib.parse.unquote(p) for p in rest.split(':')]
        if any(v and tombstones.matches(v, ring) for v in {entity, *parts}):
            doomed.append(key)
    deleted = client.delete(*doomed) if doomed else 0
    entries = 0
    for key in _stream_keys(client, prefix, streams):
        hits = []
        for entry_id, fields in client.xrange(key):
            values = set()
            for v in fields.values():
                values |= payload_values({'payload': _text(v)})
            if any(tombstones.matches(v, ring) for v in values):
                hits.append(entry_id)
        if hits:
            entries += client.xdel(key, *hits)
    return {'keys': int(deleted), 'stream_entries': int(entries)}
