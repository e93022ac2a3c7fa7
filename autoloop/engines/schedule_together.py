"""Group turns for the maintenance scheduler: the nodes sharing a label value are maintained together.

Contract: bookkeeping over slot indices, used by `engines.schedule` (its solvers, repair and checker)
and nothing else; no solver, no I/O. With `Limits.together` set to a label key (a plan's
`spec.routing.groupBy`, e.g. `topology.kubernetes.io/zone`), the needed nodes with one value of it
form a group, and a plan keeps each group's turn whole:

- hard: the turns of two groups never overlap. A group's turn in a window occurrence runs from
  its first node's start to its last node's end there; another group's nodes may not start or
  run inside it. Nodes without the label belong to no group and are free, as before.
- soft, above every cost of *when* a node goes but below leaving a node out: all of a group's
  nodes fall in one window occurrence. Each extra occurrence a group spreads over costs
  `SPLIT_PENALTY`. A group that no window can hold within the limits (maxConcurrent, group
  limits, PDBs, spacing, deadlines) is split over as few windows as the solver finds, and the
  result says so (`ScheduleResult.split`): maintenance still happens, a node's risk is never
  traded for a whole turn.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, replace
from typing import Final

import numpy as np

SPLIT_PENALTY: Final[float] = 5.0
"""Objective units (expected failures) per extra window a group spreads over: more than any
node's failure probability and disruption (each <= about 1), half of leaving a node out (10)."""


@dataclass(frozen=True)
class Groups:
    """The groups of one plan: which group each task is in, which window occurrence each slot is in."""

    key: str
    names: tuple[str, ...]
    """`key=value` per group."""
    of_task: np.ndarray
    """Group index per task, -1 for a task without the label."""
    window_of_slot: np.ndarray
    """Merged window occurrence per slot, -1 outside every window."""

    def members(self, group: int) -> list[int]:
        return [int(i) for i in np.flatnonzero(self.of_task == group)]

    def subset(self, keep: Sequence[int]) -> Groups:
        return replace(self, of_task=self.of_task[list(keep)])


def build(key: str | None, labels: Sequence[Mapping[str, str]], window_of_slot: np.ndarray) -> Groups | None:
    """Groups of the tasks (given by their labels) by the value of `key`; None without a key."""
    if not key:
        return None
    values = sorted({lab[key] for lab in labels if key in lab})
    index = {v: g for g, v in enumerate(values)}
    of_task = np.array([index.get(lab[key], -1) if key in lab else -1 for lab in labels], dtype=int)
    return Groups(key, tuple(f"{key}={v}" for v in values), of_task, window_of_slot)


def windows_used(groups: Groups, slots: Mapping[int, int]) -> dict[int, set[int]]:
    """Group -> the window occurrences its placed tasks start in."""
    used: dict[int, set[int]] = {}
    for task, slot in slots.items():
        g = int(groups.of_task[task])
        if g >= 0:
            used.setdefault(g, set()).add(int(groups.window_of_slot[slot]))
    return used


def split_penalty(groups: Groups | None, slots: Mapping[int, int]) -> float:
    if groups is None:
        return 0.0
    return SPLIT_PENALTY * sum(len(ws) - 1 for ws in windows_used(groups, slots).values())


def split(groups: Groups | None, slots: Mapping[int, int]) -> tuple[str, ...]:
    """One line per group spread over several windows: what an SRE reads in the plan's condition."""
    if groups is None:
        return ()
    out = []
    for g, ws in sorted(windows_used(groups, slots).items()):
        if len(ws) > 1:
            count = sum(1 for t in slots if groups.of_task[t] == g)
            out.append(
                f"{groups.names[g]}: {count} nodes split over {len(ws)} windows "
                "(no single window holds them within the limits)"
            )
    return tuple(out)


class Spans:
    """Incremental turns per (group, window occurrence): the hard no-overlap rule, and whether a
    placement keeps its group in the windows it already uses."""

    def __init__(self, groups: Groups, durations: np.ndarray) -> None:
        self.groups = groups
        self.durations = durations
        self.placed: dict[tuple[int, int], dict[int, tuple[int, int]]] = {}
        """(group, window) -> task -> (start, end) slots."""

    def _span(self, g: int, w: int, extra: tuple[int, int] | None = None) -> tuple[int, int] | None:
        ranges = list(self.placed.get((g, w), {}).values()) + ([extra] if extra else [])
        if not ranges:
            return None
        return min(a for a, _ in ranges), max(b for _, b in ranges)

    def conflict(self, task: int, slot: int) -> str | None:
        """The group whose turn placing `task` at `slot` would overlap (its name), or None."""
        g = int(self.groups.of_task[task])
        if g < 0:
            return None  # a node without the label belongs to no turn and may run beside any
        w = int(self.groups.window_of_slot[slot])
        span = self._span(g, w, (slot, slot + int(self.durations[task])))
        assert span is not None
        for (h, w2), members in self.placed.items():
            if w2 != w or h == g or not members:
                continue
            other = self._span(h, w2)
            if other is not None and other[0] < span[1] and span[0] < other[1]:
                return self.groups.names[h]
        return None

    def keeps_whole(self, task: int, slot: int) -> bool:
        """Whether `slot` is in a window the task's group already uses (or the group has none yet)."""
        g = int(self.groups.of_task[task])
        if g < 0:
            return True
        used = {w for (h, w), members in self.placed.items() if h == g and set(members) - {task}}
        return not used or int(self.groups.window_of_slot[slot]) in used

    def add(self, task: int, slot: int, sign: int = 1) -> None:
        g = int(self.groups.of_task[task])
        if g < 0:
            return
        members = self.placed.setdefault((g, int(self.groups.window_of_slot[slot])), {})
        if sign > 0:
            members[task] = (slot, slot + int(self.durations[task]))
        else:
            members.pop(task, None)


def order(groups: Groups | None, risks: Sequence[float]) -> list[int]:
    """Repair's order: riskiest first, but a group's nodes one after the other (the group ranked by
    its riskiest node), so each group's turn is laid out before the next group's begins."""
    tasks = range(len(risks))
    if groups is None:
        return sorted(tasks, key=lambda i: -risks[i])
    top: dict[int, float] = {}
    for i in tasks:
        g = int(groups.of_task[i])
        if g >= 0:
            top[g] = max(top.get(g, 0.0), risks[i])

    def rank(i: int) -> tuple[float, int, float]:
        g = int(groups.of_task[i])
        return (-top[g], g, -risks[i]) if g >= 0 else (-risks[i], -1, -risks[i])

    return sorted(tasks, key=rank)
