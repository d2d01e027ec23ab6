"""What every fuzz target shares: the known-failure filter and the failure report.

A target's ``TestOneInput`` runs its check inside :func:`reported`. A failure whose signature
(:func:`fuzz.invariants.signature`) the driver already recorded in this session (environment
variable ``FUZZ_KNOWN_FAILURES``, one per line) is let pass, so a rerun looks for new ones; a
new one is printed as ``FUZZ-FAILURE-SIGNATURE: <signature>`` and re-raised, which atheris
reports as a crash and saves the input of.

``FuzzInput`` cuts the raw bytes into the pieces a target needs. It is plain Python, not
atheris' ``FuzzedDataProvider``, so the driver's fallback (no atheris) runs the same targets.
"""

from __future__ import annotations

import contextlib
import os
import sys

__all__ = ['KNOWN_ENV', 'MARK', 'FuzzInput', 'instrumented_imports', 'reported']

KNOWN_ENV = 'FUZZ_KNOWN_FAILURES'
MARK = 'FUZZ-FAILURE-SIGNATURE:'
_KNOWN = frozenset(filter(None, os.environ.get(KNOWN_ENV, '').splitlines()))


def instrumented_imports():
    """``atheris.instrument_imports()`` for the project's modules and the invariants (a no-op
    context without atheris)."""
    try:
        import atheris
    except ImportError:
        return contextlib.nullcontext()
    return atheris.instrument_imports(include=['beam_pipelines', 'fuzz'])


@contextlib.contextmanager
def reported():
    """Lets known failures pass and names new ones (see the module docstring)."""
    from fuzz.invariants import signature

    try:
        yield
    except Exception as exc:
        name = signature(exc)
        if name in _KNOWN:
            return
        print(f'{MARK} {name}', file=sys.stderr, flush=True)
        raise


class FuzzInput:
    """Consumes a fuzzer's bytes front to back; past the end every read gives zeros/empties."""

    def __init__(self, data: bytes):
        self._data = data
        self._at = 0

    def byte(self) -> int:
        if self._at >= len(self._data):
            return 0
        self._at += 1
        return self._data[self._at - 1]

    def int_in(self, low: int, high: int) -> int:
        """An int in [low, high] from as many bytes as the range needs."""
        span = high - low + 1
        value, scale = 0, 1
        while scale < span:
            value = value * 256 + self.byte()
            scale *= 256
        return low + value % span

    def pick(self, options):
        return options[self.int_in(0, len(options) - 1)]

    def bytes(self, most: int) -> bytes:
        """Up to ``most`` bytes, the length taken from the input."""
        n = self.int_in(0, most)
        out = self._data[self._at : self._at + n]
        self._at += len(out)
        return out

    def rest(self) -> bytes:
        out = self._data[self._at :]
        self._at = len(self._data)
        return out

    def text(self, most: int) -> str:
        return self.bytes(most * 4).decode('utf-8', 'replace')[:most]
