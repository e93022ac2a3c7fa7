"""Tests of the allocator (autoloop.engines.allocate): options, solvers, checker, infeasibility."""

from __future__ import annotations

import dataclasses
import itertools

import numpy as np
import pytest

from autoloop.engines import allocate
from bench import _alloc_cases

P_CPU = allocate.PRICE_PER_VCPU_HOUR_USD
P_MEM = allocate.PRICE_PER_GIB_HOUR_USD


def _problem(
    budget: float | None, *, nodes: tuple[allocate.Node, ...] | None = None
) -> allocate.AllocationProblem:
    workloads = (
        allocate.WorkloadDemand("api", cpu_cores=2.0, memory_gib=4.0, min_replicas=2, max_replicas=4),
        allocate.WorkloadDemand("db", cpu_cores=1.0, memory_gib=8.0, min_replicas=1, max_replicas=1),
    )
    nodes = nodes or (allocate.Node("n1", 4.0, 16.0), allocate.Node("n2", 4.0, 16.0))
    return allocate.AllocationProblem(workloads=workloads, nodes=nodes, budget_usd_per_hour=budget)


# Full SLA coverage costs (2 + 1) cores and (4 + 8) GiB: 3 * 0.04048 + 12 * 0.004445 = 0.17478 USD/h.
FULL_COST = 3 * P_CPU + 12 * P_MEM


def test_ample_budget_covers_the_sla_at_its_cost() -> None:
    result = allocate.Allocator(solver="CPSAT").solve(_problem(budget=None))
    assert allocate.check_allocation(_problem(None), result) == []
    by = {w.name: w for w in result.workloads}
    assert by["db"].replicas == 1
    assert 2 <= by["api"].replicas <= 4
    assert all(w.coverage >= 1.0 - 1e-9 for w in result.workloads)
    # Requests are the demand split over replicas, rounded up to 1 m / 1 MiB: cost within 1 %.
    assert result.cost_usd_per_hour == pytest.approx(FULL_COST, rel=0.01)
    assert result.risk_usd_per_hour == pytest.approx(0.0)
    assert result.gap is not None and result.gap <= allocate.DEFAULT_RELATIVE_GAP + 1e-9


def test_binding_budget_trades_coverage_within_the_floor() -> None:
    budget = 0.9 * FULL_COST
    problem = _problem(budget)
    result = allocate.Allocator(solver="CPSAT").solve(problem)
    assert allocate.check_allocation(problem, result) == []
    assert result.cost_usd_per_hour <= budget + 1e-9
    assert min(w.coverage for w in result.workloads) < 1.0  # something had to give
    assert min(w.coverage for w in result.workloads) >= problem.fairness_floor - 1e-9
    assert result.risk_usd_per_hour > 0.0


def test_budget_below_the_fairness_floor_names_the_budget() -> None:
    # The floor needs 80 % of FULL_COST (plus rounding); half of it is short by about 0.3 * FULL_COST.
    budget = 0.5 * FULL_COST
    with pytest.raises(allocate.AllocationInfeasibleError) as err:
        allocate.Allocator().solve(_problem(budget))
    (binding,) = err.value.binding
    assert binding.name == "budget"
    assert binding.required == pytest.approx(0.8 * FULL_COST, rel=0.01)
    assert binding.shortfall == pytest.approx(0.3 * FULL_COST, rel=0.03)


def test_too_little_cpu_names_cpu_and_its_shortfall() -> None:
    # Floor CPU is 0.8 * 3 = 2.4 cores against 2 cores of nodes: short by 0.4 cores.
    nodes = (allocate.Node("small", 2.0, 64.0),)
    with pytest.raises(allocate.AllocationInfeasibleError) as err:
        allocate.Allocator().solve(_problem(None, nodes=nodes))
    names = {b.name: b for b in err.value.binding}
    assert set(names) == {"cpu"}
    assert names["cpu"].shortfall == pytest.approx(0.4, abs=0.01)


def test_pod_larger_than_any_node_names_the_workload() -> None:
    big = allocate.WorkloadDemand("big", cpu_cores=8.0, memory_gib=1.0, min_replicas=1, max_replicas=1)
    problem = allocate.AllocationProblem(workloads=(big,), nodes=(allocate.Node("n", 4.0, 16.0),))
    with pytest.raises(allocate.AllocationInfeasibleError) as err:
        allocate.Allocator().solve(problem)
    assert err.value.binding[0].name == "pod-size"
    assert err.value.binding[0].workload == "big"


