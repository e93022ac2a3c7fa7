"""Routing half of bench.maintenance: requests that reach an evicted pod, with and without routing.

The fleet: `zones` zones of `nodes_per_zone` nodes; `services` routed services, each an HTTPRoute
rule over one backend per zone in 2 or 3 of the zones (zone-pinned Deployments behind one weighted
route: the layout of tests/cluster/test_routing.py), weights U{1..100}, 2 to 6 pods per backend on
random nodes of its zone. Every node is maintained once (a pending reboot, `requested`). Nodes
starting in the same slot are drained together; their pods come back on another node of their zone
(they are zone-pinned) not being drained, before the next slot.

Orders, each a list of turns (the nodes drained together in one slot) within windows:
- `random`: one node at a time in a random order, TURNS_PER_WINDOW turns per window (the first
  version of this bench; the scheduler's order follows risk, independent of where pods sit);
  `zone-ordered`: the same, zones walked one after the other.
- `plan`: the order of the real `engines.schedule.Scheduler` on this fleet: each node requested
  with a low risk U(0, 0.05) (bench._maint_schedule's pending-reboot nodes), the windows of
  bench._maint_schedule.WINDOWS from its WEEK_START, SLOT_MINUTES slots, maxConcurrent
  PLAN_MAX_CONCURRENT, solver Auto with the operator's time limit. `plan+together`: the same
  problem with `Limits.together = topology.kubernetes.io/zone`, what the operator passes when
  `spec.routing.groupBy` is set: each zone in one window, in a turn no other zone overlaps.

A request reaches an evicted pod when the gateway still sends it there: between the eviction and
the moment its endpoint is gone from every proxy. That lag and the request rate are the same with
and without routing, so they cancel in the ratio: what is counted is, per evicted pod, the share of
its route's requests that the weights send to its backend times 1/(ready endpoints of the backend)
(round-robin inside a backend, as kube-proxy and gateways do), summed over services of equal rate.

Three ways are scored on the same fleet and order: no routing (weights untouched), `per node`
(`spec.routing` without groupBy: the shift covers the nodes being drained), and `zone grp`
(`routing.groupBy: topology.kubernetes.io/zone`: the shift also covers the nodes of their zones the
plan maintains later in the same window, as operator.routing.about_to_drain). Both follow the
operator's rule of one shift per route: it is kept while the nodes drained are within the nodes
it covers, else a new shift begins from the original weights (operator.routing.Router._shift_one).
Canary-style services whose backends spread over every zone are reported, not in the headline:
weights cannot tell their pods apart.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Final

import numpy as np

from autoloop.engines import routing, schedule
from bench import _maint_schedule

PODS_PER_BACKEND: Final = (2, 6)
"""Inclusive range of a backend's replicas: small services, where one node holds a large share."""
WEIGHT_RANGE: Final = (1, 100)
"""Inclusive range of a backend's weight in its rule (Gateway API weights are relative)."""
ZONE_LABEL: Final = "topology.kubernetes.io/zone"
SLOT_MINUTES: Final = 30.0
"""The operator's scheduling grid (operator.maintenance_planning.SLOT_MINUTES); a node's turn
(cordon, drain, reboot, uncordon) takes one slot, as in the first version of this bench."""
TURNS_PER_WINDOW: Final = 16
"""Random orders: node turns in one window, the weeknight window 22:00-06:00 of
bench._maint_schedule.WINDOWS on SLOT_MINUTES slots, one node at a time."""
PLAN_MAX_CONCURRENT: Final = f"{_maint_schedule.BUDGET_PERCENT:g}%"
"""maxConcurrent of the scheduled orders: the 10 % budget of bench._maint_schedule, the plan this
repository benchmarks its scheduler with (a rolling budget like a rollout's maxUnavailable). Chosen
because one node at a time (the shipped examples' maxConcurrent 1) cannot hold a 20-node zone in a
16-slot window; set before the routing score was seen, and the same for `plan` and `plan+together`."""
SOLVER_TIME_LIMIT_SECONDS: Final = 10.0
"""Per schedule, as the operator (operator.maintenance_planning.SOLVER_TIME_LIMIT_SECONDS)."""
CASES: Final = (
    ("random", False, "random"),
    ("zone-ordered", False, "zone-ordered"),
    ("spread", True, "random"),
    ("plan", False, "plan"),
    ("plan+together", False, "together"),
    ("spread+together", True, "together"),
)
"""(label, spread backends, order). The headline is `plan+together` (zone grp): the order the
operator's scheduler gives when groupBy is set; `plan` is the same scheduler without it."""


@dataclass(frozen=True)
class Size:
    zones: int
    nodes_per_zone: int
    services: int
    seeds: tuple[int, ...]


