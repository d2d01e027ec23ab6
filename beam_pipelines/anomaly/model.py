"""One key's anomaly model: its detectors, their calibration, the ensemble and the refractory.

``KeyModel.update(t, value)`` is called once per point of the key, in event-time order, and
returns a :class:`Scored`: the combined score in [0, 1], the label (None during the warm-up),
the detector that scored highest and the statistics it judged by. Ensembles are combined with
Beam's own aggregations (``MaxScore``, ``AverageScore``, ``MajorityVote``, ``AnyVote``,
``AllVote``) over ``AnomalyPrediction`` objects.

After a point scores ``refractory_level`` or more, the key is refractory for
``refractory_points`` points: they score 0, so a sustained anomaly is one detection, not
hundreds (the detectors keep learning meanwhile).

Plain Python, no pipeline in it.
"""

from __future__ import annotations

import dataclasses

from apache_beam.ml.anomaly import aggregations
from apache_beam.ml.anomaly.base import AnomalyPrediction

from beam_pipelines.anomaly.calibration import RankCalibration
from beam_pipelines.anomaly.detectors import Detector
from beam_pipelines.anomaly.spec import AnomalySpec

__all__ = ['KeyModel', 'Scored']

_OUTLIER = 1
_AGGREGATE = {
    'max': aggregations.MaxScore,
    'mean': aggregations.AverageScore,
    'majority': aggregations.MajorityVote,
    'any': aggregations.AnyVote,
    'all': aggregations.AllVote,
}


@dataclasses.dataclass(frozen=True)
class Scored:
    """One point's verdict.

    Attributes:
        score: in [0, 1]; 0.0 without a verdict and while refractory.
        label: True (anomaly) or False; None during the warm-up or for a missing value.
        detector: the name of the detector that scored highest (None without a verdict).
        raw: that detector's own statistic (|z| etc.).
        stats: the statistics it judged the point by (mean and stddev, median and MAD, ...).
        refractory: the point fell in the refractory period after an anomaly.
    """

    score: float
    label: bool | None
    detector: str | None = None
    raw: float | None = None
    stats: dict = dataclasses.field(default_factory=dict)
    refractory: bool = False


_NO_VERDICT = Scored(0.0, None)


class KeyModel:
    """The model of one key (see the module docstring)."""

    def __init__(self, spec: AnomalySpec):
        self.spec = spec
        self.detectors = [Detector(c) for c in spec.detectors]
        self._calibrations = (
            [RankCalibration(spec.history, min(200, spec.history)) for _ in spec.detectors]
            if spec.calibration == 'rank'
            else None
        )
        self._aggregate = _AGGREGATE[spec.aggregation]()
        self.points = 0
        self.last_time: float | None = None
        self._refractory_left = 0

    def update(self, t: float, value: float | None) -> Scored:
        """Scores the key's next point (``t`` in epoch seconds, not before the previous one)."""
        self.points += 1
        self.last_time = t
        verdicts = [d.update(t, value) for d in self.detectors]
        scored = []  # (score, label, detector index)
        for i, v in enumerate(verdicts):
            if v.raw is None:
                continue
            if self._calibrations is None:
                scored.append((v.score, v.label, i))
                continue
            score = self._calibrations[i].score(v.raw)
            self._calibrations[i].push(v.raw)
            if score is not None:
                scored.append((score, score >= self.spec.threshold, i))
        if self.points <= self.spec.warmup or not scored or value is None:
            return _NO_VERDICT
        score, label = self._combine(scored)
        best = max(scored, key=lambda s: s[0])[2]
        detail = dict(
            detector=self.spec.detectors[best].name,
            raw=verdicts[best].raw,
            stats=verdicts[best].stats,
        )
        if self._refractory_left > 0:
            self._refractory_left -= 1
            return Scored(0.0, False, refractory=True, **detail)
        if score >= self.spec.refractory_level:
            self._refractory_left = self.spec.refractory_points
        return Scored(score, label, **detail)

    def _combine(self, scored) -> tuple[float, bool]:
        if self.spec.aggregation in ('max', 'mean'):
            combined = self._aggregate.apply([AnomalyPrediction(score=s) for s, _, _ in scored])
            return float(combined.score), combined.score >= self.spec.threshold
        # Votes: the label is the vote; the score, the fraction of detectors voting anomaly, so
        # the two agree (majority: above 0.5; any: above 0; all: 1).
        combined = self._aggregate.apply([AnomalyPrediction(label=int(b)) for _, b, _ in scored])
        return sum(1 for _, b, _ in scored if b) / len(scored), combined.label == _OUTLIER
