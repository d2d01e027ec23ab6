"""Bounded retries with exponential backoff and jitter, for the sync's destination writes.

The delays come from the project's :class:`~beam_pipelines.throttling.RetryPolicy`; each is
scaled by a random factor in ``[0.5, 1]`` ("equal jitter") so that several syncs that lost the
same server do not come back in lockstep, while still waiting at least half the nominal delay.
A dozen lines, so not worth a new dependency (``tenacity`` is not in ``setup.py``).
"""

from __future__ import annotations

import logging
import random
import time
from collections.abc import Callable
from typing import TypeVar

from beam_pipelines.redaction import redact
from beam_pipelines.throttling import RetryPolicy

__all__ = ['RetryPolicy', 'with_retries']

_LOGGER = logging.getLogger(__name__)
T = TypeVar('T')


def with_retries(
    call: Callable[[], T],
    policy: RetryPolicy,
    transient: tuple[type[BaseException], ...],
    what: str,
    on_retry: Callable[[BaseException], None] | None = None,
    sleep: Callable[[float], None] = time.sleep,
) -> T:
    """Calls ``call()`` until it succeeds, retrying the ``transient`` errors.

    Args:
        call: the attempt (it must be idempotent: a failed attempt may have half happened).
        policy: how many attempts and how long between them.
        transient: the exception classes worth another attempt; any other is raised at once.
        what: names the operation in log lines.
        on_retry: called with the error before each retry (to drop a broken connection).
        sleep: injected by tests.

    Returns:
        What ``call()`` returned.

    Raises:
        The last transient error once ``policy.attempts`` attempts failed.
    """
    delays = policy.delays()
    while True:
        try:
            return call()
        except transient as exc:
            delay = next(delays, None)
            if delay is None:
                raise
            delay *= random.uniform(0.5, 1.0)
            _LOGGER.warning(
                'transient error on %s, retrying in %.2f s: %s',
                what,
                delay,
                redact(' '.join(f'{type(exc).__name__}: {exc}'.split())),  # one line
            )
            if on_retry is not None:
                on_retry(exc)
            sleep(delay)
