"""``python -m beam_pipelines.feature_pipeline``: the ML feature pipeline.

The flagship with ``--features`` on: the same sources, parsing, validation, deduplication and
dead letters, then per-entity rolling features (``features/``, point-in-time correct, with the
normalisation statistics in ``features/_normalization.json``), the latest vector per entity in
Redis with ``--redis_url`` (the online store), and resampled series with ``--resample_secs``
(``timeseries/``). Every flagship flag applies::

    python -m beam_pipelines.feature_pipeline --input 'data/*.jsonl' --output_dir out \\
        [--feature_horizons 5m,1h,24h] [--feature_lags 3] [--feature_event_types buy,view] \\
        [--feature_normalization zscore|minmax|none] [--normalization_stats stats.json] \\
        [--resample_secs 60 --gap_fill zero|ffill|null] [--redis_url redis://...]
"""

from __future__ import annotations

import sys

from beam_pipelines import cli
from beam_pipelines.event_analytics import launcher

__all__ = ['run']

PROG = 'feature_pipeline'


def run(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    return launcher.run(argv if '--features' in argv else ['--features', *argv])


if __name__ == '__main__':
    cli.configure_logging()
    cli.exit_now(cli.main(PROG, run))
