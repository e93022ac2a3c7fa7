"""Resource allocation: replicas and per-pod CPU/memory requests for many workloads at once.

Contract: `Allocator(...).solve(problem) -> Allocation` is pure (numpy, OR-Tools, dimod). The
problem is plain data (`AllocationProblem`: workloads with demand at the SLA quantile, nodes with
allocatable capacity, an hourly budget); no Kubernetes. An input that cannot be satisfied raises
`AllocationInfeasibleError` naming each binding constraint and its shortfall; no partial result.

Model. Each workload gets a small menu of options (replicas x coverage level, plus today's
settings): per-pod requests are the covered demand split over the replicas, rounded up to 1 m CPU
and 1 MiB. Choosing one option per workload is a multiple-choice knapsack:
* hard: budget (USD/h of requested resources), cluster CPU and memory (sum of node allocatable),
  the fairness floor (every option covers at least `fairness_floor` of the SLA demand), pod size
  (a pod must fit on some node), replica bounds;
* objective (USD/h): cost + risk_weight * value * SLA shortfall + churn_weight * value * churn,
  where value is the workload's cost at full SLA coverage, shortfall the fraction of SLA-quantile
  demand not covered and churn the mean relative change of replicas, CPU and memory from today.
Pods are then placed on nodes by first-fit decreasing; if a pod does not fit, the aggregate
capacity is derated by what was left over and the model is solved again (at most
`MAX_PACKING_ROUNDS` times). Every result passes `check_allocation`, the single checker used for
CP-SAT and annealing alike. The gap is CP-SAT's own (objective - best bound) / objective.
"""

from __future__ import annotations

import dataclasses
import itertools
import math
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Final, Literal

import numpy as np
from ortools.sat.python import cp_model

from autoloop.engines import qubo

# Public on-demand prices: AWS Fargate, Linux/x86, us-east-1 (https://aws.amazon.com/fargate/pricing/):
# $0.04048 per vCPU per hour and $0.004445 per GB of memory per hour.
PRICE_PER_VCPU_HOUR_USD: Final[float] = 0.04048
PRICE_PER_GIB_HOUR_USD: Final[float] = 0.004445
CPU_GRID_CORES: Final[float] = 0.001  # requests are rounded up to 1 millicore
MEMORY_GRID_GIB: Final[float] = 1.0 / 1024.0  # and to 1 MiB
MILLICORES_PER_CORE: Final[int] = 1000
MIB_PER_GIB: Final[int] = 1024
MICRO_USD_PER_USD: Final[int] = 1_000_000
# Coverage levels between the fairness floor and full SLA coverage offered to the solver.
COVERAGE_LEVELS: Final[int] = 5
# At most this many replica counts per workload (always including min, max and today's count).
MAX_REPLICA_OPTIONS: Final[int] = 6
# Default objective weights (dimensionless multipliers of the workload's value in USD/h). An
# uncovered fraction of SLA demand costs 4x the resources it would take to cover it, so the solver
# covers the SLA whenever the budget allows; a 100 % change of every setting costs 10 % of value.
DEFAULT_RISK_WEIGHT: Final[float] = 4.0
DEFAULT_CHURN_WEIGHT: Final[float] = 0.1
DEFAULT_FAIRNESS_FLOOR: Final[float] = 0.8
DEFAULT_TIME_LIMIT_SECONDS: Final[float] = 10.0
# CP-SAT stops once (objective - bound) / objective is below this.
DEFAULT_RELATIVE_GAP: Final[float] = 0.001
# CP-SAT needs its full portfolio (LP-based workers included) to prove small knapsacks quickly:
# with 4 workers a 10-workload case stalled at a 2 % gap for 10 s, with 8 it closed in 0.06 s.
DEFAULT_NUM_WORKERS: Final[int] = 8
PRESOLVE_INCLUSION_WORK_LIMIT: Final[int] = 0
MAX_PACKING_ROUNDS: Final[int] = 4
# Extra derating on top of the leftover after a failed placement, so the next round clears it.
PACKING_DERATE_MARGIN: Final[float] = 0.02
FEASIBILITY_TOLERANCE: Final[float] = 1e-6

SolverSetting = Literal["Auto", "CPSAT", "Annealing"]


@dataclass(frozen=True)
class WorkloadDemand:
    """One workload: demand at the SLA quantile (totals over all replicas) and today's settings."""

    name: str
    cpu_cores: float
    """Forecast CPU demand at the SLA quantile over the horizon, cores, summed over replicas."""
    memory_gib: float
    """Forecast memory demand at the SLA quantile, GiB, summed over replicas."""
    min_replicas: int = 1
    max_replicas: int = 10
    current_replicas: int | None = None
    current_cpu_cores: float | None = None
    """Today's per-pod CPU request, cores (None: new workload, no churn term)."""
    current_memory_gib: float | None = None
    min_cpu_per_pod_cores: float = 0.01
    min_memory_per_pod_gib: float = 0.0625


