"""Candidate search over a loop's knobs, and golden-section refinement of one continuous knob.

Contract: pure functions over plain data. `golden_section(f, lo, hi)` minimises a unimodal
function of one variable (the seed's "golden ratio" component, used where one knob dominates);
`candidate_grid(current, bounds, max_step)` lists the settings a bounded step can reach;
`best_candidate(candidates, score)` picks the lowest weighted score with deterministic ties.
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Final

INV_PHI: Final[float] = (math.sqrt(5.0) - 1.0) / 2.0  # 1/φ ≈ 0.618
DEFAULT_TOLERANCE: Final[float] = 1e-3
DEFAULT_MAX_ITER: Final[int] = 60
# Fractions of the allowed step a candidate moves a knob by (both directions, and no move).
STEP_FRACTIONS: Final[tuple[float, ...]] = (-1.0, -0.5, -0.25, 0.0, 0.25, 0.5, 1.0)

Settings = dict[str, float]


@dataclass(frozen=True)
class GoldenResult:
    x: float
    fx: float
    evaluations: int


def golden_section(
    f: Callable[[float], float],
    lo: float,
    hi: float,
    *,
    tol: float = DEFAULT_TOLERANCE,
    max_iter: int = DEFAULT_MAX_ITER,
) -> GoldenResult:
    """Minimise a unimodal `f` on [lo, hi] to within `tol * (hi - lo)`; one new evaluation per step.

    Each iteration keeps the golden ratio between the bracket and its inner points, so one of
    the two inner evaluations is reused: the bracket shrinks by 0.618 per function call.
    """
    if not hi >= lo:
        raise ValueError(f"empty interval [{lo}, {hi}]")
    a, b = lo, hi
    width0 = b - a
    c, d = b - INV_PHI * (b - a), a + INV_PHI * (b - a)
    fc, fd = f(c), f(d)
    evals = 2
    for _ in range(max_iter):
        if b - a <= tol * max(width0, 1e-300):
            break
        if fc <= fd:
            b, d, fd = d, c, fc
            c = b - INV_PHI * (b - a)
            fc = f(c)
        else:
            a, c, fc = c, d, fd
            d = a + INV_PHI * (b - a)
            fd = f(d)
        evals += 1
    x, fx = (c, fc) if fc <= fd else (d, fd)
    return GoldenResult(x=x, fx=fx, evaluations=evals)


def candidate_grid(
    current: Mapping[str, float],
    bounds: Mapping[str, tuple[float, float]],
    max_step: float,
    *,
    integer_knobs: Sequence[str] = ("replicas",),
    fractions: Sequence[float] = STEP_FRACTIONS,
) -> list[Settings]:
    """Every combination of per-knob moves of `fraction * max_step * value`, clipped to bounds.

    Integer knobs move by at least one unit when the fraction is non-zero. Duplicates removed;
    the current settings are always the first candidate.
    """
    per_knob: list[list[float]] = []
    knobs = sorted(bounds)
    for knob in knobs:
        value = current[knob]
        lo, hi = bounds[knob]
        options: set[float] = set()
        for frac in fractions:
            delta = frac * max_step * abs(value)
            if knob in integer_knobs:
                delta = math.copysign(max(1.0, math.floor(abs(delta))), frac) if frac else 0.0
            options.add(min(hi, max(lo, value + delta)))
        per_knob.append(sorted(options))
    seen = {tuple(current[k] for k in knobs)}
    out: list[Settings] = [{k: current[k] for k in knobs}]
    for combo in itertools.product(*per_knob):
        if combo not in seen:
            seen.add(combo)
            out.append(dict(zip(knobs, combo, strict=True)))
    return out


def best_candidate(
    candidates: Sequence[Settings], score: Callable[[Settings], float]
) -> tuple[Settings, float]:
    """The lowest score; ties go to the earliest candidate (the current settings come first)."""
    if not candidates:
        raise ValueError("no candidates")
    scored = [(score(c), i) for i, c in enumerate(candidates)]
    best_score, best_i = min(scored)
    return candidates[best_i], best_score
