"""A subject's Redis data: keys naming it (window aggregates, series, feature vectors) and
entries of streams (the ingestion stream) that carry its values.

Keys are found with ``SCAN`` (never ``KEYS``, which blocks the server) on glob patterns with
the identifier escaped, then confirmed segment by segment: ``bp:latest:u1:click`` belongs to
``u1``, ``bp:latest:u10:click`` does not.
"""

from __future__ import annotations

import re
from typing import Any

import redis

from beam_pipelines.gdpr.subject import Subject

__all__ = ['erase', 'find']

_GLOB = re.compile(r'([*?\[\]\\])')
_SCAN_COUNT = 1000


def _glob_escape(text: str) -> str:
    return _GLOB.sub(r'\\\1', text)


def _keys(client: redis.Redis, prefix: str, subject: Subject) -> list[str]:
    found = set()
    for value in subject.entity_values:
        pattern = f'{_glob_escape(prefix)}*{_glob_escape(value)}*'
        for key in client.scan_iter(match=pattern, count=_SCAN_COUNT):
            key = key.decode() if isinstance(key, bytes) else key
            if value in key[len(prefix) :].split(':'):
                found.add(key)
    return sorted(found)


def _stream_entries(client: redis.Redis, subject: Subject) -> dict[str, list[tuple[str, dict]]]:
    matcher = subject.matcher()
    out = {}
    for key in client.scan_iter(count=_SCAN_COUNT, _type='stream'):
        key = key.decode() if isinstance(key, bytes) else key
        hits = []
        last = '-'
        while True:
            batch = client.xrange(key, min=last, max='+', count=_SCAN_COUNT)
            for entry_id, fields in batch:
                entry_id = entry_id.decode() if isinstance(entry_id, bytes) else entry_id
                text = {_text(k): _text(v) for k, v in fields.items()}
                if any(matcher.search(v) for v in text.values()):
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


def find(client: redis.Redis, prefix: str, subject: Subject) -> dict[str, Any]:
    """The subject's keys with their values, and its stream entries."""
    return {
        'keys': {key: _dump(client, key) for key in _keys(client, prefix, subject)},
        'streams': {
            key: [{'id': i, 'fields': f} for i, f in entries]
            for key, entries in _stream_entries(client, subject).items()
        },
    }


def erase(client: redis.Redis, prefix: str, subject: Subject) -> dict[str, int]:
    """Deletes the subject's keys and stream entries; returns counts."""
    keys = _keys(client, prefix, subject)
    deleted = client.delete(*keys) if keys else 0
    entries = 0
    for key, hits in _stream_entries(client, subject).items():
        entries += client.xdel(key, *(i for i, _ in hits))
    return {'keys': int(deleted), 'stream_entries': int(entries)}
