"""Repairing maintenance plans: any proposal into a feasible plan, then a 1-opt descent.

Owns: `repair`, which every plan goes through (a solver's, the annealing sample's, or none: the
greedy plan). It asks `checking.Usage` whether a placement fits and never judges one itself.
Must never: relax a hard constraint (a node that fits nowhere is left out), or import a solver.
"""

from __future__ import annotations

from collections.abc import Mapping

import numpy as np

from autoloop.engines import schedule_together as together
from autoloop.engines.schedule import checking, preparing


def repair(
    prep: preparing.Prepared, proposal: Mapping[int, int], *, improve_passes: int = 3
) -> dict[int, int]:
    """Make a proposal feasible, then improve it by single moves.

    Riskiest node first (with Limits.together, a group's nodes one after the other, the group
    ranked by its riskiest): keep its proposed start if it fits, else take its cheapest feasible
    start, so the scarce early slots go to the nodes that lose most by waiting. Then each node in turn
    moves to a cheaper start if one is feasible (a 1-opt descent that leaves optimal plans alone).
    """
    usage = checking.Usage(prep)
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
