"""The annealing maintenance solver: a QUBO over each node's cheapest starts, sampled by
dwave-samplers' simulated annealing.

Owns: `build_bqm` (one binary per (node, candidate start); penalties for one start per node,
maxConcurrent, label groups, PDBs, spacing and group turns), the annealing temperatures, and
`solve`, which samples the model and hands the best sample to `repairing.repair`.
Must never: return a sample unrepaired (hard constraints hold only after repair), or draw
randomness other than through its `seed`.
"""

from __future__ import annotations

import math
from collections.abc import Hashable, Mapping, Sequence
from typing import Final

import dimod
import numpy as np
from dwave.samplers import SimulatedAnnealingSampler

from autoloop.engines import schedule_together as together
from autoloop.engines.schedule import checking, preparing, repairing

QUBO_SCHEDULE_REWARD: Final[float] = 0.5
"""QUBO reward for scheduling a node at all, on top of its worst candidate's cost."""
PENALTY_FACTOR: Final[float] = 1.0
"""QUBO constraint weight, in multiples of the largest reward a violation could buy."""
ANNEAL_RESOLUTION: Final[float] = 0.02
"""Smallest energy difference (expected failures) the annealing schedule still resolves at its end."""


def build_bqm(
    prep: preparing.Prepared, candidates: int
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


def solve(
    prep: preparing.Prepared, candidates: int, num_reads: int, num_sweeps: int, seed: int
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
    return repairing.repair(prep, picked), checking.lower_bound(prep), "ANNEALED"
