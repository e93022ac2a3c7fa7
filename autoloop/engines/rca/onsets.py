"""Dating a change: the least-squares step-or-ramp change point, and leaks too slow to alarm.

Owns: `refine_onset` and `slow_ramp` (with `RAMP_T_STAT`, `RAMP_MIN_Z`).
Must never: decide whether a change is a fault or whose it is; it only dates and shapes z.
"""

from __future__ import annotations

import math
from typing import Final

import numpy as np
import numpy.typing as npt

from autoloop.engines import anomaly

RAMP_T_STAT: Final[float] = 8.0
"""t-statistic of a memory ramp's slope (against unit-variance z) to count as a slow leak."""
RAMP_MIN_Z: Final[float] = 3.0
"""...and the robust sigmas it must have grown by the end of the window."""


def slow_ramp(z: npt.NDArray[np.float64], first: int) -> list[anomaly.Alarm]:
    """A leak too slow for the detector's alarms: a ramp fitted from some change point to the end
    whose slope is `RAMP_T_STAT` standard errors from zero and that has grown `RAMP_MIN_Z` sigma.

    Regression sees a slope long before a CUSUM with a drift allowance sees the level; the high
    t threshold pays for searching the change point and for noise that is not independent.
    """
    y = z[first:]
    n = y.size
    if n < 8:
        return []
    tau, is_ramp = refine_onset(z, first, z.size, 1)
    k = tau - first
    h = np.arange(n - k, dtype=float) + 1.0
    slope = float(h @ y[k:]) / float(h @ h)
    t_stat = slope * math.sqrt(float(h @ h))
    if not is_ramp or t_stat < RAMP_T_STAT or slope * h[-1] < RAMP_MIN_Z:
        return []
    return [anomaly.Alarm(direction=1, start=tau, detected=z.size - 1, end=None)]


def refine_onset(z: npt.NDArray[np.float64], lo: int, hi: int, direction: int) -> tuple[int, bool]:
    """Least-squares change point in z[lo:hi], the level before it fixed at the baseline (0).

    Two models compete, each with two parameters: a step (constant after the change) and a ramp
    (linear growth from the change). Returns the change index in [lo, hi) of the better model and
    whether that model is the ramp. Closed forms over suffix sums: O(n).
    """
    y = direction * z[lo:hi]
    n = y.size
    if n < 2:
        return lo, False
    i = np.arange(n, dtype=float)
    sq = np.concatenate([[0.0], np.cumsum(y**2)])
    suffix_sq = sq[-1] - sq[:-1]
    suffix_y = np.cumsum(y[::-1])[::-1]
    suffix_iy = np.cumsum((i * y)[::-1])[::-1]
    m = n - i  # samples from tau to the end
    step_sse = sq[:-1] + suffix_sq - suffix_y**2 / m
    # Ramp h = i - tau + 1 over the suffix: sum(h y) = sum(i y) - (tau - 1) sum(y); sum(h^2) = m(m+1)(2m+1)/6.
    hy = suffix_iy - (i - 1.0) * suffix_y
    ramp_sse = sq[:-1] + suffix_sq - hy**2 / (m * (m + 1) * (2 * m + 1) / 6.0)
    s_best, r_best = int(np.argmin(step_sse)), int(np.argmin(ramp_sse))
    if ramp_sse[r_best] < step_sse[s_best]:
        return lo + r_best, True
    return lo + s_best, False