@dataclass(frozen=True)
class Node:
    """A node's allocatable capacity left for the managed workloads."""

    name: str
    cpu_cores: float
    memory_gib: float


@dataclass(frozen=True)
class AllocationProblem:
    workloads: tuple[WorkloadDemand, ...]
    nodes: tuple[Node, ...]
    budget_usd_per_hour: float | None = None
    """Hourly cost cap of all requests (None: no cap)."""
    sla_quantile: float = 0.95
    """The quantile the demands were forecast at (recorded; demand already reflects it)."""
    fairness_floor: float = DEFAULT_FAIRNESS_FLOOR
    """Every workload gets at least this fraction of its SLA demand, whatever the budget."""
    price_per_vcpu_hour_usd: float = PRICE_PER_VCPU_HOUR_USD
    price_per_gib_hour_usd: float = PRICE_PER_GIB_HOUR_USD


@dataclass(frozen=True)
class BindingConstraint:
    """A constraint that cannot be met: what the smallest allocation needs versus what there is."""

    name: str
    """`budget`, `cpu`, `memory`, `pod-size` (a pod fits no node) or `packing`."""
    required: float
    available: float
    unit: str
    workload: str | None = None

    @property
    def shortfall(self) -> float:
        return self.required - self.available


class AllocationInfeasibleError(ValueError):
    """No allocation satisfies the hard constraints; `binding` says which and by how much."""

    def __init__(self, binding: Sequence[BindingConstraint]) -> None:
        self.binding = tuple(binding)
        parts = [
            f"{b.name}{'/' + b.workload if b.workload else ''} needs {b.required:.4g} {b.unit}, "
            f"has {b.available:.4g} (short by {b.shortfall:.4g})"
            for b in self.binding
        ]
        super().__init__("infeasible allocation: " + "; ".join(parts))


@dataclass(frozen=True)
class WorkloadAllocation:
    name: str
    replicas: int
    cpu_cores: float
    """Per-pod CPU request, cores."""
    memory_gib: float
    """Per-pod memory request, GiB."""
    cost_usd_per_hour: float
    coverage: float
    """Allocated / SLA-quantile demand (the smaller of CPU and memory); >= 1 meets the SLA."""
    churn: float
    placement: tuple[tuple[str, int], ...] = ()
    """(node name, pod count) pairs from first-fit-decreasing placement."""


@dataclass(frozen=True)
class Allocation:
    workloads: tuple[WorkloadAllocation, ...]
    objective: float
    """Weighted objective, USD/h (cost + risk + churn terms)."""
    cost_usd_per_hour: float
    risk_usd_per_hour: float
    churn_usd_per_hour: float
    bound: float | None
    """CP-SAT's lower bound on the objective (None when CP-SAT did not run)."""
    gap: float | None
    """(objective - bound) / objective (None when CP-SAT did not run)."""
    solver: str
    """Which solver produced the final allocation: `CPSAT` or `Annealing`."""
    mode: str
    """What ran: `CPSAT`, `Annealing` or `Portfolio` (both)."""
    solve_seconds: float
    annealing_contribution: float
    """Share of the improvement over the greedy start that the annealing sample achieved (0..1)."""
    packing_rounds: int
    annealing_objective: float | None = None
    cpsat_objective: float | None = None
    details: dict[str, float] = field(default_factory=dict)


# --- option menus -------------------------------------------------------------------------------


@dataclass(frozen=True)
class _Options:
    """Flattened option menus: option j belongs to workload `group[j]`."""

    group: np.ndarray
    replicas: np.ndarray
    cpu: np.ndarray  # per pod, cores
    mem: np.ndarray  # per pod, GiB
    cost: np.ndarray  # USD/h total
    risk: np.ndarray  # USD/h
    churn_usd: np.ndarray  # USD/h
    coverage: np.ndarray
    churn: np.ndarray

    @property
    def objective(self) -> np.ndarray:
        return self.cost + self.risk + self.churn_usd

    @property
    def use(self) -> np.ndarray:
        """(n, 3): budget USD/h, CPU cores, memory GiB."""
        return np.stack([self.cost, self.replicas * self.cpu, self.replicas * self.mem], axis=1)


