"""A mergeable quantile sketch with a relative-error guarantee (the DDSketch bucket scheme).

A value ``v`` falls in bucket ``ceil(log_gamma(|v|))`` with ``gamma = (1 + a) / (1 - a)``; the
bucket's representative ``2 gamma^i / (gamma + 1)`` is within relative error ``a`` of every
value in it. Buckets are plain integers, so sketches merge by adding counts per bucket, which is
a vectorised group-by: the property that lets per-batch partial aggregates carry quantiles.
Keys are signed (negative values mirror positive ones) and ordered like the values; magnitudes
below ``MIN_MAGNITUDE`` count as zero.

Reference: Masson, Rim and Lee, "DDSketch: a fast and fully-mergeable quantile sketch with
relative-error guarantees", VLDB 2019.
"""

from __future__ import annotations

import numpy as np

__all__ = ['RELATIVE_ACCURACY', 'bucket_keys', 'bucket_values', 'counter_quantiles', 'quantiles']

RELATIVE_ACCURACY = 0.01
MIN_MAGNITUDE = 1e-9
_GAMMA = (1 + RELATIVE_ACCURACY) / (1 - RELATIVE_ACCURACY)
_LOG_GAMMA = np.log(_GAMMA)
_OFFSET = 100_000  # keeps every bucket index of a finite double positive before the sign


def bucket_keys(values: np.ndarray) -> np.ndarray:
    """Maps finite values to int32 bucket keys that sort like the values."""
    magnitude = np.abs(values)
    big = magnitude >= MIN_MAGNITUDE
    with np.errstate(divide='ignore', invalid='ignore'):
        index = np.ceil(np.log(np.where(big, magnitude, 1.0)) / _LOG_GAMMA)
    keys = (index.astype(np.int64) + _OFFSET) * np.sign(values).astype(np.int64)
    return np.where(big, keys, 0).astype(np.int32)


def bucket_values(keys: np.ndarray) -> np.ndarray:
    """The representative value of each bucket key."""
    keys = keys.astype(np.int64)
    index = np.abs(keys) - _OFFSET
    magnitude = 2.0 * np.power(_GAMMA, index.astype(np.float64)) / (_GAMMA + 1.0)
    return np.where(keys == 0, 0.0, np.sign(keys) * magnitude)


def quantiles(
    keys: np.ndarray, counts: np.ndarray, offsets: np.ndarray, q: float
) -> tuple[np.ndarray, np.ndarray]:
    """The ``q``-quantile of each sketch in a flattened list of sketches.

    The answer approximates the nearest-rank quantile, the order statistic of 1-based rank
    ``max(1, ceil(q * n))`` (numpy's ``inverted_cdf``), within relative error
    ``RELATIVE_ACCURACY``.

    Args:
        keys: bucket keys of all sketches, ascending within each sketch.
        counts: the count of each bucket.
        offsets: sketch ``s`` owns ``keys[offsets[s]:offsets[s + 1]]``.
        q: the quantile, in [0, 1].

    Returns:
        ``(values, present)``: the quantile per sketch and whether the sketch was non-empty.
    """
    sizes = np.diff(offsets)
    cum = np.cumsum(counts, dtype=np.int64)
    base = np.concatenate(([0], cum))[offsets[:-1]]
    end = np.concatenate(([0], cum))[offsets[1:]]
    totals = end - base
    present = (sizes > 0) & (totals > 0)
    rank = np.maximum(np.ceil(q * totals).astype(np.int64) - 1, 0)
    idx = np.searchsorted(cum, base + rank, side='right')
    idx = np.minimum(idx, max(len(keys) - 1, 0))
    values = bucket_values(keys[idx]) if len(keys) else np.zeros(len(sizes))
    return np.where(present, values, np.nan), present


def counter_quantiles(buckets, qs) -> list[float] | None:
    """Nearest-rank quantiles (``q`` in ``qs``) of one sketch kept as ``{bucket key: count}``
    (mergeable by adding counts); None when it is empty."""
    if not buckets:
        return None
    keys = np.array(sorted(buckets), dtype=np.int64)
    cum = np.cumsum([buckets[k] for k in keys])
    ranks = [max(1, int(np.ceil(q * cum[-1]))) for q in qs]
    return bucket_values(keys[np.searchsorted(cum, ranks)]).tolist()
