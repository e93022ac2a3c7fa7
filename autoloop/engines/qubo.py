"""QUBO builders, the simulated-annealing sampler and the rule that picks a solver.

Contract: pure functions over numpy arrays and `dimod` models; no I/O. Three layers:

* `sample_bqm(bqm, ...)` wraps `dwave.samplers.SimulatedAnnealingSampler` with a read count, a
  sweep count, a wall-clock limit and a seed. Any engine (allocation, maintenance scheduling)
  samples through it.
* One-hot helpers: `add_one_hot` adds `strength * (sum(x) - 1)**2` for a group of variables on a
  `dimod.BinaryQuadraticModel`; `decode_one_hot` turns a sample back into one choice per group.
* `build_choice_qubo(...)` builds the assignment core used by the allocator: pick exactly one option
  per group, minimise a linear objective, keep `sum(use) <= capacity` for a few resources. Inequality
  constraints get binary slack variables; penalty weights are derived from the data (see
  `build_choice_qubo`) so that the lowest-energy state is feasible, which the tests check by exact
  enumeration.
* `choose_solver(...)` is the `solver: Auto` rule; its thresholds come from `bench/allocation.py`
  (see docs/benchmarks/allocation.md).

Samples are never trusted as they come: callers repair them and check them with their own
constraint checker.
"""

from __future__ import annotations

import time
from collections.abc import Hashable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Final, Literal

import dimod
import numpy as np
from dwave.samplers import SimulatedAnnealingSampler

DEFAULT_NUM_READS: Final[int] = 16
DEFAULT_NUM_SWEEPS: Final[int] = 1000
# Slack resolution of each capacity constraint: the capacity left after every group's smallest
# option is mapped to 2**bits - 1 integer units, so one unit is 1/255 of that headroom.
DEFAULT_SLACK_BITS: Final[int] = 8
# Margin on the data-derived penalty weights: a penalty exactly equal to the largest gain from a
# violation makes the violating state tie with the feasible one; 2x removes the tie robustly.
PENALTY_SAFETY_FACTOR: Final[float] = 2.0
# `Auto` rule (justified in docs/benchmarks/allocation.md): annealing joins CP-SAT as a portfolio
# only when the QUBO is small enough for the sampler to finish several reads well within the
# time limit. Beyond this many variables the dense QUBO alone needs > 30 MB and minutes per read.
AUTO_MAX_QUBO_VARIABLES: Final[int] = 2000
# Sampler throughput measured on the 2-core bench machine under load: about 2.3e8
# (interaction x sweep x read) per second for the allocation QUBOs (dense: time grows with the
# number of interactions, not variables).
ANNEALING_INTERACTION_SWEEPS_PER_SECOND: Final[float] = 2.0e8
# The portfolio needs at least this many reads to fit into its share of the time limit.
AUTO_MIN_READS: Final[int] = 4
# Share of the time limit the portfolio gives to annealing before CP-SAT runs.
PORTFOLIO_ANNEALING_SHARE: Final[float] = 0.3

SolverMode = Literal["CPSAT", "Annealing", "Portfolio"]


def sample_bqm(
    bqm: dimod.BinaryQuadraticModel,
    *,
    num_reads: int = DEFAULT_NUM_READS,
    num_sweeps: int = DEFAULT_NUM_SWEEPS,
    time_limit_seconds: float | None = None,
    random_state: int | None = None,
) -> dimod.SampleSet:
    """Sample a BQM by simulated annealing; lowest energy first.

    `time_limit_seconds` stops after the read in progress once the limit has passed (at least one
    read always completes, so the result is never empty). `random_state` makes runs repeatable.
    The returned `dimod.SampleSet` has `.first.sample`, `.first.energy`, `.record` and an `info`
    dict with `seconds` and `num_reads` (reads actually done).
    """
    if bqm.num_variables == 0:
        raise ValueError("the BQM has no variables")
    started = time.perf_counter()
    deadline = None if time_limit_seconds is None else started + time_limit_seconds

    def out_of_time() -> bool:
        return deadline is not None and time.perf_counter() >= deadline

    sampler = SimulatedAnnealingSampler()
    sampleset = sampler.sample(
        bqm,
        beta_range=ising_beta_range(bqm),
        num_reads=num_reads,
        num_sweeps=num_sweeps,
        seed=random_state,
        interrupt_function=out_of_time,
    )
    sampleset = sampleset.aggregate()
    done = int(sampleset.record.num_occurrences.sum())
    sampleset.info.update({"seconds": time.perf_counter() - started, "num_reads": done})
    return sampleset


