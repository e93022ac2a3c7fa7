"""Maintenance scheduling: place nodes that need maintenance into windows, within disruption limits.

Contract: `Scheduler(solver=...).solve(problem)` takes nodes (risk of failing within a horizon,
optional hours to predicted failure, labels, pods per PodDisruptionBudget), recurring windows
(days, HH:MM start/end, IANA time zone), limits (maxConcurrent as a count or percent, per-label-group
limits, minimum spacing between starts, each PDB's allowed disruptions, optionally a label whose
groups are maintained together: `Limits.together`, see `schedule_together`) and returns a
`ScheduleResult`: a slot per node, the expected unplanned failures, solver, objective, gap and solve
time. Nodes that cannot be placed come back as typed `Infeasibility` entries naming the node and the
constraint; nothing raises for an infeasible plan. `check()` is the one constraint checker every
solver's output (and the benchmark baselines') passes through.

Model: time is cut into `slot_minutes` slots over `horizon_hours`. A node that fails before its
maintenance starts is an unplanned failure; with risk p over H hours and a constant hazard, the
probability of failing before hour h is 1 - (1 - p)^(h / H), and 1 once past the predicted failure
(`hours_to_failure`, a hard deadline for finishing maintenance). Objective = expected unplanned
failures + disruption_weight * planned disruption + a large penalty per node left unscheduled.
CP-SAT uses optional interval variables with cumulative constraints (plus time-indexed linear
copies for a tight bound); the annealing path builds a QUBO over the few cheapest slots per node
and samples it with dwave-samplers' simulated annealing, then repairs the sample greedily so hard
constraints hold. `Auto` picks CP-SAT unless the (node, slot) grid is very large.
"""

from __future__ import annotations

import dataclasses
import math
import time
from collections.abc import Hashable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Final, Literal
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

import dimod
import numpy as np
from dwave.samplers import SimulatedAnnealingSampler
from ortools.sat.python import cp_model

from autoloop.engines import schedule_together as together

DAYS: Final[tuple[str, ...]] = ("Mon", "Tue", "Wed", "Thu", "Fri", "Sat", "Sun")
UNSCHEDULED_PENALTY: Final[float] = 10.0
"""Objective units (expected failures) charged per needed node left out: above any slot's cost."""
EARLINESS_WEIGHT: Final[float] = 1e-4
"""Tie-breaker per horizon fraction: among equal plans, maintain sooner."""
OBJECTIVE_SCALE: Final[int] = 100_000
"""CP-SAT works in integers: 1e-5 expected failures per unit."""
AUTO_CPSAT_MAX_PAIRS: Final[int] = 250_000
"""Auto uses CP-SAT up to this many (node, allowed start) pairs, annealing beyond."""
QUBO_SCHEDULE_REWARD: Final[float] = 0.5
"""QUBO reward for scheduling a node at all, on top of its worst candidate's cost."""
PENALTY_FACTOR: Final[float] = 1.0
"""QUBO constraint weight, in multiples of the largest reward a violation could buy."""
ANNEAL_RESOLUTION: Final[float] = 0.02
"""Smallest energy difference (expected failures) the annealing schedule still resolves at its end."""
DECOMPOSE_MIN_PAIRS: Final[int] = 10_000
"""Above this many (node, start) pairs, solve the at-risk nodes exactly and fill in the others."""

Constraint = Literal["window", "deadline", "pdb", "capacity", "input"]
SolverName = Literal["Auto", "CPSAT", "Annealing"]


@dataclass(frozen=True)
class Window:
    """A recurring window: on `days`, from `start` to `end` (HH:MM, end <= start runs past midnight)."""

    start: str
    end: str
    days: tuple[str, ...] = DAYS
    time_zone: str = "UTC"


@dataclass(frozen=True)
class MaintenanceNode:
    name: str
    risk: float = 0.0
    """Probability of failing within risk_horizon_hours (the predictor's output)."""
    risk_horizon_hours: float = 24.0
    hours_to_failure: float | None = None
    """Predicted failure, hours after the plan start: maintenance must end before it."""
    requested: bool = False
    """Maintain regardless of risk (e.g. a pending kernel update)."""
    duration_minutes: float = 60.0
    """Cordon + drain + action + uncordon."""
    labels: Mapping[str, str] = field(default_factory=dict)
    pdb_pods: Mapping[str, int] = field(default_factory=dict)
    """PodDisruptionBudget name -> pods it covers on this node."""
    disruption_cost: float = 1.0
    """Cost of a planned drain (e.g. pods evicted), weighed by Scheduler.disruption_weight."""


@dataclass(frozen=True)
class Limits:
    max_concurrent: int | str = 1
    """Nodes in maintenance at once, a count or a percent of all nodes like '10%' (at least 1)."""
    group_limits: Mapping[str, int | str] = field(default_factory=dict)
    """Label key -> at most this many (or percent of the group) per label value at once."""
    min_spacing_minutes: float = 0.0
    """Minimum time between two nodes' starts."""
    pdb_allowed: Mapping[str, int] = field(default_factory=dict)
    """PDB name -> allowed disruptions (status.disruptionsAllowed); missing PDBs do not limit."""
    together: str | None = None
    """Label key: the needed nodes sharing a value of it are maintained as one group, in one window
    and in a turn no other group's nodes overlap (see engines.schedule_together); a group no window
    holds within the limits is split over as few windows as possible and reported in `split`."""


