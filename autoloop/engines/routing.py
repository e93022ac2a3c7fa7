"""Maintenance-aware routing: the weights that keep traffic off nodes about to be drained.

Pure computation over plain data, no Kubernetes: backends (a rule and position in a route, the
Service, the weight) and the ready endpoints of each Service per node in; the weights to move to,
the steps that lead there, and whether a restore may begin out.

The rule, per route rule (weights are relative within one rule's backends only):
- a backend with R ready endpoints of which G sit on the nodes about to be drained gives up the
  share G/R of its weight: the traffic those endpoints would have served;
- what is given up goes to the backends of the same rule that lose no endpoint, in proportion to
  their weights (failing those, to every backend that keeps a ready endpoint, in proportion to its
  reduced weight, or to its remaining endpoints when those weights are all zero);
- a rule where no backend would keep a ready endpoint is left alone: moving its weight could only
  send traffic nowhere (the route is never left without a backend with ready endpoints).
Weights are integers and each rule keeps its total, so a rule whose total is below
`MIN_TOTAL_WEIGHT` is first scaled up (weights are relative, scaling changes no split) so that a
1 % share is expressible. Rounding is by largest remainder, which keeps the total exactly.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, replace
from typing import Final

MIN_TOTAL_WEIGHT: Final = 100
"""A rule's weights are scaled up to at least this total before shifting: 1 % granularity."""

Endpoints = Mapping[str, Mapping[str, int]]
"""Service key (namespace/name) -> node -> ready endpoints of that Service on that node."""


@dataclass(frozen=True)
class Backend:
    """One weighted backend of a route: rule index, position in the rule, Service key, weight."""

    rule: int
    index: int
    service: str
    weight: int


@dataclass(frozen=True)
class Shift:
    """The weights to move to, and what the shift takes away from each draining node's services."""

    target: tuple[Backend, ...]
    moved: float
    """Share of the route's traffic (0..1, summed over rules, each rule weighted equally) moved."""
    stuck_rules: tuple[int, ...]
    """Rules that would lose ready endpoints but have no other backend to move to (left alone)."""

    @property
    def changes(self) -> bool:
        return self.moved > 0.0


def ready(endpoints: Endpoints, service: str, *, excluding: frozenset[str] = frozenset()) -> int:
    """Ready endpoints of a Service, not counting those on the `excluding` nodes."""
    return sum(n for node, n in endpoints.get(service, {}).items() if node not in excluding)


def largest_remainder(values: Sequence[float], total: int) -> list[int]:
    """Integers summing to `total`, each the floor or ceiling of its value (values sum to total)."""
    floors = [math.floor(v) for v in values]
    left = total - sum(floors)
    order = sorted(range(len(values)), key=lambda i: (-(values[i] - floors[i]), i))
    for i in order[: max(0, left)]:
        floors[i] += 1
    return floors


def _rules(backends: Sequence[Backend]) -> dict[int, list[Backend]]:
    rules: dict[int, list[Backend]] = {}
    for b in sorted(backends, key=lambda b: (b.rule, b.index)):
        rules.setdefault(b.rule, []).append(b)
    return rules


def _shift_rule(
    rule: list[Backend], endpoints: Endpoints, going: frozenset[str]
) -> tuple[list[Backend], float, bool]:
    """One rule's new weights, the share of its traffic moved, and whether it is stuck."""
    total = sum(b.weight for b in rule)
    before = [ready(endpoints, b.service) for b in rule]
    after = [ready(endpoints, b.service, excluding=going) for b in rule]
    lose = [b.weight * (r - a) / r if r else 0.0 for b, r, a in zip(rule, before, after, strict=True)]
    if total == 0 or sum(lose) == 0.0:
        return rule, 0.0, False
    keepers = [i for i, a in enumerate(after) if a > 0]
    if not keepers:
        return rule, 0.0, True
    scale = math.ceil(MIN_TOTAL_WEIGHT / total) if total < MIN_TOTAL_WEIGHT else 1
    kept = [(b.weight - x) * scale for b, x in zip(rule, lose, strict=True)]
    pool = sum(lose) * scale
    # Backends losing nothing take the moved weight first: adding traffic to one that is itself
    # losing endpoints would send part of it straight back to the draining nodes.
    whole = [i for i in keepers if lose[i] == 0.0]
    for pick in (whole, keepers):
        basis = [kept[i] if i in pick else 0.0 for i in range(len(rule))]
        if sum(basis) > 0.0:
            break
    else:
        basis = [float(after[i]) if i in keepers else 0.0 for i in range(len(rule))]
    values = [k + pool * w / sum(basis) for k, w in zip(kept, basis, strict=True)]
    weights = largest_remainder(values, total * scale)
    # The share that really changes hands: a lone backend that loses endpoints gets its own weight
    # back (nothing moves), and rounding may undo a tiny move.
    moved = sum(max(0.0, b.weight / total - w / (total * scale)) for b, w in zip(rule, weights, strict=True))
    if moved <= 0.0:
        return rule, 0.0, False
    return [replace(b, weight=w) for b, w in zip(rule, weights, strict=True)], moved, False


