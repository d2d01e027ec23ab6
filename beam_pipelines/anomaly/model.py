"""One key's anomaly model: its detectors, their calibration, the ensemble and the refractory.

``KeyModel.update_many(times, values)`` scores a batch of the key's points, in event-time
order (``update(t, value)`` does one), and returns a :class:`ScoredBatch`: per point the
combined score in [0, 1], the label (none during the warm-up), the detector that scored highest
and the statistics it judged by. Ensembles combine the detectors' scores as Beam's aggregations
do (``MaxScore``, ``AverageScore``, ``MajorityVote`` with ties to normal, ``AnyVote``,
``AllVote``), over the whole batch at once rather than through one ``AnomalyPrediction`` per
point and detector, which cost more than the detectors themselves.

After a point scores ``refractory_level`` or more, the key is refractory for
``refractory_points`` points: they score 0, so a sustained anomaly is one detection, not
hundreds (the detectors keep learning meanwhile).

Plain Python and numpy, no pipeline in it.
"""

from __future__ import annotations

import dataclasses

import numpy as np
import orjson

from beam_pipelines.anomaly.calibration import RankCalibration
from beam_pipelines.anomaly.detectors import FEW_POINTS
from beam_pipelines.anomaly.detectors import Detector
from beam_pipelines.anomaly.detectors import Verdict
from beam_pipelines.anomaly.detectors import Verdicts
from beam_pipelines.anomaly.spec import AnomalySpec

__all__ = ['KeyModel', 'Scored', 'ScoredBatch']


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
_NO_VALUE = Verdict(0.0, None, None, {})