@dataclass(frozen=True)
class Problem:
    nodes: Sequence[MaintenanceNode]
    windows: Sequence[Window]
    limits: Limits = field(default_factory=Limits)
    start: float = 0.0
    """Plan start, epoch seconds (rounded by the caller to a slot boundary if wanted)."""
    horizon_hours: float = 168.0
    slot_minutes: float = 60.0
    risk_threshold: float = 0.3
    """Nodes with risk >= this (or requested) need maintenance; others are left alone."""
    total_nodes: int | None = None
    """Cluster size for percent limits (default: len(nodes))."""


@dataclass(frozen=True)
class Assignment:
    node: str
    slot: int
    start: float
    """Epoch seconds."""
    end: float
    expected_failures: float
    """Probability the node fails before this start (its unplanned-failure contribution)."""


@dataclass(frozen=True)
class Infeasibility:
    node: str
    constraint: Constraint
    message: str


@dataclass(frozen=True)
class Violation:
    constraint: str
    message: str


@dataclass(frozen=True)
class ScheduleResult:
    assignments: tuple[Assignment, ...]
    infeasible: tuple[Infeasibility, ...]
    solver: str
    """The solver that produced the plan (CPSAT or Annealing)."""
    solver_reason: str
    objective: float
    bound: float
    gap: float
    """(objective - bound) / objective; the bound is CP-SAT's, or a relaxation for annealing."""
    solve_seconds: float
    expected_unplanned_failures: float
    disruption_cost: float
    violations: tuple[Violation, ...]
    status: str
    split: tuple[str, ...] = ()
    """Groups of `Limits.together` spread over several windows, one line each (empty when whole)."""


# -- problem preparation ------------------------------------------------------------------------------


@dataclass(frozen=True)
class Prepared:
    """Slots, the nodes that need maintenance, and each one's allowed starts and costs."""

    problem: Problem
    slot_starts: np.ndarray
    tasks: tuple[MaintenanceNode, ...]
    durations: np.ndarray
    """Slots occupied per task."""
    allowed: tuple[np.ndarray, ...]
    """Allowed start slots per task."""
    costs: tuple[np.ndarray, ...]
    """Objective cost per allowed start."""
    unscheduled_cost: np.ndarray
    global_cap: int
    groups: tuple[tuple[str, np.ndarray, int], ...]
    """(name, task indices, capacity) for each label group with a limit."""
    pdbs: tuple[tuple[str, np.ndarray, np.ndarray, int], ...]
    """(pdb, task indices, demands, allowed disruptions)."""
    spacing_slots: int
    infeasible: tuple[Infeasibility, ...]
    together: together.Groups | None = None
    """Groups kept in one turn (Limits.together), or None."""


def _limit(value: int | str, total: int) -> int:
    """A count, or a percent of total rounded down; never below 1."""
    if isinstance(value, str) and value.strip().endswith("%"):
        return max(1, math.floor(float(value.strip()[:-1]) * total / 100.0))
    return max(1, int(value))


def window_occurrences(windows: Sequence[Window], start: float, end: float) -> list[tuple[float, float]]:
    """Concrete [from, to) epoch intervals of the windows between start and end, merged."""
    out: list[tuple[float, float]] = []
    for w in windows:
        tz = ZoneInfo(w.time_zone)
        sh, sm = (int(x) for x in w.start.split(":"))
        eh, em = (int(x) for x in w.end.split(":"))
        days = {DAYS.index(d) if isinstance(d, str) else int(d) for d in w.days}
        first = datetime.fromtimestamp(start, tz).date() - timedelta(days=1)
        last = datetime.fromtimestamp(end, tz).date()
        day = first
        while day <= last:
            if day.weekday() in days:
                lo = datetime(day.year, day.month, day.day, sh, sm, tzinfo=tz)
                hi = datetime(day.year, day.month, day.day, eh, em, tzinfo=tz)
                if hi <= lo:
                    hi += timedelta(days=1)
                a, b = lo.astimezone(UTC).timestamp(), hi.astimezone(UTC).timestamp()
                if b > start and a < end:
                    out.append((a, b))
            day += timedelta(days=1)
    out.sort()
    merged: list[tuple[float, float]] = []
    for a, b in out:
        if merged and a <= merged[-1][1]:
            merged[-1] = (merged[-1][0], max(merged[-1][1], b))
        else:
            merged.append((a, b))
    return merged


def failure_probability(node: MaintenanceNode, hours: np.ndarray) -> np.ndarray:
    """P(node fails before `hours` after the plan start): constant hazard, 1 past the predicted failure."""
    p = min(max(node.risk, 0.0), 1.0 - 1e-12)
    out = 1.0 - (1.0 - p) ** (np.asarray(hours, float) / node.risk_horizon_hours)
    if node.hours_to_failure is not None:
        out = np.where(np.asarray(hours) >= node.hours_to_failure, 1.0, out)
    return np.asarray(out, dtype=float)


