"""Allocation benchmark: CP-SAT, annealing, `Auto` and a VPA-style greedy baseline on the same cases.

Run: `python -m bench.allocation` (full: 3 seeds per size) or `python -m bench.allocation --quick`
(1 seed, fewer annealing reads; same code path and sizes). Sizes: 10 / 100 / 1,000 workloads on
5 / 50 / 200 nodes (bench/_alloc_cases.py: lognormal workload sizes, mixed 4/8/16-vCPU nodes at
70 % CPU utilisation, a budget 3 % below the cost of covering every SLA demand so it binds).

Per case: CP-SAT (10 s limit): seconds, objective, gap from its own bound; annealing (QUBO +
repair, 10 s limit): seconds and objective ratio to CP-SAT; `Auto`: which mode it picked and its
ratio; and the greedy baseline, which is what a user gets from a VPA per workload, ignoring
capacity and budget:
* CPU request = P90 of usage x 1.15 (VPA recommender defaults: `--target-cpu-percentile=0.9`,
  `--recommendation-margin-fraction=0.15`, kubernetes/autoscaler
  vertical-pod-autoscaler/pkg/recommender/main.go), memory = P90 x 1.15 (VPA uses the P90 of
  daily peaks, `--target-memory-percentile=0.9`; we only have the distribution, so P90), today's
  replica count kept (VPA does not scale out).
Every allocation goes through `allocate.check_allocation`; `constraint_violations` counts what it
finds for CP-SAT, annealing and `Auto` (the greedy baseline's budget/capacity/SLA misses are
printed separately: it does not promise to respect them).
"""

from __future__ import annotations

import argparse
import json
from typing import Final

import numpy as np

from autoloop.engines import allocate
from bench import _alloc_cases

SIZES: Final[tuple[tuple[int, int], ...]] = ((10, 5), (100, 50), (1000, 200))
TIME_LIMIT_SECONDS: Final[float] = 10.0
# VPA recommender defaults (kubernetes/autoscaler, vertical-pod-autoscaler/pkg/recommender/main.go).
VPA_SAFETY_MARGIN: Final[float] = 0.15
# Annealing is not run at 1,000 workloads: the dense QUBO (~10k options) needs ~0.8 GB and
# ~100 s per read; `Auto` does not pick it there either.
ANNEALING_MAX_WORKLOADS: Final[int] = 100
FULL_SEEDS: Final[int] = 3
QUICK_SEEDS: Final[int] = 1


def greedy_vpa(case: _alloc_cases.Case) -> dict[str, float]:
    """Per-workload P90 x 1.15 at today's replicas; report its cost and what it breaks."""
    p = case.problem
    reps = np.array([w.current_replicas or 1 for w in p.workloads], dtype=float)
    cpu = np.ceil(case.p90_cpu * (1 + VPA_SAFETY_MARGIN) / reps * 1000) / 1000
    mem = np.ceil(case.p90_mem * (1 + VPA_SAFETY_MARGIN) / reps * 1024) / 1024
    cost = float((reps * (cpu * p.price_per_vcpu_hour_usd + mem * p.price_per_gib_hour_usd)).sum())
    _, left_c, left_m = allocate.place_pods(reps, cpu, mem, p.nodes)
    demand_c = np.array([w.cpu_cores for w in p.workloads])
    demand_m = np.array([w.memory_gib for w in p.workloads])
    below_sla = int(((reps * cpu < demand_c - 1e-9) | (reps * mem < demand_m - 1e-9)).sum())
    over_budget = p.budget_usd_per_hour is not None and cost > p.budget_usd_per_hour
    return {
        "cost": cost,
        "unplaced_cores": left_c,
        "unplaced_gib": left_m,
        "below_sla": below_sla,
        "over_budget": float(over_budget),
    }