def plan_shift(backends: Sequence[Backend], endpoints: Endpoints, draining: frozenset[str]) -> Shift:
    """The weights that move traffic off the endpoints on `draining` nodes (see the module rule)."""
    target: list[Backend] = []
    moved: list[float] = []
    stuck: list[int] = []
    for index, rule in _rules(backends).items():
        weights, share, is_stuck = _shift_rule(rule, endpoints, draining)
        target += weights
        moved.append(share)
        if is_stuck:
            stuck.append(index)
    return Shift(tuple(target), sum(moved) / len(moved) if moved else 0.0, tuple(stuck))


def step_weights(
    start: Sequence[Backend], target: Sequence[Backend], *, step: int, steps: int
) -> list[Backend]:
    """The weights after `step` of `steps` equal steps from `start` to `target` (same backends).

    Each rule moves linearly and is rounded to the target's total (a scaled-up rule takes its new
    scale at the first step); the last step is exactly `target`. Backends that reach zero at the
    end get zero only then: their endpoints still serve while the steps run, before the drain.
    """
    if step >= steps:
        return list(target)
    by_key = {(b.rule, b.index): b for b in start}
    result: list[Backend] = []
    for rule in _rules(target).values():
        begin = [by_key[(b.rule, b.index)].weight for b in rule]
        total = sum(b.weight for b in rule)
        factor = total / sum(begin) if sum(begin) else 1.0
        fraction = step / steps
        values = [
            w0 * factor + (b.weight - w0 * factor) * fraction for w0, b in zip(begin, rule, strict=True)
        ]
        weights = largest_remainder(values, total)
        result += [replace(b, weight=w) for b, w in zip(rule, weights, strict=True)]
    return result


def unchanged_except_by_us(current: Sequence[Backend], expected: Sequence[Backend]) -> bool:
    """Whether the route still holds the weights we last wrote (anything else: someone changed it)."""
    return sorted(map(_key, current)) == sorted(map(_key, expected))


def _key(b: Backend) -> tuple[int, int, str, int]:
    return (b.rule, b.index, b.service, b.weight)


def restorable(original: Sequence[Backend], endpoints: Endpoints) -> list[str]:
    """Services with weight in `original` that have no ready endpoint now (empty: restore may begin)."""
    return sorted({b.service for b in original if b.weight > 0 and ready(endpoints, b.service) == 0})


def reached_share(weights: Sequence[Backend], endpoints: Endpoints, draining: frozenset[str]) -> float:
    """Share of requests (0..1, rules weighted equally) that the weights send to endpoints on `draining`.

    Within a backend, requests spread evenly over its ready endpoints (round-robin, as kube-proxy and
    gateways do), so a backend with G of its R endpoints draining sends G/R of its share there.
    """
    shares: list[float] = []
    for rule in _rules(weights).values():
        total = sum(b.weight for b in rule)
        if total == 0:
            continue
        hit = 0.0
        for b in rule:
            r = ready(endpoints, b.service)
            if r:
                hit += b.weight / total * (r - ready(endpoints, b.service, excluding=draining)) / r
        shares.append(hit)
    return sum(shares) / len(shares) if shares else 0.0
