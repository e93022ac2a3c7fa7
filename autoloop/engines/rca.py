"""Root-cause ranking over a service dependency graph.

Contract: pure numpy; no I/O. Entry point
`analyze(series, graph, *, onset=None, window=None, changes=None, analyzer=None) -> RCAResult`:
`series` maps service -> metric name -> (timestamps in s, values); `graph` maps caller -> callees;
`onset` is a suspected start (s) or `window` an analysis window (start, end); with neither, the
anomaly detector finds the onset. `changes` (service -> rollout times, s) is optional evidence for
bad rollouts. The result ranks candidate causes (service, metric, fault type), each with a score,
a confidence, evidence, an explanation and an action. Bad data never raises and never gives a
confident cause; a reference too short to compare with is said in `RCAResult.warnings`.
`RootCauseAnalyzer.findings` (the evidence, the costly part) and `.rank` (cheap) are the two
halves of `analyze`, so parameters of the ranking can be cross-validated on fixed evidence.

Method (the "explain-away" view of fault propagation):
1. Evidence: every series is scored against the reference before the window with the detector's
   robust baseline (robust z; no cap). Per metric, the strongest alarms in the window are kept,
   with change time and shape from a least-squares step-or-ramp fit; a change that load explains
   at its start and at its peak, while load itself moved, is demand.
2. Explain away: a caller's latency or error change is explained by a callee whose same metric
   changed no later and by enough (callee change x `max_edge_gain` >= caller change). A load
   change passes down from a caller whose load moved alike, or comes from a caller that changed on
   its own, unless the service has its own harmful change then (clients of a sick service back off
   or retry: that traffic change is the sick service's). Edges missing from the graph are learned
   from matching latency/error changes, but never between two callees of one caller (siblings
   move together under a common cause, not because one calls the other).
3. Rank: each service's score is the product of how much of its evidence is its own, its
   strength (largest log(1 + |z|) of its own changes, a change for the better counting
   `IMPROVEMENT_WEIGHT`; |z| is at most |relative change| / `relative_floor`, so a reference with
   no variation cannot make a small change huge), its timing (closeness to the suspected onset)
   and 1 + its coverage share (how many anomalous services its changes explain, through chains).
   Equal scores are ties and share a rank.
4. Confidence of a cause: its score against the best other one, s / (s + s_other), halved when
   none of its own changes rests on a reference with variation; the result is `confident` when
   the top cause is alone at the top and its confidence reaches `confident_at` (> 0.5).
5. Fault type from the metric family that carries the root's own evidence (see `_fault_type`),
   the action from the fault type.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Mapping, Sequence
from typing import Any, Final, Literal

import numpy as np
import numpy.typing as npt

from autoloop.engines import anomaly

Node = tuple[str, str]
"""(service, metric): one change in the explanation graph."""
Links = dict[Node, set[Node]]
FaultType = Literal["cpu_saturation", "memory_leak", "latency", "error_burst", "bad_rollout", "unknown"]
Action = Literal["scale", "rollback", "restart", "schedule_maintenance", "investigate"]

PROPAGATING_KINDS: Final[frozenset[str]] = frozenset({"latency", "errors"})
"""Metric kinds whose change travels from a callee to its callers; cpu and memory do not."""
ACTIONS: Final[dict[str, Action]] = {
    "cpu_saturation": "scale",
    "latency": "scale",
    "memory_leak": "restart",
    "error_burst": "restart",
    "bad_rollout": "rollback",
    "unknown": "investigate",
}
SLOW_LEAK_PER_HOUR: Final[float] = 0.5
"""A leak growing memory by less than 50 % per hour can wait for a maintenance window."""
ROLLOUT_WINDOW_S: Final[tuple[float, float]] = (-600.0, 120.0)
"""A rollout from 10 min before to 2 min after a change time is taken as its cause."""
REFERENCE_SHARE: Final[float] = 0.5
"""With an onset, the lookback takes at most this share of the data before it: at least half of a
short history stays reference (the operator's rule for a young workload)."""
CONFIDENT: Final[float] = 0.55
"""Default `confident_at`: the top cause's score is 1.22 times the runner-up's or more
(cross-validated, see docs/benchmarks/rca.md)."""
RELATIVE_FLOOR: Final[float] = 0.3
"""Default `relative_floor`: a change of 30 % of the level is worth at most one sigma as evidence,
however quiet the reference was (cross-validated, see docs/benchmarks/rca.md)."""
LEAK_GROWTH: Final[float] = 2.5
"""Default `leak_growth`: memory grown to 2.5 times its level is a leak even when cpu moved more
(cross-validated, see docs/benchmarks/rca.md)."""
EXTERNAL_DEMAND: Final[str] = "<external demand>"
"""`Evidence.explained_by` of a frontend's load change: users, not a service, sent it."""
DEMAND_FRACTION: Final[float] = 0.5
"""A change is demand-driven when load explains at least half of its first `DEMAND_SAMPLES` samples."""
DEMAND_SAMPLES: Final[int] = 4
RAMP_T_STAT: Final[float] = 8.0
"""t-statistic of a memory ramp's slope (against unit-variance z) to count as a slow leak."""
RAMP_MIN_Z: Final[float] = 3.0
"""...and the robust sigmas it must have grown by the end of the window."""
HARMFUL_UP: Final[frozenset[str]] = frozenset({"latency", "errors", "cpu", "memory"})
"""Kinds for which going up is going wrong."""
IMPROVEMENT_WEIGHT: Final[float] = 0.3
"""Weight of a change for the better (latency down, ...) as evidence of a fault."""
VICTIM_WEIGHT: Final[float] = 0.05
"""Score factor of a service none of whose changes is its own: it stays in the top-k, far below."""
MAX_ALARMS_PER_METRIC: Final[int] = 3
"""Changes of one metric kept as evidence inside one window (the strongest)."""
MAX_EVIDENCE: Final[int] = 5
MAX_TEXT: Final[int] = 400
"""Characters kept of an explanation in `to_dict`: a CR status must stay small."""


@dataclasses.dataclass(frozen=True)
class Evidence:
    """One anomalous metric of one service inside the analysis window."""

    service: str
    metric: str
    kind: str
    z: float
    """Peak robust z (signed) in the window."""
    onset: float
    """Change time (s)."""
    delta: float
    """Peak change in the metric's own units (expected -> observed)."""
    relative_change: float
    shape: anomaly.Shape
    low_confidence: bool
    """The reference had no variation: `z` rests on the detector's scale floor."""
    demand: bool = False
    """The metric moved with the service's own request rate (see `engines.anomaly`)."""
    explained_by: str | None = None
    """The service whose change accounts for this one (a callee for latency and errors, a caller
    for load), `EXTERNAL_DEMAND` for a frontend's traffic, or None: the service's own change."""

    @property
    def own(self) -> bool:
        """Evidence that the service itself changed: not load, not demand, not explained."""
        return self.kind != "load" and not self.demand and self.explained_by is None

    def weight(self, relative_floor: float) -> float:
        """log(1 + |z|), |z| at most |relative change| / `relative_floor`: scale-free evidence."""
        z = abs(self.z)
        if self.relative_change != 0.0:
            z = min(z, abs(self.relative_change) / relative_floor)
        return math.log1p(z)

    def describe(self) -> str:
        sign = "rose" if self.z > 0 else "fell"
        text = (
            f"{self.metric} {sign} {abs(self.z):.1f} sigma ({self.shape}, {self.relative_change:+.0%}) "
            f"at t={self.onset:.0f}s"
        )
        if self.demand:
            text += ", with its request rate"
        if self.explained_by == EXTERNAL_DEMAND:
            text += ", external demand"
        elif self.explained_by:
            text += f", explained by {self.explained_by}"
        return text


@dataclasses.dataclass(frozen=True)
class Cause:
    """One ranked candidate root cause; tied causes share a rank."""

    rank: int
    service: str
    metric: str
    fault_type: FaultType
    score: float
    confidence: float
    onset: float
    action: Action
    evidence: tuple[str, ...]
    explanation: str

    def summary(self) -> str:
        return (
            f"#{self.rank} {self.service}/{self.metric}: {self.fault_type} "
            f"(confidence {self.confidence:.2f}) -> {self.action}"
        )

    def to_dict(self) -> dict[str, Any]:
        d = dataclasses.asdict(self)
        d["evidence"] = [e[:MAX_TEXT] for e in self.evidence[:MAX_EVIDENCE]]
        d["explanation"] = self.explanation[:MAX_TEXT]
        return dict(anomaly.json_safe(d))


@dataclasses.dataclass(frozen=True)
class RCAResult:
    """Ranked causes (best first) and what the analysis looked at."""

    causes: tuple[Cause, ...]
    anomalous_services: tuple[str, ...]
    window: tuple[float, float]
    reference_end: float
    explanation: str
    confident: bool = False
    """The top cause explains the anomaly (the safety validator can resume)."""
    warnings: tuple[str, ...] = ()
    """Why the analysis could see little or nothing (a reference too short, ...)."""

    @property
    def top(self) -> Cause | None:
        return self.causes[0] if self.causes else None

    @property
    def tied(self) -> tuple[Cause, ...]:
        """Every cause sharing the first rank (more than one: the evidence cannot tell them apart)."""
        return tuple(c for c in self.causes if c.rank == 1)

    def summary(self) -> str:
        top = self.top
        if top is None:
            return "; ".join((self.explanation, *self.warnings))
        if len(self.tied) > 1:
            names = " or ".join(c.service for c in self.tied)
            return f"root cause tied between {names}: investigate"
        return f"likely root cause {top.service} ({top.fault_type}, confidence {top.confidence:.2f}): {top.action}"

    def to_dict(self, max_causes: int = 5) -> dict[str, Any]:
        return {
            "causes": [c.to_dict() for c in self.causes[:max_causes]],
            "anomalousServices": list(self.anomalous_services[:20]),
            "window": [anomaly.json_safe(v) for v in self.window],
            "confident": self.confident,
            "explanation": self.explanation[:MAX_TEXT],
            "warnings": [w[:MAX_TEXT] for w in self.warnings[:5]],
        }


@dataclasses.dataclass(frozen=True)
class Findings:
    """The evidence of one analysis window, before any ranking (`RootCauseAnalyzer.findings`)."""

    evidence: dict[str, tuple[Evidence, ...]]
    """Per service with any change in the window, its changes."""
    services: tuple[str, ...]
    """Every service scored (with or without a change)."""
    window: tuple[float, float]
    onset: float | None
    """The suspected onset the timing score is anchored to (None: the earliest own change)."""
    note: str = ""
    """Why there is nothing to rank, when there is not."""
    warnings: tuple[str, ...] = ()


@dataclasses.dataclass
class _Service:
    name: str
    evidence: list[Evidence]

    @property
    def onset(self) -> float:
        return min(e.onset for e in self.evidence)

    @property
    def own(self) -> list[Evidence]:
        return [e for e in self.evidence if e.own]


def _slow_ramp(z: npt.NDArray[np.float64], first: int) -> list[anomaly.Alarm]:
    """A leak too slow for the detector's alarms: a ramp fitted from some change point to the end
    whose slope is `RAMP_T_STAT` standard errors from zero and that has grown `RAMP_MIN_Z` sigma.

    Regression sees a slope long before a CUSUM with a drift allowance sees the level; the high
    t threshold pays for searching the change point and for noise that is not independent.
    """
    y = z[first:]
    n = y.size
    if n < 8:
        return []
    tau, is_ramp = refine_onset(z, first, z.size, 1)
    k = tau - first
    h = np.arange(n - k, dtype=float) + 1.0
    slope = float(h @ y[k:]) / float(h @ h)
    t_stat = slope * math.sqrt(float(h @ h))
    if not is_ramp or t_stat < RAMP_T_STAT or slope * h[-1] < RAMP_MIN_Z:
        return []
    return [anomaly.Alarm(direction=1, start=tau, detected=z.size - 1, end=None)]


def _harm(e: Evidence) -> float:
    """1 for a change for the worse (latency, errors, cpu or memory up; anything for other
    metrics), `IMPROVEMENT_WEIGHT` for one for the better: faults make things worse."""
    if e.kind in HARMFUL_UP and e.z < 0:
        return IMPROVEMENT_WEIGHT
    return 1.0


def refine_onset(z: npt.NDArray[np.float64], lo: int, hi: int, direction: int) -> tuple[int, bool]:
    """Least-squares change point in z[lo:hi], the level before it fixed at the baseline (0).

    Two models compete, each with two parameters: a step (constant after the change) and a ramp
    (linear growth from the change). Returns the change index in [lo, hi) of the better model and
    whether that model is the ramp. Closed forms over suffix sums: O(n).
    """
    y = direction * z[lo:hi]
    n = y.size
    if n < 2:
        return lo, False
    i = np.arange(n, dtype=float)
    sq = np.concatenate([[0.0], np.cumsum(y**2)])
    suffix_sq = sq[-1] - sq[:-1]
    suffix_y = np.cumsum(y[::-1])[::-1]
    suffix_iy = np.cumsum((i * y)[::-1])[::-1]
    m = n - i  # samples from tau to the end
    step_sse = sq[:-1] + suffix_sq - suffix_y**2 / m
    # Ramp h = i - tau + 1 over the suffix: sum(h y) = sum(i y) - (tau - 1) sum(y); sum(h^2) = m(m+1)(2m+1)/6.
    hy = suffix_iy - (i - 1.0) * suffix_y
    ramp_sse = sq[:-1] + suffix_sq - hy**2 / (m * (m + 1) * (2 * m + 1) / 6.0)
    s_best, r_best = int(np.argmin(step_sse)), int(np.argmin(ramp_sse))
    if ramp_sse[r_best] < step_sse[s_best]:
        return lo + r_best, True
    return lo + s_best, False


class RootCauseAnalyzer:
    """Ranks root causes; parameters in `__init__`, work in `findings` then `rank` (module doc).

    lookback_s: how far before a suspected onset the change may lie (s); the reference ends there
        (at most `REFERENCE_SHARE` of the data before the onset).
    max_edge_gain: the most a caller's latency/error change can exceed its callee's (calls per
        request x retries); 5 = three sequential calls with retries.
    onset_slack_s: onset estimation error tolerated when ordering changes (s, one scrape).
    step_tolerance_s: how long after a callee's step the caller's step may follow (s).
    timing_scale_s: decay of the timing score away from the suspected onset (s).
    relative_floor: a change of this share of the level is worth at most one sigma as evidence.
    leak_growth: memory grown to this multiple of its level is a leak even if cpu moved more.
    confident_at: the top cause's confidence at which the result is `confident`.
    sensitivity: multiplies the detector's thresholds for evidence (1 = the detector's own).
    """

    def __init__(
        self,
        *,
        lookback_s: float = 300.0,
        max_edge_gain: float = 5.0,
        onset_slack_s: float = 15.0,
        step_tolerance_s: float = 45.0,
        timing_scale_s: float = 120.0,
        relative_floor: float = RELATIVE_FLOOR,
        leak_growth: float = LEAK_GROWTH,
        confident_at: float = CONFIDENT,
        detector: anomaly.AnomalyDetector | None = None,
        max_causes: int = 10,
        sensitivity: float = 1.0,
    ) -> None:
        self.lookback_s = lookback_s
        self.max_edge_gain = max_edge_gain
        self.onset_slack_s = onset_slack_s
        self.step_tolerance_s = step_tolerance_s
        self.timing_scale_s = timing_scale_s
        self.relative_floor = relative_floor
        self.leak_growth = leak_growth
        self.confident_at = confident_at
        self.detector = detector
        self.max_causes = max_causes
        self.sensitivity = sensitivity

    def analyze(
        self,
        series: anomaly.ServiceSeries,
        graph: Mapping[str, Sequence[str]],
        *,
        onset: float | None = None,
        window: tuple[float, float] | None = None,
        changes: Mapping[str, Sequence[float]] | None = None,
    ) -> RCAResult:
        """Rank root causes of the anomaly at `onset` (s) or inside `window` (start, end in s)."""
        return self.rank(self.findings(series, onset=onset, window=window), graph, changes=changes)

    # ---- step 1: evidence per service ---------------------------------------------------------

    def findings(
        self,
        series: anomaly.ServiceSeries,
        *,
        onset: float | None = None,
        window: tuple[float, float] | None = None,
    ) -> Findings:
        """The changes of every service inside the window (the costly half of `analyze`)."""
        detector = self.detector or anomaly.AnomalyDetector()
        t_min, t_max = anomaly.time_span(series)
        if window is None and onset is None:
            # Scan the second half of the data against the first.
            report = detector.detect(series, test_start=(t_min + t_max) / 2.0)
            found = [a.start for a in report.anomalies if a.unexplained]
            if not found:
                return Findings({}, (), (t_min, t_max), None, "no unexplained anomaly to analyse")
            onset = min(found)
        if window is not None:
            start, end = float(window[0]), float(window[1])
        else:
            assert onset is not None
            start = onset - min(self.lookback_s, REFERENCE_SHARE * max(onset - t_min, 0.0))
            end = t_max
        scores = detector.score_all(series, reference_end=start)
        evidence = {
            name: tuple(self._service_evidence(name, metrics, detector, start, end))
            for name, metrics in scores.items()
        }
        return Findings(
            {name: evs for name, evs in evidence.items() if evs},
            tuple(scores),
            (start, end),
            onset,
            warnings=_reference_warnings(scores, start),
        )

    def _service_evidence(
        self,
        name: str,
        scores: Mapping[str, anomaly.SeriesScore],
        detector: anomaly.AnomalyDetector,
        start: float,
        end: float,
    ) -> list[Evidence]:
        masks = detector.load_masks(scores)
        found: list[Evidence] = []
        for metric, s in scores.items():
            if s.valid and s.t.size >= 2:
                found.extend(self._metric_evidence(name, s, masks[metric], detector, start, end))
        return [self._check_demand(ev, found) for ev in found]

    def _metric_evidence(
        self,
        service: str,
        s: anomaly.SeriesScore,
        mask: npt.NDArray[np.bool_],
        detector: anomaly.AnomalyDetector,
        start: float,
        end: float,
    ) -> list[Evidence]:
        """Evidence for the strongest alarms of one series inside [start, end]."""
        first = int(np.searchsorted(s.t, start))
        last = int(np.searchsorted(s.t, end, side="right"))
        z = s.z[:last]
        alarms = anomaly.find_alarms(
            z,
            first=first,
            z_threshold=detector.z_threshold * self.sensitivity,
            cusum_drift=detector.cusum_drift * self.sensitivity,
            cusum_limit=detector.cusum_limit * self.sensitivity,
            z_end=detector.z_end,
        )
        if not alarms and s.kind == "memory":
            alarms = _slow_ramp(z, first)
        out = []
        floor = first
        for alarm in alarms:
            out.append(self._change(service, s, z, alarm, floor, mask, detector))
            floor = alarm.end if alarm.end is not None else z.size
        # Real series hold noise excursions before the change: keep the strongest, not the first.
        strongest = sorted(out, key=lambda e: -abs(e.z) * _harm(e))[:MAX_ALARMS_PER_METRIC]
        return [e for e in out if e in strongest]

    def _change(
        self,
        service: str,
        s: anomaly.SeriesScore,
        z: npt.NDArray[np.float64],
        alarm: anomaly.Alarm,
        floor: int,
        mask: npt.NDArray[np.bool_],
        detector: anomaly.AnomalyDetector,
    ) -> Evidence:
        """One alarm as evidence. Its change point and shape: least squares from `floor` (the
        window start or the previous change's end) to the end of this change."""
        stop = alarm.end if alarm.end is not None else z.size
        begin, ramp = refine_onset(z, floor, stop, alarm.direction)
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
        demand = s.kind != "load" and bool(mask[k]) and self._demand(z, mask, begin, stop, alarm, detector)
        return Evidence(
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

    def _check_demand(self, ev: Evidence, evidence: Sequence[Evidence]) -> Evidence:
        """Demand only if the service's load changed the same way at about the same time (within
        the load lag after, twice that before): a change that started before its load moved, or long
        after, was not caused by it."""
        if not ev.demand:
            return ev
        lag = anomaly.LOAD_LAG_SAMPLES * self.onset_slack_s
        if any(
            e.kind == "load" and e.z * ev.z > 0 and ev.onset - 2 * lag <= e.onset <= ev.onset + lag
            for e in evidence
        ):
            return ev
        return dataclasses.replace(ev, demand=False)

    @staticmethod
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

    # ---- steps 2 to 4: explain away, rank, type -----------------------------------------------

    def rank(
        self,
        findings: Findings,
        graph: Mapping[str, Sequence[str]],
        *,
        changes: Mapping[str, Sequence[float]] | None = None,
    ) -> RCAResult:
        """Explain changes away over the graph and rank what is left (the cheap half of `analyze`)."""
        start, end = findings.window
        anomalous = {name: _Service(name, list(evs)) for name, evs in findings.evidence.items()}
        names = tuple(sorted(anomalous))
        if not any(svc.own for svc in anomalous.values()):
            text = findings.note or "no service changed on its own in the window" + (
                f" ({len(anomalous)} moved with demand or their dependencies)" if anomalous else ""
            )
            return RCAResult((), names, (start, end), start, text, warnings=findings.warnings)
        callees = self._callees(graph, anomalous, findings.services)
        links = self._explain(anomalous, callees)
        scores = self._scores(anomalous, links, findings.onset)
        ordered = sorted(scores, key=lambda n: (-scores[n], n))
        causes = [
            self._cause(rank, anomalous[name], scores, links, changes or {}, end)
            for rank, name in zip(_ranks([scores[n] for n in ordered]), ordered, strict=True)
        ][: self.max_causes]
        top = causes[0]
        confident = len([c for c in causes if c.rank == 1]) == 1 and top.confidence >= self.confident_at
        text = f"{len(anomalous)} anomalous services; {top.explanation}"
        return RCAResult(tuple(causes), names, (start, end), start, text, confident, findings.warnings)

    def _callees(
        self,
        graph: Mapping[str, Sequence[str]],
        anomalous: Mapping[str, _Service],
        services: Sequence[str],
    ) -> dict[str, set[str]]:
        """Declared callees, plus edges learned from matching changes where no declared path exists.

        Two services with a change of the same latency or error metric, same sign and shape, close in
        time, are taken as linked, unless they share a declared caller. The callee is the one deeper
        in the declared graph (calls flow from entry points down), else the one that changed first,
        else the one that changed by the larger relative amount (a caller dilutes a callee's change
        with its own work).
        """
        callees: dict[str, set[str]] = {name: set() for name in services}
        for caller, cs in graph.items():
            callees.setdefault(caller, set()).update(c for c in cs if c != caller)
        callers = _callers(callees)
        reach = _reachability(callees)
        depth = _depths(callees)
        names = sorted(anomalous)
        for i, a in enumerate(names):
            for b in names[i + 1 :]:
                linked = b in reach.get(a, ()) or a in reach.get(b, ())
                if linked or callers.get(a, set()) & callers.get(b, set()):
                    continue
                pair = self._matching(anomalous[a], anomalous[b])
                if pair is None:
                    continue
                ea, eb = pair
                if a in depth and b in depth and depth[a] != depth[b]:
                    later_is_a = depth[a] < depth[b]
                elif abs(ea.onset - eb.onset) > self.onset_slack_s:
                    later_is_a = ea.onset > eb.onset
                else:
                    # Onsets this close are within estimation error: size decides.
                    later_is_a = abs(ea.relative_change) < abs(eb.relative_change)
                late, early = (a, b) if later_is_a else (b, a)
                callees.setdefault(late, set()).add(early)
        return callees

    def _matching(self, a: _Service, b: _Service) -> tuple[Evidence, Evidence] | None:
        for ea in a.evidence:
            # Demand-driven moves are alike everywhere during a load spike: they say nothing of edges.
            if ea.kind not in PROPAGATING_KINDS or ea.demand:
                continue
            for eb in b.evidence:
                if (
                    eb.metric == ea.metric
                    and not eb.demand
                    and ea.z * eb.z > 0
                    and ea.shape == eb.shape
                    and abs(ea.onset - eb.onset) <= self.step_tolerance_s
                ):
                    return ea, eb
        return None

    def _explains(self, cause: Evidence, effect: Evidence) -> bool:
        """Can callee evidence `cause` account for caller evidence `effect`?"""
        if cause.metric != effect.metric or cause.z * effect.z <= 0:
            return False
        if cause.onset > effect.onset + self.onset_slack_s:
            return False
        gradual = effect.shape == "ramp" or cause.shape == "ramp"
        if not gradual and effect.onset - cause.onset > self.step_tolerance_s:
            # A step that came long after the callee's change was not caused by it.
            return False
        return abs(cause.delta) * self.max_edge_gain >= abs(effect.delta)

    def _explain(self, anomalous: Mapping[str, _Service], callees: Mapping[str, set[str]]) -> Links:
        """Attribute each change to another service's change where the graph allows.

        First latency and errors to callees, then load (and what moved with it) to callers. Returns
        the links (service, metric) -> the (service, metric) changes it explains.
        """
        callers = _callers(callees)
        links: Links = {}
        for name, svc in anomalous.items():
            updated: list[Evidence] = []
            for ev in svc.evidence:
                if ev.kind in PROPAGATING_KINDS and not ev.demand:
                    options = [
                        (c_ev.onset, callee, c_ev.metric)
                        for callee in sorted(callees.get(name, ()))
                        if callee in anomalous
                        for c_ev in anomalous[callee].evidence
                        if self._explains(c_ev, ev)
                    ]
                    if options:
                        _, by, by_metric = min(options)
                        links.setdefault((by, by_metric), set()).add((name, ev.metric))
                        ev = dataclasses.replace(ev, explained_by=by)
                updated.append(ev)
            svc.evidence = updated
        for name, svc in anomalous.items():
            updated = []
            for ev in svc.evidence:
                if ev.kind == "load":
                    source = self._load_source(ev, anomalous, callers.get(name, set()), svc)
                    if source is not None and source[0] != EXTERNAL_DEMAND:
                        links.setdefault(source, set()).add((name, ev.metric))
                    ev = dataclasses.replace(ev, explained_by=None if source is None else source[0])
                elif ev.demand:
                    # What moved with the load hangs off the load change that moved it.
                    for load in svc.evidence:
                        if load.kind == "load" and load.z * ev.z > 0:
                            links.setdefault((name, load.metric), set()).add((name, ev.metric))
                            break
                updated.append(ev)
            svc.evidence = updated
        return links

    def _load_source(
        self, ev: Evidence, anomalous: Mapping[str, _Service], callers: set[str], svc: _Service
    ) -> Node | None:
        """Who sent a change in load: a caller whose own load changed the same way at the same time
        (demand passing through), else, when `svc` has no harmful change of its own at that time, a
        caller that changed on its own no later (a new call pattern, retries), else users when no
        service calls this one."""
        if not callers:
            return (EXTERNAL_DEMAND, "")
        passing = sorted(
            (e.onset, c, e.metric)
            for c in sorted(callers)
            if c in anomalous
            for e in anomalous[c].evidence
            if e.kind == "load" and e.z * ev.z > 0 and abs(e.onset - ev.onset) <= self.step_tolerance_s
        )
        if passing:
            return passing[0][1], passing[0][2]
        if any(_harm(e) == 1.0 and abs(e.onset - ev.onset) <= self.step_tolerance_s for e in svc.own):
            return None
        changed = sorted(
            (e.onset, c, e.metric)
            for c in sorted(callers)
            if c in anomalous
            for e in anomalous[c].own
            if e.onset <= ev.onset + self.onset_slack_s
        )
        return (changed[0][1], changed[0][2]) if changed else None

    def _scores(
        self, anomalous: Mapping[str, _Service], links: Links, anchor: float | None
    ) -> dict[str, float]:
        """Own share x strength x timing x (1 + coverage share), per service (module doc, step 3)."""
        q = self.relative_floor
        own_onsets = [e.onset for svc in anomalous.values() for e in svc.own]
        anchor = anchor if anchor is not None else min(own_onsets or [s.onset for s in anomalous.values()])
        coverage = {name: len(_covered(svc, links)) for name, svc in anomalous.items()}
        max_cov = max(coverage.values())
        scores = {}
        for name, svc in anomalous.items():
            # The share of the service's changes that are its own rather than explained by another
            # service's; load and what moved with it are the service's circumstances, not counted.
            own_w = sum(e.weight(q) * _harm(e) for e in svc.own)
            other_w = sum(
                e.weight(q) for e in svc.evidence if e.kind != "load" and not e.demand and not e.own
            )
            own = own_w / (own_w + other_w) if own_w > 0 else 0.0
            strength = max((e.weight(q) * _harm(e) for e in svc.own), default=0.0)
            strength = strength or max(e.weight(q) for e in svc.evidence)
            onset = min(e.onset for e in (svc.own or svc.evidence))
            # Timing: a change up to `lookback_s / 2` before the anchor (the suspected onset, which a
            # detector reports late) counts fully; earlier or later ones fade.
            gap = max(anchor - self.lookback_s / 2.0 - onset, onset - anchor, 0.0)
            timing = math.exp(-gap / self.timing_scale_s)
            breadth = 1.0 + coverage[name] / (1.0 + max_cov)
            scores[name] = (VICTIM_WEIGHT + (1.0 - VICTIM_WEIGHT) * own) * strength * timing * breadth
        return scores

    def _cause(
        self,
        rank: int,
        svc: _Service,
        scores: Mapping[str, float],
        links: Links,
        changes: Mapping[str, Sequence[float]],
        end: float,
    ) -> Cause:
        own = svc.own
        ranked = sorted(own or svc.evidence, key=lambda e: -abs(e.z))
        fault, metric = _fault_type(
            svc.name, own or svc.evidence, changes, self.leak_growth, self.relative_floor
        )
        lead = next((e for e in ranked if e.metric == metric), ranked[0])
        action: Action = ACTIONS[fault]
        if fault == "memory_leak":
            hours = max(end - lead.onset, 60.0) / 3600.0
            slow = abs(lead.relative_change) / hours < SLOW_LEAK_PER_HOUR
            action = "schedule_maintenance" if slow else "restart"
        score = scores[svc.name]
        rival = max((s for n, s in scores.items() if n != svc.name), default=0.0)
        confidence = score / (score + rival) if score > 0 else 0.0
        # Evidence that rests only on references without variation (scale floors) is half as sure.
        if not any(e.own and not e.low_confidence for e in svc.evidence):
            confidence *= 0.5
        return Cause(
            rank=rank,
            service=svc.name,
            metric=lead.metric,
            fault_type=fault,
            score=float(score),
            confidence=round(confidence, 4),
            onset=lead.onset,
            action=action,
            evidence=tuple(
                e.describe() for e in sorted(svc.evidence, key=lambda e: -abs(e.z))[:MAX_EVIDENCE]
            ),
            explanation=_explanation(svc, rank, fault, lead, action, sorted(_covered(svc, links))),
        )


def _explanation(
    svc: _Service, rank: int, fault: str, lead: Evidence, action: str, victims: list[str]
) -> str:
    parts = [
        f"{svc.name} is {'the likely' if rank == 1 else 'a possible'} root cause ({fault.replace('_', ' ')})"
    ]
    parts.append(lead.describe())
    if victims:
        shown = ", ".join(victims[:4]) + (f" and {len(victims) - 4} more" if len(victims) > 4 else "")
        parts.append(f"it explains the changes of {shown}")
    if svc.own:
        parts.append("nothing else explains its own change")
    else:
        sources = sorted({e.explained_by for e in svc.evidence if e.explained_by} or {"demand"})
        parts.append(f"its changes are explained by {', '.join(sources)}")
    parts.append(f"recommended action: {action}")
    return "; ".join(parts) + "."


def _fault_type(
    service: str,
    evidence: list[Evidence],
    changes: Mapping[str, Sequence[float]],
    leak_growth: float,
    relative_floor: float,
) -> tuple[FaultType, str]:
    """Fault type and its main metric, from which of the service's own metrics moved and how.

    Errors and rollouts first (they name what users see); then the resource family whose rise
    carries more evidence (log robust z), memory also when it grew to `leak_growth` times its level
    (a process that fills memory usually burns cpu too); then latency alone.
    """
    by_kind: dict[str, Evidence] = {}
    for e in sorted(evidence, key=lambda e: -abs(e.z)):
        by_kind.setdefault(e.kind, e)
    onset = min(e.onset for e in evidence)
    lo, hi = ROLLOUT_WINDOW_S
    rolled = any(lo <= t - onset <= hi for t in changes.get(service, ()))
    mem, err, cpu, lat = (by_kind.get(k) for k in ("memory", "errors", "cpu", "latency"))
    worse = [e for e in (err, lat) if e is not None and e.z > 0]
    restarted = mem is not None and mem.z < 0 and mem.shape != "ramp"
    if worse and (rolled or restarted):
        return "bad_rollout", worse[0].metric
    if err is not None and err.z > 0:
        if err.shape in ("burst", "spike"):
            return "error_burst", err.metric
        return ("bad_rollout" if lat is not None and lat.z > 0 else "error_burst"), err.metric
    if mem is not None and mem.z > 0:
        cpu_weight = cpu.weight(relative_floor) if cpu is not None and cpu.z > 0 else 0.0
        if mem.weight(relative_floor) >= cpu_weight or 1.0 + mem.relative_change >= leak_growth:
            return "memory_leak", mem.metric
    if cpu is not None and cpu.z > 0:
        return "cpu_saturation", cpu.metric
    if lat is not None and lat.z > 0:
        return "latency", lat.metric
    return "unknown", max(evidence, key=lambda e: abs(e.z)).metric


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


def _ranks(scores: Sequence[float]) -> list[int]:
    """Competition ranks of scores sorted best first: equal scores share a rank (1, 1, 3, ...)."""
    out: list[int] = []
    for i, s in enumerate(scores):
        out.append(out[-1] if i and math.isclose(s, scores[i - 1], rel_tol=1e-9) else i + 1)
    return out


def _callers(callees: Mapping[str, set[str]]) -> dict[str, set[str]]:
    out: dict[str, set[str]] = {}
    for caller, cs in callees.items():
        for c in cs:
            out.setdefault(c, set()).add(caller)
    return out


def _depths(callees: Mapping[str, set[str]]) -> dict[str, int]:
    """Shortest call depth from an entry point (a service that calls others and that nobody
    calls); services not reached (isolated, or in a cycle nobody enters) have no depth."""
    called = {c for cs in callees.values() for c in cs}
    frontier = [n for n, cs in callees.items() if n not in called and cs]
    depth = dict.fromkeys(frontier, 0)
    while frontier:
        nxt = []
        for node in frontier:
            for c in callees.get(node, ()):
                if c not in depth:
                    depth[c] = depth[node] + 1
                    nxt.append(c)
        frontier = nxt
    return depth


def _reachability(callees: Mapping[str, set[str]]) -> dict[str, set[str]]:
    """Everything each node reaches through callee edges (iterative DFS; cycles are fine)."""
    out: dict[str, set[str]] = {}
    for root in callees:
        seen: set[str] = set()
        stack = list(callees[root])
        while stack:
            node = stack.pop()
            if node in seen:
                continue
            seen.add(node)
            stack.extend(callees.get(node, ()))
        out[root] = seen
    return out


def _covered(svc: _Service, links: Links) -> set[str]:
    """Services whose changes follow, through chains of explained changes, from this service's
    own changes (all its changes when it has none of its own)."""
    seen: set[Node] = set()
    stack = [(svc.name, e.metric) for e in (svc.own or svc.evidence)]
    while stack:
        node = stack.pop()
        for nxt in links.get(node, ()):
            if nxt not in seen:
                seen.add(nxt)
                stack.append(nxt)
    return {service for service, _ in seen if service != svc.name}


def analyze(
    series: anomaly.ServiceSeries,
    graph: Mapping[str, Sequence[str]],
    *,
    onset: float | None = None,
    window: tuple[float, float] | None = None,
    changes: Mapping[str, Sequence[float]] | None = None,
    analyzer: RootCauseAnalyzer | None = None,
) -> RCAResult:
    """Rank root causes (see the module doc); `analyzer` sets the parameters."""
    return (analyzer or RootCauseAnalyzer()).analyze(
        series, graph, onset=onset, window=window, changes=changes
    )


def unexplained_anomaly(report: anomaly.DetectionReport, result: RCAResult | None) -> bool:
    """The safety validator's `anomaly_active`: an unexplained anomaly is ongoing and the latest
    analysis (if any) found no confident cause. A confident cause means the loops can act on its
    recommended action instead of freezing."""
    return report.unexplained_active and not (result is not None and result.confident)
