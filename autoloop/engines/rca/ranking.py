"""Steps 3 to 5 of root-cause analysis: score what is left once changes are explained away, rank
it, type the fault, choose the action.

Owns: `rank` (the cheap half of `analyze`: learned edges, explain-away, scores, causes), the
score (own share x strength x timing x breadth), confidence, fault typing and the action policy
(`ACTIONS`, `SLOW_LEAK_PER_HOUR`, `ROLLOUT_WINDOW_S`, `VICTIM_WEIGHT`).
Must never: score series or look for alarms (`gathering` did, once, into `Findings`).
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Final

from autoloop.engines.rca import evidence, explaining, graphs, results

if TYPE_CHECKING:
    from autoloop.engines.rca.analyzing import RootCauseAnalyzer

ACTIONS: Final[dict[str, results.Action]] = {
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
VICTIM_WEIGHT: Final[float] = 0.05
"""Score factor of a service none of whose changes is its own: it stays in the top-k, far below."""


def rank(
    analyzer: RootCauseAnalyzer,
    findings: evidence.Findings,
    graph: Mapping[str, Sequence[str]],
    *,
    changes: Mapping[str, Sequence[float]] | None = None,
) -> results.RCAResult:
    """Explain changes away over the graph and rank what is left (the cheap half of `analyze`)."""
    start, end = findings.window
    anomalous = {name: evidence.Service(name, list(evs)) for name, evs in findings.evidence.items()}
    names = tuple(sorted(anomalous))
    if not any(svc.own for svc in anomalous.values()):
        text = findings.note or "no service changed on its own in the window" + (
            f" ({len(anomalous)} moved with demand or their dependencies)" if anomalous else ""
        )
        return results.RCAResult((), names, (start, end), start, text, warnings=findings.warnings)
    callees = graphs.callees(analyzer, graph, anomalous, findings.services)
    links = explaining.explain(analyzer, anomalous, callees)
    scores = _scores(analyzer, anomalous, links, findings.onset)
    ordered = sorted(scores, key=lambda n: (-scores[n], n))
    causes = [
        _cause(analyzer, place, anomalous[name], scores, links, changes or {}, end)
        for place, name in zip(_ranks([scores[n] for n in ordered]), ordered, strict=True)
    ][: analyzer.max_causes]
    top = causes[0]
    confident = len([c for c in causes if c.rank == 1]) == 1 and top.confidence >= analyzer.confident_at
    text = f"{len(anomalous)} anomalous services; {top.explanation}"
    return results.RCAResult(tuple(causes), names, (start, end), start, text, confident, findings.warnings)


def _scores(
    analyzer: RootCauseAnalyzer,
    anomalous: Mapping[str, evidence.Service],
    links: evidence.Links,
    anchor: float | None,
) -> dict[str, float]:
    """Own share x strength x timing x (1 + coverage share), per service (package doc, step 3)."""
    q = analyzer.relative_floor
    own_onsets = [e.onset for svc in anomalous.values() for e in svc.own]
    anchor = anchor if anchor is not None else min(own_onsets or [s.onset for s in anomalous.values()])
    coverage = {name: len(explaining.covered(svc, links)) for name, svc in anomalous.items()}
    max_cov = max(coverage.values())
    scores = {}
    for name, svc in anomalous.items():
        # The share of the service's changes that are its own rather than explained by another
        # service's; load and what moved with it are the service's circumstances, not counted.
        own_w = sum(e.weight(q) * evidence.harm(e) for e in svc.own)
        other_w = sum(e.weight(q) for e in svc.evidence if e.kind != "load" and not e.demand and not e.own)
        own = own_w / (own_w + other_w) if own_w > 0 else 0.0
        strength = max((e.weight(q) * evidence.harm(e) for e in svc.own), default=0.0)
        strength = strength or max(e.weight(q) for e in svc.evidence)
        onset = min(e.onset for e in (svc.own or svc.evidence))
        # Timing: a change up to `lookback_s / 2` before the anchor (the suspected onset, which a
        # detector reports late) counts fully; earlier or later ones fade.
        gap = max(anchor - analyzer.lookback_s / 2.0 - onset, onset - anchor, 0.0)
        timing = math.exp(-gap / analyzer.timing_scale_s)
        breadth = 1.0 + coverage[name] / (1.0 + max_cov)
        scores[name] = (VICTIM_WEIGHT + (1.0 - VICTIM_WEIGHT) * own) * strength * timing * breadth
    return scores


def _cause(
    analyzer: RootCauseAnalyzer,
    rank: int,
    svc: evidence.Service,
    scores: Mapping[str, float],
    links: evidence.Links,
    changes: Mapping[str, Sequence[float]],
    end: float,
) -> results.Cause:
    own = svc.own
    ranked = sorted(own or svc.evidence, key=lambda e: -abs(e.z))
    fault, metric = _fault_type(
        svc.name, own or svc.evidence, changes, analyzer.leak_growth, analyzer.relative_floor
    )
    lead = next((e for e in ranked if e.metric == metric), ranked[0])
    action: results.Action = ACTIONS[fault]
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
    return results.Cause(
        rank=rank,
        service=svc.name,
        metric=lead.metric,
        fault_type=fault,
        score=float(score),
        confidence=round(confidence, 4),
        onset=lead.onset,
        action=action,
        evidence=tuple(
            e.describe() for e in sorted(svc.evidence, key=lambda e: -abs(e.z))[: results.MAX_EVIDENCE]
        ),
        explanation=_explanation(svc, rank, fault, lead, action, sorted(explaining.covered(svc, links))),
    )


def _explanation(
    svc: evidence.Service, rank: int, fault: str, lead: evidence.Evidence, action: str, victims: list[str]
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
    found: list[evidence.Evidence],
    changes: Mapping[str, Sequence[float]],
    leak_growth: float,
    relative_floor: float,
) -> tuple[results.FaultType, str]:
    """Fault type and its main metric, from which of the service's own metrics moved and how.

    Errors and rollouts first (they name what users see); then the resource family whose rise
    carries more evidence (log robust z), memory also when it grew to `leak_growth` times its level
    (a process that fills memory usually burns cpu too); then latency alone.
    """
    by_kind: dict[str, evidence.Evidence] = {}
    for e in sorted(found, key=lambda e: -abs(e.z)):
        by_kind.setdefault(e.kind, e)
    onset = min(e.onset for e in found)
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
    return "unknown", max(found, key=lambda e: abs(e.z)).metric


def _ranks(scores: Sequence[float]) -> list[int]:
    """Competition ranks of scores sorted best first: equal scores share a rank (1, 1, 3, ...)."""
    out: list[int] = []
    for i, s in enumerate(scores):
        out.append(out[-1] if i and math.isclose(s, scores[i - 1], rel_tol=1e-9) else i + 1)
    return out
