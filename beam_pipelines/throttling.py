"""Throttling and retries: small objects the clients (database, Redis, HTTP) are given.

* ``RetryPolicy``: bounded exponential backoff (the delays between attempts).
* ``RateLimiter``: a token bucket per client, with a cost per call. Hand-written rather than
  taken from a library (``limits``, ``aiolimiter``): it is a dozen lines, needs a cost per call
  (a batch of 500 events costs 500), must say how long to wait (a ``Retry-After``), and keeps
  its buckets bounded; the libraries do one or two of these. The limit is per process.

Plain Python, no Beam in it.
"""

from __future__ import annotations

import dataclasses
import email.utils
import math
import time
from collections.abc import Iterator

__all__ = ['RateLimiter', 'RetryPolicy', 'retry_after_secs']


@dataclasses.dataclass(frozen=True)
class RetryPolicy:
    """Bounded exponential backoff for transient errors."""

    attempts: int = 5
    initial_delay_secs: float = 0.2
    max_delay_secs: float = 5.0

    def __post_init__(self):
        if self.attempts < 1 or self.initial_delay_secs < 0 or self.max_delay_secs < 0:
            raise ValueError('attempts must be >= 1 and delays >= 0')

    def delays(self) -> Iterator[float]:
        """The delay before each retry (``attempts - 1`` of them)."""
        delay = self.initial_delay_secs
        for _ in range(self.attempts - 1):
            yield delay
            delay = min(delay * 2, self.max_delay_secs)


class RateLimiter:
    """Allows each client ``rate`` events per second on average, in bursts up to ``burst``.

    Args:
        rate: events per second per client (refill rate of its bucket).
        burst: bucket size: most events one client may send at once.
        max_clients: most buckets kept; full (idle) buckets are dropped beyond it.
        clock: monotonic seconds (injected by tests).
    """

    def __init__(self, rate: float, burst: float, max_clients: int = 10_000, clock=time.monotonic):
        if not rate > 0:
            raise ValueError(f'rate must be > 0, got {rate}')
        if not burst >= 1:
            raise ValueError(f'burst must be >= 1, got {burst}')
        self.rate = float(rate)
        self.burst = float(burst)
        self._max_clients = max_clients
        self._clock = clock
        self._buckets: dict[str, tuple[float, float]] = {}  # client -> (tokens, updated at)

    def acquire(self, client: str, cost: int = 1) -> float:
        """Takes ``cost`` tokens from the client's bucket.

        Returns:
            0.0 if allowed (the tokens are taken), else the seconds until the request would be
            allowed (nothing is taken). A cost above ``burst`` is never allowed: ``inf``.
        """
        if cost > self.burst:
            return math.inf
        now = self._clock()
        tokens, updated = self._buckets.get(client, (self.burst, now))
        tokens = min(self.burst, tokens + (now - updated) * self.rate)
        if tokens >= cost:
            self._buckets[client] = (tokens - cost, now)
            if len(self._buckets) > self._max_clients:
                self._prune(now)
            return 0.0
        self._buckets[client] = (tokens, now)
        return (cost - tokens) / self.rate

    def _prune(self, now: float) -> None:
        # A bucket that has refilled completely holds nothing a new bucket would not.
        full = [c for c, (t, u) in self._buckets.items() if t + (now - u) * self.rate >= self.burst]
        for c in full:
            del self._buckets[c]
        if len(self._buckets) > self._max_clients:
            # Still too many active clients: forget the least recently seen (they get a fresh
            # bucket next time, a bounded leniency in exchange for bounded memory).
            by_age = sorted(self._buckets, key=lambda c: self._buckets[c][1])
            for c in by_age[: len(by_age) - self._max_clients * 9 // 10]:
                del self._buckets[c]


def retry_after_secs(value: str | None, now: float | None = None) -> float:
    """How long a ``Retry-After`` header asks to wait: seconds, or an HTTP date; 0 if absent or
    unreadable."""
    if not value:
        return 0.0
    try:
        return max(0.0, float(value))
    except ValueError:
        pass
    try:
        when = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return 0.0
    return max(0.0, when.timestamp() - (time.time() if now is None else now))
