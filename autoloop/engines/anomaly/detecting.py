"""The detector: scores every series, masks what load explains, turns alarms into anomalies.

Owns: `AnomalyDetector` (its parameters, chosen for few false alarms), the entry point `detect`,
and the optional multivariate check (IsolationForest over a service's z-vectors).
Must never: fit baselines or date alarms itself (`scoring`, `alarms` do); it assembles them.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Literal

import numpy as np
import numpy.typing as npt

from autoloop.engines.anomaly import (
    alarms,
    calibrating,
    demand,
    persisting,
    recurring,
    reports,
    robust,
    samples,
    scoring,
    significance,
)


class AnomalyDetector:
    """Per-series robust detector; parameters are chosen for few false alarms (see the package doc).

    reference_rank: when set, every series' z is first scaled down so that the reference's
        `reference_rank`-th most extreme stretch as long as the tested part sits at `z_threshold`
        (`calibrating`): with n such stretches in the reference, a tested part like them alarms
        with probability at most reference_rank / (n + 1). None: the robust scale alone.
    single_factor: when set, one sample beyond `single_factor * z_threshold` also alarms (on z
        calibrated for single samples when `reference_rank` is set): for series whose anomalies
        are isolated samples. None: a single wild scrape never alarms.
    false_alarm_probability: when set, the chance that one pass (`detect`, or `series_alarms` on
        one series) raises an anomaly on fault-free input; `detect` splits it evenly over the
        series it tests. Every run or CUSUM alarm must then persist: its side needs as many tested
        samples beyond `cusum_drift` as the reference's own exceedance rate makes that rare
        (`persisting`). None: the rules alone (a three-scrape burst alarms).
    harmless_directions: when True, an anomaly of a kind whose harm has one direction
        (`samples.harmful_direction`: errors and memory up) that moved the other way is
        reported as benign, never unexplained: a heap collection is not a fault. False: every
        direction counts.
    recurrence: when True, a tested sample that every earlier seasonal period of the reference
        matched or beat at the same time of day (within one seasonal bin, on the same side; two
        periods needed) is a recurring job, not an anomaly (`recurring`): masked like demand. It
        only acts on references of two or more periods (`seasonal_period_s`).
    min_relative_change: a sample whose deviation from its expected value is at most this share
        of that value counts as zero for every alarm rule (`significance`), however large its z:
        a change within it is never an anomaly on its own. 0.1 by default, the Kubernetes HPA's
        default tolerance. None: z alone decides.
    """

    def __init__(
        self,
        *,
        z_threshold: float = 6.0,
        cusum_drift: float = 2.5,
        cusum_limit: float = 20.0,
        z_end: float = 2.0,
        load_elasticity: float = 1.5,
        memory_load_elasticity: float = 0.5,
        z_load: float = 3.0,
        seasonal_period_s: float = scoring.SECONDS_PER_DAY,
        counters: Sequence[str] = (),
        test_fraction: float = 0.25,
        multivariate: bool = False,
        random_state: int | None = 0,
        reference_rank: int | None = None,
        single_factor: float | None = None,
        false_alarm_probability: float | None = persisting.FALSE_ALARM_PROBABILITY,
        harmless_directions: bool = True,
        recurrence: bool = True,
        min_relative_change: float | None = significance.MIN_RELATIVE_CHANGE,
    ) -> None:
        self.z_threshold = z_threshold
        self.cusum_drift = cusum_drift
        self.cusum_limit = cusum_limit
        self.z_end = z_end
        self.load_elasticity = load_elasticity
        self.memory_load_elasticity = memory_load_elasticity
        self.z_load = z_load
        self.seasonal_period_s = seasonal_period_s
        self.counters = counters
        self.test_fraction = test_fraction
        self.multivariate = multivariate
        self.random_state = random_state
        self.reference_rank = reference_rank
        self.single_factor = single_factor
        self.false_alarm_probability = false_alarm_probability
        self.harmless_directions = harmless_directions
        self.recurrence = recurrence
        self.min_relative_change = min_relative_change

    def score_service(
        self, metrics: Mapping[str, samples.SeriesInput], *, reference_end: float
    ) -> dict[str, scoring.SeriesScore]:
        """Score every metric of one service against the same reference end."""
        return self.score_all({"": metrics}, reference_end=reference_end)[""]

    def score_all(
        self, series: samples.ServiceSeries, *, reference_end: float
    ) -> dict[str, dict[str, scoring.SeriesScore]]:
        """Score every metric of every service (see `score_all`)."""
        return scoring.score_all(
            series, reference_end=reference_end, period_s=self.seasonal_period_s, counters=self.counters
        )

    def load_masks(self, scores: Mapping[str, scoring.SeriesScore]) -> dict[str, npt.NDArray[np.bool_]]:
        """Per metric, the samples explained by the service's own load metric (if it has one)."""
        loads = [s for s in scores.values() if s.kind == "load" and s.valid]
        load = max(loads, key=lambda s: float(np.median(np.abs(s.x))) if s.x.size else 0.0, default=None)
        return {
            name: demand.load_explained(
                s,
                load,
                elasticity=self.memory_load_elasticity if s.kind == "memory" else self.load_elasticity,
                z_load=self.z_load,
            )
            for name, s in scores.items()
        }

    def recurring_mask(self, s: scoring.SeriesScore, first: int) -> npt.NDArray[np.bool_]:
        """The tested samples of `s` (from index `first`) that repeat what every earlier period of
        its reference did at that time of day; all False when `recurrence` is off."""
        if not self.recurrence:
            return np.zeros(s.z.size, dtype=bool)
        return recurring.recurring(
            s.t, s.z, first, period_s=self.seasonal_period_s, fitted_from=s.fitted_from
        )

    def negligible_mask(self, s: scoring.SeriesScore) -> npt.NDArray[np.bool_]:
        """The samples of `s` (reference and tested) within `min_relative_change` of their expected
        value (`significance.negligible`): they count as zero for every alarm rule."""
        return significance.negligible(s.x, s.expected, min_relative=self.min_relative_change)

    def alarm_z(self, z: samples.FloatArray, first: int, *, single: bool = False) -> samples.FloatArray:
        """The z-scores an alarm rule reads: reference-calibrated when `reference_rank` is set."""
        if self.reference_rank is None:
            return z
        return calibrating.calibrated(
            z, first, z_threshold=self.z_threshold, rank=self.reference_rank, single=single
        )

    def series_alarms(
        self,
        z: samples.FloatArray,
        first: int,
        *,
        blocked: npt.NDArray[np.bool_] | None = None,
        series: int = 1,
        negligible: npt.NDArray[np.bool_] | None = None,
    ) -> list[alarms.Alarm]:
        """The alarms of one scored series from index `first` on (samples `blocked` by load count
        as zero): runs and CUSUM, and one-sample alarms when `single_factor` is set. `series`: how
        many series the pass tests, which share `false_alarm_probability`. `negligible`
        (`negligible_mask`) samples count as zero too, except for dating a change's start."""
        alpha = (
            None if self.false_alarm_probability is None else self.false_alarm_probability / max(series, 1)
        )
        found = alarms.find_alarms(
            self.alarm_z(z, first),
            first=first,
            z_threshold=self.z_threshold,
            cusum_drift=self.cusum_drift,
            cusum_limit=self.cusum_limit,
            z_end=self.z_end,
            blocked=blocked,
            alpha=alpha,
            negligible=negligible,
        )
        if self.single_factor is None:
            return found
        one = alarms.find_single(
            self.alarm_z(z, first, single=True),
            first=first,
            level=self.single_factor * self.z_threshold,
            z_end=self.z_end,
            blocked=_either(blocked, negligible),
        )
        inside = one is not None and any(
            a.start <= one.detected and (a.end is None or one.detected < a.end) for a in found
        )
        return sorted([*found, one] if one is not None and not inside else found, key=lambda a: a.detected)

    def detect(
        self, series: samples.ServiceSeries, *, test_start: float | None = None
    ) -> reports.DetectionReport:
        """Anomalies from `test_start` (s) on, every earlier sample being the reference."""
        t_min, t_max = samples.time_span(series)
        if test_start is None:
            test_start = t_max - self.test_fraction * (t_max - t_min)
        found: list[reports.Anomaly] = []
        all_scores = self.score_all(series, reference_end=test_start)
        tested = sum(s.valid and s.t.size >= 2 for scores in all_scores.values() for s in scores.values())
        for service, scores in all_scores.items():
            masks = self.load_masks(scores)
            for name, s in scores.items():
                if not s.valid or s.t.size < 2:
                    continue
                first = int(np.searchsorted(s.t, test_start))
                blocked = masks[name] | self.recurring_mask(s, first)
                negligible = self.negligible_mask(s)
                for alarm in self.series_alarms(
                    s.z, first, blocked=blocked, series=tested, negligible=negligible
                ):
                    found.append(self._anomaly(service, s, alarm, load_alarm=s.kind == "load"))
            if self.multivariate:
                found.extend(self._multivariate(service, scores, test_start))
        found.sort(key=lambda a: (not a.unexplained, -abs(a.peak_z)))
        n_unexp = sum(a.unexplained for a in found)
        text = (
            f"{len(found)} anomalies since t={test_start:.0f}s ({n_unexp} not explained by load)"
            if found
            else f"no anomalies since t={test_start:.0f}s"
        )
        return reports.DetectionReport(tuple(found), float(test_start), float(t_max), text)

    def _anomaly(
        self, service: str, s: scoring.SeriesScore, alarm: alarms.Alarm, *, load_alarm: bool
    ) -> reports.Anomaly:
        stop = alarm.end if alarm.end is not None else s.z.size
        seg = alarm.direction * s.z[alarm.start : stop]
        k = alarm.start + int(np.argmax(seg))
        peak_z = float(s.z[k])
        expected = float(s.expected[k])
        rel = (float(s.x[k]) - expected) / abs(expected) if abs(expected) > 1e-12 else 0.0
        shape = alarms.classify_shape(s.z, alarm)
        severity: Literal["warning", "critical"] = (
            "critical" if abs(peak_z) >= 2 * self.z_threshold else "warning"
        )
        direction: Literal["up", "down"] = "up" if alarm.direction > 0 else "down"
        harmful = samples.harmful_direction(s.kind)
        benign = self.harmless_directions and harmful != 0 and alarm.direction != harmful
        why = [
            f"{s.metric} went {direction} from ~{expected:.4g} to {float(s.x[k]):.4g}",
            f"({peak_z:+.1f} robust sigma, {shape})",
        ]
        if benign:
            why.append(f"; {s.kind} going {direction} harms nothing by itself")
            severity = "warning"
        if load_alarm:
            why.append("; this is demand, not a fault")
        if s.degenerate:
            why.append("; the reference was constant, so the score is uncertain")
            severity = "warning"
        return reports.Anomaly(
            service=service,
            metric=s.metric,
            kind=s.kind,
            direction=direction,
            start=float(s.t[alarm.start]),
            detected_at=float(s.t[alarm.detected]),
            end=None if alarm.end is None else float(s.t[alarm.end]),
            peak_z=peak_z,
            expected=expected,
            peak_value=float(s.x[k]),
            relative_change=rel,
            shape=shape,
            severity=severity,
            explained_by_load=load_alarm,
            low_confidence=s.degenerate,
            explanation=" ".join(why),
            benign=benign,
        )

    def _multivariate(
        self, service: str, scores: Mapping[str, scoring.SeriesScore], test_start: float
    ) -> list[reports.Anomaly]:
        """IsolationForest over the joint z-vector of a service's metrics (needs three or more)."""
        from sklearn.ensemble import IsolationForest

        usable = [s for s in scores.values() if s.valid and s.t.size >= 2 * samples.MIN_REFERENCE_SAMPLES]
        if len(usable) < 3:
            return []
        grid = usable[0].t
        matrix = np.column_stack([np.interp(grid, s.t, robust.median3(s.z)) for s in usable])
        ref = grid < test_start
        if ref.sum() < 2 * samples.MIN_REFERENCE_SAMPLES or (~ref).sum() < 2:
            return []
        forest = IsolationForest(n_estimators=100, random_state=self.random_state).fit(matrix[ref])
        ref_scores = forest.score_samples(matrix[ref])
        # Rarer than every reference sample, three scrapes running: under the null each test point
        # has odds 1/(n+1) of beating the reference minimum, so three in a row ~ 1/n^3.
        low = forest.score_samples(matrix[~ref]) < float(ref_scores.min())
        hits = np.flatnonzero(low[2:] & low[1:-1] & low[:-2])
        if hits.size == 0:
            return []
        offset = int(ref.sum())
        i = offset + int(hits[0]) + 2
        return [_joint_shift(service, usable, grid, matrix, i)]


