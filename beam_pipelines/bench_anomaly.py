"""The anomaly-detection stage alone: points scored per second on one core.

Scores N window aggregates of K keys (a daily-seasonal series with noise and a few spikes)
with the default detectors through :class:`~beam_pipelines.anomaly.shard.ShardModels`, the
plain code the Beam step wraps, in one process: the per-core cost of the stage, without the
pipeline. Two shapes of the same points:

* ``batch``: all points released at once (a bounded run: each key scores its whole series);
* ``streaming``: one release per window, one point per key in each (a streaming run's shape).

The default, 50 keys of 4,000 points, leaves the 200-point warm-up on every key, so most points
get a verdict (1,000 keys of 200 points would never leave it and only measure the warm-up).

    python -m beam_pipelines.bench_anomaly --points 200000 --keys 50
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


def _shard() -> ShardModels:
    return ShardModels(
        DEFAULT_SPEC, ('entity_id', 'event_type'), 'window_start', 'count', 7 * 24 * 3600.0
    )


def _batch(table: pa.Table) -> tuple[float, pa.Table]:
    shard = _shard()
    started = time.perf_counter()
    shard.add(table, 0)
    scored = shard.release(2**62)
    return time.perf_counter() - started, scored


def _streaming(table: pa.Table) -> tuple[float, pa.Table]:
    shard, out = _shard(), []
    by_window = table.sort_by([('window_start', 'ascending'), ('entity_id', 'ascending')])
    window = np.asarray(by_window.column('window_start').cast(pa.int64()))
    starts = np.flatnonzero(np.r_[True, window[1:] != window[:-1]])
    releases = [
        by_window.slice(a, b - a)
        for a, b in zip(starts.tolist(), [*starts[1:].tolist(), len(window)], strict=True)
    ]
    started = time.perf_counter()
    for i, release in enumerate(releases):
        shard.add(release, i)
        out.append(shard.release(i))
    return time.perf_counter() - started, pa.concat_tables(out)


def measure(points: int, keys: int, seed: int = 1) -> dict:
    """Scores the points in both shapes; returns points/s and what was found."""
    table = _points(points, keys, seed)
    result = {'points': table.num_rows, 'keys': keys}
    for shape, score in (('batch', _batch), ('streaming', _streaming)):
        seconds, scored = score(table)
        result[shape] = {
            'seconds': round(seconds, 3),
            'points_per_sec_per_core': round(table.num_rows / seconds),
            'anomalies': int(np.asarray(scored.column('is_anomaly').fill_null(False)).sum()),
        }
    result['peak_rss_mb'] = round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024)
    return result


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog='bench_anomaly', description=__doc__.split('\n\n')[0])
    parser.add_argument('--points', type=int, default=200_000)
    parser.add_argument('--keys', type=int, default=50)
    parser.add_argument('--seed', type=int, default=1)
    args = parser.parse_args(argv)
    print(json.dumps(measure(args.points, args.keys, args.seed)))
    return 0


if __name__ == '__main__':
    sys.exit(main())