def prepare(problem: Problem, *, disruption_weight: float) -> Prepared:
    """Turn a problem into slot indices, allowed starts and costs; collect per-node infeasibility."""
    slot = problem.slot_minutes * 60.0
    n_slots = round(problem.horizon_hours * 60.0 / problem.slot_minutes)
    slot_starts = problem.start + slot * np.arange(n_slots)
    plan_end = problem.start + n_slots * slot
    needed = [n for n in problem.nodes if n.requested or n.risk >= problem.risk_threshold]
    infeasible: list[Infeasibility] = []
    try:
        occurrences = window_occurrences(problem.windows, problem.start, plan_end)
        window_error = "" if occurrences else "no window opens within the plan horizon"
    except (ZoneInfoNotFoundError, ValueError, KeyError) as err:
        occurrences, window_error = [], f"invalid window: {err}"
    # For each slot start, when its (merged) window closes; -inf when the slot is outside windows.
    open_until = np.full(n_slots, -np.inf)
    window_of_slot = np.full(n_slots, -1, dtype=int)
    for k, (a, b) in enumerate(occurrences):
        inside = (slot_starts >= a) & (slot_starts < b)
        open_until[inside] = b
        window_of_slot[inside] = k
    hours = (slot_starts - problem.start) / 3600.0
    total = problem.total_nodes or len(problem.nodes)
    pdb_allowed = problem.limits.pdb_allowed
    tasks, durations, allowed, costs, unscheduled = [], [], [], [], []
    for node in needed:
        d = max(1, math.ceil(node.duration_minutes / problem.slot_minutes))
        fits = open_until >= slot_starts + node.duration_minutes * 60.0
        fits &= np.arange(n_slots) + d <= n_slots
        if window_error or not fits.any():
            message = window_error or f"no window is open for {node.duration_minutes:g} min in a row"
            infeasible.append(Infeasibility(node.name, "window", message))
            continue
        if node.hours_to_failure is not None:
            before = (
                slot_starts + node.duration_minutes * 60.0 <= problem.start + node.hours_to_failure * 3600
            )
            if not (fits & before).any():
                first = datetime.fromtimestamp(float(slot_starts[fits][0]), UTC).isoformat()
                infeasible.append(
                    Infeasibility(
                        node.name,
                        "deadline",
                        f"predicted failure in {node.hours_to_failure:.1f}h is before the first window ({first})",
                    )
                )
                continue
            fits &= before
        blocked = [p for p, pods in node.pdb_pods.items() if pods > 0 and pdb_allowed.get(p, 1) <= 0]
        if blocked:
            infeasible.append(Infeasibility(node.name, "pdb", f"PDB {blocked[0]} allows no disruption"))
            continue
        idx = np.flatnonzero(fits)
        fail = failure_probability(node, hours[idx])
        cost = fail + disruption_weight * node.disruption_cost + EARLINESS_WEIGHT * idx / n_slots
        tasks.append(node)
        durations.append(d)
        allowed.append(idx)
        costs.append(cost)
        unscheduled.append(UNSCHEDULED_PENALTY + float(failure_probability(node, np.array([hours[-1]]))[0]))
    groups = []
    for key, limit in problem.limits.group_limits.items():
        values: dict[str, list[int]] = {}
        members: dict[str, int] = {}
        for node in problem.nodes:
            if key in node.labels:
                members[node.labels[key]] = members.get(node.labels[key], 0) + 1
        for i, node in enumerate(tasks):
            if key in node.labels:
                values.setdefault(node.labels[key], []).append(i)
        for value, idxs in values.items():
            groups.append((f"{key}={value}", np.array(idxs), _limit(limit, members[value])))
    pdbs = []
    for pdb, allowed_disruptions in pdb_allowed.items():
        idxs = [i for i, n in enumerate(tasks) if n.pdb_pods.get(pdb, 0) > 0]
        if idxs:
            # A drain evicts a PDB's pods one by one as the budget allows, so one node never needs
            # more than the whole budget.
            demand = np.array([min(tasks[i].pdb_pods[pdb], allowed_disruptions) for i in idxs])
            pdbs.append((pdb, np.array(idxs), demand, int(allowed_disruptions)))
    spacing = problem.limits.min_spacing_minutes
    return Prepared(
        problem=problem,
        slot_starts=slot_starts,
        tasks=tuple(tasks),
        durations=np.array(durations, dtype=int),
        allowed=tuple(allowed),
        costs=tuple(costs),
        unscheduled_cost=np.array(unscheduled),
        global_cap=_limit(problem.limits.max_concurrent, total),
        groups=tuple(groups),
        pdbs=tuple(pdbs),
        spacing_slots=math.ceil(spacing / problem.slot_minutes) if spacing > 0 else 0,
        infeasible=tuple(infeasible),
        together=together.build(problem.limits.together, [t.labels for t in tasks], window_of_slot),
    )


# -- shared feasibility ------------------------------------------------------------------------------


