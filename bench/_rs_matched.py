"""Matched-risk comparison and leave-one-series-out choice of hyperparameters for bench/rightsizing.

A recommender's knob (VPA: target percentile; autoloop: risk) traces a curve of (overrun, cost);
two recommenders are compared at the same overrun by interpolating one's curve at the other's
point. Never clipped silently: a point outside the curve is reported as clipped.

Leave-one-series-out: for each real series, the hyperparameters (half-life, restart cost) are
chosen on the other real series only: among the grid points whose days without a change and p99
changes a day meet the issue's bars at the default risk, the one with the lowest median
per-series log cost ratio at VPA's overrun; when none meets them, the one with the most days
without a change. The held-out series is then scored with what the others chose.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Final

import numpy as np

Days = list[dict[str, float]]

MIN_DAYS_WITHOUT_CHANGE: Final[float] = 0.75
MAX_P99_CHANGES: Final[float] = 6.0


def mean(days: Days, key: str) -> float:
    return float(np.mean([d[key] for d in days])) if days else float("nan")


@dataclass(frozen=True)
class Matched:
    value: float
    clipped: bool


def interpolate(curve: Sequence[tuple[float, float]], x: float) -> Matched:
    """Cost at overrun `x` on a (overrun, cost) curve (made monotone: more overrun, less cost)."""
    pts = sorted(curve)
    xs = np.array([p[0] for p in pts])
    ys = np.minimum.accumulate(np.array([p[1] for p in pts]))
    return Matched(float(np.interp(x, xs, ys)), not xs[0] <= x <= xs[-1])


def curve(by_knob: dict[float, Days]) -> list[tuple[float, float]]:
    return [(mean(d, "overrun"), mean(d, "cost")) for d in by_knob.values()]


def ratio_at_vpa(al: dict[float, Days], vpa: Days) -> Matched:
    """Autoloop's cost at VPA's overrun over VPA's cost."""
    m = interpolate(curve(al), mean(vpa, "overrun"))
    return Matched(m.value / mean(vpa, "cost"), m.clipped)


def ratio_at_autoloop(al_default: Days, vpa: dict[float, Days]) -> Matched:
    """Autoloop's cost at its default risk over VPA's cost at autoloop's overrun."""
    m = interpolate(curve(vpa), mean(al_default, "overrun"))
    return Matched(mean(al_default, "cost") / m.value, m.clipped)


def change_stats(days: Days) -> tuple[float, float]:
    ch = np.array([d["changes"] for d in days])
    return float(np.mean(ch == 0)), float(np.percentile(ch, 99))


def choose(
    grid: Sequence[str],
    al: dict[str, dict[str, dict[float, Days]]],
    vpa: dict[str, Days],
    train: Sequence[str],
    default_risk: float,
) -> str:
    """The grid point chosen on the series `train` (see the module docstring).

    `al[grid point][series][risk]` and `vpa[series]` are day metrics."""
    scored: list[tuple[bool, float, float, str]] = []
    for g in grid:
        days = [d for s in train for d in al[g][s][default_risk]]
        no_change, p99 = change_stats(days)
        ok = no_change >= MIN_DAYS_WITHOUT_CHANGE and p99 <= MAX_P99_CHANGES
        ratios = [ratio_at_vpa(al[g][s], vpa[s]).value for s in train]
        scored.append((not ok, float(np.median(np.log(ratios))) if ok else -no_change, -no_change, g))
    return min(scored)[3]


def quartiles(values: Sequence[float]) -> tuple[float, float, float]:
    q = np.percentile(np.asarray(values, dtype=float), (25, 50, 75))
    return float(q[0]), float(q[1]), float(q[2])
