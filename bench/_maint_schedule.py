"""Scheduling half of bench.maintenance: our scheduler against kured-like baselines.

Cases: a cluster of N nodes over one week of hourly slots, Europe/Berlin windows (weeknights
22:00-06:00, all weekend), maxConcurrent 10 %, at most 5 % of a zone at once, 20 PDBs with 1-3
allowed disruptions. 10 % of nodes are at risk (risk U(0.3, 0.95) over 24 h, half with a trend
deadline U(6, 72) h, as the predictor reports them); 30 % more have a pending reboot (requested,
risk U(0, 0.05)). Every method is scored by the same model: a node fails unplanned with
P = 1 - (1 - risk)^(h / 24) before its start at hour h, and surely once past its deadline.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Final

import numpy as np

from autoloop.engines import schedule

WEEK_START: Final[float] = 1_767_571_200.0
"""2026-01-05T00:00Z, a Monday."""
WINDOWS: Final[tuple[schedule.Window, ...]] = (
    schedule.Window("22:00", "06:00", days=("Mon", "Tue", "Wed", "Thu", "Fri"), time_zone="Europe/Berlin"),
    schedule.Window("00:00", "00:00", days=("Sat", "Sun"), time_zone="Europe/Berlin"),
)
KURED_CONCURRENCY: Final[int] = 1
"""kured holds a lock in the API server so one node reboots at a time (kubereboot/kured README,
'Concurrency Control'); its --concurrency flag (added in kubereboot/kured PR #660) defaults to 1.
Its --reboot-days / --start-time / --end-time / --time-zone are set to the same windows, as an
operator would; it checks for the reboot sentinel every --period (default 1h, our slot)."""
CONCURRENCY_K: Final[int] = 5
"""kured with --concurrency=5: the same FIFO lock with k holders (PR #660 semantics)."""
BUDGET_PERCENT: Final[float] = 10.0
"""Risk-unaware rolling budget: like a rolling update with maxUnavailable 10 %, nodes in queue order
each take the earliest slot the limits allow (no strict FIFO between starts)."""


@dataclass(frozen=True)
class Row:
    nodes: int
    method: str
    seconds: float
    gap: float
    hard_violations: int
    scheduled: int
    needed: int
    expected_unplanned: float
    disruption: float


def make_problem(n_nodes: int, *, seed: int, offset_hours: float = 0.0) -> schedule.Problem:
    rng = np.random.default_rng(seed)
    nodes = []
    for i in range(n_nodes):
        at_risk = rng.random() < 0.10
        risk = float(rng.uniform(0.3, 0.95)) if at_risk else float(rng.uniform(0.0, 0.05))
        deadline = float(rng.uniform(6.0, 72.0)) if at_risk and rng.random() < 0.5 else None
        pdbs = rng.choice(20, size=int(rng.integers(1, 3)), replace=False)
        nodes.append(
            schedule.MaintenanceNode(
                name=f"node-{i:04d}",
                risk=risk,
                hours_to_failure=deadline,
                requested=bool(rng.random() < 0.30),
                duration_minutes=60.0,
                labels={"topology.kubernetes.io/zone": f"zone-{i % 3}"},
                pdb_pods={f"pdb-{p}": int(rng.integers(1, 3)) for p in pdbs},
                disruption_cost=float(rng.integers(5, 40)),
            )
        )
    allowed = {f"pdb-{p}": int(rng.integers(1, 4)) for p in range(20)}
    return schedule.Problem(
        nodes=nodes,
        windows=WINDOWS,
        limits=schedule.Limits(
            max_concurrent=f"{BUDGET_PERCENT:g}%",
            group_limits={"topology.kubernetes.io/zone": "5%"},
            pdb_allowed=allowed,
        ),
        start=WEEK_START + offset_hours * 3600.0,
        horizon_hours=168.0,
        slot_minutes=60.0,
    )


def score(problem: schedule.Problem, starts: dict[str, float]) -> tuple[float, float, int, int]:
    """(expected unplanned failures, planned disruption, scheduled, needed) under the shared model."""
    needed = [n for n in problem.nodes if n.requested or n.risk >= problem.risk_threshold]
    failures = disruption = 0.0
    for node in needed:
        hours = starts.get(node.name, problem.horizon_hours)
        failures += float(schedule.failure_probability(node, np.array([hours]))[0])
        disruption += node.disruption_cost if node.name in starts else 0.0
    return failures, disruption, sum(n.name in starts for n in needed), len(needed)


def fifo(problem: schedule.Problem, *, cap: int, strict: bool, seed: int) -> tuple[dict[str, float], int]:
    """kured-like: nodes in arrival order (all flagged at plan start, so the lock race is a random
    order), each starts at the earliest window slot the lock (cap holders) and PDBs/groups allow;
    `strict` keeps FIFO (a node never starts before the one ahead of it). Deadlines are unknown to
    kured. Returns starts (hours) and hard violations found by the shared checker."""
    blind = dataclasses.replace(
        problem, nodes=[dataclasses.replace(n, hours_to_failure=None) for n in problem.nodes]
    )
    prep = dataclasses.replace(schedule.prepare(blind, disruption_weight=0.0), global_cap=cap)
    usage = schedule.Usage(prep)
    order = np.random.default_rng(seed).permutation(len(prep.tasks))
    slots: dict[int, int] = {}
    earliest = 0
    for i in order:
        for s in prep.allowed[i]:
            if (not strict or s >= earliest) and not usage.conflicts(int(i), int(s)):
                usage.add(int(i), int(s))
                slots[int(i)] = int(s)
                earliest = int(s) if strict else 0
                break
    violations = len(schedule.check(prep, slots))
    starts = {prep.tasks[i].name: (prep.slot_starts[s] - problem.start) / 3600.0 for i, s in slots.items()}
    return starts, violations


PLAN_OFFSETS_HOURS: Final[tuple[float, ...]] = tuple(21.0 * k for k in range(8))
"""Plan start times every 21 h after WEEK_START: the operator re-plans continuously, so a plan (and
a node turning risky) may start anywhere relative to the windows. 21 h steps cover the week evenly
and every 3 h of the day once (21 = 24 - 3), so neither the weekday nor the hour of day is favoured."""
INSTANCE_SEEDS: Final[tuple[int, ...]] = (7, 8, 9)
"""Cluster instances per size (risks, PDBs, zones); the totals sum over them so one draw of the
few at-risk nodes of a 50-node cluster does not decide the result."""
FIFO_ORDERS: Final[int] = 16
"""Lock-race orders averaged per baseline: kured's order is random, so its expected score is the
mean over orders (one order is a lucky or unlucky draw for the baseline)."""


def run(
    sizes: tuple[int, ...],
    *,
    annealing_sizes: tuple[int, ...],
    offsets: tuple[float, ...],
    seeds: tuple[int, ...] = INSTANCE_SEEDS,
) -> list[Row]:
    """One row per size and method, summed over instances and plan starts (seconds and gap: worst)."""
    rows = []
    for n in sizes:
        per_method: dict[str, list[Row]] = {}
        for seed in seeds:
            for offset in offsets:
                for row in _run_one(n, offset, annealing=n in annealing_sizes, seed=seed):
                    per_method.setdefault(row.method, []).append(row)
        for method, items in per_method.items():
            rows.append(
                Row(
                    n,
                    method,
                    max(r.seconds for r in items),
                    max(r.gap for r in items),
                    sum(r.hard_violations for r in items),
                    sum(r.scheduled for r in items),
                    sum(r.needed for r in items),
                    sum(r.expected_unplanned for r in items),
                    sum(r.disruption for r in items),
                )
            )
    return rows


def lower_bound(problem: schedule.Problem) -> float:
    """Expected unplanned failures if every needed node started at its own earliest allowed slot,
    ignoring all shared limits: no plan in the same windows can do better."""
    prep = schedule.prepare(problem, disruption_weight=0.0)
    hours = (prep.slot_starts - problem.start) / 3600.0
    start = sum(
        float(schedule.failure_probability(node, hours[allowed[:1]])[0])
        for node, allowed in zip(prep.tasks, prep.allowed, strict=True)
    )
    # A node that no window or deadline admits is scored at the end of the horizon by everyone.
    left_out = {item.node for item in prep.infeasible}
    end = np.array([problem.horizon_hours])
    return start + sum(
        float(schedule.failure_probability(node, end)[0]) for node in problem.nodes if node.name in left_out
    )


def _run_one(n: int, offset: float, *, annealing: bool, seed: int) -> list[Row]:
    problem = make_problem(n, seed=seed + n, offset_hours=offset)
    budget = max(1, int(n * BUDGET_PERCENT / 100))
    rows = []
    for method in ("CPSAT", "Annealing") if annealing else ("CPSAT",):
        result = schedule.Scheduler(solver=method, time_limit_seconds=25.0).solve(problem)
        starts = {a.node: (a.start - problem.start) / 3600.0 for a in result.assignments}
        failures, disruption, done, needed = score(problem, starts)
        rows.append(
            Row(
                n,
                f"ours-{method}",
                result.solve_seconds,
                result.gap,
                len(result.violations),
                done,
                needed,
                failures,
                disruption,
            )
        )
    for name, cap, strict in (
        ("kured-fifo", KURED_CONCURRENCY, True),
        (f"kured-k{CONCURRENCY_K}", CONCURRENCY_K, True),
        ("budget-10%", budget, False),
    ):
        runs = [fifo(problem, cap=cap, strict=strict, seed=seed * 1000 + k) for k in range(FIFO_ORDERS)]
        scored = [score(problem, starts) for starts, _ in runs]
        rows.append(
            Row(
                n,
                name,
                0.0,
                float("nan"),
                sum(v for _, v in runs),
                round(float(np.mean([s[2] for s in scored]))),
                scored[0][3],
                float(np.mean([s[0] for s in scored])),
                float(np.mean([s[1] for s in scored])),
            )
        )
    rows.append(Row(n, "bound", 0.0, float("nan"), 0, 0, score(problem, {})[3], lower_bound(problem), 0.0))
    return rows