class Usage:
    """Incremental resource usage per slot: the one place hard constraints are evaluated."""

    def __init__(self, prep: Prepared) -> None:
        n_slots = len(prep.slot_starts)
        self.prep = prep
        self.global_use = np.zeros(n_slots, dtype=int)
        self.group_use = [np.zeros(n_slots, dtype=int) for _ in prep.groups]
        self.pdb_use = [np.zeros(n_slots, dtype=int) for _ in prep.pdbs]
        self.starts = np.zeros(n_slots, dtype=int)
        self.allowed = [set(a.tolist()) for a in prep.allowed]
        self.task_groups: list[list[int]] = [[] for _ in prep.tasks]
        self.task_pdbs: list[list[tuple[int, int]]] = [[] for _ in prep.tasks]
        self.spans = together.Spans(prep.together, prep.durations) if prep.together else None
        for g, (_, idxs, _) in enumerate(prep.groups):
            for i in idxs:
                self.task_groups[i].append(g)
        for k, (_, idxs, demand, _) in enumerate(prep.pdbs):
            for i, dem in zip(idxs, demand, strict=True):
                self.task_pdbs[i].append((k, int(dem)))

    def conflicts(self, task: int, slot: int) -> list[str]:
        """Names of the hard constraints placing `task` at `slot` would break, given what is placed."""
        prep = self.prep
        if slot not in self.allowed[task]:
            return ["window/deadline"]
        out = []
        span = slice(slot, slot + int(prep.durations[task]))
        if (self.global_use[span] + 1 > prep.global_cap).any():
            out.append("maxConcurrent")
        for g in self.task_groups[task]:
            if (self.group_use[g][span] + 1 > prep.groups[g][2]).any():
                out.append(f"group {prep.groups[g][0]}")
        for k, dem in self.task_pdbs[task]:
            if (self.pdb_use[k][span] + dem > prep.pdbs[k][3]).any():
                out.append(f"pdb {prep.pdbs[k][0]}")
        if prep.spacing_slots:
            lo = max(0, slot - prep.spacing_slots + 1)
            if self.starts[lo : slot + prep.spacing_slots].any():
                out.append("minSpacing")
        if self.spans is not None and (other := self.spans.conflict(task, slot)) is not None:
            out.append(f"together {other}")
        return out

    def add(self, task: int, slot: int, sign: int = 1) -> None:
        span = slice(slot, slot + int(self.prep.durations[task]))
        self.global_use[span] += sign
        for g in self.task_groups[task]:
            self.group_use[g][span] += sign
        for k, dem in self.task_pdbs[task]:
            self.pdb_use[k][span] += sign * dem
        self.starts[slot] += sign
        if self.spans is not None:
            self.spans.add(task, slot, sign)


def check(prep: Prepared, slots: Mapping[int, int]) -> list[Violation]:
    """Every hard-constraint violation of a plan (task index -> start slot); [] when feasible."""
    usage = Usage(prep)
    out = []
    for task, slot in sorted(slots.items(), key=lambda kv: kv[1]):
        names = usage.conflicts(task, slot)
        out += [Violation(name, f"{prep.tasks[task].name} at slot {slot}") for name in names]
        if names != ["window/deadline"]:
            usage.add(task, slot)
    return out


# -- the scheduler ---------------------------------------------------------------------------------