def _either(a: npt.NDArray[np.bool_] | None, b: npt.NDArray[np.bool_] | None) -> npt.NDArray[np.bool_] | None:
    """The union of two optional masks (None when both are)."""
    return b if a is None else a if b is None else a | b


def _joint_shift(
    service: str,
    usable: Sequence[scoring.SeriesScore],
    grid: samples.FloatArray,
    matrix: samples.FloatArray,
    i: int,
) -> reports.Anomaly:
    """The multivariate anomaly detected at grid index `i`, named after its largest z."""
    worst = int(np.argmax(np.abs(matrix[i])))
    return reports.Anomaly(
        service=service,
        metric="*",
        kind="other",
        direction="up" if matrix[i, worst] > 0 else "down",
        start=float(grid[i - 2]),
        detected_at=float(grid[i]),
        end=None,
        peak_z=float(matrix[i, worst]),
        expected=0.0,
        peak_value=0.0,
        relative_change=0.0,
        shape="step",
        severity="warning",
        explained_by_load=False,
        low_confidence=False,
        explanation=f"joint shift of {len(usable)} metrics rarer than any reference sample; "
        f"largest in {usable[worst].metric}",
    )


def detect(
    series: samples.ServiceSeries, *, test_start: float | None = None, detector: AnomalyDetector | None = None
) -> reports.DetectionReport:
    """Detect anomalies per service and metric (see the package doc); `detector` sets the parameters."""
    return (detector or AnomalyDetector()).detect(series, test_start=test_start)
