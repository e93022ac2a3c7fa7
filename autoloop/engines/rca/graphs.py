"""The call graph: declared edges, edges learned from matching changes, callers, depths, reach.

Owns: `callees` (declared callees plus learned edges), `callers`, `depths` and `reachability`.
Must never: attribute a change to another service or score one (`explaining`, `ranking` do).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING

from autoloop.engines.rca import evidence

if TYPE_CHECKING:
    from autoloop.engines.rca.analyzing import RootCauseAnalyzer


def callees(
    analyzer: RootCauseAnalyzer,
    graph: Mapping[str, Sequence[str]],
    anomalous: Mapping[str, evidence.Service],
    services: Sequence[str],
) -> dict[str, set[str]]:
    """Declared callees, plus edges learned from matching changes where no declared path exists.

    Two services with a change of the same latency or error metric, same sign and shape, close in
    time, are taken as linked, unless they share a declared caller. The callee is the one deeper
    in the declared graph (calls flow from entry points down), else the one that changed first,
    else the one that changed by the larger relative amount (a caller dilutes a callee's change
    with its own work).
    """
    out: dict[str, set[str]] = {name: set() for name in services}
    for caller, cs in graph.items():
        out.setdefault(caller, set()).update(c for c in cs if c != caller)
    up = callers(out)
    reach = reachability(out)
    depth = depths(out)
    names = sorted(anomalous)
    for i, a in enumerate(names):
        for b in names[i + 1 :]:
            linked = b in reach.get(a, ()) or a in reach.get(b, ())
            if linked or up.get(a, set()) & up.get(b, set()):
                continue
            pair = _matching(analyzer, anomalous[a], anomalous[b])
            if pair is None:
                continue
            ea, eb = pair
            if a in depth and b in depth and depth[a] != depth[b]:
                later_is_a = depth[a] < depth[b]
            elif abs(ea.onset - eb.onset) > analyzer.onset_slack_s:
                later_is_a = ea.onset > eb.onset
            else:
                # Onsets this close are within estimation error: size decides.
                later_is_a = abs(ea.relative_change) < abs(eb.relative_change)
            late, early = (a, b) if later_is_a else (b, a)
            out.setdefault(late, set()).add(early)
    return out


def _matching(
    analyzer: RootCauseAnalyzer, a: evidence.Service, b: evidence.Service
) -> tuple[evidence.Evidence, evidence.Evidence] | None:
    for ea in a.evidence:
        # Demand-driven moves are alike everywhere during a load spike: they say nothing of edges.
        if ea.kind not in evidence.PROPAGATING_KINDS or ea.demand:
            continue
        for eb in b.evidence:
            if (
                eb.metric == ea.metric
                and not eb.demand
                and ea.z * eb.z > 0
                and ea.shape == eb.shape
                and abs(ea.onset - eb.onset) <= analyzer.step_tolerance_s
            ):
                return ea, eb
    return None


def callers(callees: Mapping[str, set[str]]) -> dict[str, set[str]]:
    out: dict[str, set[str]] = {}
    for caller, cs in callees.items():
        for c in cs:
            out.setdefault(c, set()).add(caller)
    return out


def depths(callees: Mapping[str, set[str]]) -> dict[str, int]:
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


def reachability(callees: Mapping[str, set[str]]) -> dict[str, set[str]]:
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
