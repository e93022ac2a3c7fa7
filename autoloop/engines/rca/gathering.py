"""Step 1 of root-cause analysis: the evidence, every series scored and its changes in the window.

Owns: `findings` (the costly half of `analyze`), the reading of one alarm as `Evidence` (its
change time, shape, size, and whether demand explains it), `REFERENCE_SHARE`, the demand rule
(`DEMAND_FRACTION`, `DEMAND_SAMPLES`) and `MAX_ALARMS_PER_METRIC`.
Must never: look at the dependency graph or rank services (`explaining`, `ranking` do).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Final

import numpy as np
import numpy.typing as npt

from autoloop.engines import anomaly
from autoloop.engines.rca import evidence, onsets

if TYPE_CHECKING:
    from autoloop.engines.rca.analyzing import RootCauseAnalyzer

REFERENCE_SHARE: Final[float] = 0.5
"""With an onset, the lookback takes at most this share of the data before it: at least half of a
short history stays reference (the operator's rule for a young workload)."""
DEMAND_FRACTION: Final[float] = 0.5
"""A change is demand-driven when load explains at least half of its first `DEMAND_SAMPLES` samples."""
DEMAND_SAMPLES: Final[int] = 4
MAX_ALARMS_PER_METRIC: Final[int] = 3
"""Changes of one metric kept as evidence inside one window (the strongest)."""


def findings(
    analyzer: RootCauseAnalyzer,
    series: anomaly.ServiceSeries,
    *,
    onset: float | None = None,
    window: tuple[float, float] | None = None,
) -> evidence.Findings:
    """The changes of every service inside the window (the costly half of `analyze`)."""
    detector = analyzer.detector or anomaly.AnomalyDetector()
    t_min, t_max = anomaly.time_span(series)
    if window is None and onset is None:
        # Scan the second half of the data against the first.
        report = detector.detect(series, test_start=(t_min + t_max) / 2.0)
        found = [a.start for a in report.anomalies if a.unexplained]
        if not found:
            return evidence.Findings({}, (), (t_min, t_max), None, "no unexplained anomaly to analyse")
        onset = min(found)
    if window is not None:
        start, end = float(window[0]), float(window[1])
    else:
        assert onset is not None
        start = onset - min(analyzer.lookback_s, REFERENCE_SHARE * max(onset - t_min, 0.0))
        end = t_max
    scores = detector.score_all(series, reference_end=start)
    changes = {
        name: tuple(_service_evidence(analyzer, name, metrics, detector, start, end))
        for name, metrics in scores.items()
    }
    return evidence.Findings(
        {name: evs for name, evs in changes.items() if evs},
        tuple(scores),
        (start, end),
        onset,
        warnings=_reference_warnings(scores, start),
    )


def _service_evidence(
    analyzer: RootCauseAnalyzer,
    name: str,
    scores: Mapping[str, anomaly.SeriesScore],
    detector: anomaly.AnomalyDetector,
    start: float,
    end: float,
) -> list[evidence.Evidence]:
    masks = detector.load_masks(scores)
    found: list[evidence.Evidence] = []
    for metric, s in scores.items():
        if s.valid and s.t.size >= 2:
            found.extend(_metric_evidence(analyzer, name, s, masks[metric], detector, start, end))
    return [_check_demand(analyzer, ev, found) for ev in found]


def _metric_evidence(
    analyzer: RootCauseAnalyzer,
    service: str,
    s: anomaly.SeriesScore,
    mask: npt.NDArray[np.bool_],
    detector: anomaly.AnomalyDetector,
    start: float,
    end: float,
) -> list[evidence.Evidence]:
    """Evidence for the strongest alarms of one series inside [start, end]."""
    first = int(np.searchsorted(s.t, start))
    last = int(np.searchsorted(s.t, end, side="right"))
    z = s.z[:last]
    alarms = anomaly.find_alarms(
        z,
        first=first,
        z_threshold=detector.z_threshold * analyzer.sensitivity,
        cusum_drift=detector.cusum_drift * analyzer.sensitivity,
        cusum_limit=detector.cusum_limit * analyzer.sensitivity,
        z_end=detector.z_end,
    )
    if not alarms and s.kind == "memory":
        alarms = onsets.slow_ramp(z, first)
    out = []
    floor = first
    for alarm in alarms:
        out.append(_change(service, s, z, alarm, floor, mask, detector))
        floor = alarm.end if alarm.end is not None else z.size
    # Real series hold noise excursions before the change: keep the strongest, not the first.
    strongest = sorted(out, key=lambda e: -abs(e.z) * evidence.harm(e))[:MAX_ALARMS_PER_METRIC]
    return [e for e in out if e in strongest]


def _change(
    service: str,
    s: anomaly.SeriesScore,
    z: npt.NDArray[np.float64],
    alarm: anomaly.Alarm,
    floor: int,
    mask: npt.NDArray[np.bool_],
    detector: anomaly.AnomalyDetector,
) -> evidence.Evidence:
    """One alarm as evidence. Its change point and shape: least squares from `floor` (the
    window start or the previous change's end) to the end of this change."""
    stop = alarm.end if alarm.end is not None else z.size
    begin, ramp = onsets.refine_onset(z, floor, stop, alarm.direction)
    begin = min(begin, alarm.detected)
    shape: anomaly.Shape = anomaly.classify_shape(z, alarm) if alarm.end is not None else "step"
    if alarm.end is None and ramp:
        shape = "ramp"
    zm = anomaly.median3(z)
    k = alarm.start + int(np.argmax(alarm.direction * zm[alarm.start : stop]))
    expected = float(s.expected[k])
    delta = float(anomaly.median3(s.x[: z.size])[k] - expected)
    # Demand when load explains the start of the change and its peak: a noise excursion that
    # merges into a later fault must not pass the fault off as demand.
    demand = s.kind != "load" and bool(mask[k]) and _demand(z, mask, begin, stop, alarm, detector)
    return evidence.Evidence(
        service=service,
        metric=s.metric,
        kind=s.kind,
        z=float(zm[k]),
        onset=float(s.t[begin]),
        delta=delta,
        relative_change=delta / abs(expected) if abs(expected) > 1e-12 else 0.0,
        shape=shape,
        low_confidence=s.degenerate,
        demand=demand,
    )


def _check_demand(
    analyzer: RootCauseAnalyzer, ev: evidence.Evidence, found: Sequence[evidence.Evidence]
) -> evidence.Evidence:
    """Demand only if the service's load changed the same way at about the same time (within
    the load lag after, twice that before): a change that started before its load moved, or long
    after, was not caused by it."""
    if not ev.demand:
        return ev
    lag = anomaly.LOAD_LAG_SAMPLES * analyzer.onset_slack_s
    if any(
        e.kind == "load" and e.z * ev.z > 0 and ev.onset - 2 * lag <= e.onset <= ev.onset + lag for e in found
    ):
        return ev
    return dataclasses.replace(ev, demand=False)


def _demand(
    z: npt.NDArray[np.float64],
    mask: npt.NDArray[np.bool_],
    begin: int,
    stop: int,
    alarm: anomaly.Alarm,
    detector: anomaly.AnomalyDetector,
) -> bool:
    """Did load explain the start of this change? Judged on its first clearly deviating samples
    (half the alarm threshold), not on samples where the metric had not moved yet."""
    moved = np.flatnonzero(alarm.direction * z[begin:stop] >= detector.z_threshold / 2.0)
    moved = moved[:DEMAND_SAMPLES] + begin
    return bool(moved.size) and float(np.mean(mask[moved])) >= DEMAND_FRACTION


def _reference_warnings(
    scores: Mapping[str, Mapping[str, anomaly.SeriesScore]], start: float
) -> tuple[str, ...]:
    """What the reference before `start` could not support."""
    all_scores = [s for metrics in scores.values() for s in metrics.values() if s.t.size]
    short = [s for s in all_scores if not s.valid]
    if not short:
        return ()
    need = anomaly.MIN_REFERENCE_SAMPLES
    if len(short) == len(all_scores):
        return (f"no series has {need} samples before t={start:.0f}s to compare with: nothing analysed",)
    return (f"{len(short)} of {len(all_scores)} series have fewer than {need} samples before t={start:.0f}s",)
