"""A subject's traces in output files, on any Beam filesystem (local, s3://, gs://).

Values are compared exactly, never as substrings: erasing ``u1`` leaves ``u1-2`` and an amount
of ``12345`` alone.

* Parquet files (events, aggregates, anomalies, features, quality): a row goes when a string
  column, a value inside its JSON ``attributes``, or a value in its free text (``payload``,
  ``error_message``) is one of the subject's identifiers. The file is rewritten with its schema,
  or deleted when no row is left.
* JSON Lines (dead letters): an envelope goes when its payload (JSON values, or the values its
  text holds) or any of its own values is an identifier.
* ``report.html`` is a view of the outputs beside it: it is rendered again from them once they
  are erased, so its dead-letter samples and charts no longer show the subject.

A file is replaced whole: locally through a temporary file and a rename, on object stores by
one PUT (Beam's rename there is a copy and a delete).
"""

from __future__ import annotations

import contextlib
import io
import logging
import posixpath
from collections.abc import Iterable
from typing import Any

import numpy as np
import orjson
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq
from apache_beam.io.filesystems import FileSystems

from beam_pipelines.backup import archive
from beam_pipelines.backup.archive import list_files
from beam_pipelines.gdpr.matching import candidates
from beam_pipelines.gdpr.matching import json_values
from beam_pipelines.gdpr.matching import payload_values
from beam_pipelines.gdpr.subject import Subject
from beam_pipelines.observability.report import write_report
from beam_pipelines.schema import ATTRIBUTES

__all__ = [
    'erase',
    'erase_matching',
    'file_values',
    'find',
    'read_bytes',
    'replace_file',
]

_LOGGER = logging.getLogger(__name__)
_FREE_TEXT = ('payload', 'error_message')
REPORT = 'report.html'


def read_bytes(path: str) -> bytes:
    with archive.open_read(path) as f:
        return f.read()


def replace_file(path: str, data: bytes | None) -> None:
    """Replaces a file's bytes whole (a temporary file and a rename locally, one PUT on object
    stores), or deletes it (``None``)."""
    if data is None:
        FileSystems.delete([path])
    else:
        archive.write_atomically(path, data, 'application/octet-stream')


def _is_text(column) -> bool:
    return pa.types.is_string(column.type) or pa.types.is_large_string(column.type)


def _row_values(name: str, value: str) -> set[str]:
    """The values one cell holds besides itself."""
    if name == ATTRIBUTES:
        with contextlib.suppress(orjson.JSONDecodeError):
            return set(json_values(orjson.loads(value)))
    if name in _FREE_TEXT:
        return candidates(value)
    return set()


def _parquet_hits(table: pa.Table, wanted: frozenset[str]) -> np.ndarray:
    hit = np.zeros(table.num_rows, dtype=bool)
    keys = pa.array(sorted(wanted), pa.string())
    for name in table.column_names:
        column = table.column(name)
        if not _is_text(column):
            continue
        hit |= np.asarray(pc.is_in(column, keys).fill_null(False).to_numpy(zero_copy_only=False))
        if name in (ATTRIBUTES, *_FREE_TEXT):
            for i, value in enumerate(column.to_pylist()):
                if value and not hit[i] and _row_values(name, value) & wanted:
                    hit[i] = True
    return hit


def _envelope_values(line: bytes) -> set[str]:
    try:
        envelope = orjson.loads(line)
    except orjson.JSONDecodeError:
        return candidates(line.decode('utf-8', errors='replace'))
    if not isinstance(envelope, dict):
        return set(json_values(envelope))
    values = payload_values(envelope) | set(json_values(envelope))
    return values | candidates(str(envelope.get('error_message') or ''))


def file_values(path: str) -> set[str]:
    """Every distinct value a Parquet or JSON Lines file holds (for tombstone matching)."""
    data = read_bytes(path)
    values: set[str] = set()
    if path.endswith('.parquet'):
        table = pq.read_table(io.BytesIO(data))
        for name in table.column_names:
            column = table.column(name)
            if _is_text(column):
                for value in pc.unique(column).to_pylist():
                    if value:
                        values.add(value)
                        values |= _row_values(name, value)
    elif path.endswith('.jsonl'):
        for line in data.splitlines():
            values |= _envelope_values(line)
    return values


def _scan(path: str, wanted: frozenset[str]) -> tuple[list, bytes | None] | None:
    """``(found, rewritten)`` for a data file holding a wanted value (``rewritten`` None: delete
    it); None when it holds none or is not a data file."""
    if path.endswith('.parquet'):
        table = pq.read_table(io.BytesIO(read_bytes(path)))
        hit = _parquet_hits(table, wanted)
        if not hit.any():
            return None
        kept = table.filter(pa.array(~hit))
        found = table.filter(pa.array(hit)).to_pylist()
        if not kept.num_rows:
            return found, None
        out = io.BytesIO()
        pq.write_table(kept, out)
        return found, out.getvalue()
    if path.endswith('.jsonl'):
        lines = read_bytes(path).splitlines(keepends=True)
        hits = [bool(_envelope_values(line) & wanted) for line in lines]
        if not any(hits):
            return None
        found = [orjson.loads(line) for line, h in zip(lines, hits) if h]
        kept = b''.join(line for line, h in zip(lines, hits) if not h)
        return found, kept or None
    return None


def find(roots: list[str], subject: Subject) -> dict[str, Any]:
    """The subject's rows and lines, per file."""
    wanted = frozenset(subject.identifiers)
    out = {}
    for root in roots:
        for path in list_files(root):
            scanned = _scan(path, wanted)
            if scanned:
                out[path] = scanned[0]
    return out


def erase(roots: list[str], subject: Subject) -> dict[str, int]:
    """Rewrites every file with a trace of the subject; returns counts."""
    return erase_matching(roots, subject.identifiers)


def erase_matching(roots: list[str], values: Iterable[str]) -> dict[str, int]:
    """Rewrites every data file holding one of ``values`` and renders the reports beside them
    again; returns counts (files rewritten and deleted, rows, lines, reports)."""
    wanted = frozenset(v for v in values if v)
    counts = {'files_rewritten': 0, 'files_deleted': 0, 'rows': 0, 'lines': 0, 'reports': 0}
    changed: set[str] = set()
    for root in roots:
        for path in list_files(root):
            scanned = _scan(path, wanted) if wanted else None
            if not scanned:
                continue
            found, rewritten = scanned
            counts['lines' if path.endswith('.jsonl') else 'rows'] += len(found)
            replace_file(path, rewritten)
            counts['files_deleted' if rewritten is None else 'files_rewritten'] += 1
            changed.add(path)
            _LOGGER.info('erased subject traces from %s', path)
        counts['reports'] += _render_reports(root, changed)
    return counts


def _render_reports(root: str, changed: set[str]) -> int:
    rendered = 0
    for path in list_files(root):
        if posixpath.basename(path) != REPORT:
            continue
        run_root = path[: -len(REPORT)].rstrip('/')
        if any(c.startswith(run_root + '/') for c in changed):
            write_report(run_root)
            rendered += 1
    return rendered