class Scheduler:
    """Assign needed nodes to slots minimising expected unplanned failures plus disruption."""

    def __init__(
        self,
        *,
        solver: SolverName = "Auto",
        time_limit_seconds: float = 20.0,
        disruption_weight: float = 0.01,
        candidates_per_node: int = 6,
        num_reads: int = 8,
        num_sweeps: int = 2000,
        workers: int = 2,
        relative_gap: float = 1e-3,
        random_state: int = 0,
    ) -> None:
        self.solver = solver
        self.time_limit_seconds = time_limit_seconds
        self.disruption_weight = disruption_weight
        self.candidates_per_node = candidates_per_node
        self.num_reads = num_reads
        self.num_sweeps = num_sweeps
        self.workers = workers
        self.relative_gap = relative_gap
        self.random_state = random_state

    def solve(self, problem: Problem) -> ScheduleResult:
        """Plan the needed nodes; infeasible ones are reported in the result, never raised."""
        began = time.perf_counter()
        try:
            prep = prepare(problem, disruption_weight=self.disruption_weight)
        except (ValueError, TypeError) as err:
            bad = tuple(Infeasibility(n.name, "input", str(err)) for n in problem.nodes)
            return _empty(bad, "input error", time.perf_counter() - began)
        pairs = sum(len(a) for a in prep.allowed)
        solver, reason = self._choose(pairs)
        if not prep.tasks:
            return self._result(prep, {}, solver, reason, 0.0, "OPTIMAL", began)
        # Decomposition: only at-risk nodes' starts change the expected failures much; requested
        # low-risk nodes are nearly indifferent between slots. Large problems solve the at-risk core
        # exactly, then fill the rest greedily around it.
        core = [i for i, t in enumerate(prep.tasks) if t.risk >= prep.problem.risk_threshold]
        decompose = pairs > DECOMPOSE_MIN_PAIRS and 0 < len(core) < len(prep.tasks)
        sub = _subset(prep, core) if decompose else prep
        if decompose:
            reason += f"; decomposed: {len(core)} at-risk nodes solved, {len(prep.tasks) - len(core)} filled"
        slots: dict[int, int] | None = None
        if solver == "CPSAT":
            slots, bound, status = _solve_cpsat(
                sub, self.time_limit_seconds, self.workers, self.random_state, self.relative_gap
            )
            if slots is None:
                solver, reason = "Annealing", f"CP-SAT found no plan ({status}); annealing fallback"
        if solver == "Annealing" or slots is None:
            slots, bound, status = _solve_annealing(
                sub, self.candidates_per_node, self.num_reads, self.num_sweeps, self.random_state
            )
        if decompose:
            slots = {core[i]: s for i, s in slots.items()}
            rest = [i for i in range(len(prep.tasks)) if i not in set(core)]
            bound += float(
                sum(min(float(prep.costs[i].min()), float(prep.unscheduled_cost[i])) for i in rest)
            )
        # Every plan goes through the same repair: a no-op on a feasible plan, a fill for the rest.
        slots = repair(prep, slots)
        # Never return worse than the greedy plan (riskiest first, cheapest feasible start): the
        # annealing sample and a time-limited or decomposed CP-SAT are heuristics.
        greedy = repair(prep, {})
        if _objective(prep, greedy) < _objective(prep, slots) - 1e-9:
            slots, status = greedy, f"{status}; greedy plan kept (better)"
        return self._result(prep, slots, solver, reason, bound, status, began)

    def _choose(self, pairs: int) -> tuple[str, str]:
        if self.solver != "Auto":
            return self.solver, "requested"
        if pairs <= AUTO_CPSAT_MAX_PAIRS:
            return "CPSAT", f"{pairs} node-slot pairs <= {AUTO_CPSAT_MAX_PAIRS}: exact CP-SAT"
        return "Annealing", f"{pairs} node-slot pairs > {AUTO_CPSAT_MAX_PAIRS}: QUBO over candidate slots"

    def _result(
        self,
        prep: Prepared,
        slots: Mapping[int, int],
        solver: str,
        reason: str,
        bound: float,
        status: str,
        began: float,
    ) -> ScheduleResult:
        objective, failures, disruption = evaluate(prep, slots, disruption_weight=self.disruption_weight)
        assignments = []
        for task, slot in sorted(slots.items(), key=lambda kv: (kv[1], prep.tasks[kv[0]].name)):
            node = prep.tasks[task]
            start = float(prep.slot_starts[slot])
            hours = (start - prep.problem.start) / 3600.0
            assignments.append(
                Assignment(
                    node=node.name,
                    slot=slot,
                    start=start,
                    end=start + node.duration_minutes * 60.0,
                    expected_failures=float(failure_probability(node, np.array([hours]))[0]),
                )
            )
        left = tuple(
            Infeasibility(
                t.name, "capacity", "no slot left within the limits (maxConcurrent, groups, PDBs, spacing)"
            )
            for i, t in enumerate(prep.tasks)
            if i not in slots
        )
        bound = min(bound, objective)
        return ScheduleResult(
            assignments=tuple(assignments),
            infeasible=prep.infeasible + left,
            solver=solver,
            solver_reason=reason,
            objective=objective,
            bound=bound,
            gap=(objective - bound) / objective if objective > 0 else 0.0,
            solve_seconds=time.perf_counter() - began,
            expected_unplanned_failures=failures,
            disruption_cost=disruption,
            violations=tuple(check(prep, slots)),
            status=status,
            split=together.split(prep.together, slots),
        )


def _empty(infeasible: tuple[Infeasibility, ...], status: str, seconds: float) -> ScheduleResult:
    return ScheduleResult((), infeasible, "none", status, 0.0, 0.0, 0.0, seconds, 0.0, 0.0, (), status)


def _subset(prep: Prepared, keep: Sequence[int]) -> Prepared:
    """The same problem restricted to some tasks (re-indexed), limits unchanged."""
    pos = {old: new for new, old in enumerate(keep)}
    groups = []
    for name, idxs, cap in prep.groups:
        sel = [pos[i] for i in idxs.tolist() if i in pos]
        if sel:
            groups.append((name, np.array(sel), cap))
    pdbs = []
    for name, idxs, demand, cap in prep.pdbs:
        kept = [k for k, i in enumerate(idxs.tolist()) if i in pos]
        if kept:
            pdbs.append((name, np.array([pos[int(idxs[k])] for k in kept]), demand[kept], cap))
    return dataclasses.replace(
        prep,
        tasks=tuple(prep.tasks[i] for i in keep),
        durations=prep.durations[list(keep)],
        allowed=tuple(prep.allowed[i] for i in keep),
        costs=tuple(prep.costs[i] for i in keep),
        unscheduled_cost=prep.unscheduled_cost[list(keep)],
        groups=tuple(groups),
        pdbs=tuple(pdbs),
        together=prep.together.subset(keep) if prep.together else None,
    )


