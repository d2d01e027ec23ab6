"""The raw pyarrow ceiling: clean JSON Lines parsed by Arrow's JSON reader and aggregated in
fixed windows with ``Table.group_by``, no validation, no Beam.

Only clean input (``generate_events --clean``: epoch-second timestamps, no bad records) can
take this path; it bounds what any JSON pipeline on this machine can do.

    python -m beam_pipelines.baselines.arrow_ceiling --input clean.jsonl --output_dir out_arrow
"""

from __future__ import annotations

import argparse
import os
import sys
import time

import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.json as pj
import pyarrow.parquet as pq

__all__ = ['run', 'window_aggregates']

_SCHEMA = pa.schema(
    [
        ('event_id', pa.string()),
        ('event_type', pa.string()),
        ('entity_id', pa.string()),
        ('timestamp', pa.float64()),
        ('value', pa.float64()),
        ('source', pa.string()),
    ]
)


def window_aggregates(events: pa.Table, micros: pa.Array, window_secs: float) -> pa.Table:
    """Count, sum, min, max and mean per (entity, type, fixed window) with ``Table.group_by``;
    ``micros`` are the events' times in epoch microseconds (>= 0)."""
    size_us = int(window_secs * 1e6)
    start = pc.multiply(pc.divide(micros, size_us), size_us)  # integer division: a floor here
    return (
        events.append_column('window_start', start)
        .group_by(['entity_id', 'event_type', 'window_start'])
        .aggregate(
            [
                ('event_id', 'count'),
                ('value', 'sum'),
                ('value', 'min'),
                ('value', 'max'),
                ('value', 'mean'),
            ]
        )
    )


def run(path: str, output_dir: str, window_secs: float = 60.0) -> dict[str, int]:
    table = pj.read_json(
        path,
        parse_options=pj.ParseOptions(explicit_schema=_SCHEMA, unexpected_field_behavior='ignore'),
    )
    micros = pc.cast(pc.multiply(table.column('timestamp'), 1e6), pa.int64())
    aggregates = window_aggregates(table, micros, window_secs)
    os.makedirs(output_dir, exist_ok=True)
    pq.write_table(aggregates, os.path.join(output_dir, 'aggregates.parquet'))
    return {'read': table.num_rows, 'aggregates': aggregates.num_rows}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog='arrow_ceiling', description=__doc__.split('\n\n')[0])
    parser.add_argument('--input', required=True)
    parser.add_argument('--output_dir', required=True)
    parser.add_argument('--window_size_secs', type=float, default=60.0)
    args = parser.parse_args(argv)
    started = time.perf_counter()
    counts = run(args.input, args.output_dir, args.window_size_secs)
    seconds = time.perf_counter() - started
    print(f'arrow_ceiling: read {counts["read"]:,} records in {seconds:.1f} s ({counts})')
    return 0


if __name__ == '__main__':
    sys.exit(main())