QUICK: Final = Size(zones=3, nodes_per_zone=6, services=60, seeds=(1, 2))
FULL: Final = Size(zones=3, nodes_per_zone=20, services=600, seeds=(1, 2, 3, 4, 5))


@dataclass(frozen=True)
class Fleet:
    nodes: dict[str, str]
    """node -> zone"""
    routes: list[list[routing.Backend]]
    pods: dict[str, list[str]]
    """backend Service -> the node of each of its pods"""


def make_fleet(
    *, zones: int, nodes_per_zone: int, services: int, spread: bool, rng: np.random.Generator
) -> Fleet:
    nodes = {f"z{z}-n{i}": f"z{z}" for z in range(zones) for i in range(nodes_per_zone)}
    by_zone = {z: [n for n, zz in nodes.items() if zz == z] for z in sorted(set(nodes.values()))}
    routes: list[list[routing.Backend]] = []
    pods: dict[str, list[str]] = {}
    for s in range(services):
        count = int(rng.integers(2, min(3, zones) + 1))
        chosen = rng.choice(sorted(by_zone), size=count, replace=False)
        rule = []
        for i, zone in enumerate(chosen):
            name = f"s{s}/b{i}"
            where = list(nodes) if spread else by_zone[str(zone)]
            pods[name] = [
                str(x) for x in rng.choice(where, size=int(rng.integers(*PODS_PER_BACKEND, endpoint=True)))
            ]
            rule.append(routing.Backend(0, i, name, int(rng.integers(*WEIGHT_RANGE, endpoint=True))))
        routes.append(rule)
    return Fleet(nodes, routes, pods)


def _endpoints(pods: dict[str, list[str]]) -> dict[str, dict[str, int]]:
    result: dict[str, dict[str, int]] = {}
    for service, where in pods.items():
        counts: dict[str, int] = {}
        for node in where:
            counts[node] = counts.get(node, 0) + 1
        result[service] = counts
    return result


Turn = tuple[int, frozenset[str]]
"""(window, the nodes drained together in one slot)."""


