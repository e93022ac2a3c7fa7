"""Checking maintenance plans: the hard constraints and the objective, in one place.

Owns: `Usage` (incremental use per slot of maxConcurrent, label groups, PDBs, spacing and group
turns: the one place hard constraints are evaluated), `check` (every violation of a plan; every
solver's output and the benchmark baselines pass through it), `evaluate`/`objective` (a plan's
objective, expected unplanned failures and disruption) and `lower_bound`.
Must never: search for or change a plan (solvers and `repairing` do), or import a solver.
"""

from __future__ import annotations

from collections.abc import Mapping

import numpy as np

from autoloop.engines import schedule_together as together
from autoloop.engines.schedule import preparing, problems


class Usage:
    """Incremental resource usage per slot: the one place hard constraints are evaluated."""

    def __init__(self, prep: preparing.Prepared) -> None:
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


def check(prep: preparing.Prepared, slots: Mapping[int, int]) -> list[problems.Violation]:
    """Every hard-constraint violation of a plan (task index -> start slot); [] when feasible."""
    usage = Usage(prep)
    out = []
    for task, slot in sorted(slots.items(), key=lambda kv: kv[1]):
        names = usage.conflicts(task, slot)
        out += [problems.Violation(name, f"{prep.tasks[task].name} at slot {slot}") for name in names]
        if names != ["window/deadline"]:
            usage.add(task, slot)
    return out


def evaluate(
    prep: preparing.Prepared, slots: Mapping[int, int], *, disruption_weight: float
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
            failures += float(preparing.failure_probability(node, np.array([hours]))[0])
            disruption += node.disruption_cost
            objective += float(prep.costs[i][pos]) if ok else preparing.UNSCHEDULED_PENALTY
        else:
            failures += float(preparing.failure_probability(node, np.array([last_hour]))[0])
            objective += float(prep.unscheduled_cost[i])
    return objective, failures, disruption


def objective(prep: preparing.Prepared, slots: Mapping[int, int]) -> float:
    return evaluate(prep, slots, disruption_weight=0.0)[0]


def lower_bound(prep: preparing.Prepared) -> float:
    """Each node at its cheapest allowed start, ignoring every coupling constraint."""
    return float(
        sum(min(float(c.min()), float(u)) for c, u in zip(prep.costs, prep.unscheduled_cost, strict=True))
    )