def ising_beta_range(
    bqm: dimod.BinaryQuadraticModel, *, excitation_rate: float = 0.01
) -> tuple[float, float]:
    """Hot and cold inverse temperatures, dwave-samplers' default rule computed with numpy.

    Same rule as `dwave.samplers.sa.sampler._default_ising_beta_range` (hot: the largest flip is
    accepted with probability 1/2; cold: the smallest excitation has probability `excitation_rate`),
    which loops over every interaction in Python and took 18 s on a 3 M-interaction QUBO.
    """
    vectors = bqm.to_numpy_vectors()
    lin = vectors[0]
    row, col, quad = vectors[1]
    lin = np.asarray(lin, dtype=float)
    quad = np.asarray(quad, dtype=float)
    if bqm.vartype is dimod.BINARY:
        # x = (s + 1) / 2: h_i = a_i / 2 + sum_j Q_ij / 4, J_ij = Q_ij / 4.
        h = lin / 2.0
        np.add.at(h, row, quad / 4.0)
        np.add.at(h, col, quad / 4.0)
        j = quad / 4.0
    else:
        h, j = lin.copy(), quad
    field = np.abs(h)
    np.add.at(field, row, np.abs(j))
    np.add.at(field, col, np.abs(j))
    min_bias = np.where(np.abs(h) > 0, np.abs(h), np.inf)
    nz = np.abs(j) > 0
    np.minimum.at(min_bias, row[nz], np.abs(j[nz]))
    np.minimum.at(min_bias, col[nz], np.abs(j[nz]))
    max_field = float(field.max()) if len(field) else 0.0
    hot = float(np.log(2.0) / (2.0 * max_field)) if max_field > 0 else 1.0
    finite = min_bias[np.isfinite(min_bias)]
    if len(finite) == 0:
        return hot, hot
    min_field = float(finite.min())
    n_min = int((finite == min_field).sum())
    cold = float(np.log(n_min / excitation_rate) / (2.0 * min_field))
    return hot, max(cold, hot)


def add_one_hot(bqm: dimod.BinaryQuadraticModel, variables: Sequence[Hashable], strength: float) -> None:
    """Add `strength * (sum(x_v) - 1)**2`: zero when exactly one variable is 1, >= strength otherwise.

    Expanded for binaries (x*x = x): `-strength * sum(x) + 2*strength * sum_{u<v} x_u x_v + strength`.
    """
    if strength <= 0:
        raise ValueError("one-hot strength must be positive")
    for i, u in enumerate(variables):
        bqm.add_linear(u, -strength)
        for v in variables[i + 1 :]:
            bqm.add_quadratic(u, v, 2.0 * strength)
    bqm.offset += strength


def decode_one_hot(sample: Mapping[Any, int], groups: Sequence[Sequence[Hashable]]) -> list[list[int]]:
    """For each group, the positions (within the group) of the variables set to 1.

    Exactly one position means the one-hot holds; the caller decides how to repair the others.
    """
    return [[k for k, v in enumerate(group) if sample[v] == 1] for group in groups]


@dataclass(frozen=True)
class ChoiceQubo:
    """A one-hot choice problem as a BQM over integer variables `0..num_variables-1`.

    Option variables come first (`option_variable[j]` is the variable of option j, or -1 when the
    option was dropped because it alone exceeds a capacity); slack variables follow.
    """

    bqm: dimod.BinaryQuadraticModel
    option_variable: np.ndarray
    num_options: int
    one_hot_strength: float
    constraint_strengths: tuple[float, ...]
    constrained_resources: tuple[int, ...]


