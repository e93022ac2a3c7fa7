"""Step 2 of root-cause analysis: explain changes away over the call graph.

A caller's latency or error change is explained by a callee whose same metric changed no later
and by enough; a load change by a caller whose load moved alike, or that changed on its own.
Owns: `explain` (the links between changes it finds), `explains` (one callee change accounting
for one caller change) and `covered` (whose changes follow from a service's own).
Must never: score or rank services (`ranking` does), nor learn graph edges (`graphs` does).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from typing import TYPE_CHECKING

from autoloop.engines.rca import evidence, graphs

if TYPE_CHECKING:
    from autoloop.engines.rca.analyzing import RootCauseAnalyzer


def explains(analyzer: RootCauseAnalyzer, cause: evidence.Evidence, effect: evidence.Evidence) -> bool:
    """Can callee evidence `cause` account for caller evidence `effect`?"""
    if cause.metric != effect.metric or cause.z * effect.z <= 0:
        return False
    if cause.onset > effect.onset + analyzer.onset_slack_s:
        return False
    gradual = effect.shape == "ramp" or cause.shape == "ramp"
    if not gradual and effect.onset - cause.onset > analyzer.step_tolerance_s:
        # A step that came long after the callee's change was not caused by it.
        return False
    return abs(cause.delta) * analyzer.max_edge_gain >= abs(effect.delta)


def explain(
    analyzer: RootCauseAnalyzer, anomalous: Mapping[str, evidence.Service], callees: Mapping[str, set[str]]
) -> evidence.Links:
    """Attribute each change to another service's change where the graph allows.

    First latency and errors to callees, then load (and what moved with it) to callers. Returns
    the links (service, metric) -> the (service, metric) changes it explains.
    """
    callers = graphs.callers(callees)
    links: evidence.Links = {}
    _explain_by_callees(analyzer, anomalous, callees, links)
    _explain_load(analyzer, anomalous, callers, links)
    return links


def _explain_by_callees(
    analyzer: RootCauseAnalyzer,
    anomalous: Mapping[str, evidence.Service],
    callees: Mapping[str, set[str]],
    links: evidence.Links,
) -> None:
    """Latency and error changes to the callee change that accounts for them (the earliest)."""
    for name, svc in anomalous.items():
        updated: list[evidence.Evidence] = []
        for ev in svc.evidence:
            if ev.kind in evidence.PROPAGATING_KINDS and not ev.demand:
                # The earliest callee change; of callees changing at the same time, the strongest
                # (a tie left to the order of names would credit whichever sorts first).
                options = [
                    (c_ev.onset, -c_ev.weight(analyzer.relative_floor), callee, c_ev.metric)
                    for callee in sorted(callees.get(name, ()))
                    if callee in anomalous
                    for c_ev in anomalous[callee].evidence
                    if explains(analyzer, c_ev, ev)
                ]
                if options:
                    _, _, by, by_metric = min(options)
                    links.setdefault((by, by_metric), set()).add((name, ev.metric))
                    ev = dataclasses.replace(ev, explained_by=by)
            updated.append(ev)
        svc.evidence = updated


def _explain_load(
    analyzer: RootCauseAnalyzer,
    anomalous: Mapping[str, evidence.Service],
    callers: Mapping[str, set[str]],
    links: evidence.Links,
) -> None:
    """Load changes to who sent them; what moved with load hangs off that load change."""
    for name, svc in anomalous.items():
        updated = []
        for ev in svc.evidence:
            if ev.kind == "load":
                source = _load_source(analyzer, ev, anomalous, callers.get(name, set()), svc)
                if source is not None and source[0] != evidence.EXTERNAL_DEMAND:
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


def _load_source(
    analyzer: RootCauseAnalyzer,
    ev: evidence.Evidence,
    anomalous: Mapping[str, evidence.Service],
    callers: set[str],
    svc: evidence.Service,
) -> evidence.Node | None:
    """Who sent a change in load: a caller whose own load changed the same way at the same time
    (demand passing through), else, when `svc` has no harmful change of its own at that time, a
    caller that changed on its own no later (a new call pattern, retries), else users when no
    service calls this one."""
    if not callers:
        return (evidence.EXTERNAL_DEMAND, "")
    passing = sorted(
        (e.onset, c, e.metric)
        for c in sorted(callers)
        if c in anomalous
        for e in anomalous[c].evidence
        if e.kind == "load" and e.z * ev.z > 0 and abs(e.onset - ev.onset) <= analyzer.step_tolerance_s
    )
    if passing:
        return passing[0][1], passing[0][2]
    if any(evidence.harm(e) == 1.0 and abs(e.onset - ev.onset) <= analyzer.step_tolerance_s for e in svc.own):
        return None
    changed = sorted(
        (e.onset, c, e.metric)
        for c in sorted(callers)
        if c in anomalous
        for e in anomalous[c].own
        if e.onset <= ev.onset + analyzer.onset_slack_s
    )
    return (changed[0][1], changed[0][2]) if changed else None


def covered(svc: evidence.Service, links: evidence.Links) -> set[str]:
    """Services whose changes follow, through chains of explained changes, from this service's
    own changes (all its changes when it has none of its own)."""
    seen: set[evidence.Node] = set()
    stack = [(svc.name, e.metric) for e in (svc.own or svc.evidence)]
    while stack:
        node = stack.pop()
        for nxt in links.get(node, ()):
            if nxt not in seen:
                seen.add(nxt)
                stack.append(nxt)
    return {service for service, _ in seen if service != svc.name}