def test_high_churn_weight_keeps_todays_settings() -> None:
    # Today's settings already cover the SLA (2 x 1 core, 2 x 2 GiB); with churn expensive the
    # solver keeps them exactly rather than shaving the 0 % it could save.
    w = allocate.WorkloadDemand(
        "web",
        2.0,
        4.0,
        min_replicas=1,
        max_replicas=6,
        current_replicas=2,
        current_cpu_cores=1.0,
        current_memory_gib=2.0,
    )
    problem = allocate.AllocationProblem(workloads=(w,), nodes=(allocate.Node("n", 8.0, 32.0),))
    result = allocate.Allocator(solver="CPSAT", churn_weight=10.0).solve(problem)
    (a,) = result.workloads
    assert (a.replicas, a.cpu_cores, a.memory_gib, a.churn) == (2, 1.0, 2.0, 0.0)


@pytest.mark.parametrize(
    ("replicas", "cpu", "mem", "expected", "left_cpu"),
    [
        # Nodes 4 and 2 cores. 3 pods of 1.5 cores: 2 on node 0 (3.0), 1 on node 1 (1.5); nothing left.
        ([3], [1.5], [1.0], [[(0, 2), (1, 1)]], 0.0),
        # 4 pods of 1.5 cores: the 4th fits nowhere (0.5 and 0.5 left): 1.5 cores unplaced.
        ([4], [1.5], [1.0], [[(0, 2), (1, 1)]], 1.5),
        # Largest first: the 3-core pod takes node 0, the two 1-core pods go to node 0 (1 left) and node 1.
        ([2, 1], [1.0, 3.0], [1.0, 1.0], [[(0, 1), (1, 1)], [(0, 1)]], 0.0),
    ],
)
def test_first_fit_decreasing(
    replicas: list[int], cpu: list[float], mem: list[float], expected: list, left_cpu: float
) -> None:
    nodes = (allocate.Node("a", 4.0, 16.0), allocate.Node("b", 2.0, 8.0))
    placement, lc, _ = allocate.place_pods(np.array(replicas, float), np.array(cpu), np.array(mem), nodes)
    assert placement == expected
    assert lc == pytest.approx(left_cpu)


def test_checker_reports_overcommitted_node_and_budget() -> None:
    problem = _problem(budget=FULL_COST)
    result = allocate.Allocator(solver="CPSAT").solve(problem)
    api = next(w for w in result.workloads if w.name == "api")
    # Put every api pod on n1 and give it 10x the CPU: n1 overflows and the budget breaks.
    broken = dataclasses.replace(api, cpu_cores=api.cpu_cores * 10, placement=(("n1", api.replicas),))
    others = tuple(w for w in result.workloads if w.name != "api")
    violations = allocate.check_allocation(problem, dataclasses.replace(result, workloads=(broken, *others)))
    assert any("node n1 over capacity" in v for v in violations)
    assert any("over the budget" in v for v in violations)


def _brute_force_objective(problem: allocate.AllocationProblem) -> float:
    options, _ = allocate._build_options(problem, allocate.DEFAULT_RISK_WEIGHT, allocate.DEFAULT_CHURN_WEIGHT)
    cap = allocate._capacities(problem)
    menus = [np.flatnonzero(options.group == g) for g in range(len(problem.workloads))]
    best = np.inf
    for pick in itertools.product(*menus):
        idx = list(pick)
        if (options.use[idx].sum(axis=0) <= cap + 1e-9).all():
            best = min(best, float(options.objective[idx].sum()))
    return best


@pytest.mark.parametrize("seed", [0, 1])
def test_cpsat_matches_brute_force_and_annealing_is_close(seed: int) -> None:
    case = _alloc_cases.make_case(4, 3, budget_fraction=0.95, seed=seed)
    best = _brute_force_objective(case.problem)
    cp = allocate.Allocator(solver="CPSAT", relative_gap=0.0).solve(case.problem)
    sa = allocate.Allocator(solver="Annealing", num_reads=8, num_sweeps=500, random_state=seed).solve(
        case.problem
    )
    for result in (cp, sa):
        assert allocate.check_allocation(case.problem, result) == []
    assert cp.objective == pytest.approx(best, rel=1e-6)
    assert cp.gap is not None and cp.gap <= 1e-6
    assert best <= sa.objective <= 1.05 * best
    assert sa.gap is None and sa.solver == "Annealing"


def test_auto_runs_a_portfolio_on_small_problems_and_cpsat_on_large() -> None:
    small = _alloc_cases.make_case(10, 5, seed=3)
    result = allocate.Allocator(solver="Auto", num_reads=8, num_sweeps=300).solve(small.problem)
    assert result.mode == "Portfolio"
    assert result.solver in ("CPSAT", "Annealing")
    assert 0.0 <= result.annealing_contribution <= 1.0
    assert result.annealing_objective is not None and result.cpsat_objective is not None
    assert result.objective == pytest.approx(min(result.annealing_objective, result.cpsat_objective))
    assert allocate.check_allocation(small.problem, result) == []
    large = _alloc_cases.make_case(300, 60, seed=3)
    result = allocate.Allocator(solver="Auto").solve(large.problem)
    assert result.mode == "CPSAT" and result.annealing_contribution == 0.0
    assert allocate.check_allocation(large.problem, result) == []
