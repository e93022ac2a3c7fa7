"""The exact maintenance solver: a CP-SAT model of a prepared problem.

Owns: the model (a Boolean per (node, allowed start), optional fixed-size intervals under
cumulative constraints for maxConcurrent, label groups and PDBs, each with a time-indexed linear
copy for a tight bound; no-overlap for spacing and for group turns) and `solve`, which returns
the plan found (or None), CP-SAT's bound and its status.
Must never: decide which solver runs, or repair or judge its plan (`scheduling`, `repairing` and
`checking` do).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Final

import numpy as np
from ortools.sat.python import cp_model

from autoloop.engines import schedule_together as together
from autoloop.engines.schedule import preparing

OBJECTIVE_SCALE: Final[int] = 100_000
"""CP-SAT works in integers: 1e-5 expected failures per unit."""


def solve(
    prep: preparing.Prepared, time_limit: float, workers: int, seed: int, relative_gap: float
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
    prep: preparing.Prepared,
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
