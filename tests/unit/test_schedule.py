"""Maintenance scheduler: windows and time zones, limits, infeasibility, both solvers, the checker."""

from __future__ import annotations

import dataclasses
from datetime import UTC, datetime

import numpy as np
import pytest

from autoloop.engines import schedule as sc

MONDAY = datetime(2026, 1, 5, tzinfo=UTC).timestamp()  # 2026-01-05 is a Monday
ALWAYS = (sc.Window("00:00", "00:00"),)  # end <= start: a 24 h window every day
SOLVERS: tuple[sc.SolverName, ...] = ("CPSAT", "Annealing")


def _iso(t: float) -> str:
    return datetime.fromtimestamp(t, UTC).strftime("%Y-%m-%d %H:%M")


@pytest.mark.parametrize(
    ("day", "expected"),
    [
        # Berlin is UTC+1 in January: Mon 22:00-06:00 local = Mon 21:00 - Tue 05:00 UTC.
        (datetime(2026, 1, 5, tzinfo=UTC), ("2026-01-05 21:00", "2026-01-06 05:00")),
        # After the switch to summer time (29 March 2026) it is UTC+2: 20:00 - 04:00 UTC.
        (datetime(2026, 3, 30, tzinfo=UTC), ("2026-03-30 20:00", "2026-03-31 04:00")),
    ],
)
def test_window_occurrences_follow_the_time_zone(day: datetime, expected: tuple[str, str]) -> None:
    window = sc.Window("22:00", "06:00", days=("Mon",), time_zone="Europe/Berlin")
    start = day.timestamp()
    occ = sc.window_occurrences([window], start, start + 86400)
    assert [(_iso(a), _iso(b)) for a, b in occ] == [expected]


@pytest.mark.parametrize(
    ("value", "total", "expected"), [("10%", 25, 2), ("1%", 50, 1), (3, 100, 3), ("50%", 7, 3)]
)
def test_limits_count_or_percent_rounded_down_never_zero(value: int | str, total: int, expected: int) -> None:
    assert sc._limit(value, total) == expected


def test_failure_probability_constant_hazard_and_deadline() -> None:
    node = sc.MaintenanceNode("n", risk=0.5, risk_horizon_hours=24.0, hours_to_failure=30.0)
    # 1 - 0.5^(h/24): 0 at 0 h, 0.5 at 24 h; 1 once past the predicted failure at 30 h.
    np.testing.assert_allclose(sc.failure_probability(node, np.array([0.0, 24.0, 30.0])), [0.0, 0.5, 1.0])


@pytest.mark.parametrize("solver", SOLVERS)
def test_riskiest_node_goes_first(solver: sc.SolverName) -> None:
    nodes = [
        sc.MaintenanceNode("calm", risk=0.0, requested=True),
        sc.MaintenanceNode("hot", risk=0.9),
        sc.MaintenanceNode("warm", risk=0.4),
    ]
    problem = sc.Problem(nodes=nodes, windows=ALWAYS, start=MONDAY, horizon_hours=6.0)
    result = sc.Scheduler(solver=solver).solve(problem)
    order = [a.node for a in sorted(result.assignments, key=lambda a: a.start)]
    # maxConcurrent 1, 1 h each: hot at 0 h, warm at 1 h, calm (no risk) last.
    assert order == ["hot", "warm", "calm"]
    assert [a.slot for a in sorted(result.assignments, key=lambda a: a.start)] == [0, 1, 2]
    assert result.violations == () and result.infeasible == ()
    # hot contributes 0 (maintained at once); warm waits 1 h: 1 - 0.6^(1/24) = 0.02106.
    assert result.expected_unplanned_failures == pytest.approx(1 - 0.6 ** (1 / 24))
    assert result.solver == solver


def _requested(n: int, **kw: object) -> list[sc.MaintenanceNode]:
    return [sc.MaintenanceNode(f"n{i}", requested=True, **kw) for i in range(n)]  # type: ignore[arg-type]


def _max_overlap(result: sc.ScheduleResult, names: set[str] | None = None) -> int:
    slots = [a.slot for a in result.assignments if names is None or a.node in names]
    return max(np.bincount(slots)) if slots else 0


