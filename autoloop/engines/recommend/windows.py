"""Day windows of a usage history and recency-weighted quantiles over them.

Owns the slicing of a history into complete horizon windows that end at the last horizon boundary
(so a forecast made from them is stable within a horizon) and the weighted quantile of pooled
samples. Pure numpy; knows nothing of CPU, memory or requests.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Final

import numpy as np
import numpy.typing as npt

Array = npt.NDArray[np.float64]

MIN_WINDOW_FRACTION: Final[float] = 0.5
"""A window holding less than half the samples a full one would is mostly a gap: it is skipped."""
STEP_SAMPLES: Final[int] = 1_000
"""The sampling step is the median spacing of the newest samples (cheap, and follows a change)."""


@dataclass(frozen=True)
class Windows:
    """Complete windows, newest first, and the partial window since the last boundary."""

    full: list[Array]
    boundary: float
    """Unix seconds where the newest full window ends (the partial window starts)."""
    partial: Array
    partial_ts: Array
    start_index: int
    """Index in the history of the first sample of the oldest full window (a cache key)."""


def split(ts: Array, us: Array, width: float, max_windows: int) -> Windows:
    """Cut the history into at most `max_windows` complete windows of `width` seconds ending at the
    last Unix-time multiple of `width`, newest first."""
    boundary = math.floor(float(ts[-1]) / width) * width
    edges = boundary - width * np.arange(max_windows + 1)
    idx = np.searchsorted(ts, edges, side="left")
    recent = ts[-STEP_SAMPLES:]
    step = float(np.median(np.diff(recent))) if recent.size > 1 else width
    expected = width / max(step, 1e-9)
    full: list[Array] = []
    start = int(idx[0])
    for k in range(max_windows):
        lo, hi = int(idx[k + 1]), int(idx[k])
        if hi - lo < MIN_WINDOW_FRACTION * expected:
            continue
        full.append(us[lo:hi])
        start = lo
    cut = int(idx[0])
    return Windows(full, boundary, us[cut:], ts[cut:], start)


def recency(n: int, half_life_windows: float) -> Array:
    """Weights of windows 0..n-1 horizons old, halving every `half_life_windows`."""
    return np.power(0.5, np.arange(n, dtype=np.float64) / half_life_windows)


@dataclass(frozen=True)
class Pool:
    """Samples of several windows, sorted, with each window weighing its recency in total."""

    values: Array
    cumulative: Array

    @classmethod
    def of(cls, windows: list[Array], weights: Array) -> Pool:
        values = np.concatenate(windows)
        w = np.concatenate([np.full(x.size, wk / x.size) for x, wk in zip(windows, weights, strict=True)])
        order = np.argsort(values, kind="stable")
        cumulative = np.cumsum(w[order])
        return cls(values[order], cumulative / cumulative[-1])

    def quantile(self, levels: Array) -> Array:
        """The smallest pooled values whose weighted share at or below reaches each level."""
        at = np.searchsorted(self.cumulative, levels, side="left")
        return self.values[np.minimum(at, self.values.size - 1)]