def run(quick: bool) -> dict[str, float]:
    seeds = range(QUICK_SEEDS if quick else FULL_SEEDS)
    reads = 8 if quick else 16
    print(
        f"{'case':>12} {'seed':>4} | {'cpsat s':>7} {'objective':>10} {'gap':>8} | {'anneal s':>8} {'ratio':>7} | "
        f"{'auto':>9} {'ratio':>7} {'contrib':>7} | {'greedy cost':>11} {'ratio':>6} {'<SLA':>5} {'unplaced':>8}"
    )
    violations = 0
    cpsat_1000: list[tuple[float, float]] = []
    auto_anneal_ratios: list[float] = []
    anneal_ratios_all: dict[str, list[float]] = {}
    greedy_ratios: list[float] = []
    for n_work, n_nodes in SIZES:
        label = f"{n_work}x{n_nodes}"
        for seed in seeds:
            case = _alloc_cases.make_case(n_work, n_nodes, seed=seed)
            cp = allocate.Allocator(
                solver="CPSAT", time_limit_seconds=TIME_LIMIT_SECONDS, random_state=seed
            ).solve(case.problem)
            violations += len(allocate.check_allocation(case.problem, cp))
            if n_work == 1000:
                cpsat_1000.append((cp.solve_seconds, cp.gap or 0.0))
            sa_text = f"{'-':>8} {'-':>7}"
            if n_work <= ANNEALING_MAX_WORKLOADS:
                sa = allocate.Allocator(
                    solver="Annealing",
                    time_limit_seconds=TIME_LIMIT_SECONDS,
                    num_reads=reads,
                    random_state=seed,
                ).solve(case.problem)
                violations += len(allocate.check_allocation(case.problem, sa))
                ratio = sa.objective / cp.objective
                anneal_ratios_all.setdefault(label, []).append(ratio)
                sa_text = f"{sa.solve_seconds:8.2f} {ratio:7.4f}"
            auto = allocate.Allocator(
                solver="Auto", time_limit_seconds=TIME_LIMIT_SECONDS, num_reads=reads, random_state=seed
            ).solve(case.problem)
            violations += len(allocate.check_allocation(case.problem, auto))
            auto_ratio = auto.objective / cp.objective
            if auto.mode != "CPSAT" and auto.annealing_objective is not None:
                auto_anneal_ratios.append(auto.annealing_objective / cp.objective)
            greedy = greedy_vpa(case)
            g_ratio = greedy["cost"] / cp.cost_usd_per_hour
            greedy_ratios.append(g_ratio)
            print(
                f"{label:>12} {seed:>4} | {cp.solve_seconds:7.2f} {cp.objective:10.4f} {cp.gap or 0.0:8.2e} | "
                f"{sa_text} | {auto.mode:>9} {auto_ratio:7.4f} {auto.annealing_contribution:7.2f} | "
                f"{greedy['cost']:11.4f} {g_ratio:6.3f} {greedy['below_sla']:5d} {greedy['unplaced_cores']:8.2f}"
            )
    for label, ratios in anneal_ratios_all.items():
        print(f"annealing / CP-SAT objective at {label}: worst {max(ratios):.4f}, mean {np.mean(ratios):.4f}")
    return {
        "cpsat_seconds_1000x200": max(s for s, _ in cpsat_1000),
        "cpsat_gap_1000x200": max(g for _, g in cpsat_1000),
        # Worst ratio over the cases where `Auto` ran annealing (its portfolio).
        "annealing_ratio_to_cpsat": max(auto_anneal_ratios) if auto_anneal_ratios else float("nan"),
        "greedy_cost_ratio_to_cpsat": float(np.mean(greedy_ratios)),
        "constraint_violations": violations,
        **{f"annealing_ratio_to_cpsat_{k}": max(v) for k, v in anneal_ratios_all.items()},
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="one seed per size (< 1 minute)")
    args = parser.parse_args()
    print(json.dumps(run(args.quick)))


if __name__ == "__main__":
    main()
