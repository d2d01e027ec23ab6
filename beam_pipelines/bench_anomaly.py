"""The anomaly-detection stage alone: points scored per second on one core.

Scores N window aggregates of K keys (a seasonal series with noise and a few spikes) with the
default detectors through :class:`~beam_pipelines.anomaly.shard.ShardModels`, the plain code
the Beam step wraps, in one process: the per-core cost of the stage, without the pipeline.

    python -m beam_pipelines.bench_anomaly --points 200000 --keys 1000
"""

from __future__ import annotations

import argparse
import json
import resource
import sys
import time

import numpy as np
import pyarrow as pa

from beam_pipelines.anomaly.shard import ShardModels
from beam_pipelines.anomaly.spec import DEFAULT_SPEC
from beam_pipelines.columnar.timestamps import TIMESTAMP_TYPE

__all__ = ['measure']


def _points(points: int, keys: int, seed: int) -> pa.Table:
    rng = np.random.default_rng(seed)
    per_key = max(1, points // keys)
    key = np.repeat(np.arange(keys), per_key)
    step = np.tile(np.arange(per_key), keys)
    values = 100 + 20 * np.sin(step * 2 * np.pi / 288) + rng.normal(0, 3, key.size)
    spikes = rng.random(key.size) < 0.001
    values[spikes] *= 5
    micros = (1714521600 + step * 60) * 1_000_000
    return pa.table(
        {
            'entity_id': pa.array([f'user-{k:06d}' for k in key]),
            'event_type': pa.array(['click'] * key.size),
            'window_start': pa.array(micros, pa.int64()).cast(TIMESTAMP_TYPE),
            'count': pa.array(values),
        }
    )


def measure(points: int, keys: int, seed: int = 1) -> dict:
    """Scores the points; returns points/s and what was found."""
    table = _points(points, keys, seed)
    shard = ShardModels(
        DEFAULT_SPEC, ('entity_id', 'event_type'), 'window_start', 'count', 7 * 24 * 3600.0
    )
    started = time.perf_counter()
    shard.add(table, 0)
    scored = shard.release(2**62)
    seconds = time.perf_counter() - started
    flagged = int(np.asarray(scored.column('is_anomaly').fill_null(False)).sum())
    return {
        'points': table.num_rows,
        'keys': keys,
        'seconds': round(seconds, 3),
        'points_per_sec_per_core': round(table.num_rows / seconds),
        'anomalies': flagged,
        'peak_rss_mb': round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024),
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog='bench_anomaly', description=__doc__.split('\n\n')[0])
    parser.add_argument('--points', type=int, default=200_000)
    parser.add_argument('--keys', type=int, default=1_000)
    parser.add_argument('--seed', type=int, default=1)
    args = parser.parse_args(argv)
    print(json.dumps(measure(args.points, args.keys, args.seed)))
    return 0


if __name__ == '__main__':
    sys.exit(main())