def _replica_options(w: WorkloadDemand) -> list[int]:
    lo, hi = w.min_replicas, max(w.min_replicas, w.max_replicas)
    if hi - lo + 1 <= MAX_REPLICA_OPTIONS:
        opts = set(range(lo, hi + 1))
    else:
        opts = {round(x) for x in np.geomspace(lo, hi, MAX_REPLICA_OPTIONS - 1)} | {lo, hi}
    if w.current_replicas is not None:
        opts.add(min(max(w.current_replicas, lo), hi))
    return sorted(opts)


def _ceil_grid(x: np.ndarray, grid: float) -> np.ndarray:
    return np.ceil(np.round(x / grid, 6)) * grid


def _coverage(w: WorkloadDemand, r: np.ndarray, c: np.ndarray, m: np.ndarray) -> np.ndarray:
    cov_c = r * c / w.cpu_cores if w.cpu_cores > 0 else np.full(len(r), np.inf)
    cov_m = r * m / w.memory_gib if w.memory_gib > 0 else np.full(len(r), np.inf)
    return np.minimum(np.minimum(cov_c, cov_m), 1e6)


def _churn(w: WorkloadDemand, r: np.ndarray, c: np.ndarray, m: np.ndarray) -> np.ndarray:
    parts = []
    for now, new in ((w.current_replicas, r), (w.current_cpu_cores, c), (w.current_memory_gib, m)):
        if now is not None and now > 0:
            parts.append(np.abs(new - now) / now)
    return np.mean(parts, axis=0) if parts else np.zeros(len(r))


def _build_options(
    problem: AllocationProblem, risk_weight: float, churn_weight: float
) -> tuple[_Options, list[BindingConstraint]]:
    """Every workload's menu; also the workloads whose floor option fits no node."""
    max_c = max(n.cpu_cores for n in problem.nodes)
    node_c = np.array([n.cpu_cores for n in problem.nodes])
    node_m = np.array([n.memory_gib for n in problem.nodes])
    levels = np.linspace(problem.fairness_floor, 1.0, COVERAGE_LEVELS)
    p_c, p_m = problem.price_per_vcpu_hour_usd, problem.price_per_gib_hour_usd
    cols: dict[str, list[np.ndarray]] = {k: [] for k in ("g", "r", "c", "m", "cov", "churn", "risk", "chu")}
    too_big: list[BindingConstraint] = []
    for i, w in enumerate(problem.workloads):
        reps = np.array(_replica_options(w), dtype=float)
        r = np.repeat(reps, len(levels))
        f = np.tile(levels, len(reps))
        c = np.maximum(w.min_cpu_per_pod_cores, _ceil_grid(f * w.cpu_cores / r, CPU_GRID_CORES))
        m = np.maximum(w.min_memory_per_pod_gib, _ceil_grid(f * w.memory_gib / r, MEMORY_GRID_GIB))
        if w.current_replicas and w.current_cpu_cores and w.current_memory_gib:
            r = np.append(r, w.current_replicas)
            c = np.append(c, w.current_cpu_cores)
            m = np.append(m, w.current_memory_gib)
        ok_bounds = (
            (r >= w.min_replicas)
            & (r <= w.max_replicas)
            & (c >= w.min_cpu_per_pod_cores - FEASIBILITY_TOLERANCE)
            & (m >= w.min_memory_per_pod_gib - FEASIBILITY_TOLERANCE)
        )
        fits = ((c[:, None] <= node_c[None, :] + 1e-9) & (m[:, None] <= node_m[None, :] + 1e-9)).any(axis=1)
        cov = _coverage(w, r, c, m)
        ok = ok_bounds & fits & (cov >= problem.fairness_floor - FEASIBILITY_TOLERANCE)
        if not ok.any():
            too_big.append(
                BindingConstraint(
                    "pod-size",
                    required=float(np.min(c[ok_bounds])) if ok_bounds.any() else w.cpu_cores,
                    available=max_c,
                    unit="cores per pod (largest node)",
                    workload=w.name,
                )
            )
            continue
        r, c, m, cov = r[ok], c[ok], m[ok], cov[ok]
        key = np.unique(np.stack([r, c, m], axis=1), axis=0, return_index=True)[1]
        r, c, m, cov = r[key], c[key], m[key], cov[key]
        value = w.cpu_cores * p_c + w.memory_gib * p_m
        churn = _churn(w, r, c, m)
        cols["g"].append(np.full(len(r), i))
        cols["r"].append(r)
        cols["c"].append(c)
        cols["m"].append(m)
        cols["cov"].append(cov)
        cols["churn"].append(churn)
        cols["risk"].append(risk_weight * value * np.maximum(0.0, 1.0 - cov))
        cols["chu"].append(churn_weight * value * churn)
    if too_big:
        return _empty_options(), too_big
    cat = {k: np.concatenate(v) for k, v in cols.items()}
    cost = cat["r"] * (cat["c"] * p_c + cat["m"] * p_m)
    keep = _undominated(
        cat["g"],
        np.stack([cost + cat["risk"] + cat["chu"], cost, cat["r"] * cat["c"], cat["r"] * cat["m"]], axis=1),
    )
    cat = {k: v[keep] for k, v in cat.items()}
    cost = cost[keep]
    options = _Options(
        group=cat["g"].astype(int),
        replicas=cat["r"],
        cpu=cat["c"],
        mem=cat["m"],
        cost=cost,
        risk=cat["risk"],
        churn_usd=cat["chu"],
        coverage=cat["cov"],
        churn=cat["churn"],
    )
    return options, []


