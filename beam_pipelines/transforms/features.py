"""``ExtractFeatures`` and ``NormalizeFeatures``: per-entity ML features at event time, the same
in batch and streaming.

``ExtractFeatures`` shards clean event tables by entity; an ``OrderedShardFn`` keeps each
entity's retained history (``features.shard``) and computes the features of its events in
event-time order once the watermark has passed them (``features.rolling``: counts, sums, means
and stddevs per horizon, time since the previous event, type ratios, lags), so every feature
row at time t uses only the entity's events up to t, whatever the arrival order. Events behind
their entity's processed ones go to ``late``.

``NormalizeFeatures`` adds ``<feature>_norm`` columns from statistics: given (``stats``, loaded
from a file a batch run wrote: what serving and streaming use), or computed here over all the
feature rows (batch: Beam's ``CombineGlobally`` with a mergeable combiner, as a side input),
and returns them so the launcher saves them next to the features.
"""

from __future__ import annotations

from typing import NamedTuple

import apache_beam as beam
import pyarrow as pa

from beam_pipelines.features.normalize import METHODS
from beam_pipelines.features.normalize import NormalizationStats
from beam_pipelines.features.normalize import StatsCombineFn
from beam_pipelines.features.normalize import normalize
from beam_pipelines.features.rolling import FeatureSpec
from beam_pipelines.features.shard import FeatureShard
from beam_pipelines.transforms.ordered import OrderedShardFn
from beam_pipelines.transforms.sharding import shard_table
from beam_pipelines.transforms.tags import LATE

__all__ = ['ExtractFeatures', 'Extracted', 'NormalizeFeatures', 'Normalized']

FEATURES = 'features'
_US = 1_000_000


class Extracted(NamedTuple):
    features: beam.PCollection  # pa.Table, features.rolling.feature_schema(spec)
    late: beam.PCollection  # dead-letter envelopes, stage 'late'


class ExtractFeatures(beam.PTransform):
    """Per-entity rolling features of clean event tables (see the module docstring).

    Args:
        spec: which features.
        num_shards: how many shards of entities hold state.
        release_secs: event-time granularity of releases.
        idle_ttl_secs: forget an entity this long after its last event (at least the longest
            horizon).
        pipeline: the pipeline's name, for late envelopes.
    """

    def __init__(
        self,
        spec: FeatureSpec,
        num_shards: int = 16,
        release_secs: float = 1.0,
        idle_ttl_secs: float = 7 * 24 * 3600,
        pipeline: str = 'beam_pipelines',
    ):
        super().__init__()
        if num_shards < 1 or not release_secs > 0:
            raise ValueError('num_shards must be >= 1 and release_secs > 0')
        self._num_shards = num_shards
        self._fn = _FeaturesFn(spec, round(release_secs * _US), idle_ttl_secs, pipeline)

    def expand(self, events) -> Extracted:
        results = (
            events
            | 'ShardByEntity'
            >> beam.FlatMap(shard_table, ('entity_id',), self._num_shards).with_output_types(
                tuple[int, pa.Table]
            )
            | 'FeaturesPerShard'
            >> beam.ParDo(self._fn).with_output_types(pa.Table).with_outputs(LATE, main=FEATURES)
        )
        return Extracted(features=results[FEATURES], late=results[LATE])


class _FeaturesFn(OrderedShardFn):
    metric = 'feature'

    def __init__(self, spec, release_us, idle_ttl_secs, pipeline):
        super().__init__('timestamp', release_us, pipeline)
        self._spec = spec
        self._idle_ttl_secs = idle_ttl_secs

    def new_shard(self) -> FeatureShard:
        return FeatureShard(self._spec, self._idle_ttl_secs)

    def job_config(self):
        return self._spec


class Normalized(NamedTuple):
    features: beam.PCollection  # the feature tables with <feature>_norm columns
    stats: beam.PCollection  # one NormalizationStats (the ones applied)


class NormalizeFeatures(beam.PTransform):
    """Adds normalised columns to feature tables (see the module docstring).

    Args:
        columns: the feature columns to normalise.
        method: ``minmax`` or ``zscore``.
        stats: statistics to apply; None to compute them over the input (bounded input only).
    """

    def __init__(self, columns: list[str], method: str, stats: NormalizationStats | None = None):
        super().__init__()
        if method not in METHODS:
            raise ValueError(f'method must be one of {METHODS}, got {method!r}')
        self._columns = list(columns)
        self._method = method
        self._stats = stats

    def expand(self, features) -> Normalized:
        if self._stats is not None:
            stats = features.pipeline | 'GivenStats' >> beam.Create([self._stats])
        else:
            stats = features | 'ComputeStats' >> beam.CombineGlobally(StatsCombineFn(self._columns))
        normalized = features | 'ApplyStats' >> beam.Map(
            normalize, beam.pvalue.AsSingleton(stats), self._method
        ).with_output_types(pa.Table)
        return Normalized(normalized, stats)