def evaluate(
    prep: Prepared, slots: Mapping[int, int], *, disruption_weight: float
) -> tuple[float, float, float]:
    """(objective, expected unplanned failures, planned disruption) of a plan over the needed nodes;
    the objective includes the penalty for groups split over windows (Limits.together)."""
    objective = together.split_penalty(prep.together, slots)
    failures = disruption = 0.0
    last_hour = (prep.slot_starts[-1] - prep.problem.start) / 3600.0 if len(prep.slot_starts) else 0.0
    for i, node in enumerate(prep.tasks):
        if i in slots:
            pos = int(np.searchsorted(prep.allowed[i], slots[i]))
            ok = pos < len(prep.allowed[i]) and prep.allowed[i][pos] == slots[i]
            hours = (prep.slot_starts[slots[i]] - prep.problem.start) / 3600.0
            failures += float(failure_probability(node, np.array([hours]))[0])
            disruption += node.disruption_cost
            objective += float(prep.costs[i][pos]) if ok else UNSCHEDULED_PENALTY
        else:
            failures += float(failure_probability(node, np.array([last_hour]))[0])
            objective += float(prep.unscheduled_cost[i])
    return objective, failures, disruption


def _objective(prep: Prepared, slots: Mapping[int, int]) -> float:
    return evaluate(prep, slots, disruption_weight=0.0)[0]


def lower_bound(prep: Prepared) -> float:
    """Each node at its cheapest allowed start, ignoring every coupling constraint."""
    return float(
        sum(min(float(c.min()), float(u)) for c, u in zip(prep.costs, prep.unscheduled_cost, strict=True))
    )


# -- CP-SAT ---------------------------------------------------------------------------------------


def _solve_cpsat(
    prep: Prepared, time_limit: float, workers: int, seed: int, relative_gap: float
) -> tuple[dict[int, int] | None, float, str]:
    model = cp_model.CpModel()
    n_slots = len(prep.slot_starts)
    x: list[dict[int, cp_model.IntVar]] = []
    present, intervals = [], []
    active_at: list[list[tuple[int, cp_model.IntVar]]] = [[] for _ in range(n_slots)]
    objective = []
    for i, idx in enumerate(prep.allowed):
        d = int(prep.durations[i])
        xi = {int(s): model.new_bool_var(f"x{i}_{s}") for s in idx}
        x.append(xi)
        pres = model.new_bool_var(f"p{i}")
        model.add(sum(xi.values()) == pres)
        start = model.new_int_var_from_domain(cp_model.Domain.from_values([int(s) for s in idx]), f"s{i}")
        model.add(start == sum(s * v for s, v in xi.items())).only_enforce_if(pres)
        intervals.append(model.new_optional_fixed_size_interval_var(start, d, pres, f"iv{i}"))
        present.append(pres)
        for s, v in xi.items():
            for t in range(s, min(s + d, n_slots)):
                active_at[t].append((i, v))
        costs = np.round(prep.costs[i] * OBJECTIVE_SCALE).astype(int)
        objective += [int(c) * xi[int(s)] for s, c in zip(idx, costs, strict=True)]
        objective.append(round(float(prep.unscheduled_cost[i]) * OBJECTIVE_SCALE) * (1 - pres))
    n = len(prep.tasks)
    _cumulative(model, intervals, list(range(n)), [1] * n, prep.global_cap, active_at)
    for _, idxs, cap in prep.groups:
        _cumulative(model, intervals, list(idxs), [1] * len(idxs), cap, active_at)
    for _, idxs, demand, cap in prep.pdbs:
        _cumulative(model, intervals, list(idxs), [int(d) for d in demand], cap, active_at)
    if prep.spacing_slots:
        # Starts at least `spacing` apart <=> spacing-long intervals from each start do not overlap.
        gaps = [
            model.new_optional_fixed_size_interval_var(
                _start_var(model, x[i], present[i], i), prep.spacing_slots, present[i], f"gap{i}"
            )
            for i in range(n)
        ]
        model.add_no_overlap(gaps)
    if prep.together is not None:
        objective += _together_cpsat(model, prep, prep.together, x)
    model.minimize(sum(objective))
    solver = cp_model.CpSolver()
    solver.parameters.max_time_in_seconds = time_limit
    solver.parameters.num_workers = workers
    solver.parameters.random_seed = seed
    solver.parameters.relative_gap_limit = relative_gap
    status = solver.solve(model)
    name = solver.status_name(status)
    if status not in (cp_model.OPTIMAL, cp_model.FEASIBLE):
        return None, 0.0, name
    slots = {i: s for i in range(n) for s, v in x[i].items() if solver.boolean_value(v)}
    return slots, solver.best_objective_bound / OBJECTIVE_SCALE, name