def _undominated(group: np.ndarray, score: np.ndarray) -> np.ndarray:
    """Mask of options that no other option of the same workload beats or ties on every column.

    A dominated option (no better objective, no smaller use of any resource) is never needed by
    an optimal solution, so dropping it shrinks both the CP-SAT model and the QUBO for free.
    """
    keep = np.ones(len(group), dtype=bool)
    bounds = np.flatnonzero(np.diff(group, prepend=-1, append=group.max() + 1))
    for a, b in itertools.pairwise(bounds):
        s = score[a:b]
        le = (s[:, None, :] <= s[None, :, :] + 1e-12).all(axis=2)  # le[k, k']: k no worse than k'
        lt = (s[:, None, :] < s[None, :, :] - 1e-12).any(axis=2)
        # k' is dominated if some k is no worse everywhere and better somewhere, or identical and earlier.
        dominated = (le & lt).any(axis=0) | np.triu(le & le.T, k=1).any(axis=0)
        keep[a:b] = ~dominated
    return keep


def _empty_options() -> _Options:
    z = np.zeros(0)
    return _Options(np.zeros(0, dtype=int), z, z, z, z, z, z, z, z)


def _capacities(problem: AllocationProblem) -> np.ndarray:
    budget = problem.budget_usd_per_hour if problem.budget_usd_per_hour is not None else math.inf
    return np.array(
        [budget, sum(n.cpu_cores for n in problem.nodes), sum(n.memory_gib for n in problem.nodes)]
    )


_RESOURCES: Final[tuple[tuple[str, str], ...]] = (
    ("budget", "USD/h"),
    ("cpu", "cores"),
    ("memory", "GiB"),
)


def _aggregate_infeasibility(
    options: _Options, capacity: np.ndarray, n_groups: int
) -> list[BindingConstraint]:
    """Each resource alone: the sum of every workload's smallest option against the capacity."""
    out = []
    use = options.use
    for r, (name, unit) in enumerate(_RESOURCES):
        gmin = np.full(n_groups, np.inf)
        np.minimum.at(gmin, options.group, use[:, r])
        need = float(gmin.sum())
        if need > capacity[r] * (1 + FEASIBILITY_TOLERANCE):
            out.append(BindingConstraint(name, required=need, available=float(capacity[r]), unit=unit))
    return out


# --- placement and checking ---------------------------------------------------------------------


def place_pods(
    replicas: np.ndarray, cpu: np.ndarray, mem: np.ndarray, nodes: Sequence[Node]
) -> tuple[list[list[tuple[int, int]]], float, float]:
    """First-fit decreasing of identical pods per workload onto nodes.

    Workloads are taken largest pod first (size = the larger of its CPU and memory share of the
    largest node); each workload's pods go to the first nodes with room, as many per node as fit.
    Returns per-workload (node index, count) lists and the CPU and memory left unplaced.
    """
    rem_c = np.array([n.cpu_cores for n in nodes], dtype=float)
    rem_m = np.array([n.memory_gib for n in nodes], dtype=float)
    size = np.maximum(cpu / rem_c.max(), mem / rem_m.max())
    placement: list[list[tuple[int, int]]] = [[] for _ in replicas]
    left_c = left_m = 0.0
    for i in np.argsort(-size, kind="stable"):
        need = int(replicas[i])
        with np.errstate(divide="ignore", invalid="ignore"):
            fit_c = np.floor((rem_c + 1e-9) / cpu[i]) if cpu[i] > 0 else np.full(len(rem_c), np.inf)
            fit_m = np.floor((rem_m + 1e-9) / mem[i]) if mem[i] > 0 else np.full(len(rem_m), np.inf)
        fit = np.minimum(np.minimum(fit_c, fit_m), need)
        cum = np.cumsum(fit)
        take = np.clip(need - (cum - fit), 0, fit).astype(int)
        for k in np.flatnonzero(take):
            placement[i].append((int(k), int(take[k])))
        rem_c -= take * cpu[i]
        rem_m -= take * mem[i]
        short = need - int(take.sum())
        left_c += short * cpu[i]
        left_m += short * mem[i]
    return placement, left_c, left_m


