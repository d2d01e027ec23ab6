"""Evaluates the anomaly detectors on labelled NAB series, with NAB's own scoring rules.

::

    python -m beam_pipelines.evaluate_nab [--data_dir ../shared/datasets/nab] \\
        [--detector_spec spec.yaml] [--output nab_results.json]

Every series in ``labels_windows.json`` is scored through ``DetectAnomalies`` (the same path as
``detect_anomalies``), then measured with ``anomaly.nab``: the NAB score (standard,
reward-low-FP and reward-low-FN profiles; 0 = null detector, 100 = perfect) at one threshold
for all series chosen as NAB's optimiser does (the scores do not depend on the spec's threshold,
so the chosen one can be put in the spec as it is) and at the spec's own threshold; and per
series the window recall, the event precision and the false-positive events at the standard
profile's threshold. Two reference detectors are measured the same way on the same series, so
the figures compare like with like: a windowed Gaussian after NAB's (a Gaussian over the last
1,000 values; NAB's own scores nupic's tail probability, here ``1 - tail`` is scored, the
better of the two on these series) and a seeded uniform random detector. NAB's public
scoreboard covers 58 series; these are the ones in ``--data_dir``.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import sys
import time
import zlib
import zoneinfo

import numpy as np

from beam_pipelines import cli
from beam_pipelines.anomaly.nab import PROFILES
from beam_pipelines.anomaly.nab import Labelled
from beam_pipelines.anomaly.nab import best_threshold
from beam_pipelines.anomaly.nab import nab_score
from beam_pipelines.anomaly.nab import window_metrics
from beam_pipelines.anomaly.spec import DEFAULT_SPEC
from beam_pipelines.anomaly.spec import SpecError
from beam_pipelines.anomaly.spec import load_spec
from beam_pipelines.detect_anomalies import parse_time_us
from beam_pipelines.detect_anomalies import read_series
from beam_pipelines.detect_anomalies import score_series

__all__ = ['load_nab', 'run', 'windowed_gaussian']

PROG = 'evaluate_nab'
UTC = zoneinfo.ZoneInfo('UTC')
DEFAULT_DATA = os.path.join(os.path.dirname(__file__), '..', '..', 'shared', 'datasets', 'nab')


def load_nab(data_dir: str) -> list[tuple[Labelled, np.ndarray, list]]:
    """Each labelled series of the dataset: (labels, epoch µs, values)."""
    with open(os.path.join(data_dir, 'labels_windows.json')) as f:
        windows = json.load(f)
    out = []
    for name, spans in sorted(windows.items()):
        path = os.path.join(data_dir, 'data', os.path.basename(name))
        _, micros, values, _, _ = read_series(path, 'timestamp', 'value')
        bounds = tuple(tuple(parse_time_us(t, UTC) / 1e6 for t in span) for span in spans)
        out.append((Labelled(os.path.basename(name), micros / 1e6, bounds), micros, values))
    return out


def windowed_gaussian(values, window: int = 1000) -> np.ndarray:
    """NAB's windowed Gaussian reference: ``1 - Q(|x - mean| / std)`` over the previous
    ``window`` values (population std, floored at 1e-6)."""
    v = np.asarray([np.nan if x is None else x for x in values], float)
    out = np.zeros(len(v))
    for i in range(1, len(v)):
        w = v[max(0, i - window) : i]
        w = w[~np.isnan(w)]
        if len(w) == 0 or np.isnan(v[i]):
            continue
        std = max(float(w.std()), 1e-6)
        z = abs(v[i] - float(w.mean())) / std
        out[i] = 1 - 0.5 * math.erfc(z / math.sqrt(2))
    return out


def _random(name: str, n: int) -> np.ndarray:
    return np.random.default_rng(zlib.crc32(name.encode())).random(n)


def _measure(series, scores) -> dict:
    result = {}
    for profile in PROFILES:
        threshold, score = best_threshold(series, scores, profile)
        result[profile] = {'score': round(score, 1), 'threshold': threshold}
    threshold = result['standard']['threshold']
    result['series'] = {
        s.name: window_metrics(s, sc, threshold) for s, sc in zip(series, scores, strict=True)
    }
    return result


def run(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog=f'python -m beam_pipelines.{PROG}')
    parser.add_argument('--data_dir', default=DEFAULT_DATA, help='NAB data (labels + data/).')
    parser.add_argument('--detector_spec', default=None, help='Detectors (default: built in).')
    parser.add_argument('--output', default=None, help='Also write the results as JSON here.')
    args, beam_args = parser.parse_known_args(list(sys.argv[1:] if argv is None else argv))
    if not os.path.exists(os.path.join(args.data_dir, 'labels_windows.json')):
        raise cli.UsageError(f'--data_dir {args.data_dir}: no labels_windows.json there')
    try:
        spec = load_spec(args.detector_spec) if args.detector_spec else DEFAULT_SPEC
    except SpecError as exc:
        raise cli.UsageError(f'--detector_spec {exc}') from None
    data = load_nab(args.data_dir)
    series = [s for s, _, _ in data]
    started = time.monotonic()
    ours = [score_series(m, v, [''] * len(v), spec, beam_args)[0] for _, m, v in data]
    seconds = time.monotonic() - started
    detectors = _measure(series, ours)
    detectors['at_spec_threshold'] = {
        profile: round(nab_score(series, ours, spec.threshold, profile)[0], 1)
        for profile in PROFILES
    }
    results = {
        'detectors': detectors,
        'windowed_gaussian': _measure(series, [windowed_gaussian(v) for _, _, v in data]),
        'random': _measure(series, [_random(s.name, len(s.times)) for s in series]),
        'spec': spec.to_dict(),
        'points': int(sum(len(s.times) for s in series)),
        'seconds': round(seconds, 1),
    }
    print(f'{PROG}: {len(series)} series, {results["points"]:,} points scored in {seconds:.1f} s')
    print(f'  {"detector":<18} {"standard":>9} {"low FP":>7} {"low FN":>7}')
    for name in ('detectors', 'windowed_gaussian', 'random'):
        r = results[name]
        print(
            f'  {name:<18} {r["standard"]["score"]:>9.1f} {r["reward_low_fp"]["score"]:>7.1f} '
            f'{r["reward_low_fn"]["score"]:>7.1f}'
        )
    at_spec = results['detectors']['at_spec_threshold']
    print(
        f'  {"at spec " + format(spec.threshold, "g"):<18} '
        f'{at_spec["standard"]:>9.1f} {at_spec["reward_low_fp"]:>7.1f} '
        f'{at_spec["reward_low_fn"]:>7.1f}'
    )
    threshold = results['detectors']['standard']['threshold']
    print(f'  per series (ours, at the standard threshold {threshold:.3f}):')
    for name, m in results['detectors']['series'].items():
        precision = 'n/a' if m['precision'] is None else f'{m["precision"]:.2f}'
        print(
            f'    {name:<42} windows {m["detected_windows"]}/{m["windows"]}  '
            f'precision {precision}  false-positive events {m["false_positive_events"]}'
        )
    if args.output:
        with open(args.output, 'w') as f:
            json.dump(results, f, indent=2)
    return 0


if __name__ == '__main__':
    cli.configure_logging()
    sys.exit(cli.main(PROG, run))
