"""Per-key streaming detectors: each point is scored against what came before it, then learnt.

Built on Beam's own ``apache_beam.ml.anomaly``, chosen piece by piece:

* **Taken from Beam**: the detectors ``ZScore``, ``RobustZScore`` and ``IQR`` (their
  ``score_one``/``learn_one``), the sliding-window trackers they run on (incremental sliding mean
  and standard deviation, sorted-list median, MAD and quartiles), ``FixedThreshold`` for labels
  and the ensemble aggregations (``MaxScore``, ``AverageScore``, ``MajorityVote``, ``AnyVote``,
  ``AllVote``). They are exact, tested, and Beam's ``Specifiable`` configuration fits ours.
* **Added here**: ``RelativeChange`` (a Beam ``AnomalyDetector``, so it composes with the rest);
  an infinite score for a value that departs from a perfectly flat history (Beam's detectors
  return 0 when the spread is zero, so a sensor stuck at one value then jumping would never be
  flagged); a warm-up per detector (no verdict before ``warmup`` points); the score in [0, 1]
  for every point (Beam's scores are unbounded: |z|, IQR distances); and the statistics each
  verdict was made with (mean and stddev, median and MAD, quartiles), which Beam's results do
  not carry.
  We give Beam's detectors trackers we keep a handle on, so the statistics come from the very
  trackers that scored, without reaching into private attributes.
* **Extended**: Beam's incremental sliding mean and stddev (Welford with removals). Over a
  long stream its sums drift in floating point, and on a flat stretch its M2 turns negative
  (``math domain error`` on NAB's series); ``SlidingStdevTracker`` recomputes them exactly from
  the window once per window length (amortised O(1)) and never lets M2 below zero, and the
  z-score's mean is read from it (``_MeanOf``), so the two cannot disagree.
* **Replaced**: Beam's ``MadTracker``, an online approximation (each deviation is taken from
  the median of its arrival time and never revisited, so it drifts from the window's true MAD);
  ``SlidingMadTracker`` computes the exact MAD of the window, so the MAD reported with a verdict
  is the window's.
* **Not taken**: Beam's ``AnomalyDetection`` transform. It keeps one cloudpickled model per key
  and detector and scores in arrival order; here points are released in event-time order on the
  watermark and a shard's keys share one state (``transforms.detect``).

Scores: a detector's own statistic ``raw`` (|z|, robust |z|, distance beyond the quartiles in
IQRs, relative change) maps to ``raw / (raw + threshold)``: 0 for a typical point, 0.5 exactly at
the detector's threshold (the label flips there), towards 1 for extreme points, monotonic, so
scores of different detectors can be combined and thresholded alike.

Plain Python, no pipeline in it.
"""

from __future__ import annotations

import collections
import dataclasses
import itertools
import math

import apache_beam as beam
import numpy as np
from apache_beam.ml.anomaly.base import AnomalyDetector
from apache_beam.ml.anomaly.detectors.iqr import IQR
from apache_beam.ml.anomaly.detectors.robust_zscore import RobustZScore
from apache_beam.ml.anomaly.detectors.zscore import ZScore
from apache_beam.ml.anomaly.specifiable import specifiable
from apache_beam.ml.anomaly.thresholds import FixedThreshold
from apache_beam.ml.anomaly.univariate.base import BaseTracker
from apache_beam.ml.anomaly.univariate.mean import IncSlidingMeanTracker
from apache_beam.ml.anomaly.univariate.mean import MeanTracker
from apache_beam.ml.anomaly.univariate.quantile import BufferedSlidingQuantileTracker
from apache_beam.ml.anomaly.univariate.quantile import SecondaryBufferedQuantileTracker
from apache_beam.ml.anomaly.univariate.stdev import IncSlidingStdevTracker

__all__ = [
    'KINDS',
    'Detector',
    'DetectorConfig',
    'RelativeChange',
    'SeasonalLag',
    'SlidingMadTracker',
    'SlidingStdevTracker',
    'Verdict',
]

KINDS = ('zscore', 'robust_zscore', 'iqr', 'relative_change')
DEFAULT_THRESHOLDS = {'zscore': 3.0, 'robust_zscore': 3.5, 'iqr': 1.5, 'relative_change': 0.5}
_OUTLIER = 1
_FLAT = 1e-9  # Beam's EPSILON: a spread below it is no spread


@dataclasses.dataclass(frozen=True)
class Verdict:
    """One point's result.

    Attributes:
        score: in [0, 1]; 0.0 where there is no verdict.
        label: True (anomaly), False, or None: no verdict (warm-up, or no value).
        raw: the detector's own statistic, None without a verdict.
        stats: the statistics the point was judged against (before it was learnt).
    """

    score: float
    label: bool | None
    raw: float | None
    stats: dict