def check_allocation(problem: AllocationProblem, allocation: Allocation) -> list[str]:
    """Every hard constraint, checked from the allocation alone; an empty list means feasible."""
    out: list[str] = []
    by_name = {w.name: w for w in problem.workloads}
    if sorted(a.name for a in allocation.workloads) != sorted(by_name):
        out.append("not exactly one allocation per workload")
        return out
    node_idx = {n.name: k for k, n in enumerate(problem.nodes)}
    used_c = np.zeros(len(problem.nodes))
    used_m = np.zeros(len(problem.nodes))
    total_cost = 0.0
    p_c, p_m = problem.price_per_vcpu_hour_usd, problem.price_per_gib_hour_usd
    for a in allocation.workloads:
        w = by_name[a.name]
        if not w.min_replicas <= a.replicas <= w.max_replicas:
            out.append(f"{a.name}: replicas {a.replicas} outside [{w.min_replicas}, {w.max_replicas}]")
        if a.cpu_cores < w.min_cpu_per_pod_cores - FEASIBILITY_TOLERANCE:
            out.append(f"{a.name}: cpu {a.cpu_cores} below the per-pod minimum")
        if a.memory_gib < w.min_memory_per_pod_gib - FEASIBILITY_TOLERANCE:
            out.append(f"{a.name}: memory {a.memory_gib} below the per-pod minimum")
        cov = float(
            _coverage(w, np.array([a.replicas]), np.array([a.cpu_cores]), np.array([a.memory_gib]))[0]
        )
        if cov < problem.fairness_floor - 1e-6:
            out.append(f"{a.name}: coverage {cov:.3f} below the fairness floor {problem.fairness_floor}")
        placed = 0
        for node, count in a.placement:
            if node not in node_idx or count <= 0:
                out.append(f"{a.name}: bad placement entry ({node}, {count})")
                continue
            used_c[node_idx[node]] += count * a.cpu_cores
            used_m[node_idx[node]] += count * a.memory_gib
            placed += count
        if placed != a.replicas:
            out.append(f"{a.name}: {placed} of {a.replicas} pods placed")
        total_cost += a.replicas * (a.cpu_cores * p_c + a.memory_gib * p_m)
    for k, n in enumerate(problem.nodes):
        if used_c[k] > n.cpu_cores + 1e-6 or used_m[k] > n.memory_gib + 1e-6:
            out.append(f"node {n.name} over capacity: {used_c[k]:.3f} cores, {used_m[k]:.3f} GiB")
    budget = problem.budget_usd_per_hour
    if budget is not None and total_cost > budget * (1 + FEASIBILITY_TOLERANCE) + 1e-9:
        out.append(f"cost {total_cost:.4f} USD/h over the budget {budget:.4f}")
    return out


# --- repair and local search (used for annealing samples and the greedy start) ---------------


def _violation(total: np.ndarray, capacity: np.ndarray) -> np.ndarray:
    with np.errstate(invalid="ignore"):
        v = np.maximum(0.0, total - capacity) / np.where(np.isfinite(capacity), capacity, 1.0)
    return np.where(np.isfinite(capacity), v, 0.0)


def repair(
    choice: np.ndarray, options: _Options, capacity: np.ndarray, *, max_moves: int = 100_000
) -> np.ndarray | None:
    """Make a choice (one option index per workload) feasible, then improve it by 1-opt moves.

    Repair: while a capacity is exceeded, switch the one workload whose move removes the most
    normalised overrun per unit of objective added. Improve: apply the best objective-decreasing
    switch that keeps every capacity, until none is left. Returns None if the overrun cannot be
    removed.
    """
    choice = choice.copy()
    obj, use, g = options.objective, options.use, options.group
    total = use[choice].sum(axis=0)
    for _ in range(max_moves):
        v_now = _violation(total, capacity).sum()
        if v_now <= 0:
            break
        delta = use - use[choice[g]]
        new_v = _violation(total[None, :] + delta, capacity[None, :]).sum(axis=1)
        gain = v_now - new_v
        d_obj = obj - obj[choice[g]]
        score = np.where(gain > 1e-12, gain / (np.maximum(d_obj, 0.0) + 1e-9), -np.inf)
        j = int(np.argmax(score))
        if not np.isfinite(score[j]):
            return None
        total += use[j] - use[choice[g[j]]]
        choice[g[j]] = j
    else:
        return None
    slack_ok = np.isfinite(capacity)
    for _ in range(max_moves):
        delta = use - use[choice[g]]
        feasible = ((total[None, :] + delta)[:, slack_ok] <= capacity[slack_ok][None, :] * (1 + 1e-12)).all(
            axis=1
        )
        d_obj = np.where(feasible, obj - obj[choice[g]], np.inf)
        j = int(np.argmin(d_obj))
        if d_obj[j] >= -1e-12:
            break
        total += use[j] - use[choice[g[j]]]
        choice[g[j]] = j
    return choice