@pytest.mark.parametrize("solver", SOLVERS)
def test_max_concurrent_packs_within_a_short_window(solver: sc.SolverName) -> None:
    # A 3 h window, 6 nodes, 2 at a time: exactly fits (2 x 3 = 6).
    window = (sc.Window("01:00", "04:00", days=("Mon",)),)
    problem = sc.Problem(_requested(6), window, sc.Limits(max_concurrent=2), start=MONDAY, horizon_hours=24.0)
    result = sc.Scheduler(solver=solver).solve(problem)
    assert len(result.assignments) == 6 and result.violations == ()
    assert _max_overlap(result) == 2
    assert {a.slot for a in result.assignments} == {1, 2, 3}


@pytest.mark.parametrize("solver", SOLVERS)
def test_pdb_budget_keeps_nodes_apart(solver: sc.SolverName) -> None:
    nodes = [sc.MaintenanceNode(f"n{i}", requested=True, pdb_pods={"web": 1}) for i in range(3)]
    limits = sc.Limits(max_concurrent=10, pdb_allowed={"web": 1})
    result = sc.Scheduler(solver=solver).solve(
        sc.Problem(nodes, ALWAYS, limits, start=MONDAY, horizon_hours=6.0)
    )
    assert len(result.assignments) == 3 and _max_overlap(result) == 1
    assert result.violations == ()


@pytest.mark.parametrize("solver", SOLVERS)
def test_group_limit_per_zone(solver: sc.SolverName) -> None:
    nodes = [sc.MaintenanceNode(f"n{i}", requested=True, labels={"zone": f"z{i % 2}"}) for i in range(4)]
    limits = sc.Limits(max_concurrent=10, group_limits={"zone": 1})
    result = sc.Scheduler(solver=solver).solve(
        sc.Problem(nodes, ALWAYS, limits, start=MONDAY, horizon_hours=6.0)
    )
    assert result.violations == () and len(result.assignments) == 4
    assert _max_overlap(result, {"n0", "n2"}) == 1 and _max_overlap(result, {"n1", "n3"}) == 1
    # Two zones, one node each at a time: two slots suffice.
    assert {a.slot for a in result.assignments} == {0, 1}


@pytest.mark.parametrize("solver", SOLVERS)
def test_min_spacing_between_starts(solver: sc.SolverName) -> None:
    limits = sc.Limits(max_concurrent=10, min_spacing_minutes=120)
    result = sc.Scheduler(solver=solver).solve(
        sc.Problem(_requested(3), ALWAYS, limits, start=MONDAY, horizon_hours=8.0)
    )
    starts = sorted(a.slot for a in result.assignments)
    # 120 min spacing on 60 min slots: starts two slots apart -> 0, 2, 4.
    assert starts == [0, 2, 4] and result.violations == ()


@pytest.mark.parametrize(
    ("node", "windows", "limits", "constraint"),
    [
        (
            sc.MaintenanceNode("a", requested=True),
            (sc.Window("01:00", "02:00", days=("Sat",)),),
            sc.Limits(),
            "window",
        ),
        (
            sc.MaintenanceNode("a", requested=True, duration_minutes=120),
            (sc.Window("01:00", "02:00"),),
            sc.Limits(),
            "window",
        ),
        (
            sc.MaintenanceNode("a", risk=0.9, hours_to_failure=3.0),
            (sc.Window("10:00", "12:00"),),
            sc.Limits(),
            "deadline",
        ),
        (
            sc.MaintenanceNode("a", requested=True, pdb_pods={"db": 1}),
            ALWAYS,
            sc.Limits(pdb_allowed={"db": 0}),
            "pdb",
        ),
        (
            sc.MaintenanceNode("a", requested=True),
            (sc.Window("01:00", "02:00", time_zone="Mars/Olympus"),),
            sc.Limits(),
            "window",
        ),
        (sc.MaintenanceNode("a", requested=True), (sc.Window("25:00", "26:00"),), sc.Limits(), "window"),
    ],
)
def test_infeasibility_is_a_typed_result(
    node: sc.MaintenanceNode, windows: tuple[sc.Window, ...], limits: sc.Limits, constraint: str
) -> None:
    # Monday 00:00 UTC, 24 h: no Saturday window; the 1 h window cannot hold 2 h; the 10:00 window
    # opens after the failure predicted at 03:00; the PDB allows nothing; the zone does not exist;
    # 25:00 is not a time.
    problem = sc.Problem(
        [node, sc.MaintenanceNode("ok", requested=True)], windows, limits, start=MONDAY, horizon_hours=24.0
    )
    result = sc.Scheduler().solve(problem)
    bad = [i for i in result.infeasible if i.node == "a"]
    assert len(bad) == 1 and bad[0].constraint == constraint and bad[0].message
    assert "a" not in {a.node for a in result.assignments}


