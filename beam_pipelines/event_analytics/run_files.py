"""The output files of runs: clearing a previous run's, committing an incremental run's, and
reading the run summary."""

from __future__ import annotations

import datetime as dt
import json
import logging
from typing import Any

from apache_beam.io.filesystems import FileSystems

from beam_pipelines.event_analytics.config import Config
from beam_pipelines.observability.report import MERMAID_FILE
from beam_pipelines.observability.report import REPORT_FILE
from beam_pipelines.transforms.micro_batch import commit_state

__all__ = [
    'OUTPUT_PARTS',
    'SUMMARY_FILE',
    'clear_current',
    'clear_outputs',
    'commit_run',
    'read_summary',
]

OUTPUT_PARTS = (
    'events',
    'aggregates',
    'dead_letter',
    'late',
    'retractions',
    'anomalies',
    'features',
    'timeseries',
    'quality',
    'quality_windows',
)
SUMMARY_FILE = 'run_summary.json'

_LOGGER = logging.getLogger(__name__)


def commit_run(state_files: list[tuple[str, str]], output_dir: str) -> str:
    """Ends an incremental run once its outputs are written: moves them from ``_current/`` to
    ``run-<id>-...`` names, then puts the new state in place. Returns the run id.

    A crash between the two leaves the old state: the next run repeats this one, which the
    sinks absorb (panes carry their index) and the file outputs record twice.
    """
    run_id = _new_run_id()
    current = [FileSystems.join(output_dir, part, '_current', '*') for part in OUTPUT_PARTS]
    moves = [m.path for r in FileSystems.match(current) for m in r.metadata_list]
    if moves:
        FileSystems.rename(moves, [_committed_name(path, run_id) for path in moves])
    commit_state(state_files)
    return run_id


def _committed_name(path: str, run_id: str) -> str:
    current_dir, name = path.rsplit('/', 1)
    return f'{current_dir.rsplit("/", 1)[0]}/run-{run_id}-{name.removeprefix("part-")}'


def clear_current(config: Config) -> None:
    """Deletes what a failed incremental run left under ``_current/``."""
    patterns = [config.path(part, '_current', '*') for part in OUTPUT_PARTS]
    stale = [m.path for r in FileSystems.match(patterns) for m in r.metadata_list]
    if stale:
        FileSystems.delete(stale)


def clear_outputs(config: Config) -> None:
    """Deletes this pipeline's previous outputs (only its own sub-paths) so reruns are clean."""
    patterns = [config.path(part, '*') for part in OUTPUT_PARTS]
    patterns += [config.path(name) for name in (SUMMARY_FILE, REPORT_FILE, MERMAID_FILE)]
    stale = [m.path for r in FileSystems.match(patterns) for m in r.metadata_list]
    if stale:
        _LOGGER.info('removing %d files of a previous run under %s', len(stale), config.output_dir)
        FileSystems.delete(stale)


def read_summary(config: Config) -> dict[str, Any] | None:
    try:
        with FileSystems.open(config.path(SUMMARY_FILE)) as f:
            return json.loads(f.read())
    except Exception:
        return None


def _new_run_id() -> str:
    now = dt.datetime.now(dt.UTC)
    return now.strftime('%Y%m%dT%H%M%S') + f'{now.microsecond:06d}Z'
