"""A subject's traces in output files, on any Beam filesystem (local, s3://, gs://).

* Parquet files (events, aggregates, anomalies, features, quality): rows with a trace in any
  string column are dropped; the file is rewritten with its schema (or deleted when no row is
  left).
* JSON Lines (dead letters): lines with a trace are dropped.
* Other text (run summaries, ``report.html``, lineage): each trace is replaced by
  ``[erased]``; these files are derived views, so the rest of the file stays useful.

A rewrite goes to a temporary file first and replaces the original by rename.
"""

from __future__ import annotations

import contextlib
import io
import logging
from typing import Any

import numpy as np
import orjson
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq
from apache_beam.io.filesystems import FileSystems

from beam_pipelines.gdpr.matching import Matcher
from beam_pipelines.gdpr.matching import json_values
from beam_pipelines.gdpr.matching import payload_values
from beam_pipelines.gdpr.subject import Subject
from beam_pipelines.schema import ATTRIBUTES

__all__ = [
    'erase',
    'erase_matching',
    'file_values',
    'find',
    'list_files',
    'read_bytes',
    'replace_file',
]

_LOGGER = logging.getLogger(__name__)
_TEXT = ('.json', '.html', '.mmd', '.txt', '.csv', '.log')
REDACTED = '[erased]'


def list_files(root: str) -> list[str]:
    """Every file under ``root`` (recursively)."""
    pattern = FileSystems.join(root.rstrip('/'), '**')
    return sorted(m.path for m in FileSystems.match([pattern])[0].metadata_list)


def read_bytes(path: str) -> bytes:
    with FileSystems.open(path) as f:
        return f.read()


def replace_file(path: str, data: bytes | None) -> None:
    if data is None:
        FileSystems.delete([path])
        return
    tmp = f'{path}.erase-tmp'
    with FileSystems.create(tmp) as f:
        f.write(data)
    FileSystems.rename([tmp], [path])


def _parquet_mask(table: pa.Table, matcher: Matcher) -> np.ndarray:
    hit = np.zeros(table.num_rows, dtype=bool)
    for name in table.column_names:
        column = table.column(name)
        if pa.types.is_string(column.type) or pa.types.is_large_string(column.type):
            hit |= matcher.arrow_mask(column)
    return hit


def _line_hit(line: bytes, matcher: Matcher) -> bool:
    text = line.decode('utf-8', errors='replace')
    if matcher.search(text):
        return True
    try:  # a dead letter whose payload is base64
        envelope = orjson.loads(line)
    except orjson.JSONDecodeError:
        return False
    return isinstance(envelope, dict) and any(
        matcher.equals(v) or matcher.search(v) for v in payload_values(envelope)
    )


def _scan(path: str, matcher: Matcher) -> tuple[str, Any, bytes | None]:
    """``(kind, found, rewritten)``: what the file holds on the subject, and its new bytes
    (``None`` to delete; the original bytes when nothing changes)."""
    data = read_bytes(path)
    if path.endswith('.parquet'):
        table = pq.read_table(io.BytesIO(data))
        hit = _parquet_mask(table, matcher)
        if not hit.any():
            return 'parquet', [], data
        kept = table.filter(pa.array(~hit))
        found = table.filter(pa.array(hit)).to_pylist()
        if not kept.num_rows:
            return 'parquet', found, None
        out = io.BytesIO()
        pq.write_table(kept, out)
        return 'parquet', found, out.getvalue()
    if path.endswith('.jsonl'):
        lines = data.splitlines(keepends=True)
        hits = [line for line in lines if _line_hit(line, matcher)]
        if not hits:
            return 'jsonl', [], data
        kept = [line for line in lines if not _line_hit(line, matcher)]
        return 'jsonl', [orjson.loads(h) for h in hits], b''.join(kept) if kept else None
    if path.endswith(_TEXT):
        text = data.decode('utf-8', errors='replace')
        count = matcher.count(text)
        if not count:
            return 'text', 0, data
        return 'text', count, matcher.redact(text, REDACTED).encode('utf-8')
    return 'other', [], data


def file_values(path: str) -> set[str]:
    """Every distinct value a Parquet or JSON Lines file holds: strings of every string column,
    the values inside JSON attributes, and the values of dead-letter payloads."""
    data = read_bytes(path)
    values: set[str] = set()
    if path.endswith('.parquet'):
        table = pq.read_table(io.BytesIO(data))
        for name in table.column_names:
            column = table.column(name)
            if not (pa.types.is_string(column.type) or pa.types.is_large_string(column.type)):
                continue
            distinct = [v for v in pc.unique(column).to_pylist() if v]
            values.update(distinct)
            if name == ATTRIBUTES:
                for doc in distinct:
                    with contextlib.suppress(orjson.JSONDecodeError):
                        values.update(json_values(orjson.loads(doc)))
    elif path.endswith('.jsonl'):
        for line in data.splitlines():
            with contextlib.suppress(orjson.JSONDecodeError):
                envelope = orjson.loads(line)
                if isinstance(envelope, dict):
                    values.update(payload_values(envelope))
                    values.update(json_values(envelope))
    return values


def find(roots: list[str], subject: Subject) -> dict[str, Any]:
    """The subject's rows and lines per file, and the count of traces in text files."""
    matcher = subject.matcher()
    out = {}
    for root in roots:
        for path in list_files(root):
            _, found, _ = _scan(path, matcher)
            if found:
                out[path] = found
    return out


def erase(roots: list[str], subject: Subject) -> dict[str, int]:
    """Rewrites every file with a trace; returns counts (files, rows, lines, redactions)."""
    return erase_matching(roots, subject.matcher())


def erase_matching(roots: list[str], matcher: Matcher) -> dict[str, int]:
    """Rewrites every file with a value ``matcher`` finds; returns counts."""
    counts = {'files_rewritten': 0, 'files_deleted': 0, 'rows': 0, 'lines': 0, 'redactions': 0}
    for root in roots:
        for path in list_files(root):
            kind, found, rewritten = _scan(path, matcher)
            if not found:
                continue
            if kind == 'parquet':
                counts['rows'] += len(found)
            elif kind == 'jsonl':
                counts['lines'] += len(found)
            else:
                counts['redactions'] += found
            replace_file(path, rewritten)
            counts['files_deleted' if rewritten is None else 'files_rewritten'] += 1
            _LOGGER.info('erased subject traces from %s', path)
    return counts
