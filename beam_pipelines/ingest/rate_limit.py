"""Per-client rate limiting: a token bucket per client, counted in events.

Hand-written rather than taken from a library (``limits``, ``aiolimiter``): it is a dozen lines,
needs an event cost per request (a batch of 500 events costs 500), must say how long to wait
(the ``Retry-After`` of a 429), and keeps its buckets bounded; the libraries do one or two of
these. The limit is per process: several service processes each apply it.
"""

from __future__ import annotations

import math
import time

__all__ = ['RateLimiter']


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
