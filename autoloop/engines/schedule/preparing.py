"""Preparing a maintenance problem: from nodes, windows and limits to slots, allowed starts and costs.

Owns: the cost model (`failure_probability`, `UNSCHEDULED_PENALTY`, `EARLINESS_WEIGHT`), the
window calendar (`window_occurrences`: recurring windows in their time zones as epoch intervals),
percent limits (`_limit`), `Prepared` and the two ways to build one: `prepare` (which also collects
each node's `Infeasibility`: no window, deadline before the first window, a PDB allowing nothing)
and `subset` (the same problem restricted to some tasks, for the scheduler's decomposition).
Must never: place a node or judge a plan (that is `checking`), or import a solver.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Final
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

import numpy as np

from autoloop.engines import schedule_together as together
from autoloop.engines.schedule import problems

UNSCHEDULED_PENALTY: Final[float] = 10.0
"""Objective units (expected failures) charged per needed node left out: above any slot's cost."""
EARLINESS_WEIGHT: Final[float] = 1e-4
"""Tie-breaker per horizon fraction: among equal plans, maintain sooner."""


@dataclass(frozen=True)
class Prepared:
    """Slots, the nodes that need maintenance, and each one's allowed starts and costs."""

    problem: problems.Problem
    slot_starts: np.ndarray
    tasks: tuple[problems.MaintenanceNode, ...]
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
    infeasible: tuple[problems.Infeasibility, ...]
    together: together.Groups | None = None
    """Groups kept in one turn (Limits.together), or None."""


def _limit(value: int | str, total: int) -> int:
    """A count, or a percent of total rounded down; never below 1."""
    if isinstance(value, str) and value.strip().endswith("%"):
        return max(1, math.floor(float(value.strip()[:-1]) * total / 100.0))
    return max(1, int(value))


def window_occurrences(
    windows: Sequence[problems.Window], start: float, end: float
) -> list[tuple[float, float]]:
    """Concrete [from, to) epoch intervals of the windows between start and end, merged."""
    out: list[tuple[float, float]] = []
    for w in windows:
        tz = ZoneInfo(w.time_zone)
        sh, sm = (int(x) for x in w.start.split(":"))
        eh, em = (int(x) for x in w.end.split(":"))
        days = {problems.DAYS.index(d) if isinstance(d, str) else int(d) for d in w.days}
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


def failure_probability(node: problems.MaintenanceNode, hours: np.ndarray) -> np.ndarray:
    """P(node fails before `hours` after the plan start): constant hazard, 1 past the predicted failure."""
    p = min(max(node.risk, 0.0), 1.0 - 1e-12)
    out = 1.0 - (1.0 - p) ** (np.asarray(hours, float) / node.risk_horizon_hours)
    if node.hours_to_failure is not None:
        out = np.where(np.asarray(hours) >= node.hours_to_failure, 1.0, out)
    return np.asarray(out, dtype=float)


def prepare(problem: problems.Problem, *, disruption_weight: float) -> Prepared:
    """Turn a problem into slot indices, allowed starts and costs; collect per-node infeasibility."""
    slot = problem.slot_minutes * 60.0
    n_slots = round(problem.horizon_hours * 60.0 / problem.slot_minutes)
    slot_starts = problem.start + slot * np.arange(n_slots)
    plan_end = problem.start + n_slots * slot
    needed = [n for n in problem.nodes if n.requested or n.risk >= problem.risk_threshold]
    infeasible: list[problems.Infeasibility] = []
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
            infeasible.append(problems.Infeasibility(node.name, "window", message))
            continue
        if node.hours_to_failure is not None:
            before = (
                slot_starts + node.duration_minutes * 60.0 <= problem.start + node.hours_to_failure * 3600
            )
            if not (fits & before).any():
                first = datetime.fromtimestamp(float(slot_starts[fits][0]), UTC).isoformat()
                infeasible.append(
                    problems.Infeasibility(
                        node.name,
                        "deadline",
                        f"predicted failure in {node.hours_to_failure:.1f}h is before the first window ({first})",
                    )
                )
                continue
            fits &= before
        blocked = [p for p, pods in node.pdb_pods.items() if pods > 0 and pdb_allowed.get(p, 1) <= 0]
        if blocked:
            infeasible.append(
                problems.Infeasibility(node.name, "pdb", f"PDB {blocked[0]} allows no disruption")
            )
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


def subset(prep: Prepared, keep: Sequence[int]) -> Prepared:
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
