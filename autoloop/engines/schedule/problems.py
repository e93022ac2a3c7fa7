"""The maintenance scheduler's data: what a plan is asked for and what it answers.

Owns: the frozen input dataclasses (`Window`, `MaintenanceNode`, `Limits`, `Problem`), the output
ones (`Assignment`, `Infeasibility`, `Violation`, `ScheduleResult`) and the vocabulary they use
(`DAYS`, `Constraint`, `SolverName`).
Must never: compute anything, or import a solver or another room of the scheduler; the other
rooms build on this one.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Final, Literal

DAYS: Final[tuple[str, ...]] = ("Mon", "Tue", "Wed", "Thu", "Fri", "Sat", "Sun")

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