@dataclasses.dataclass(frozen=True)
class ScoredBatch:
    """A batch's verdicts, one entry per point (see :class:`Scored`).

    Attributes:
        score: in [0, 1].
        verdict: whether the point has a verdict (else: warm-up, missing value, no detector
            ready; its label is None).
        label: anomaly or not, where there is a verdict.
        best: the index of the detector that scored highest (-1 without a verdict).
        refractory: the point fell in the refractory period after an anomaly.
    """

    score: np.ndarray
    verdict: np.ndarray
    label: np.ndarray
    best: np.ndarray
    refractory: np.ndarray
    names: tuple[str, ...]
    verdicts: list[Verdicts]

    @classmethod
    def of(cls, scored: list[Scored], spec: AnomalySpec) -> ScoredBatch:
        """The batch of single verdicts."""
        names = tuple(d.name for d in spec.detectors)
        best = np.array([-1 if s.detector is None else names.index(s.detector) for s in scored])
        verdicts = [
            Verdicts.of(
                [
                    Verdict(0.0, None, s.raw, s.stats) if b == d else _NO_VALUE
                    for s, b in zip(scored, best.tolist(), strict=True)
                ],
                config,
            )
            for d, config in enumerate(spec.detectors)
        ]
        return cls(
            np.array([s.score for s in scored], float),
            best >= 0,
            np.array([bool(s.label) for s in scored], bool),
            best,
            np.array([s.refractory for s in scored], bool),
            names,
            verdicts,
        )

    def labels(self) -> list[bool | None]:
        return [bool(b) if v else None for v, b in zip(self.verdict, self.label, strict=True)]

    def detectors(self) -> list[str | None]:
        return [self.names[b] if b >= 0 else None for b in self.best.tolist()]

    def raw(self) -> np.ndarray:
        """The best detector's own statistic (NaN without a verdict)."""
        raw = np.full(len(self.score), np.nan)
        for d, verdicts in enumerate(self.verdicts):
            mine = self.best == d
            raw[mine] = verdicts.raw[mine]
        return raw

    def statistics(self) -> list[str | None]:
        """The best detector's statistics as JSON (None without a verdict)."""
        out: list[str | None] = [None] * len(self.score)
        for d, verdicts in enumerate(self.verdicts):
            rows = np.flatnonzero(self.best == d)
            if not len(rows):
                continue
            names = list(verdicts.stats)
            columns = [verdicts.stats[k][rows].tolist() for k in names]
            for i, values in zip(rows.tolist(), zip(*columns, strict=True), strict=True):
                # NaN is not JSON: an unknown statistic is null.
                out[i] = orjson.dumps(
                    {k: None if v != v else v for k, v in zip(names, values, strict=True)}
                ).decode()
        return out

    def at(self, i: int) -> Scored:
        if not self.verdict[i]:
            return Scored(0.0, None)
        best = int(self.best[i])
        return Scored(
            float(self.score[i]),
            bool(self.label[i]),
            self.names[best],
            float(self.verdicts[best].raw[i]),
            self.verdicts[best].stats_at(i),
            bool(self.refractory[i]),
        )


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
        self._names = tuple(d.name for d in spec.detectors)
        self.points = 0
        self.last_time: float | None = None
        self._refractory_left = 0

    def update(self, t: float, value: float | None) -> Scored:
        """Scores the key's next point (``t`` in epoch seconds, not before the previous one).

        Plain Python: the one or few points a key gets per watermark when streaming would
        otherwise pay numpy's per-call cost many times over (``update_many`` is for batches).
        """
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
        if self.points <= self.spec.warmup or not scored or value is None or value != value:
            return _NO_VERDICT
        score, label = _combine_one(self.spec, scored)
        best = max(scored, key=lambda s: s[0])[2]
        detail = dict(
            detector=self._names[best], raw=verdicts[best].raw, stats=verdicts[best].stats
        )
        if self._refractory_left > 0:
            self._refractory_left -= 1
            return Scored(0.0, False, refractory=True, **detail)
        if score >= self.spec.refractory_level:
            self._refractory_left = self.spec.refractory_points
        return Scored(score, label, **detail)

    def update_many(self, times: np.ndarray, values: np.ndarray) -> ScoredBatch:
        """Scores the key's next points, in order.

        Args:
            times: epoch seconds, not decreasing (also from call to call).
            values: float64; NaN is a missing value (no verdict, not learnt).
        """
        n = len(values)
        if n <= FEW_POINTS:
            points = zip(times.tolist(), values.tolist(), strict=True)
            return ScoredBatch.of([self.update(t, v) for t, v in points], self.spec)
        number = self.points + 1 + np.arange(n)
        self.points += n
        self.last_time = float(times[-1])
        verdicts = [d.update_many(times, values) for d in self.detectors]
        scores = np.full((len(verdicts), n), np.nan)
        labels = np.zeros((len(verdicts), n), bool)
        for i, v in enumerate(verdicts):
            has = v.has_verdict
            if self._calibrations is None:
                scores[i, has] = v.score[has]
                labels[i] = v.label & has
            else:
                scores[i, has] = self._calibrations[i].score_many(v.raw[has])
                labels[i] = scores[i] >= self.spec.threshold
        scored = ~np.isnan(scores)
        verdict = (number > self.spec.warmup) & scored.any(axis=0) & ~np.isnan(values)
        score, label = self._combine(scores, labels, scored)
        score, label = np.where(verdict, score, 0.0), label & verdict
        best = np.where(verdict, np.argmax(np.where(scored, scores, -np.inf), axis=0), -1)
        refractory = self._refractory(np.flatnonzero(verdict), score)
        score[refractory], label[refractory] = 0.0, False
        return ScoredBatch(score, verdict, label, best, refractory, self._names, verdicts)

    def _combine(self, scores, labels, scored) -> tuple[np.ndarray, np.ndarray]:
        kept = np.maximum(scored.sum(axis=0), 1)  # columns with nothing scored are not verdicts
        aggregation = self.spec.aggregation
        if aggregation in ('max', 'mean'):
            zeroed = np.where(scored, scores, 0.0)
            combined = zeroed.max(axis=0) if aggregation == 'max' else zeroed.sum(axis=0) / kept
            return combined, combined >= self.spec.threshold
        # Votes: the label is the vote; the score, the fraction of detectors voting anomaly, so
        # the two agree (majority: above 0.5, ties normal; any: above 0; all: 1).
        ayes = (labels & scored).sum(axis=0)
        fraction = ayes / kept
        if aggregation == 'majority':
            return fraction, ayes > kept - ayes
        if aggregation == 'any':
            return fraction, ayes > 0
        return fraction, ayes == kept

    def _refractory(self, verdicts: np.ndarray, score: np.ndarray) -> np.ndarray:
        """Which points fall in a refractory period: the ``refractory_points`` verdicts after
        one scoring ``refractory_level`` or more (itself not refractory), carried across
        batches."""
        refractory = np.zeros(len(score), bool)
        length = self.spec.refractory_points
        free_from = self._refractory_left  # the first verdict (in this batch) not refractory
        refractory[verdicts[:free_from]] = True
        high = np.flatnonzero(score[verdicts] >= self.spec.refractory_level)
        for k in high[high >= free_from].tolist():
            if k < free_from:
                continue
            refractory[verdicts[k + 1 : k + 1 + length]] = True
            free_from = k + 1 + length
        self._refractory_left = max(0, free_from - len(verdicts))
        return refractory


def _combine_one(spec: AnomalySpec, scored: list[tuple]) -> tuple[float, bool]:
    """``KeyModel._combine`` for one point's (score, label, detector) triples."""
    if spec.aggregation in ('max', 'mean'):
        scores = [s for s, _, _ in scored]
        combined = max(scores) if spec.aggregation == 'max' else sum(scores) / len(scores)
        return combined, combined >= spec.threshold
    ayes = sum(1 for _, b, _ in scored if b)
    fraction = ayes / len(scored)
    if spec.aggregation == 'majority':
        return fraction, ayes > len(scored) - ayes
    if spec.aggregation == 'any':
        return fraction, ayes > 0
    return fraction, ayes == len(scored)
