"""Throttling: the per-client token bucket (on an injected clock) and the retry backoff."""

from __future__ import annotations

import math

import pytest

from beam_pipelines.throttling import RateLimiter
from beam_pipelines.throttling import RetryPolicy


class Clock:
    def __init__(self):
        self.now = 0.0

    def __call__(self):
        return self.now


def test_bursts_then_the_rate_per_client():
    clock = Clock()
    limiter = RateLimiter(rate=100, burst=200, clock=clock)
    assert limiter.acquire('a', 200) == 0.0
    assert limiter.acquire('a', 50) == pytest.approx(0.5)  # 50 tokens at 100/s
    assert limiter.acquire('b', 200) == 0.0  # clients are separate
    clock.now = 0.5
    assert limiter.acquire('a', 50) == 0.0
    assert limiter.acquire('a', 1) == pytest.approx(0.01)
    clock.now = 10.0
    assert limiter.acquire('a', 200) == 0.0  # refilled, never above the burst
    assert limiter.acquire('a', 1) > 0


def test_a_refused_request_takes_nothing():
    clock = Clock()
    limiter = RateLimiter(rate=10, burst=10, clock=clock)
    assert limiter.acquire('a', 8) == 0.0
    assert limiter.acquire('a', 5) > 0
    assert limiter.acquire('a', 2) == 0.0


def test_more_than_the_burst_is_never_allowed():
    assert math.isinf(RateLimiter(rate=10, burst=10).acquire('a', 11))


def test_buckets_stay_bounded():
    clock = Clock()
    limiter = RateLimiter(rate=1, burst=5, max_clients=100, clock=clock)
    for i in range(1000):
        limiter.acquire(f'c{i}', 5)  # every bucket empty: none can be pruned as full
        clock.now += 0.001
    assert len(limiter._buckets) <= 101


@pytest.mark.parametrize('rate, burst', [(0, 1), (1, 0.5)])
def test_bad_arguments(rate, burst):
    with pytest.raises(ValueError):
        RateLimiter(rate, burst)


def test_retry_delays_double_up_to_the_cap():
    assert list(RetryPolicy(5, 0.5, 3.0).delays()) == [0.5, 1.0, 2.0, 3.0]
    assert list(RetryPolicy(1).delays()) == []
    with pytest.raises(ValueError):
        RetryPolicy(0)


def test_retry_after_takes_seconds_or_an_http_date():
    from beam_pipelines.throttling import retry_after_secs

    assert retry_after_secs('3') == 3.0
    assert retry_after_secs(None) == 0.0 and retry_after_secs('soon') == 0.0
    assert retry_after_secs('Wed, 21 Oct 2015 07:28:10 GMT', now=1445412480.0) == 10.0