def _together_cpsat(
    model: cp_model.CpModel,
    prep: Prepared,
    groups: together.Groups,
    x: Sequence[Mapping[int, cp_model.IntVar]],
) -> list[cp_model.LinearExpr]:
    """Group turns: per (group, window) an optional interval covering its nodes there, intervals of
    all groups never overlapping; each window a group uses beyond its first costs SPLIT_PENALTY."""
    n_slots = len(prep.slot_starts)
    parts: list[cp_model.IntervalVar] = []
    terms: list[cp_model.LinearExpr] = []
    penalty = round(together.SPLIT_PENALTY * OBJECTIVE_SCALE)
    for g in range(len(groups.names)):
        members = groups.members(g)
        windows = sorted({int(groups.window_of_slot[s]) for i in members for s in x[i]})
        used = []
        for w in windows:
            inside = np.flatnonzero(groups.window_of_slot == w)
            lo, hi = int(inside[0]), min(n_slots, int(inside[-1]) + 1 + int(prep.durations.max()))
            u = model.new_bool_var(f"u{g}_{w}")
            start = model.new_int_var(lo, hi, f"ts{g}_{w}")
            end = model.new_int_var(lo, hi, f"te{g}_{w}")
            size = model.new_int_var(0, hi - lo, f"tz{g}_{w}")
            parts.append(model.new_optional_interval_var(start, size, end, u, f"turn{g}_{w}"))
            for i in members:
                d = int(prep.durations[i])
                for s, v in x[i].items():
                    if groups.window_of_slot[s] == w:
                        model.add_implication(v, u)
                        model.add(start <= s).only_enforce_if(v)
                        model.add(end >= s + d).only_enforce_if(v)
            used.append(u)
        terms.append(penalty * (cp_model.LinearExpr.sum(used) - 1))
    model.add_no_overlap(parts)
    return terms


def _start_var(
    model: cp_model.CpModel, xi: Mapping[int, cp_model.IntVar], pres: cp_model.IntVar, i: int
) -> cp_model.IntVar:
    start = model.new_int_var_from_domain(cp_model.Domain.from_values(sorted(xi)), f"g{i}")
    model.add(start == sum(s * v for s, v in xi.items())).only_enforce_if(pres)
    return start


def _cumulative(
    model: cp_model.CpModel,
    intervals: Sequence[cp_model.IntervalVar],
    idxs: Sequence[int],
    demands: Sequence[int],
    cap: int,
    active_at: Sequence[Sequence[tuple[int, cp_model.IntVar]]],
) -> None:
    """A cumulative constraint plus its time-indexed linear form (a much tighter LP bound)."""
    if sum(demands) <= cap:
        return
    model.add_cumulative([intervals[i] for i in idxs], list(demands), cap)
    weight = dict(zip(idxs, demands, strict=True))
    for pairs in active_at:
        terms = [(weight[i], v) for i, v in pairs if i in weight]
        if sum(w for w, _ in terms) > cap:
            model.add(sum(w * v for w, v in terms) <= cap)


# -- QUBO + simulated annealing ------------------------------------------------------------------------


def build_bqm(
    prep: Prepared, candidates: int
) -> tuple[dimod.BinaryQuadraticModel, dict[tuple[int, int], int]]:
    """QUBO over the `candidates` cheapest starts per node; returns it and (task, slot) -> cost rank."""
    bqm = dimod.BinaryQuadraticModel("BINARY")
    chosen: dict[tuple[int, int], int] = {}
    rewards = []
    by_slot: dict[int, list[tuple[int, int]]] = {}
    for i, (idx, cost) in enumerate(zip(prep.allowed, prep.costs, strict=True)):
        order = np.argsort(cost, kind="stable")[:candidates]
        # Picking a slot must beat leaving the node out, by a margin on the scale of the costs
        # themselves (not UNSCHEDULED_PENALTY): annealing temperatures follow the largest biases,
        # so huge rewards would drown the cost differences between slots.
        leave_out = float(cost[order].max()) + QUBO_SCHEDULE_REWARD
        for rank, j in enumerate(order):
            s = int(idx[j])
            bqm.add_variable((i, s), float(cost[j]) - leave_out)
            rewards.append(leave_out - float(cost[j]))
            chosen[(i, s)] = rank
            for t in range(s, s + int(prep.durations[i])):
                by_slot.setdefault(t, []).append((i, s))
    penalty = PENALTY_FACTOR * max(rewards, default=1.0)
    per_task: dict[int, list[tuple[int, int]]] = {}
    for v in chosen:
        per_task.setdefault(v[0], []).append(v)
    for vs in per_task.values():
        for a in range(len(vs)):
            for b in range(a + 1, len(vs)):
                bqm.add_interaction(vs[a], vs[b], penalty)
    for t, vs in by_slot.items():
        _at_most(bqm, vs, [1] * len(vs), prep.global_cap, penalty, f"cap{t}")
        for g, (_, idxs, cap) in enumerate(prep.groups):
            members = set(idxs.tolist())
            sub = [v for v in vs if v[0] in members]
            _at_most(bqm, sub, [1] * len(sub), cap, penalty, f"grp{g}_{t}")
        for k, (_, idxs, demand, cap) in enumerate(prep.pdbs):
            dem = dict(zip(idxs.tolist(), demand.tolist(), strict=True))
            sub = [v for v in vs if v[0] in dem]
            _at_most(bqm, sub, [dem[v[0]] for v in sub], cap, penalty, f"pdb{k}_{t}")
    if prep.together is not None:
        _together_bqm(bqm, prep.together, chosen, by_slot, penalty)
    if prep.spacing_slots:
        starts: dict[int, list[tuple[int, int]]] = {}
        for v in chosen:
            starts.setdefault(v[1], []).append(v)
        keys = sorted(starts)
        for a in keys:
            near = [v for b in keys if a <= b < a + prep.spacing_slots for v in starts[b]]
            for p in range(len(near)):
                for q in range(p + 1, len(near)):
                    if near[p][0] != near[q][0]:
                        bqm.add_interaction(near[p], near[q], penalty)
    return bqm, chosen


