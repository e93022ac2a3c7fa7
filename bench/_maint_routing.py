"""Routing half of bench.maintenance: requests that reach an evicted pod, with and without routing.

The fleet: `zones` zones of `nodes_per_zone` nodes; `services` routed services, each an HTTPRoute
rule over one backend per zone in 2 or 3 of the zones (zone-pinned Deployments behind one weighted
route: the layout of tests/cluster/test_routing.py), weights U{1..100}, 2 to 6 pods per backend on
random nodes of its zone. Maintenance walks every node once in a random order (the scheduler's
order follows risk, which is independent of where pods sit), one node at a time, `turns_per_window`
turns per window. Each node's pods are evicted together; evicted pods come back on another node
of their zone (they are zone-pinned) before the next turn.

A request reaches an evicted pod when the gateway still sends it there: between the eviction and
the moment its endpoint is gone from every proxy. That lag and the request rate are the same with
and without routing, so they cancel in the ratio: what is counted is, per evicted pod, the share of
its route's requests that the weights send to its backend times 1/(ready endpoints of the backend)
(round-robin inside a backend, as kube-proxy and gateways do), summed over services of equal rate.

Three ways are scored on the same fleet and the same order: no routing (weights untouched), the
plan's shift per node (`engines.routing.plan_shift` with the node being drained), and with
`routing.groupBy: topology.kubernetes.io/zone` (the shift covers the nodes of the zone the plan
will maintain in the same window, restored after the last of them). A fourth table row counts
services whose backends spread over every zone (canary-style): weights cannot tell their pods
apart, and the rule leaves such rules alone; they are reported, not in the headline.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Final

import numpy as np

from autoloop.engines import routing

PODS_PER_BACKEND: Final = (2, 6)
"""Inclusive range of a backend's replicas: small services, where one node holds a large share."""
WEIGHT_RANGE: Final = (1, 100)
"""Inclusive range of a backend's weight in its rule (Gateway API weights are relative)."""
TURNS_PER_WINDOW: Final = 16
"""Node turns in one window: the weeknight window 22:00-06:00 of bench._maint_schedule.WINDOWS on
the scheduler's 30-minute slots (operator.maintenance_planning.SLOT_MINUTES), one node at a time."""
CASES: Final = (("zone-pinned", False, False), ("zone-ordered", False, True), ("spread", True, False))
"""(label, spread backends, zones walked one after the other). The headline is the first: the plan's
own order. The second shows what the same routing gives when turns go zone by zone (the scheduler
does not order them so); the third, canary-style backends over every zone."""


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


def _hits(weights: list[routing.Backend], endpoints: dict[str, dict[str, int]], node: str) -> float:
    """Requests (share of the route's) that reach the pods on `node` as they are evicted."""
    return routing.reached_share(weights, endpoints, frozenset({node}))


def run(
    *,
    zones: int,
    nodes_per_zone: int,
    services: int,
    turns_per_window: int,
    seed: int,
    spread: bool = False,
    zone_order: bool = False,
) -> dict[str, float]:
    """Requests reaching evicted pods (sum over services and evictions) for the three ways;
    `zone_order` walks the zones one after the other (random order inside each) instead."""
    rng = np.random.default_rng(seed)
    fleet = make_fleet(zones=zones, nodes_per_zone=nodes_per_zone, services=services, spread=spread, rng=rng)
    order = [str(n) for n in rng.permutation(sorted(fleet.nodes))]
    if zone_order:
        order = sorted(order, key=lambda n: fleet.nodes[n])  # stable: random inside each zone
    pods = {k: list(v) for k, v in fleet.pods.items()}
    totals = {"none": 0.0, "per_node": 0.0, "zone_group": 0.0, "evicted_pods": 0.0}
    held: dict[tuple[int, str], list[list[routing.Backend]]] = {}
    """(window, zone) -> the targets of the zone's shift: computed at its first turn in the window and
    kept until its last, as the operator keeps a shift while the nodes drained are within it."""
    for turn, node in enumerate(order):
        window = order[
            (turn // turns_per_window) * turns_per_window : (turn // turns_per_window + 1) * turns_per_window
        ]
        group = frozenset(n for n in window[window.index(node) :] if fleet.nodes[n] == fleet.nodes[node])
        endpoints = _endpoints(pods)
        key = (turn // turns_per_window, fleet.nodes[node])
        if key not in held:
            held[key] = [list(routing.plan_shift(rule, endpoints, group).target) for rule in fleet.routes]
        for rule, zone_target in zip(fleet.routes, held[key], strict=True):
            totals["zone_group"] += _hits(zone_target, endpoints, node)
            totals["none"] += _hits(rule, endpoints, node)
            totals["per_node"] += _hits(
                list(routing.plan_shift(rule, endpoints, frozenset({node})).target), endpoints, node
            )
        # The node's pods are evicted and come back on another node of their zone (any node for spread ones).
        for where in pods.values():
            moved = [i for i, n in enumerate(where) if n == node]
            totals["evicted_pods"] += len(moved)
            others = [n for n, z in fleet.nodes.items() if n != node and (spread or z == fleet.nodes[node])]
            for i in moved:
                where[i] = str(rng.choice(others))
    return totals


def reductions(totals: dict[str, float]) -> dict[str, float]:
    base = totals["none"]
    return {
        "per_node": 1.0 - totals["per_node"] / base if base else float("nan"),
        "zone_group": 1.0 - totals["zone_group"] / base if base else float("nan"),
    }


def summary(*, quick: bool) -> dict[str, float]:
    """Run every seed on zone-pinned and on spread backends, print the table, return the headline keys."""
    size = QUICK if quick else FULL
    print(f"routing: {size.zones} zones x {size.nodes_per_zone} nodes, {size.services} routed services")
    print(
        f"{'backends':<14}{'seed':>5}{'evicted':>9}{'none':>9}{'per node':>10}{'zone grp':>10}"
        f"{'red./node':>10}{'red./zone':>10}"
    )
    headline: dict[str, list[float]] = {"per_node": [], "zone_group": []}
    for label, spread, zone_order in CASES:
        for seed in size.seeds:
            t = run(
                zones=size.zones,
                nodes_per_zone=size.nodes_per_zone,
                services=size.services,
                turns_per_window=TURNS_PER_WINDOW,
                seed=seed,
                spread=spread,
                zone_order=zone_order,
            )
            red = reductions(t)
            print(
                f"{label:<14}{seed:>5}{t['evicted_pods']:>9.0f}{t['none']:>9.2f}"
                f"{t['per_node']:>10.2f}{t['zone_group']:>10.2f}{red['per_node']:>10.1%}{red['zone_group']:>10.1%}"
            )
            if label == "zone-pinned":
                for key in headline:
                    headline[key].append(red[key])
    print(
        "requests reaching an evicted pod, in route-shares summed over services and evictions; headline: "
        "zone-pinned backends, mean over seeds\n"
    )
    return {
        "routed_requests_reduction": round(float(np.mean(headline["zone_group"])), 4),
        "routed_requests_reduction_per_node": round(float(np.mean(headline["per_node"])), 4),
    }
