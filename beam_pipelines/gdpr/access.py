"""Access and portability (GDPR art. 15 and 20): everything held on a subject, as one bundle.

The bundle is ``subject.json`` (every store, every record) and one CSV per table, file or key
kind, in a directory or a ``.zip``. Encrypted fields are decrypted with the subject's data keys,
so the subject gets its data back, not ciphertext; a field whose key is gone (the subject was
erased) is shown as ``null`` with its name under ``shredded``.
"""

from __future__ import annotations

import csv
import datetime as dt
import io
import os
import zipfile
from pathlib import Path
from typing import Any

import orjson

from beam_pipelines.gdpr import crypto
from beam_pipelines.gdpr.audit import audited
from beam_pipelines.gdpr.erase import Stores
from beam_pipelines.gdpr.keystore import KeyStore
from beam_pipelines.gdpr.secrets import KeyRing
from beam_pipelines.gdpr.stores import files as file_store
from beam_pipelines.gdpr.stores import postgres as pg_store
from beam_pipelines.gdpr.stores import redis as redis_store
from beam_pipelines.gdpr.subject import Subject

__all__ = ['collect', 'export_subject', 'write_bundle']


class _Decrypter:
    def __init__(self, keys: dict[str, bytes]):
        self._keys = keys
        self.shredded: set[str] = set()

    def value(self, value: Any, field: str) -> Any:
        if not crypto.is_ciphertext(value):
            return value
        for subject, key in self._keys.items():
            try:
                return orjson.loads(crypto.decrypt_value(value, key, subject, field))
            except crypto.CryptoError:
                continue
        self.shredded.add(field)
        return None

    def row(self, row: dict) -> dict:
        out = {}
        for name, value in row.items():
            if name == 'attributes' and value:
                doc = orjson.loads(value) if isinstance(value, str) else value
                value = {k: self.value(v, k) for k, v in doc.items()}
            else:
                value = self.value(value, name)
            out[name] = value
        return out


def collect(stores: Stores, subject: Subject, master_keys: KeyRing | None) -> dict[str, Any]:
    """What every store holds on the subject, decrypted where the keys allow."""
    keys = {}
    if master_keys is not None:
        keys = KeyStore(stores.store, stores.store_schema, master_keys).keys_for(
            list(subject.key_subjects), create=False
        )
        stores.store.rollback()
    decrypt = _Decrypter(keys)
    postgres = pg_store.find(stores.conn, stores.schema, subject)
    stores.conn.rollback()
    bundle: dict[str, Any] = {
        'subject': subject.entity_id,
        'exported_at': dt.datetime.now(dt.UTC).isoformat(),
        'postgres': {t: [decrypt.row(r) for r in rows] for t, rows in postgres.items()},
    }
    if stores.redis is not None:
        bundle['redis'] = redis_store.find(
            stores.redis, stores.redis_prefix, subject, stores.redis_streams
        )
    if stores.output_dirs:
        found = file_store.find(list(stores.output_dirs), subject)
        bundle['files'] = {
            path: [decrypt.row(r) for r in rows] if isinstance(rows, list) else rows
            for path, rows in found.items()
        }
    bundle['shredded'] = sorted(decrypt.shredded)
    return bundle


def _cell(value: Any) -> Any:
    if isinstance(value, (dict, list)):
        return orjson.dumps(value).decode()
    if isinstance(value, (dt.datetime, dt.date)):
        return value.isoformat()
    return value


def _csv(rows: list[dict]) -> str:
    columns = list(dict.fromkeys(k for r in rows for k in r))
    out = io.StringIO()
    writer = csv.DictWriter(out, fieldnames=columns)
    writer.writeheader()
    for row in rows:
        writer.writerow({k: _cell(v) for k, v in row.items()})
    return out.getvalue()


def _tables(bundle: dict[str, Any]) -> dict[str, list[dict]]:
    tables = {f'postgres_{t}.csv': rows for t, rows in bundle['postgres'].items() if rows}
    redis = bundle.get('redis') or {}
    keys = [{'key': k, 'value': v} for k, v in (redis.get('keys') or {}).items()]
    if keys:
        tables['redis_keys.csv'] = keys
    entries = [{'stream': s, **e} for s, es in (redis.get('streams') or {}).items() for e in es]
    if entries:
        tables['redis_streams.csv'] = entries
    for i, (path, rows) in enumerate(sorted((bundle.get('files') or {}).items())):
        if isinstance(rows, list) and rows:
            tables[f'file_{i:03d}_{Path(path).name}.csv'] = [{'file': path, **r} for r in rows]
    return tables


def write_bundle(bundle: dict[str, Any], output: str) -> list[str]:
    """Writes ``subject.json`` and the CSVs to ``output`` (a directory, or a ``.zip``)."""
    members = {'subject.json': orjson.dumps(bundle, option=orjson.OPT_INDENT_2, default=str)}
    members.update({f'csv/{n}': _csv(rows).encode() for n, rows in _tables(bundle).items()})
    # The bundle is personal data in plain text: readable by its owner only.
    if output.endswith('.zip'):
        fd = os.open(output, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, 'wb') as f, zipfile.ZipFile(f, 'w', zipfile.ZIP_DEFLATED) as z:
            for name, data in members.items():
                z.writestr(name, data)
    else:
        root = Path(output)
        for name, data in members.items():
            (root / name).parent.mkdir(mode=0o700, parents=True, exist_ok=True)
            fd = os.open(root / name, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
            with os.fdopen(fd, 'wb') as f:
                f.write(data)
    return sorted(members)


def export_subject(stores: Stores, subject: Subject, master_keys, output: str, who: str) -> dict:
    """Collects and writes the bundle, under an audit record; returns its id and counts."""
    with audited(stores.store, stores.store_schema, 'access', who) as record:
        bundle = collect(stores, subject, master_keys)
        members = write_bundle(bundle, output)
        record.counts = {
            'postgres': {t: len(r) for t, r in bundle['postgres'].items()},
            'redis': {k: len(v) for k, v in (bundle.get('redis') or {}).items()},
            'files': {'files': len(bundle.get('files') or {})},
        }
        record.stores = [s for s in ('postgres', 'redis', 'files') if s in bundle]
    return {'request_id': record.request_id, 'members': members, 'counts': record.counts}
