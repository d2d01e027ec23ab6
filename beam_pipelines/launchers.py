"""The project's launchers by name: one list for the container entry point, the flex templates,
the backfill runner and the schedules.

``python -m beam_pipelines NAME [flags]`` runs the launcher ``NAME`` (``docker/Dockerfile``'s
entry point); ``python -m beam_pipelines --list`` lists them.
"""

from __future__ import annotations

import dataclasses

__all__ = ['BEAM_PIPELINES', 'LAUNCHERS', 'Launcher', 'get']


@dataclasses.dataclass(frozen=True)
class Launcher:
    """A command of the project.

    Attributes:
        name: what ``python -m beam_pipelines NAME`` and ``--pipeline NAME`` call it.
        module: the module run as ``python -m MODULE``.
        summary: one line for listings and template descriptions.
        pipeline: it builds a Beam pipeline from Beam flags (runs on any runner; gets a flex
            template and a portability test).
    """

    name: str
    module: str
    summary: str
    pipeline: bool = False


LAUNCHERS: tuple[Launcher, ...] = (
    Launcher(
        'event_analytics',
        'beam_pipelines.event_analytics',
        'Parse, validate and deduplicate events; windowed aggregates; dead letters; '
        'optional anomalies, features, PostgreSQL and Redis sinks.',
        pipeline=True,
    ),
    Launcher(
        'feature_pipeline',
        'beam_pipelines.feature_pipeline',
        'The flagship with per-entity rolling ML features (offline Parquet, online Redis).',
        pipeline=True,
    ),
    Launcher(
        'detect_anomalies',
        'beam_pipelines.detect_anomalies',
        'Score a CSV time series with the anomaly detectors.',
        pipeline=True,
    ),
    Launcher(
        'backfill',
        'beam_pipelines.backfill',
        'Rerun a pipeline over date partitions, in parallel, resumably.',
    ),
    Launcher(
        'ingest',
        'beam_pipelines.ingest',
        'HTTP ingestion service and MQTT bridge in front of the Redis stream.',
    ),
    Launcher(
        'profile',
        'beam_pipelines.profile',
        'Profile a dataset: types, nulls, distinct values, extremes, quantiles, histograms.',
        pipeline=True,
    ),
    Launcher(
        'ops',
        'beam_pipelines.ops',
        'The ops API: health, metrics, runs, dead letters, read-only warehouse queries.',
    ),
    Launcher('warehouse', 'beam_pipelines.warehouse', 'Create or migrate the warehouse schema.'),
    Launcher(
        'gdpr',
        'beam_pipelines.gdpr',
        'GDPR requests: keys, access (export), erasure (with tombstones), retention.',
    ),
    Launcher(
        'backup',
        'beam_pipelines.backup',
        'Back up, restore and prune the warehouse and Parquet outputs (full or incremental).',
    ),
    Launcher(
        'sync',
        'beam_pipelines.sync',
        'Keep a PostgreSQL table or Redis in step with a warehouse table (watermark or CDC).',
    ),
    Launcher('generate_events', 'beam_pipelines.generate_events', 'Generate sample events.'),
    Launcher(
        'evaluate_nab', 'beam_pipelines.evaluate_nab', 'Score the detectors on NAB (benchmark).'
    ),
)

BEAM_PIPELINES: tuple[Launcher, ...] = tuple(x for x in LAUNCHERS if x.pipeline)


def get(name: str) -> Launcher:
    """The launcher called ``name``.

    Raises:
        KeyError: with the known names, for an unknown one.
    """
    for launcher in LAUNCHERS:
        if launcher.name == name:
            return launcher
    raise KeyError(f'unknown launcher {name!r} (known: {", ".join(x.name for x in LAUNCHERS)})')
