"""engines.routing (the weights) and the route parsing of operator.routing, table-driven."""

from __future__ import annotations

from typing import Any

import pytest

from autoloop.engines import routing as engine
from autoloop.engines.routing import Backend
from autoloop.operator import routing as op

N1 = frozenset({"n1"})


def weights(backends: list[Backend]) -> list[int]:
    return [b.weight for b in sorted(backends, key=lambda b: (b.rule, b.index))]


@pytest.mark.parametrize(
    ("case", "route", "endpoints", "expected", "moved"),
    [
        (
            # A's two endpoints both sit on n1: all of A's weight goes to B.
            "whole backend on the node",
            [Backend(0, 0, "ns/a", 50), Backend(0, 1, "ns/b", 50)],
            {"ns/a": {"n1": 2}, "ns/b": {"n2": 2}},
            [0, 100],
            0.5,
        ),
        (
            # A loses 2 of 4 endpoints: 50 * 2/4 = 25 moves to B (which loses nothing): 25 / 75.
            "half of a backend",
            [Backend(0, 0, "ns/a", 50), Backend(0, 1, "ns/b", 50)],
            {"ns/a": {"n1": 2, "n2": 2}, "ns/b": {"n3": 2}},
            [25, 75],
            0.25,
        ),
        (
            # Weights 1/1 (total 2) are first scaled to 100 (x50); A loses 1 of 3: 50/3 = 16.67
            # moves to B: 33.33 / 66.67, rounded by largest remainder to 33 / 67.
            "small weights are scaled",
            [Backend(0, 0, "ns/a", 1), Backend(0, 1, "ns/b", 1)],
            {"ns/a": {"n1": 1, "n2": 2}, "ns/b": {"n3": 1}},
            [33, 67],
            1 / 6,
        ),
        (
            # A (60) goes entirely; B (30) and C (10) lose nothing: 60 splits 3:1 -> B 75, C 25.
            "shared in proportion to the weights",
            [Backend(0, 0, "ns/a", 60), Backend(0, 1, "ns/b", 30), Backend(0, 2, "ns/c", 10)],
            {"ns/a": {"n1": 1}, "ns/b": {"n2": 1}, "ns/c": {"n3": 1}},
            [0, 75, 25],
            0.6,
        ),
        (
            # B has weight 0 but endpoints: with no weighted keeper, the moved weight follows the
            # remaining endpoints.
            "a zero-weight keeper",
            [Backend(0, 0, "ns/a", 100), Backend(0, 1, "ns/b", 0)],
            {"ns/a": {"n1": 3}, "ns/b": {"n2": 1}},
            [0, 100],
            1.0,
        ),
        (
            # Every backend would lose all its endpoints: nothing to move to, the rule is left alone.
            "no backend keeps endpoints",
            [Backend(0, 0, "ns/a", 50), Backend(0, 1, "ns/b", 50)],
            {"ns/a": {"n1": 1}, "ns/b": {"n1": 1}},
            [50, 50],
            0.0,
        ),
        (
            "nothing on the node",
            [Backend(0, 0, "ns/a", 50), Backend(0, 1, "ns/b", 50)],
            {"ns/a": {"n2": 1}, "ns/b": {"n3": 1}},
            [50, 50],
            0.0,
        ),
    ],
)
def test_plan_shift(
    case: str, route: list[Backend], endpoints: dict[str, dict[str, int]], expected: list[int], moved: float
) -> None:
    shift = engine.plan_shift(route, endpoints, N1)
    assert weights(list(shift.target)) == expected, case
    assert shift.moved == pytest.approx(moved, abs=0.005), case  # moved as rounded: 33 of 100 is 1/6 - 0.003


def test_a_stuck_rule_is_reported_and_other_rules_still_shift() -> None:
    route = [
        Backend(0, 0, "ns/a", 50),
        Backend(0, 1, "ns/b", 50),
        Backend(1, 0, "ns/a", 100),  # a second rule with only A: nowhere to move
    ]
    shift = engine.plan_shift(route, {"ns/a": {"n1": 1}, "ns/b": {"n2": 1}}, N1)
    assert weights(list(shift.target)) == [0, 100, 100]
    assert shift.stuck_rules == (1,)


