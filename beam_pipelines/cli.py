"""Command-line plumbing shared by the launchers: strict flags and one-line errors.

Beam's ``PipelineOptions`` silently discards flags it does not know (a typo such as
``--window_sise_secs=30`` would run with the default), and argparse errors print Beam's whole
usage text. Launchers here reject unknown flags and report every usage problem as one line on
stderr with exit status 2.
"""

from __future__ import annotations

import argparse
import logging
import os
import sys
from collections.abc import Callable

from beam_pipelines.redaction import redact

__all__ = [
    'ArgumentParser',
    'UsageError',
    'configure_logging',
    'duration_secs',
    'exit_now',
    'main',
    'parse_pipeline_args',
    'require_http_url',
]

EXIT_USAGE = 2
EXIT_FAILED = 1


class UsageError(Exception):
    """Bad flags or unusable input: reported as one line, exit status 2."""


class ArgumentParser(argparse.ArgumentParser):
    """argparse that raises :class:`UsageError` (one line, exit 2) instead of printing usage."""

    def error(self, message):
        raise UsageError(message)


def parse_pipeline_args(argv: list[str]):
    """Parses flags with every registered options class; unknown flags are an error.

    Returns:
        The ``PipelineOptions``.

    Raises:
        UsageError: for unknown flags or bad values.
    """
    # Imported here: the launchers that are not pipelines (the ingestion service) use this
    # module too, and need not pay for Beam's imports.
    from apache_beam.options.pipeline_options import PipelineOptions
    from apache_beam.options.pipeline_options import _BeamArgumentParser

    class _StrictParser(_BeamArgumentParser):
        def error(self, message):
            raise UsageError(message)

    parser = _StrictParser(allow_abbrev=False, add_help=False)
    classes = {}
    for cls in PipelineOptions.__subclasses__():
        classes.setdefault(str(cls), cls)
    for cls in classes.values():
        cls._add_argparse_args(parser)
    argv = _explicit_booleans(parser, argv)
    _, unknown = parser.parse_known_args(argv)
    if unknown:
        raise UsageError('unrecognized arguments: ' + ' '.join(unknown))
    return PipelineOptions(argv)


_TRUE = ('true', '1', 'yes')
_FALSE = ('false', '0', 'no')


def _explicit_booleans(parser, argv: list[str]) -> list[str]:
    """``--flag=true`` / ``--flag=false`` for on/off flags become ``--flag`` or nothing:
    Dataflow flex templates and schedulers pass every parameter as ``--name=value``.

    Raises:
        UsageError: for a value that is neither true nor false.
    """
    switches = {
        flag
        for action in parser._actions
        if isinstance(action, argparse._StoreTrueAction | argparse._StoreFalseAction)
        for flag in action.option_strings
    }
    out = []
    for arg in argv:
        flag, eq, value = arg.partition('=')
        if not eq or flag not in switches:
            out.append(arg)
            continue
        if value.lower() not in _TRUE + _FALSE:
            raise UsageError(f'{flag}: expected true or false, got {value!r}')
        if value.lower() in _TRUE:
            out.append(flag)
    return out


def configure_logging(verbose: bool = False) -> None:
    logging.basicConfig(
        level=logging.WARNING,
        format='%(asctime)s %(levelname)s %(name)s: %(message)s',
        datefmt='%H:%M:%S',
    )
    logging.getLogger('beam_pipelines').setLevel(logging.DEBUG if verbose else logging.INFO)


def main(prog: str, run: Callable[[list[str]], int], argv: list[str] | None = None) -> int:
    """Runs a launcher's ``run(argv)`` and turns failures into one-line errors.

    ``--help`` prints the launcher's own flags. Set ``BEAM_PIPELINES_DEBUG=1`` for tracebacks.
    """
    argv = list(sys.argv[1:] if argv is None else argv)
    debug = os.environ.get('BEAM_PIPELINES_DEBUG') == '1'
    try:
        return run(argv)
    except UsageError as exc:
        message = redact(' '.join(str(exc).split()))  # one line, even for driver messages
        print(f'{prog}: error: {message}', file=sys.stderr)
        return EXIT_USAGE
    except KeyboardInterrupt:
        print(f'{prog}: interrupted', file=sys.stderr)
        return 130
    except Exception as exc:
        if debug:
            raise
        # The whole message on one line: drivers' messages end with a line of their own
        # ("... [while running 'Step']") and a last line alone can be empty of the cause.
        # Redacted: a driver's message may quote the connection URL it failed on.
        message = redact(' '.join(str(exc).split()))[:_MAX_MESSAGE] or type(exc).__name__
        print(
            f'{prog}: error: pipeline failed: {type(exc).__name__}: {message}\n'
            f'(set BEAM_PIPELINES_DEBUG=1 for the traceback)',
            file=sys.stderr,
        )
        return EXIT_FAILED


_MAX_MESSAGE = 1000
_UNITS = {'ms': 0.001, 's': 1.0, 'm': 60.0, 'h': 3600.0, 'd': 86400.0}


def duration_secs(text: str, flag: str) -> float:
    """Seconds of a duration such as '500ms', '30s', '5m', '1h' or '1d' (a bare number: s)."""
    clean = text.strip().lower()
    unit = next((u for u in ('ms', 's', 'm', 'h', 'd') if clean.endswith(u)), '')
    try:
        secs = float(clean[: len(clean) - len(unit)]) * _UNITS.get(unit, 1.0)
    except ValueError:
        secs = -1.0
    if not secs > 0:
        raise UsageError(f"{flag} must be a positive duration like '5s' or '1m', got {text!r}")
    return secs


def require_http_url(flag: str, url: str | None) -> None:
    """Raises UsageError unless ``url`` (when given) is http(s); the URL is shown redacted."""
    if url and not url.startswith(('http://', 'https://')):
        raise UsageError(f'{flag} must be http(s)://..., got {redact(url)!r}')


def exit_now(status: int) -> None:
    """Ends a launcher process with ``status`` once its work is done, skipping the interpreter's
    teardown.

    Every output is written and closed by then. Under load, a native thread of the libraries the
    pipelines load (gRPC's, Arrow's) sometimes outlives interpreter teardown, and its C++
    destructor aborts the process ("terminate called without an active exception", exit 134),
    turning a finished run into a failure; ``os._exit`` after flushing ends it first.
    """
    logging.shutdown()
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(status)