def random_turns(fleet: Fleet, rng: np.random.Generator, *, zone_order: bool) -> list[Turn]:
    """One node at a time in a random order (zones one after the other with `zone_order`)."""
    order = [str(n) for n in rng.permutation(sorted(fleet.nodes))]
    if zone_order:
        order = sorted(order, key=lambda n: fleet.nodes[n])  # stable: random inside each zone
    return [(k // TURNS_PER_WINDOW, frozenset({n})) for k, n in enumerate(order)]


def planned_turns(fleet: Fleet, seed: int, *, together: bool) -> list[Turn]:
    """The turns of the real scheduler's plan for the fleet (see the module docstring)."""
    rng = np.random.default_rng([seed, 1])  # risks apart from the fleet's stream
    nodes = [
        schedule.MaintenanceNode(
            name,
            risk=float(rng.uniform(0.0, 0.05)),
            requested=True,
            duration_minutes=SLOT_MINUTES,
            labels={ZONE_LABEL: zone},
        )
        for name, zone in sorted(fleet.nodes.items())
    ]
    problem = schedule.Problem(
        nodes=nodes,
        windows=_maint_schedule.WINDOWS,
        limits=schedule.Limits(max_concurrent=PLAN_MAX_CONCURRENT, together=ZONE_LABEL if together else None),
        start=_maint_schedule.WEEK_START,
        horizon_hours=168.0,
        slot_minutes=SLOT_MINUTES,
    )
    result = schedule.Scheduler(time_limit_seconds=SOLVER_TIME_LIMIT_SECONDS, random_state=seed).solve(
        problem
    )
    assert not result.violations and not result.infeasible, (result.violations, result.infeasible)
    occurrences = schedule.window_occurrences(problem.windows, problem.start, problem.start + 168 * 3600.0)
    by_slot: dict[int, set[str]] = {}
    window: dict[int, int] = {}
    for a in result.assignments:
        by_slot.setdefault(a.slot, set()).add(a.node)
        window[a.slot] = next(k for k, (lo, hi) in enumerate(occurrences) if lo <= a.start < hi)
    return [(window[s], frozenset(by_slot[s])) for s in sorted(by_slot)]


def about_to_drain(fleet: Fleet, turns: Sequence[Turn], k: int) -> frozenset[str]:
    """With groupBy: the nodes drained in turn k and the later ones of their zones in its window."""
    window, active = turns[k]
    zones = {fleet.nodes[n] for n in active}
    later = {n for w, nodes in turns[k + 1 :] if w == window for n in nodes if fleet.nodes[n] in zones}
    return active | later


@dataclass
class Shifts:
    """The operator's one shift per route: kept while the drained nodes are within it."""

    nodes: list[frozenset[str]]
    targets: list[list[routing.Backend]]

    def weights(
        self,
        rules: list[list[routing.Backend]],
        endpoints: dict[str, dict[str, int]],
        draining: frozenset[str],
    ) -> list[list[routing.Backend]]:
        for r, rule in enumerate(rules):
            if not draining <= self.nodes[r]:
                self.nodes[r] = draining
                self.targets[r] = list(routing.plan_shift(rule, endpoints, draining).target)
        return self.targets


def run(
    *,
    zones: int,
    nodes_per_zone: int,
    services: int,
    seed: int,
    spread: bool = False,
    order: str = "random",
) -> dict[str, float]:
    """Requests reaching evicted pods (sum over services and evictions) for the three ways."""
    rng = np.random.default_rng(seed)
    fleet = make_fleet(zones=zones, nodes_per_zone=nodes_per_zone, services=services, spread=spread, rng=rng)
    if order in ("random", "zone-ordered"):
        turns = random_turns(fleet, rng, zone_order=order == "zone-ordered")
    else:
        turns = planned_turns(fleet, seed, together=order == "together")
    pods = {k: list(v) for k, v in fleet.pods.items()}
    totals = {"none": 0.0, "per_node": 0.0, "zone_group": 0.0, "evicted_pods": 0.0, "turns": len(turns)}
    empty = [frozenset[str]() for _ in fleet.routes]
    per_node = Shifts(list(empty), [list(r) for r in fleet.routes])
    grouped = Shifts(list(empty), [list(r) for r in fleet.routes])
    for k, (_, active) in enumerate(turns):
        endpoints = _endpoints(pods)
        plain = per_node.weights(fleet.routes, endpoints, active)
        zone = grouped.weights(fleet.routes, endpoints, about_to_drain(fleet, turns, k))
        for rule, own, group in zip(fleet.routes, plain, zone, strict=True):
            totals["none"] += routing.reached_share(rule, endpoints, active)
            totals["per_node"] += routing.reached_share(own, endpoints, active)
            totals["zone_group"] += routing.reached_share(group, endpoints, active)
        # The drained nodes' pods come back on another node of their zone (any node for spread ones).
        for where in pods.values():
            moved = [i for i, n in enumerate(where) if n in active]
            totals["evicted_pods"] += len(moved)
            for i in moved:
                others = [
                    n
                    for n, z in fleet.nodes.items()
                    if n not in active and (spread or z == fleet.nodes[where[i]])
                ]
                where[i] = str(rng.choice(others))
    return totals


def reductions(totals: dict[str, float]) -> dict[str, float]:
    base = totals["none"]
    return {
        "per_node": 1.0 - totals["per_node"] / base if base else float("nan"),
        "zone_group": 1.0 - totals["zone_group"] / base if base else float("nan"),
    }


def summary(*, quick: bool) -> dict[str, float]:
    """Run every seed on every case, print the table, return the headline keys."""
    size = QUICK if quick else FULL
    print(
        f"routing: {size.zones} zones x {size.nodes_per_zone} nodes, {size.services} routed services; "
        f"plans at maxConcurrent {PLAN_MAX_CONCURRENT}"
    )
    print(
        f"{'order':<16}{'seed':>5}{'turns':>6}{'evicted':>9}{'none':>9}{'per node':>10}{'zone grp':>10}"
        f"{'red./node':>10}{'red./zone':>10}"
    )
    reds: dict[str, list[dict[str, float]]] = {}
    for label, spread, order in CASES:
        for seed in size.seeds:
            t = run(
                zones=size.zones,
                nodes_per_zone=size.nodes_per_zone,
                services=size.services,
                seed=seed,
                spread=spread,
                order=order,
            )
            red = reductions(t)
            reds.setdefault(label, []).append(red)
            print(
                f"{label:<16}{seed:>5}{t['turns']:>6.0f}{t['evicted_pods']:>9.0f}{t['none']:>9.2f}"
                f"{t['per_node']:>10.2f}{t['zone_group']:>10.2f}{red['per_node']:>10.1%}{red['zone_group']:>10.1%}"
            )
    for label, rows in reds.items():
        print(
            f"{label:<16} mean: per node {np.mean([r['per_node'] for r in rows]):.1%}, "
            f"zone grp {np.mean([r['zone_group'] for r in rows]):.1%}"
        )
    print(
        "requests reaching an evicted pod, in route-shares summed over services and evictions; headline: "
        "zone grp on the plan+together order (groupBy set), per node on the plan order (no groupBy), "
        "mean over seeds\n"
    )
    return {
        "routed_requests_reduction": round(
            float(np.mean([r["zone_group"] for r in reds["plan+together"]])), 4
        ),
        "routed_requests_reduction_per_node": round(float(np.mean([r["per_node"] for r in reds["plan"]])), 4),
        "routed_requests_reduction_random_order": round(
            float(np.mean([r["zone_group"] for r in reds["random"]])), 4
        ),
    }