def test_capacity_shortfall_names_the_nodes_left_out() -> None:
    # One 1 h window, one node at a time, three needed nodes: the riskiest is placed, two are left out.
    nodes = [sc.MaintenanceNode(f"n{i}", risk=0.3 + 0.1 * i) for i in range(3)]
    problem = sc.Problem(
        nodes, (sc.Window("01:00", "02:00", days=("Mon",)),), start=MONDAY, horizon_hours=24.0
    )
    result = sc.Scheduler().solve(problem)
    assert [a.node for a in result.assignments] == ["n2"]
    assert sorted((i.node, i.constraint) for i in result.infeasible) == [
        ("n0", "capacity"),
        ("n1", "capacity"),
    ]


def test_nodes_below_threshold_are_left_alone() -> None:
    nodes = [sc.MaintenanceNode("low", risk=0.1), sc.MaintenanceNode("high", risk=0.5)]
    result = sc.Scheduler().solve(
        sc.Problem(nodes, ALWAYS, start=MONDAY, horizon_hours=6.0, risk_threshold=0.3)
    )
    assert [a.node for a in result.assignments] == ["high"]


def test_checker_flags_each_broken_limit() -> None:
    nodes = [sc.MaintenanceNode(f"n{i}", requested=True, pdb_pods={"web": 1}) for i in range(2)]
    problem = sc.Problem(
        nodes, ALWAYS, sc.Limits(max_concurrent=1, pdb_allowed={"web": 1}), start=MONDAY, horizon_hours=4.0
    )
    prep = sc.prepare(problem, disruption_weight=0.0)
    # Both at slot 0: over maxConcurrent and over the PDB; slot 99 is outside the plan.
    assert sorted(v.constraint for v in sc.check(prep, {0: 0, 1: 0})) == ["maxConcurrent", "pdb web"]
    assert [v.constraint for v in sc.check(prep, {0: 99})] == ["window/deadline"]
    assert sc.check(prep, {0: 0, 1: 1}) == []


def test_auto_picks_cpsat_for_small_problems_and_solvers_agree() -> None:
    rng = np.random.default_rng(0)
    nodes = [
        sc.MaintenanceNode(f"n{i}", risk=float(rng.uniform(0.3, 0.9)), pdb_pods={"p": 1}) for i in range(6)
    ]
    problem = sc.Problem(
        nodes, ALWAYS, sc.Limits(max_concurrent=2, pdb_allowed={"p": 1}), start=MONDAY, horizon_hours=12.0
    )
    auto = sc.Scheduler().solve(problem)
    anneal = sc.Scheduler(solver="Annealing").solve(problem)
    assert auto.solver == "CPSAT" and auto.status == "OPTIMAL" and auto.gap == pytest.approx(0.0, abs=1e-3)
    # The heuristic path cannot beat the proven optimum, and on six nodes lands within 5 % of it.
    assert auto.objective - 1e-9 <= anneal.objective <= auto.objective * 1.05
    assert anneal.solver == "Annealing" and anneal.violations == ()


# -- Limits.together: a label's groups (zones) maintained as one turn each ---------------------------

NIGHTS = (sc.Window("01:00", "07:00", days=("Mon", "Tue")),)  # two 6 h windows: slots 1-6 and 25-30


def _zoned(risks: dict[str, float], zone_of: dict[str, str] | None = None) -> list[sc.MaintenanceNode]:
    zone_of = zone_of or {n: n[0] for n in risks}
    return [
        sc.MaintenanceNode(n, risk=r, labels={"zone": zone_of[n]} if zone_of[n] else {})
        for n, r in risks.items()
    ]


def _turns(result: sc.ScheduleResult) -> dict[str, tuple[int, int]]:
    """Zone (first letter of the node) -> (first slot, last slot) of its nodes."""
    out: dict[str, tuple[int, int]] = {}
    for a in result.assignments:
        lo, hi = out.get(a.node[0], (a.slot, a.slot))
        out[a.node[0]] = (min(lo, a.slot), max(hi, a.slot))
    return out