def test_the_target_never_leaves_a_rule_without_a_ready_backend() -> None:
    # Random rules: a shifted rule gives no weight to a backend whose every ready endpoint is on
    # the draining node, keeps weight on backends with ready endpoints left, and sends fewer
    # requests to the node; a rule that cannot shift is left exactly as it was. (A backend that
    # had no ready endpoint before the drain is not the drain's doing and keeps its weight.)
    import random

    rng = random.Random(7)
    for _ in range(300):
        services = [f"ns/s{i}" for i in range(rng.randint(1, 4))]
        route = [Backend(0, i, s, rng.randint(0, 5)) for i, s in enumerate(services)]
        endpoints = {s: {f"n{rng.randint(1, 3)}": rng.randint(0, 2) for _ in range(2)} for s in services}
        shift = engine.plan_shift(route, endpoints, N1)
        target = list(shift.target)
        assert sum(b.weight for b in target) >= sum(b.weight for b in route)
        live = [b for b in target if engine.ready(endpoints, b.service, excluding=N1) > 0]
        gone = [
            b
            for b in target
            if engine.ready(endpoints, b.service) > 0
            and engine.ready(endpoints, b.service, excluding=N1) == 0
        ]
        if shift.changes:
            assert sum(b.weight for b in live) > 0
            assert all(b.weight == 0 for b in gone)
            assert engine.reached_share(target, endpoints, N1) < engine.reached_share(route, endpoints, N1)
        else:
            assert weights(target) == weights(route)


def test_steps_move_linearly_and_end_exactly_at_the_target() -> None:
    start = [Backend(0, 0, "ns/a", 50), Backend(0, 1, "ns/b", 50)]
    target = [Backend(0, 0, "ns/a", 0), Backend(0, 1, "ns/b", 100)]
    # 3 steps: 50 -> 33.3 -> 16.7 -> 0 for A, rounded to the total of 100.
    seen = [weights(engine.step_weights(start, target, step=k, steps=3)) for k in (1, 2, 3)]
    assert seen == [[33, 67], [17, 83], [0, 100]]


def test_steps_from_a_scaled_route_keep_the_target_total() -> None:
    start = [Backend(0, 0, "ns/a", 1), Backend(0, 1, "ns/b", 1)]
    target = [Backend(0, 0, "ns/a", 0), Backend(0, 1, "ns/b", 100)]
    # The start is read at the target's scale (x50): 50/50, then half way: 25/75.
    assert weights(engine.step_weights(start, target, step=1, steps=2)) == [25, 75]
    # Restoring goes back to the original scale: from 0/100 half way to 1/1 is 25/75 of 2 -> 1/1
    # rounded by largest remainder (0.5 vs 1.5: the tie goes to the first).
    assert sum(weights(engine.step_weights(target, start, step=1, steps=2))) == 2


def test_someone_elses_change_is_seen() -> None:
    ours = [Backend(0, 0, "ns/a", 0), Backend(0, 1, "ns/b", 100)]
    assert engine.unchanged_except_by_us(list(reversed(ours)), ours)
    assert not engine.unchanged_except_by_us([Backend(0, 0, "ns/a", 10), Backend(0, 1, "ns/b", 90)], ours)


def test_restorable_waits_for_weighted_backends_without_endpoints() -> None:
    original = [Backend(0, 0, "ns/a", 50), Backend(0, 1, "ns/b", 50), Backend(0, 2, "ns/c", 0)]
    assert engine.restorable(original, {"ns/a": {}, "ns/b": {"n2": 1}}) == ["ns/a"]
    assert engine.restorable(original, {"ns/a": {"n1": 1}, "ns/b": {"n2": 1}}) == []


def test_reached_share() -> None:
    # A (weight 1 of 4) has 1 of its 2 endpoints on n1: 1/4 * 1/2 = 0.125 of requests reach n1.
    route = [Backend(0, 0, "ns/a", 1), Backend(0, 1, "ns/b", 3)]
    assert engine.reached_share(route, {"ns/a": {"n1": 1, "n2": 1}, "ns/b": {"n2": 2}}, N1) == 0.125


# -- route parsing (operator.routing, pure helpers) ------------------------------------------------


def http_route(rules: list[list[dict[str, Any]]]) -> dict[str, Any]:
    return {
        "metadata": {"namespace": "shop"},
        "spec": {"rules": [{"backendRefs": refs} for refs in rules]},
    }


def test_http_route_backends_default_weight_and_namespace() -> None:
    obj = http_route(
        [
            [{"name": "a", "port": 80}, {"name": "b", "namespace": "other", "weight": 3}],
            [{"name": "x", "group": "example.com", "kind": "Bucket", "weight": 2}],
        ]
    )
    assert op.backends("HTTPRoute", obj) == [
        Backend(0, 0, "shop/a", 1),
        Backend(0, 1, "other/b", 3),
        Backend(1, 0, "", 2),  # not a Service: weighed, never given traffic
    ]


@pytest.mark.parametrize(
    ("host", "service"),
    [
        ("a", "shop/a"),
        ("a.other", "other/a"),
        ("a.other.svc.cluster.local", "other/a"),
        ("api.example.com", ""),
    ],
)
def test_virtual_service_hosts(host: str, service: str) -> None:
    obj = {
        "metadata": {"namespace": "shop"},
        "spec": {"http": [{"route": [{"destination": {"host": host}}]}]},
    }
    # A single destination without a weight takes all the traffic (Istio's rule): 100.
    assert op.backends("VirtualService", obj) == [Backend(0, 0, service, 100)]