def _together_bqm(
    bqm: dimod.BinaryQuadraticModel,
    groups: together.Groups,
    chosen: Mapping[tuple[int, int], int],
    by_slot: Mapping[int, Sequence[tuple[int, int]]],
    penalty: float,
) -> None:
    """Pairwise form of the group turns: two nodes of one group in different windows, or two nodes
    of different groups in maintenance at the same slot, pay `penalty`. (Interleaved turns that never
    share a slot are not pairwise; repair keeps them apart.)"""
    by_group: dict[int, list[tuple[int, int]]] = {}
    for v in chosen:
        if groups.of_task[v[0]] >= 0:
            by_group.setdefault(int(groups.of_task[v[0]]), []).append(v)
    for vs in by_group.values():
        for a in range(len(vs)):
            for b in range(a + 1, len(vs)):
                if groups.window_of_slot[vs[a][1]] != groups.window_of_slot[vs[b][1]]:
                    bqm.add_interaction(vs[a], vs[b], penalty)
    for active in by_slot.values():
        grouped = [v for v in active if groups.of_task[v[0]] >= 0]
        for a in range(len(grouped)):
            for b in range(a + 1, len(grouped)):
                if groups.of_task[grouped[a][0]] != groups.of_task[grouped[b][0]]:
                    bqm.add_interaction(grouped[a], grouped[b], penalty)


def _at_most(
    bqm: dimod.BinaryQuadraticModel,
    variables: Sequence[tuple[int, int]],
    weights: Sequence[int],
    cap: int,
    penalty: float,
    label: str,
) -> None:
    """Penalise sum(w x) > cap: pairwise when cap is 1 with unit weights, slack variables otherwise."""
    if sum(weights) <= cap:
        return
    if cap == 1 and all(w == 1 for w in weights):
        for a in range(len(variables)):
            for b in range(a + 1, len(variables)):
                if variables[a][0] != variables[b][0]:
                    bqm.add_interaction(variables[a], variables[b], penalty)
        return
    terms: list[tuple[Hashable, int]] = [(v, int(w)) for v, w in zip(variables, weights, strict=True)]
    bqm.add_linear_inequality_constraint(terms, lagrange_multiplier=penalty, label=label, ub=cap)


def _solve_annealing(
    prep: Prepared, candidates: int, num_reads: int, num_sweeps: int, seed: int
) -> tuple[dict[int, int], float, str]:
    bqm, chosen = build_bqm(prep, candidates)
    # Temperatures set by the problem's scales, not by the tiniest bias (dwave's default): hot enough
    # to cross a constraint penalty, cold enough to resolve ANNEAL_RESOLUTION expected failures.
    penalty = max((abs(b) for b in bqm.quadratic.values()), default=1.0)
    beta_range = (math.log(2.0) / penalty, math.log(100.0) / ANNEAL_RESOLUTION)
    sampleset = SimulatedAnnealingSampler().sample(
        bqm, num_reads=num_reads, num_sweeps=num_sweeps, seed=seed, beta_range=beta_range
    )
    best = sampleset.first.sample
    picked: dict[int, int] = {}
    for (i, s), _rank in sorted(chosen.items(), key=lambda kv: kv[1]):
        if best.get((i, s)) == 1 and i not in picked:
            picked[i] = s
    return repair(prep, picked), lower_bound(prep), "ANNEALED"


def repair(prep: Prepared, proposal: Mapping[int, int], *, improve_passes: int = 3) -> dict[int, int]:
    """Make a proposal feasible, then improve it by single moves.

    Riskiest node first (with Limits.together, a group's nodes one after the other, the group
    ranked by its riskiest): keep its proposed start if it fits, else take its cheapest feasible
    start, so the scarce early slots go to the nodes that lose most by waiting. Then each node in turn
    moves to a cheaper start if one is feasible (a 1-opt descent that leaves optimal plans alone).
    """
    usage = Usage(prep)
    out: dict[int, int] = {}
    order = together.order(prep.together, [t.risk for t in prep.tasks])
    for i in order:
        proposed = proposal.get(i)
        tries = [] if proposed is None else [proposed]
        tries += [int(prep.allowed[i][j]) for j in np.argsort(prep.costs[i], kind="stable")]
        if usage.spans is not None:
            # A group stays in the windows it already uses when it can; it spreads only if not.
            tries = [s for s in tries if usage.spans.keeps_whole(i, s)] + tries
        for s in tries:
            if not usage.conflicts(i, s):
                usage.add(i, s)
                out[i] = s
                break
    for _ in range(improve_passes):
        moved = False
        for i in order:
            if i not in out:
                continue
            current = out[i]
            usage.add(i, current, -1)
            limit = prep.costs[i][int(np.searchsorted(prep.allowed[i], current))]
            best = current
            for j in np.argsort(prep.costs[i], kind="stable"):
                if prep.costs[i][j] >= limit:
                    break
                s = int(prep.allowed[i][j])
                whole = usage.spans is None or usage.spans.keeps_whole(i, s)
                if whole and not usage.conflicts(i, s):
                    best = s
                    break
            usage.add(i, best)
            out[i] = best
            moved |= best != current
        if not moved:
            break
    return out