def _greedy_choice(options: _Options, n_groups: int) -> np.ndarray:
    """Each workload's best option on its own (ignoring shared capacities)."""
    best = np.full(n_groups, -1)
    best_obj = np.full(n_groups, np.inf)
    obj = options.objective
    order = np.lexsort((obj, options.group))
    first = np.ones(len(order), dtype=bool)
    first[1:] = options.group[order][1:] != options.group[order][:-1]
    best[options.group[order][first]] = order[first]
    best_obj[options.group[order][first]] = obj[order][first]
    return best


# --- solvers -----------------------------------------------------------------------------------


@dataclass(frozen=True)
class _Solved:
    choice: np.ndarray
    objective: float
    bound: float | None
    seconds: float
    status: str


def _solve_cpsat(
    options: _Options,
    capacity: np.ndarray,
    n_groups: int,
    *,
    time_limit: float,
    relative_gap: float,
    num_workers: int,
    random_state: int,
    hint: np.ndarray | None,
) -> _Solved:
    """Multiple-choice knapsack in CP-SAT with integer units: micro-USD/h, millicores, MiB."""
    started = time.perf_counter()
    model = cp_model.CpModel()
    n = len(options.group)
    x = [model.new_bool_var(f"x{j}") for j in range(n)]
    order = np.argsort(options.group, kind="stable")
    bounds = np.searchsorted(options.group[order], np.arange(n_groups + 1))
    for gi in range(n_groups):
        model.add_exactly_one([x[j] for j in order[bounds[gi] : bounds[gi + 1]]])
    scales = (MICRO_USD_PER_USD, MILLICORES_PER_CORE, MIB_PER_GIB)
    use = options.use
    gmax = np.zeros((n_groups, use.shape[1]))
    np.maximum.at(gmax, options.group, use)
    for r, s in enumerate(scales):
        # A capacity that holds every workload's largest option at once can never bind.
        if not np.isfinite(capacity[r]) or gmax[:, r].sum() <= capacity[r]:
            continue
        # Round uses up and capacity down so integer feasibility implies real feasibility.
        coef = np.ceil(np.round(use[:, r] * s, 6)).astype(np.int64)
        model.add(cp_model.LinearExpr.WeightedSum(x, coef.tolist()) <= math.floor(capacity[r] * s + 1e-6))
    obj = np.round(options.objective * MICRO_USD_PER_USD).astype(np.int64)
    model.minimize(cp_model.LinearExpr.WeightedSum(x, obj.tolist()))
    if hint is not None:
        chosen = set(hint.tolist())
        for j in range(n):
            model.add_hint(x[j], j in chosen)
    solver = cp_model.CpSolver()
    solver.parameters.max_time_in_seconds = max(0.05, time_limit)
    solver.parameters.relative_gap_limit = relative_gap
    solver.parameters.num_workers = num_workers
    solver.parameters.random_seed = random_state
    # The exactly-one groups are all contained in each capacity row; CP-SAT's inclusion detection
    # spent 1.8 s of a 5 s solve on that at 1,000 workloads and found nothing useful.
    solver.parameters.presolve_inclusion_work_limit = PRESOLVE_INCLUSION_WORK_LIMIT
    status = solver.solve(model)
    seconds = time.perf_counter() - started
    name = solver.status_name(status)
    if status not in (cp_model.OPTIMAL, cp_model.FEASIBLE):
        return _Solved(np.zeros(0, dtype=int), math.inf, None, seconds, name)
    values = np.array([solver.boolean_value(v) for v in x])
    choice = np.zeros(n_groups, dtype=int)
    choice[options.group[values]] = np.flatnonzero(values)
    return _Solved(
        choice=choice,
        objective=float(options.objective[choice].sum()),
        bound=solver.best_objective_bound / MICRO_USD_PER_USD,
        seconds=seconds,
        status=name,
    )


