"""The hand-written single-process script a data engineer would write instead of a pipeline.

The fastest plain tools for the flagship's work, and no Beam:

1. ``orjson`` decodes one line at a time;
2. hand-written checks validate each record (required ids, a finite number or null, a
   timestamp in the same formats and range as the flagship); failures go to a dead-letter
   file;
3. a Python ``set`` of event ids drops duplicates (first copy kept);
4. pyarrow builds the columns, assigns fixed windows and aggregates with ``Table.group_by``.

Outputs: ``events.parquet``, ``aggregates.parquet``, ``dead_letter.jsonl`` under
``--output_dir``. No retries, no resumability, one core: what Beam adds is what this lacks, and
``make bench`` measures what it costs.

    python -m beam_pipelines.baselines.plain_script --input events.jsonl --output_dir out_plain
"""

from __future__ import annotations

import argparse
import datetime as dt
import math
import os
import sys
import time

import orjson
import pyarrow as pa
import pyarrow.parquet as pq

from beam_pipelines.baselines.arrow_ceiling import window_aggregates

__all__ = ['run']

_MAX_SECS = 4102444800.0  # 2100-01-01, as the flagship
_REQUIRED = ('event_id', 'event_type', 'entity_id')


def _epoch_secs(value) -> float:
    if isinstance(value, bool):
        raise ValueError('timestamp: a boolean')
    if isinstance(value, str):
        text = value.strip()
        try:
            value = float(text)
        except ValueError:
            parsed = dt.datetime.fromisoformat(text)
            if parsed.tzinfo is None:
                raise ValueError('timestamp: no offset') from None
            value = parsed.timestamp()
            if not 0 <= value < _MAX_SECS:
                raise ValueError('timestamp: out of range') from None
            return value
    value = float(value)
    if abs(value) > 1e11:
        value /= 1000.0
    if not 0 <= value < _MAX_SECS:
        raise ValueError('timestamp: out of range')
    return value


def run(path: str, output_dir: str, window_secs: float = 60.0) -> dict[str, int]:
    """Processes one JSON Lines file; returns the counts."""
    seen: set[str] = set()
    ids, types, entities, times, values, sources = [], [], [], [], [], []
    dead = []
    read = duplicates = 0
    with open(path, 'rb') as f:
        for line in f:
            if not line.strip():
                continue
            read += 1
            try:
                record = orjson.loads(line)
                if not isinstance(record, dict):
                    raise ValueError('not an object')
                for key in _REQUIRED:
                    v = record.get(key)
                    if not isinstance(v, str) or not v.strip():
                        raise ValueError(f'{key}: missing or not a string')
                value = record.get('value')
                if value is not None:
                    if isinstance(value, bool):
                        raise ValueError('value: a boolean')
                    value = float(value)
                    if not math.isfinite(value):
                        raise ValueError('value: not finite')
                ts = _epoch_secs(record.get('timestamp'))
            except (ValueError, TypeError, orjson.JSONDecodeError) as exc:
                dead.append({'error': str(exc), 'payload': line.decode('utf-8', 'replace')})
                continue
            event_id = record['event_id'].strip()
            if event_id in seen:
                duplicates += 1
                continue
            seen.add(event_id)
            ids.append(event_id)
            types.append(record['event_type'].strip().lower())
            entities.append(record['entity_id'].strip())
            times.append(ts)
            values.append(value)
            sources.append(record.get('source'))
    micros = pa.array([int(t * 1e6) for t in times], pa.int64())
    events = pa.table(
        {
            'event_id': ids,
            'event_type': types,
            'entity_id': entities,
            'timestamp': micros.cast(pa.timestamp('us', tz='UTC')),
            'value': pa.array(values, pa.float64()),
            'source': pa.array(sources, pa.string()),
        }
    )
    aggregates = window_aggregates(events, micros, window_secs)
    os.makedirs(output_dir, exist_ok=True)
    pq.write_table(events, os.path.join(output_dir, 'events.parquet'))
    pq.write_table(aggregates, os.path.join(output_dir, 'aggregates.parquet'))
    with open(os.path.join(output_dir, 'dead_letter.jsonl'), 'wb') as f:
        f.writelines(orjson.dumps(d) + b'\n' for d in dead)
    return {
        'read': read,
        'valid': events.num_rows,
        'dead_letter': len(dead),
        'duplicates': duplicates,
        'aggregates': aggregates.num_rows,
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog='plain_script', description=__doc__.split('\n\n')[0])
    parser.add_argument('--input', required=True, help='A JSON Lines file.')
    parser.add_argument('--output_dir', required=True)
    parser.add_argument('--window_size_secs', type=float, default=60.0)
    args = parser.parse_args(argv)
    started = time.perf_counter()
    counts = run(args.input, args.output_dir, args.window_size_secs)
    seconds = time.perf_counter() - started
    print(f'plain_script: read {counts["read"]:,} records in {seconds:.1f} s ({counts})')
    return 0


if __name__ == '__main__':
    sys.exit(main())