@dataclasses.dataclass(frozen=True)
class DetectorConfig:
    """One detector of a spec (see ``anomaly.spec``)."""

    kind: str
    window: int = 500
    threshold: float | None = None  # default per kind: DEFAULT_THRESHOLDS
    warmup: int = 30
    seasonal_period_secs: float | None = None  # score x(t) - x(t - period) instead of x(t)

    def __post_init__(self):
        if self.kind not in KINDS:
            raise ValueError(f'detector kind must be one of {KINDS}, got {self.kind!r}')
        if self.window < 1:
            raise ValueError(f'{self.kind}: window must be >= 1, got {self.window}')
        if self.threshold is not None and not self.threshold > 0:
            raise ValueError(f'{self.kind}: threshold must be > 0, got {self.threshold}')
        if self.warmup < 1:
            raise ValueError(f'{self.kind}: warmup must be >= 1, got {self.warmup}')
        if self.seasonal_period_secs is not None and not self.seasonal_period_secs > 0:
            raise ValueError(
                f'{self.kind}: seasonal_period_secs must be > 0, got {self.seasonal_period_secs}'
            )

    @property
    def cutoff(self) -> float:
        return self.threshold if self.threshold is not None else DEFAULT_THRESHOLDS[self.kind]

    @property
    def name(self) -> str:
        season = f'_s{self.seasonal_period_secs:g}' if self.seasonal_period_secs else ''
        return f'{self.kind}_{self.window}{season}'


@specifiable
class RelativeChange(AnomalyDetector):
    """Relative change against the mean of the last ``window`` values: ``|x - m| / |m|``.

    Extends Beam's ``AnomalyDetector`` (so it takes Beam thresholds and ensembles), using Beam's
    sliding mean tracker. A reference of zero makes any change infinite; changes smaller than
    ``epsilon`` in absolute terms score 0.
    """

    def __init__(self, mean_tracker=None, epsilon: float = 1e-9, **kwargs):
        if 'threshold_criterion' not in kwargs:
            kwargs['threshold_criterion'] = FixedThreshold(DEFAULT_THRESHOLDS['relative_change'])
        super().__init__(**kwargs)
        self._mean_tracker = mean_tracker or IncSlidingMeanTracker(1)
        self._epsilon = epsilon

    def learn_one(self, x: beam.Row) -> None:
        self._mean_tracker.push(next(iter(x)))

    def score_one(self, x: beam.Row) -> float | None:
        v = next(iter(x))
        if v is None or math.isnan(v):
            return None
        reference = self._mean_tracker.get()
        if math.isnan(reference):
            return float('nan')
        change = abs(v - reference)
        if change < self._epsilon:
            return 0.0
        if abs(reference) < self._epsilon:
            return math.inf
        return change / abs(reference)


class SlidingStdevTracker(IncSlidingStdevTracker):
    """Beam's incremental sliding stddev, re-anchored exactly once per window (see above)."""

    def __init__(self, window_size: int):
        super().__init__(window_size)
        self._pushes = 0

    def push(self, x):
        super().push(x)
        self._pushes += 1
        if self._pushes % self._window_size == 0:
            values = np.array([v for v in self._queue if not math.isnan(v)], float)
            self._n = len(values)
            self._mean = float(values.mean()) if len(values) else 0
            self._m2 = float(((values - self._mean) ** 2).sum()) if len(values) else 0

    def get(self):
        if self._n < 2:
            return float('nan')
        return math.sqrt(max(self._m2, 0.0) / (self._n - 1))

    def get_mean(self):
        return self._mean if self._n > 0 else float('nan')


class _MeanOf(MeanTracker):
    """The mean of a :class:`SlidingStdevTracker`, as the mean tracker Beam's ZScore reads
    (its pushes are the stddev tracker's, so pushing here does nothing)."""

    def __init__(self, stdev: SlidingStdevTracker):
        self._stdev = stdev

    def push(self, x):
        pass

    def get(self):
        return self._stdev.get_mean()


class SlidingMadTracker(BaseTracker):
    """The exact median and median absolute deviation of the last ``window`` values, with the
    interface of Beam's ``MadTracker`` (``push``, ``get``, ``get_median``)."""

    def __init__(self, window: int):
        self._median = BufferedSlidingQuantileTracker(window, 0.5)
        self._values: collections.deque[float] = collections.deque(maxlen=window)

    def push(self, x):
        self._median.push(x)
        if not math.isnan(x):
            self._values.append(x)

    def get_median(self) -> float:
        return self._median.get()

    def get(self) -> float:
        if not self._values:
            return float('nan')
        values = np.fromiter(self._values, float, len(self._values))
        return float(np.median(np.abs(values - self.get_median())))