def _solve_annealing(
    options: _Options,
    capacity: np.ndarray,
    n_groups: int,
    *,
    num_reads: int,
    num_sweeps: int,
    time_limit: float,
    random_state: int,
) -> _Solved | None:
    """QUBO of the option choice, sampled by annealing; every sample repaired, best kept."""
    started = time.perf_counter()
    model = qubo.build_choice_qubo(options.objective, options.group, options.use, capacity)
    sampleset = qubo.sample_bqm(
        model.bqm,
        num_reads=num_reads,
        num_sweeps=num_sweeps,
        time_limit_seconds=time_limit,
        random_state=random_state,
    )
    opt_of_var = np.flatnonzero(model.option_variable >= 0)
    var_order = list(sampleset.variables)
    cols = np.array([var_order.index(v) for v in range(model.num_options)])
    best: np.ndarray | None = None
    best_obj = math.inf
    obj = options.objective
    for row in sampleset.record.sample:
        on = opt_of_var[row[cols] == 1]
        choice = np.full(n_groups, -1)
        # Several options on in one group: keep the cheapest; none on: the group's best option.
        for j in on[np.argsort(-obj[on])]:
            choice[options.group[j]] = j
        missing = choice < 0
        if missing.any():
            choice[missing] = _greedy_choice(options, n_groups)[missing]
        fixed = repair(choice, options, capacity)
        if fixed is not None and obj[fixed].sum() < best_obj:
            best, best_obj = fixed, float(obj[fixed].sum())
    if best is None:
        return None
    return _Solved(best, best_obj, None, time.perf_counter() - started, "SAMPLED")


@dataclass(frozen=True)
class _Outcome:
    """One solve round: the winning choice, who won, and each solver's own result."""

    choice: np.ndarray
    won: str
    cpsat: _Solved | None
    anneal: _Solved | None


