"""An independent, deliberately plain reference implementation of the flagship's semantics.

Standard-library JSON/CSV, the pydantic model row by row, dict-based deduplication and
statistics per window: slow and obvious, for checking the columnar pipeline against.
"""

from __future__ import annotations

import csv
import io
import json
import math
import statistics

import fastavro
import pyarrow.parquet as pq
import pydantic

from beam_pipelines.schema import Event


def read_records(path: str, fmt: str) -> tuple[list[dict], int]:
    """Returns (decodable records in file order, undecodable record count)."""
    if fmt == 'jsonl':
        records, bad = [], 0
        with open(path, 'rb') as f:
            for line in f.read().split(b'\n'):
                if not line.strip():
                    continue
                try:
                    value = json.loads(line.decode('utf-8'))
                except (UnicodeDecodeError, ValueError):
                    bad += 1
                    continue
                if isinstance(value, dict):
                    records.append(value)
                else:
                    bad += 1
        return records, bad
    if fmt == 'csv':
        with open(path, 'rb') as f:
            raw = f.read()
        lines = raw.split(b'\n')
        header = next(csv.reader([lines[0].decode()]))
        records, bad = [], 0
        for line in lines[1:]:
            if not line:
                continue
            try:
                cells = next(csv.reader(io.StringIO(line.decode('utf-8'))))
            except UnicodeDecodeError:
                bad += 1
                continue
            if len(cells) != len(header):
                bad += 1
                continue
            records.append({k: (v if v != '' else None) for k, v in zip(header, cells)})
        return records, bad
    if fmt == 'avro':
        with open(path, 'rb') as f:
            return list(fastavro.reader(f)), 0
    return pq.read_table(path).to_pylist(), 0


def nearest_rank(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[max(1, math.ceil(q * len(ordered))) - 1]


def reference(path: str, fmt: str, window_secs: float = 60.0) -> dict:
    records, undecodable = read_records(path, fmt)
    valid, invalid, duplicates, seen = [], 0, 0, set()
    for record in records:
        try:
            event = Event.model_validate(record)
        except pydantic.ValidationError:
            invalid += 1
            continue
        if event.event_id in seen:
            duplicates += 1
            continue
        seen.add(event.event_id)
        valid.append(event)
    windows: dict[tuple, list] = {}
    for e in valid:
        t = e.timestamp.timestamp()
        start = math.floor(t / window_secs) * window_secs
        windows.setdefault((e.entity_id, e.event_type, start), []).append(e.value)
    aggregates = {}
    for key, values in windows.items():
        numbers = [v for v in values if v is not None]
        aggregates[key] = {
            'count': len(values),
            'value_count': len(numbers),
            'sum': sum(numbers) if numbers else None,
            'min': min(numbers) if numbers else None,
            'max': max(numbers) if numbers else None,
            'mean': statistics.fmean(numbers) if numbers else None,
            'stddev': statistics.stdev(numbers) if len(numbers) > 1 else None,
            'p50': nearest_rank(numbers, 0.5) if numbers else None,
            'p95': nearest_rank(numbers, 0.95) if numbers else None,
        }
    return {
        'read': len(records) + undecodable,
        'valid': len(valid),
        'dead_letter': undecodable + invalid,
        'duplicates': duplicates,
        'event_ids': {e.event_id for e in valid},
        'aggregates': aggregates,
    }
