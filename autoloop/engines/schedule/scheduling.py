"""The maintenance scheduler's facade: `Scheduler(solver=...).solve(problem)`.

Owns: the solver's parameters (scikit-learn style: stored in `__init__`, used in `solve`), the
choice of solver (`Auto`: CP-SAT up to `AUTO_CPSAT_MAX_PAIRS`, annealing beyond; annealing when
CP-SAT finds nothing), the decomposition of large problems, the greedy safety net (never worse
than `repair(prep, {})`) and assembling the `ScheduleResult`.
Must never: raise for an infeasible plan or bad input (both come back as `Infeasibility`), or
build a solver's model itself.
"""

from __future__ import annotations

import time
from collections.abc import Mapping
from typing import Final

import numpy as np

from autoloop.engines import schedule_together as together
from autoloop.engines.schedule import annealing, checking, cpsat, preparing, problems, repairing

AUTO_CPSAT_MAX_PAIRS: Final[int] = 250_000
"""Auto uses CP-SAT up to this many (node, allowed start) pairs, annealing beyond."""
DECOMPOSE_MIN_PAIRS: Final[int] = 10_000
"""Above this many (node, start) pairs, solve the at-risk nodes exactly and fill in the others."""


class Scheduler:
    """Assign needed nodes to slots minimising expected unplanned failures plus disruption."""

    def __init__(
        self,
        *,
        solver: problems.SolverName = "Auto",
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

    def solve(self, problem: problems.Problem) -> problems.ScheduleResult:
        """Plan the needed nodes; infeasible ones are reported in the result, never raised."""
        began = time.perf_counter()
        try:
            prep = preparing.prepare(problem, disruption_weight=self.disruption_weight)
        except (ValueError, TypeError) as err:
            bad = tuple(problems.Infeasibility(n.name, "input", str(err)) for n in problem.nodes)
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
        sub = preparing.subset(prep, core) if decompose else prep
        if decompose:
            reason += f"; decomposed: {len(core)} at-risk nodes solved, {len(prep.tasks) - len(core)} filled"
        slots: dict[int, int] | None = None
        if solver == "CPSAT":
            slots, bound, status = cpsat.solve(
                sub, self.time_limit_seconds, self.workers, self.random_state, self.relative_gap
            )
            if slots is None:
                solver, reason = "Annealing", f"CP-SAT found no plan ({status}); annealing fallback"
        if solver == "Annealing" or slots is None:
            slots, bound, status = annealing.solve(
                sub, self.candidates_per_node, self.num_reads, self.num_sweeps, self.random_state
            )
        if decompose:
            slots = {core[i]: s for i, s in slots.items()}
            rest = [i for i in range(len(prep.tasks)) if i not in set(core)]
            bound += float(
                sum(min(float(prep.costs[i].min()), float(prep.unscheduled_cost[i])) for i in rest)
            )
        # Every plan goes through the same repair: a no-op on a feasible plan, a fill for the rest.
        slots = repairing.repair(prep, slots)
        # Never return worse than the greedy plan (riskiest first, cheapest feasible start): the
        # annealing sample and a time-limited or decomposed CP-SAT are heuristics.
        greedy = repairing.repair(prep, {})
        if checking.objective(prep, greedy) < checking.objective(prep, slots) - 1e-9:
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
        prep: preparing.Prepared,
        slots: Mapping[int, int],
        solver: str,
        reason: str,
        bound: float,
        status: str,
        began: float,
    ) -> problems.ScheduleResult:
        objective, failures, disruption = checking.evaluate(
            prep, slots, disruption_weight=self.disruption_weight
        )
        assignments = []
        for task, slot in sorted(slots.items(), key=lambda kv: (kv[1], prep.tasks[kv[0]].name)):
            node = prep.tasks[task]
            start = float(prep.slot_starts[slot])
            hours = (start - prep.problem.start) / 3600.0
            assignments.append(
                problems.Assignment(
                    node=node.name,
                    slot=slot,
                    start=start,
                    end=start + node.duration_minutes * 60.0,
                    expected_failures=float(preparing.failure_probability(node, np.array([hours]))[0]),
                )
            )
        left = tuple(
            problems.Infeasibility(
                t.name, "capacity", "no slot left within the limits (maxConcurrent, groups, PDBs, spacing)"
            )
            for i, t in enumerate(prep.tasks)
            if i not in slots
        )
        bound = min(bound, objective)
        return problems.ScheduleResult(
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
            violations=tuple(checking.check(prep, slots)),
            status=status,
            split=together.split(prep.together, slots),
        )


def _empty(
    infeasible: tuple[problems.Infeasibility, ...], status: str, seconds: float
) -> problems.ScheduleResult:
    return problems.ScheduleResult(
        (), infeasible, "none", status, 0.0, 0.0, 0.0, seconds, 0.0, 0.0, (), status
    )