class Allocator:
    """Solve an `AllocationProblem` with CP-SAT, annealing or both (`solver="Auto"`).

    Parameters are stored as given; work happens in `solve`. `random_state` seeds CP-SAT and the
    sampler so results repeat.
    """

    def __init__(
        self,
        *,
        solver: SolverSetting = "Auto",
        time_limit_seconds: float = DEFAULT_TIME_LIMIT_SECONDS,
        relative_gap: float = DEFAULT_RELATIVE_GAP,
        risk_weight: float = DEFAULT_RISK_WEIGHT,
        churn_weight: float = DEFAULT_CHURN_WEIGHT,
        num_reads: int = qubo.DEFAULT_NUM_READS,
        num_sweeps: int = qubo.DEFAULT_NUM_SWEEPS,
        num_workers: int = DEFAULT_NUM_WORKERS,
        random_state: int = 0,
    ) -> None:
        self.solver = solver
        self.time_limit_seconds = time_limit_seconds
        self.relative_gap = relative_gap
        self.risk_weight = risk_weight
        self.churn_weight = churn_weight
        self.num_reads = num_reads
        self.num_sweeps = num_sweeps
        self.num_workers = num_workers
        self.random_state = random_state

    def solve(self, problem: AllocationProblem) -> Allocation:
        """Allocate every workload; raises `AllocationInfeasibleError` when the input cannot be met."""
        started = time.perf_counter()
        if not problem.workloads:
            raise ValueError("no workloads")
        if not problem.nodes:
            raise AllocationInfeasibleError([BindingConstraint("cpu", 1.0, 0.0, "nodes")])
        options, too_big = _build_options(problem, self.risk_weight, self.churn_weight)
        if too_big:
            raise AllocationInfeasibleError(too_big)
        n_groups = len(problem.workloads)
        capacity = _capacities(problem)
        binding = _aggregate_infeasibility(options, capacity, n_groups)
        if binding:
            raise AllocationInfeasibleError(binding)
        mode = self._mode(options, capacity)
        greedy = repair(_greedy_choice(options, n_groups), options, capacity)
        derated = capacity.copy()
        rounds = 0
        while rounds < MAX_PACKING_ROUNDS:
            rounds += 1
            remaining = self.time_limit_seconds - (time.perf_counter() - started)
            result = self._solve_once(options, derated, n_groups, mode, remaining, greedy)
            choice = result.choice
            placement, left_c, left_m = place_pods(
                options.replicas[choice], options.cpu[choice], options.mem[choice], problem.nodes
            )
            if left_c <= 0 and left_m <= 0:
                break
            derated = (
                derated
                - np.array([0.0, left_c, left_m])
                - PACKING_DERATE_MARGIN * capacity * (np.array([0.0, left_c > 0, left_m > 0]))
            )
            if _aggregate_infeasibility(options, derated, n_groups):
                break
        if left_c > 0 or left_m > 0:
            raise AllocationInfeasibleError(
                [
                    BindingConstraint("packing", required=left_c, available=0.0, unit="cores unplaced"),
                    BindingConstraint("packing", required=left_m, available=0.0, unit="GiB unplaced"),
                ]
            )
        allocation = self._allocation(problem, options, choice, placement, result, mode, rounds, greedy)
        return dataclasses.replace(allocation, solve_seconds=time.perf_counter() - started)

    def _mode(self, options: _Options, capacity: np.ndarray) -> str:
        if self.solver != "Auto":
            return self.solver
        gmax = np.zeros((len(capacity), int(options.group.max()) + 1))
        for r in range(len(capacity)):
            np.maximum.at(gmax[r], options.group, options.use[:, r])
        n_binding = int((gmax.sum(axis=1) > capacity).sum())
        variables, interactions = qubo.choice_qubo_size(options.group, n_binding > 0, num_binding=n_binding)
        return qubo.choose_solver(
            variables, interactions, time_limit_seconds=self.time_limit_seconds, num_sweeps=self.num_sweeps
        )

    def _solve_once(
        self,
        options: _Options,
        capacity: np.ndarray,
        n_groups: int,
        mode: str,
        time_left: float,
        greedy: np.ndarray | None,
    ) -> _Outcome:
        anneal: _Solved | None = None
        cpsat: _Solved | None = None
        if mode in ("Annealing", "Portfolio"):
            share = qubo.PORTFOLIO_ANNEALING_SHARE if mode == "Portfolio" else 1.0
            anneal = _solve_annealing(
                options,
                capacity,
                n_groups,
                num_reads=self.num_reads,
                num_sweeps=self.num_sweeps,
                time_limit=share * time_left,
                random_state=self.random_state,
            )
        if mode in ("CPSAT", "Portfolio") or anneal is None:
            hint = anneal.choice if anneal is not None else greedy
            cpsat = _solve_cpsat(
                options,
                capacity,
                n_groups,
                time_limit=time_left if anneal is None else time_left - anneal.seconds,
                relative_gap=self.relative_gap,
                num_workers=self.num_workers,
                random_state=self.random_state,
                hint=hint,
            )
            if not np.isfinite(cpsat.objective) and anneal is None:
                binding = [
                    BindingConstraint(name, float(options.use[:, r].min()), float(capacity[r]), unit)
                    for r, (name, unit) in enumerate(_RESOURCES)
                    if np.isfinite(capacity[r])
                ]
                raise AllocationInfeasibleError(binding)
        candidates = [s for s in (cpsat, anneal) if s is not None and np.isfinite(s.objective)]
        # Ties go to annealing: its sample reached the objective first (CP-SAT was hinted with it).
        won = min(candidates, key=lambda s: (s.objective, s is cpsat))
        return _Outcome(won.choice, "CPSAT" if won is cpsat else "Annealing", cpsat, anneal)

    def _allocation(
        self,
        problem: AllocationProblem,
        options: _Options,
        choice: np.ndarray,
        placement: list[list[tuple[int, int]]],
        result: _Outcome,
        mode: str,
        rounds: int,
        greedy: np.ndarray | None,
    ) -> Allocation:
        cpsat, anneal = result.cpsat, result.anneal
        objective = float(options.objective[choice].sum())
        bound = cpsat.bound if cpsat is not None else None
        gap = None
        if bound is not None:
            gap = max(0.0, (objective - bound) / objective) if objective > 0 else 0.0
        contribution = 0.0
        if anneal is not None and greedy is not None:
            start = float(options.objective[greedy].sum())
            if start - objective > 1e-12:
                contribution = float(np.clip((start - anneal.objective) / (start - objective), 0.0, 1.0))
        items = []
        for i, w in enumerate(problem.workloads):
            j = int(choice[i])
            items.append(
                WorkloadAllocation(
                    name=w.name,
                    replicas=int(options.replicas[j]),
                    # Options sit on the 1 m / 1 MiB grid; rounding drops float noise (0.95000000000000001).
                    cpu_cores=round(float(options.cpu[j]), 9),
                    memory_gib=round(float(options.mem[j]), 9),
                    cost_usd_per_hour=float(options.cost[j]),
                    coverage=float(options.coverage[j]),
                    churn=float(options.churn[j]),
                    placement=tuple((problem.nodes[k].name, c) for k, c in placement[i]),
                )
            )
        return Allocation(
            workloads=tuple(items),
            objective=objective,
            cost_usd_per_hour=float(options.cost[choice].sum()),
            risk_usd_per_hour=float(options.risk[choice].sum()),
            churn_usd_per_hour=float(options.churn_usd[choice].sum()),
            bound=bound,
            gap=gap,
            solver=result.won,
            mode=mode,
            solve_seconds=0.0,
            annealing_contribution=contribution,
            packing_rounds=rounds,
            annealing_objective=anneal.objective if anneal is not None else None,
            cpsat_objective=cpsat.objective if cpsat is not None else None,
            details={"options": float(len(options.group))},
        )
