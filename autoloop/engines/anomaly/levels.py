"""Level shifts inside a reference: where its newest level starts.

Pods becoming ready one by one move memory per pod in steps; so do a rollout and a config change.
A line fitted through such steps would extrapolate them into the tested samples, so the baseline
is fitted from the newest level on.
Owns: `level_shift_starts` and the thresholds a shift must pass (`LEVEL_SHIFT_*`,
`LOAD_SHIFT_SIGMAS`, `MAX_LEVEL_SHIFTS`).
Must never: fit the baseline or score samples (`baselines`, `scoring` do); it only finds splits.
"""

from __future__ import annotations

import math
from typing import Final

import numpy as np
import numpy.typing as npt

from autoloop.engines.anomaly import robust, samples

LEVEL_SHIFT_T_STAT: Final[float] = 6.0
"""A level shift inside the reference must be this many standard errors tall (the best of many
splits of pure noise reaches about 3), and the newer level's slope this many standard errors
away from the whole reference's."""
LEVEL_SHIFT_SIGMAS: Final[float] = 6.0
"""... and this many noise widths of the newer level tall: a step the detector would itself flag
(its default threshold), not a drift."""
LEVEL_SHIFT_SLOPE_SHARE: Final[float] = 0.5
"""... and the newer level's slope at most this share of the whole reference's."""
LOAD_SHIFT_SIGMAS: Final[float] = 3.0
"""Load moved with a level shift when its medians on both sides differ by this many noise widths."""
MAX_LEVEL_SHIFTS: Final[int] = 4
"""Level shifts looked for in one reference (pods becoming ready one at a time)."""


def _slope(y: samples.FloatArray) -> float:
    """Least-squares slope per sample."""
    x = np.arange(y.size) - (y.size - 1) / 2.0
    return float(x @ (y - y.mean()) / (x @ x))


def _best_split(yc: samples.FloatArray, min_before: int, min_after: int) -> int:
    """The first sample of the newer level of the best split of `yc` into two constant levels
    (least squares; `yc` centred, so the sums of squares are exact)."""
    n = yc.size
    c1 = np.concatenate([[0.0], np.cumsum(yc)])
    c2 = np.concatenate([[0.0], np.cumsum(yc * yc)])
    split = np.arange(min_before, n - min_after + 1)
    n1, n2 = split.astype(float), (n - split).astype(float)
    s1, s2 = c1[split], c1[n] - c1[split]
    sse = (c2[split] - s1 * s1 / n1) + (c2[n] - c2[split] - s2 * s2 / n2)
    best = int(np.argmin(sse))
    return int(split[best])


def _newer_is_flat(yc: samples.FloatArray, newer: samples.FloatArray) -> bool:
    """Flat: the newer level's slope is well below the whole's, beyond its own sampling error (a
    noisy stretch of a ramp can look flat)."""
    whole, recent = _slope(yc), _slope(newer)
    x = np.arange(newer.size) - (newer.size - 1) / 2.0
    scatter = robust.MAD_TO_SIGMA * robust.mad(newer - recent * x)
    slower = abs(recent) <= LEVEL_SHIFT_SLOPE_SHARE * abs(whole)
    return slower and abs(whole - recent) >= LEVEL_SHIFT_T_STAT * (scatter / math.sqrt(float(x @ x)))


def _level_shift(y: samples.FloatArray, min_after: int) -> int:
    """The first sample of the newer level if the series holds a level shift, else 0.

    A shift is the best single split of `y` into two constant levels (least squares), kept only
    when the levels' medians differ by `LEVEL_SHIFT_T_STAT` standard errors and by
    `LEVEL_SHIFT_SIGMAS` noise widths of the newer level, and the newer level is flat next to the
    whole: a ramp is a trend, not a shift. When the newer part is not flat, the newest level is
    looked for inside it (a staircase).
    """
    n = y.size
    min_before = samples.MIN_REFERENCE_SAMPLES // 2
    if n < min_before + min_after:
        return 0
    # A lone wild sample is not a level; centring keeps the sums of squares exact.
    yc = robust.median3(y) - float(np.median(y))
    after = _best_split(yc, min_before, min_after)
    # Medians and MADs: a load surge inside the older part is not an older level.
    older, newer = yc[:after], yc[after:]
    height = abs(float(np.median(newer) - np.median(older)))
    residuals = np.concatenate([older - np.median(older), newer - np.median(newer)])
    se = (
        robust.MAD_TO_SIGMA
        * float(np.median(np.abs(residuals)))
        * math.sqrt(1.0 / older.size + 1.0 / newer.size)
    )
    # The newer part's noise from its successive differences: a further step or a trend in it
    # must not count as noise.
    noise = robust.MAD_TO_SIGMA * robust.mad(np.diff(y[after:])) / math.sqrt(2.0)
    if height == 0.0 or height < LEVEL_SHIFT_T_STAT * se or height < LEVEL_SHIFT_SIGMAS * noise:
        return 0
    if _newer_is_flat(yc, newer):
        return after
    # A staircase: the newer part holds the next step.
    inner = _level_shift(y[after:], min_after)
    return after + inner if inner else 0


def level_shift_starts(y: samples.FloatArray, load: samples.FloatArray) -> npt.NDArray[np.int_]:
    """Per column of a reference (samples x series): the first sample of its newest level, 0 when
    it holds no level shift.

    Pods becoming ready one by one move memory per pod in steps; so do a rollout and a config
    change. A line fitted through such steps would extrapolate them into the tested samples and
    raise alarms on a metric that has long been steady: the newest level is the baseline. A step
    taken with the service's load (`load`: relative deviation per column, zeros for none) is
    demand, which the load term of the baseline follows: it is not cut off.
    """
    starts = np.zeros(y.shape[1], dtype=int)
    # The newest level must hold a quarter of the reference: a load surge that has just ended is
    # not a new level.
    min_after = max(samples.MIN_REFERENCE_SAMPLES, y.shape[0] // 4)
    for j in range(y.shape[1]):
        # A staircase is found step by step, newest last.
        for _ in range(MAX_LEVEL_SHIFTS):
            found = _level_shift(y[starts[j] :, j], min_after)
            if found == 0:
                break
            split = starts[j] + found
            before, after = load[starts[j] : split, j], load[split:, j]
            moved = abs(float(np.median(after) - np.median(before)))
            if moved > LOAD_SHIFT_SIGMAS * robust.MAD_TO_SIGMA * max(robust.mad(after), robust.mad(before)):
                break
            starts[j] = split
    return starts