@pytest.mark.parametrize("solver", SOLVERS)
def test_together_gives_each_zone_its_own_turn(solver: sc.SolverName) -> None:
    # Risks alternate between zones a and b; two at a time, 1 h each. Without `together` the optimum
    # pairs a0+b0, then a1+b1, ...: both zones drained at once. With it, zone a (riskiest node 0.9)
    # takes slots 1-2 whole, then zone b slots 3-4, all in Monday's window.
    risks = {"a0": 0.9, "b0": 0.85, "a1": 0.8, "b1": 0.75, "a2": 0.7, "b2": 0.65, "a3": 0.6, "b3": 0.55}
    problem = sc.Problem(
        _zoned(risks), NIGHTS, sc.Limits(max_concurrent=2, together="zone"), start=MONDAY, horizon_hours=48.0
    )
    result = sc.Scheduler(solver=solver).solve(problem)
    assert result.violations == () and result.infeasible == () and result.split == ()
    assert _turns(result) == {"a": (1, 2), "b": (3, 4)}
    mixed = sc.Scheduler(solver=solver).solve(
        dataclasses.replace(problem, limits=sc.Limits(max_concurrent=2))
    )
    assert {a.slot for a in mixed.assignments if a.node in ("a0", "b0")} == {1}


@pytest.mark.parametrize("solver", SOLVERS)
def test_together_splits_a_zone_no_window_holds_and_says_so(solver: sc.SolverName) -> None:
    # Eight nodes of zone a, one at a time, 1 h each: a 6 h window holds six. Nothing is left out:
    # six go on Monday night, two on Tuesday night, and the result names the split zone.
    risks = {f"a{i}": 0.5 for i in range(8)}
    problem = sc.Problem(_zoned(risks), NIGHTS, sc.Limits(together="zone"), start=MONDAY, horizon_hours=48.0)
    result = sc.Scheduler(solver=solver).solve(problem)
    assert len(result.assignments) == 8 and result.infeasible == () and result.violations == ()
    assert sorted(a.slot for a in result.assignments) == [1, 2, 3, 4, 5, 6, 25, 26]
    assert len(result.split) == 1 and result.split[0].startswith("zone=a: 8 nodes split over 2 windows")


@pytest.mark.parametrize("solver", SOLVERS)
def test_together_lets_unlabelled_nodes_run_beside_a_turn(solver: sc.SolverName) -> None:
    # x has no zone label: it belongs to no turn and goes at once (slot 1, beside a0), inside zone
    # a's turn (slots 1-2); a zone b node there would break the turn.
    risks = {"a0": 0.9, "x": 0.85, "a1": 0.8, "a2": 0.7}
    problem = sc.Problem(
        _zoned(risks, {"a0": "a", "a1": "a", "a2": "a", "x": ""}),
        NIGHTS,
        sc.Limits(max_concurrent=2, together="zone"),
        start=MONDAY,
        horizon_hours=48.0,
    )
    result = sc.Scheduler(solver=solver).solve(problem)
    slots = {a.node: a.slot for a in result.assignments}
    assert result.violations == () and len(slots) == 4
    assert slots["x"] in (1, 2) and sorted(slots[n] for n in ("a0", "a1", "a2")) in ([1, 1, 2], [1, 2, 2])
    if solver == "CPSAT":  # the optimum; annealing's repair lays zone a out first, x beside a2
        assert slots == {"a0": 1, "x": 1, "a1": 2, "a2": 2}


def test_checker_flags_interleaved_turns_and_evaluate_charges_splits() -> None:
    risks = {"a0": 0.5, "a1": 0.5, "b0": 0.5}
    problem = sc.Problem(
        _zoned(risks), NIGHTS, sc.Limits(max_concurrent=3, together="zone"), start=MONDAY, horizon_hours=48.0
    )
    prep = sc.prepare(problem, disruption_weight=0.0)
    a0, a1, b0 = (next(i for i, t in enumerate(prep.tasks) if t.name == n) for n in ("a0", "a1", "b0"))
    # b0 inside zone a's turn (slots 1-3) breaks it; side by side turns do not.
    assert [v.constraint for v in sc.check(prep, {a0: 1, b0: 2, a1: 3})] == ["together zone=b"]
    assert sc.check(prep, {a0: 1, a1: 2, b0: 3}) == []
    # Zone a over two windows costs SPLIT_PENALTY on top of the later slot's failure risk.
    whole = sc.evaluate(prep, {a0: 1, a1: 2, b0: 3}, disruption_weight=0.0)[0]
    split = sc.evaluate(prep, {a0: 1, a1: 25, b0: 3}, disruption_weight=0.0)[0]
    assert split - whole == pytest.approx(sc.together.SPLIT_PENALTY, abs=0.5)