class SeasonalLag:
    """The value one period ago, by time: the point nearest to ``t - period`` if it lies within
    2% of the period of it (irregular series and gaps give no lag rather than a wrong one).
    Keeps a period's worth of points (bounded by ``max_points``)."""

    def __init__(self, period_secs: float, max_points: int = 100_000):
        self._period = period_secs
        self._tolerance = 0.02 * period_secs
        self._points: collections.deque[tuple[float, float]] = collections.deque(maxlen=max_points)

    def lag(self, t: float) -> float | None:
        """The value of the point nearest to one period before ``t``, if one lies within the
        tolerance. Times must not decrease from call to call (points are scored in event-time
        order), which keeps this amortised O(1)."""
        target = t - self._period
        points = self._points
        while len(points) > 1 and points[1][0] <= target:
            points.popleft()  # a later point is still at or before the target
        candidates = [
            p for p in list(itertools.islice(points, 2)) if abs(p[0] - target) <= self._tolerance
        ]
        if not candidates:
            return None
        return min(candidates, key=lambda p: abs(p[0] - target))[1]

    def push(self, t: float, value: float) -> None:
        self._points.append((t, value))


class Detector:
    """A Beam detector with the trackers it scores on, a warm-up and [0, 1] scores; with
    ``seasonal_period_secs`` it scores the change against one period ago (a daily pattern is
    then normal, a departure from it is not)."""

    def __init__(self, config: DetectorConfig):
        self.config = config
        self.seen = 0
        w = config.window
        if config.kind == 'zscore':
            self._stdev = SlidingStdevTracker(w)
            self._mean = _MeanOf(self._stdev)
            self._beam = ZScore(sub_stat_tracker=self._mean, stdev_tracker=self._stdev)
        elif config.kind == 'robust_zscore':
            self._mad = SlidingMadTracker(w)
            self._beam = RobustZScore(mad_tracker=self._mad)
        elif config.kind == 'iqr':
            self._q1 = BufferedSlidingQuantileTracker(w, 0.25)
            self._q3 = SecondaryBufferedQuantileTracker(self._q1, 0.75)
            self._beam = IQR(q1_tracker=self._q1, q3_tracker=self._q3)
        else:
            self._mean = IncSlidingMeanTracker(w)
            self._beam = RelativeChange(mean_tracker=self._mean)
        self._threshold = FixedThreshold(config.cutoff)
        self._season = (
            SeasonalLag(config.seasonal_period_secs) if config.seasonal_period_secs else None
        )

    def stats(self) -> dict:
        """The statistics the next point will be judged against."""
        kind = self.config.kind
        if kind == 'zscore':
            return {'mean': _num(self._mean.get()), 'stddev': _num(self._stdev.get())}
        if kind == 'robust_zscore':
            return {'median': _num(self._mad.get_median()), 'mad': _num(self._mad.get())}
        if kind == 'iqr':
            return {'q1': _num(self._q1.get()), 'q3': _num(self._q3.get())}
        return {'reference': _num(self._mean.get())}

    def _departs_from_flat(self, value: float, stats: dict) -> bool:
        # Beam's detectors score 0 when the spread is zero (to avoid dividing by it). But a value
        # that differs from a perfectly flat history is as anomalous as it gets: infinite.
        kind = self.config.kind
        if kind == 'zscore':
            center, spread = stats['mean'], stats['stddev']
        elif kind == 'robust_zscore':
            center, spread = stats['median'], stats['mad']
        elif kind == 'iqr':
            center, spread = stats['q1'], (stats['q3'] or 0) - (stats['q1'] or 0)
            if stats['q1'] is not None and stats['q1'] <= value <= stats['q3']:
                return False
        else:
            return False
        if center is None or spread is None or spread >= _FLAT:
            return False
        return abs(value - center) > _FLAT * max(1.0, abs(center))

    def update(self, t: float, value: float | None) -> Verdict:
        """Scores ``value`` (at ``t``, epoch seconds) against what came before, then learns it.
        A missing value (None, NaN) gets no verdict and is not learnt."""
        if value is None or math.isnan(value):
            return Verdict(0.0, None, None, {})
        if self._season is not None:
            before = self._season.lag(t)
            self._season.push(t, float(value))
            if before is None:
                return Verdict(0.0, None, None, {})
            value = float(value) - before
        stats = self.stats()
        row = beam.Row(value=float(value))
        raw = self._beam.score_one(row)
        if raw == 0.0 and self._departs_from_flat(float(value), stats):
            raw = math.inf
        self._beam.learn_one(row)
        self.seen += 1
        if self.seen <= self.config.warmup or raw is None or math.isnan(raw):
            return Verdict(0.0, None, None, stats)
        label = self._threshold.apply(raw) == _OUTLIER
        return Verdict(_unit(raw, self.config.cutoff), label, raw, stats)


def _unit(raw: float, cutoff: float) -> float:
    if math.isinf(raw):
        return 1.0
    return raw / (raw + cutoff)


def _num(x) -> float | None:
    x = float(x)
    return None if math.isnan(x) else x