def _slack_weights(max_units: int) -> np.ndarray:
    """Binary weights 1, 2, 4, ... whose subsets reach every integer in 0..max_units exactly."""
    if max_units <= 0:
        return np.zeros(0)
    weights: list[int] = []
    total = 0
    while total < max_units:
        w = min(1 << len(weights), max_units - total)
        weights.append(w)
        total += w
    return np.asarray(weights, dtype=float)


def _max_resource_value(w: np.ndarray, use: np.ndarray, group: np.ndarray) -> float:
    """Largest objective decrease per unit of extra resource between two options of one group.

    This is the most a solver could gain by overrunning the capacity by one unit, so a quadratic
    penalty of at least this weight per unit makes overruns unprofitable.
    """
    best = 0.0
    for g in np.unique(group):
        idx = np.flatnonzero(group == g)
        du = use[idx][None, :] - use[idx][:, None]  # du[k, k'] = use[k'] - use[k]
        dw = w[idx][:, None] - w[idx][None, :]  # dw[k, k'] = w[k] - w[k'] (gain moving k -> k')
        mask = (du > 0) & (dw > 0)
        if mask.any():
            best = max(best, float((dw[mask] / du[mask]).max()))
    return best


def build_choice_qubo(
    objective: np.ndarray,
    group: np.ndarray,
    use: np.ndarray,
    capacity: np.ndarray,
    *,
    slack_bits: int = DEFAULT_SLACK_BITS,
) -> ChoiceQubo:
    """Exactly one option per group, minimise `sum(objective)`, `sum(use[:, r]) <= capacity[r]`.

    `objective` (n,), `group` (n,) integer group ids 0..G-1, `use` (n, R) >= 0, `capacity` (R,).
    The model is normalised so penalty weights do not depend on units:
    * each group's objective and use are shifted by the group minimum (a constant under one-hot);
    * the objective is divided by its largest shifted value;
    * each capacity's headroom (capacity minus the sum of group minima) is mapped to
      `2**slack_bits - 1` units, option uses are rounded *up* to units (so a state feasible in
      units is feasible in the original quantities), and a slack integer in binary makes the
      inequality an equality `sum(use) + slack = headroom`.
    Penalties: a resource's weight is `PENALTY_SAFETY_FACTOR` times the largest objective gain per
    unit of that resource (`_max_resource_value`), so overrunning never pays; the one-hot weight
    is `PENALTY_SAFETY_FACTOR` times the most an empty group could save (its option's objective
    plus the value of the resources it frees). Resources whose headroom already holds every
    group's largest option can never bind and are left out of the model.
    """
    objective = np.asarray(objective, dtype=float)
    group = np.asarray(group, dtype=int)
    use = np.asarray(use, dtype=float).reshape(len(objective), -1)
    capacity = np.asarray(capacity, dtype=float)
    n_groups = int(group.max()) + 1
    gmin_w = np.full(n_groups, np.inf)
    np.minimum.at(gmin_w, group, objective)
    w = objective - gmin_w[group]
    scale = float(w.max()) if w.max() > 0 else 1.0
    w = w / scale

    keep = np.ones(len(w), dtype=bool)
    units_use: list[np.ndarray] = []
    headroom_units: list[int] = []
    constrained: list[int] = []
    full = (1 << slack_bits) - 1
    for r in range(use.shape[1]):
        gmin = np.full(n_groups, np.inf)
        np.minimum.at(gmin, group, use[:, r])
        gmax = np.zeros(n_groups)
        np.maximum.at(gmax, group, use[:, r])
        headroom = capacity[r] - gmin.sum()
        if headroom < 0:
            raise ValueError(f"resource {r}: even the smallest options exceed the capacity")
        if gmax.sum() <= capacity[r]:
            continue
        unit = headroom / full if headroom > 0 else 1.0
        u = np.ceil((use[:, r] - gmin[group]) / unit - 1e-9)
        keep &= u <= full if headroom > 0 else u <= 0
        units_use.append(u)
        headroom_units.append(full if headroom > 0 else 0)
        constrained.append(r)

    option_variable = np.full(len(w), -1, dtype=int)
    option_variable[keep] = np.arange(int(keep.sum()))
    n_opt = int(keep.sum())
    wk, gk = w[keep], group[keep]
    slacks = [_slack_weights(h) for h in headroom_units]
    n_var = n_opt + sum(len(s) for s in slacks)
    linear = np.zeros(n_var)
    quad = np.zeros((n_var, n_var))
    offset = 0.0
    linear[:n_opt] += wk

    strengths: list[float] = []
    resource_value = np.zeros(n_opt)
    start = n_opt
    for u, h, s in zip(units_use, headroom_units, slacks, strict=True):
        uk = u[keep]
        rho = _max_resource_value(wk, uk, gk)
        strength = PENALTY_SAFETY_FACTOR * max(rho, 1.0 / max(h, 1))
        strengths.append(strength)
        resource_value += rho * uk
        # strength * (sum_j c_j x_j - h)^2 with c = [use units of options, slack weights].
        idx = np.concatenate([np.arange(n_opt), np.arange(start, start + len(s))])
        c = np.concatenate([uk, s])
        linear[idx] += strength * (c * c - 2.0 * h * c)
        quad[np.ix_(idx, idx)] += 2.0 * strength * np.triu(np.outer(c, c), k=1)
        offset += strength * h * h
        start += len(s)

    one_hot = PENALTY_SAFETY_FACTOR * max(float((wk + resource_value).max()), 1.0 / n_groups)
    for g in range(n_groups):
        idx = np.flatnonzero(gk == g)
        if len(idx) == 0:
            raise ValueError(f"group {g} has no option that fits the capacities")
        linear[idx] -= one_hot
        quad[np.ix_(idx, idx)] += 2.0 * one_hot * np.triu(np.ones((len(idx), len(idx))), k=1)
        offset += one_hot
    bqm = dimod.BinaryQuadraticModel(linear, quad, offset, dimod.BINARY)
    return ChoiceQubo(
        bqm=bqm,
        option_variable=option_variable,
        num_options=n_opt,
        one_hot_strength=one_hot,
        constraint_strengths=tuple(strengths),
        constrained_resources=tuple(constrained),
    )


