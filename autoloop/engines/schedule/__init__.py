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

Rooms, each importing only those above it: `problems` (the input and result dataclasses),
`preparing` (slots, allowed starts, costs, per-node infeasibility), `checking` (hard constraints,
objective, bound), `repairing` (any proposal into a feasible plan), `cpsat` and `annealing` (the
two solvers), `scheduling` (the `Scheduler` facade); group turns live in `schedule_together`.
This package only re-exports their public names: import it, not the rooms.
"""

from autoloop.engines import schedule_together as together
from autoloop.engines.schedule.annealing import (
    ANNEAL_RESOLUTION,
    PENALTY_FACTOR,
    QUBO_SCHEDULE_REWARD,
    build_bqm,
)
from autoloop.engines.schedule.checking import Usage, check, evaluate, lower_bound
from autoloop.engines.schedule.cpsat import OBJECTIVE_SCALE
from autoloop.engines.schedule.preparing import (
    EARLINESS_WEIGHT,
    UNSCHEDULED_PENALTY,
    Prepared,
    failure_probability,
    prepare,
    window_occurrences,
)

# The percent-limit rounding, private but tested through this path.
from autoloop.engines.schedule.preparing import _limit as _limit
from autoloop.engines.schedule.problems import (
    DAYS,
    Assignment,
    Constraint,
    Infeasibility,
    Limits,
    MaintenanceNode,
    Problem,
    ScheduleResult,
    SolverName,
    Violation,
    Window,
)
from autoloop.engines.schedule.repairing import repair
from autoloop.engines.schedule.scheduling import AUTO_CPSAT_MAX_PAIRS, DECOMPOSE_MIN_PAIRS, Scheduler

__all__ = [
    "ANNEAL_RESOLUTION",
    "AUTO_CPSAT_MAX_PAIRS",
    "DAYS",
    "DECOMPOSE_MIN_PAIRS",
    "EARLINESS_WEIGHT",
    "OBJECTIVE_SCALE",
    "PENALTY_FACTOR",
    "QUBO_SCHEDULE_REWARD",
    "UNSCHEDULED_PENALTY",
    "Assignment",
    "Constraint",
    "Infeasibility",
    "Limits",
    "MaintenanceNode",
    "Prepared",
    "Problem",
    "ScheduleResult",
    "Scheduler",
    "SolverName",
    "Usage",
    "Violation",
    "Window",
    "build_bqm",
    "check",
    "evaluate",
    "failure_probability",
    "lower_bound",
    "prepare",
    "repair",
    "together",
    "window_occurrences",
]