def choice_qubo_size(
    group: np.ndarray, binding: bool, *, slack_bits: int = DEFAULT_SLACK_BITS, num_binding: int = 1
) -> tuple[int, int]:
    """(variables, interactions) `build_choice_qubo` will create, without building it.

    With a binding capacity every pair of options interacts (the squared capacity penalty is
    dense); without, only options of the same group do (the one-hot penalty).
    """
    n = len(group) + (num_binding * slack_bits if binding else 0)
    if binding:
        return n, n * (n - 1) // 2
    sizes = np.bincount(np.asarray(group, dtype=int))
    return n, int((sizes * (sizes - 1) // 2).sum())


def choose_solver(
    num_variables: int,
    num_interactions: int,
    *,
    time_limit_seconds: float,
    num_sweeps: int = DEFAULT_NUM_SWEEPS,
) -> SolverMode:
    """The `solver: Auto` rule: a CP-SAT + annealing portfolio for small QUBOs, CP-SAT otherwise.

    CP-SAT proves near-optimality on every benchmark size, so it always runs. Annealing is added
    when the QUBO has at most `AUTO_MAX_QUBO_VARIABLES` variables and `AUTO_MIN_READS` reads are
    predicted (from the interaction count and the measured sampler throughput) to fit into
    `PORTFOLIO_ANNEALING_SHARE` of the time limit; on the benchmark that is where annealing came
    within 5 % of CP-SAT.
    """
    if num_variables > AUTO_MAX_QUBO_VARIABLES:
        return "CPSAT"
    per_read = max(num_interactions, num_variables) * num_sweeps / ANNEALING_INTERACTION_SWEEPS_PER_SECOND
    if AUTO_MIN_READS * per_read > PORTFOLIO_ANNEALING_SHARE * time_limit_seconds:
        return "CPSAT"
    return "Portfolio"
