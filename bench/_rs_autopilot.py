"""Google Autopilot's moving-window recommender (Rzadca et al., EuroSys 2020, §3.2), for replay.

The usage signal is aggregated per 5-minute window (§3.1: CPU as a histogram of the window's
samples, memory as the window's peak). Windows enter a histogram with exponentially decaying
weights w = 2^(-age / half-life); the recommendation is a percentile of it (§3.2): for serving
jobs CPU uses the 95th percentile S_p95 with a 12 h half-life, memory the 98th percentile S_p98
with a 48 h half-life. The paper's moving-window recommender has no extra safety margin and no
bounds; Borg applies limits in place, so it has no eviction band either (the shared gate applies).
Buckets reuse VPA's exponential scheme (5 % growth) instead of the paper's 400 buckets.
"""

from __future__ import annotations

from typing import Final

import numpy as np

from bench._rs_vpa import CPU_FIRST_BUCKET, CPU_MAX, MEM_FIRST_BUCKET, MEM_MAX, ExponentialHistogram

WINDOW_S: Final[float] = 300.0  # §3.1: 5-minute aggregation windows
CPU_HALF_LIFE_S: Final[float] = 12 * 3600.0  # §3.2: CPU half-life 12 h
MEMORY_HALF_LIFE_S: Final[float] = 48 * 3600.0  # §3.2: memory half-life 48 h
CPU_PERCENTILE: Final[float] = 0.95  # §3.2: S_p95 for serving jobs' CPU
MEMORY_PERCENTILE: Final[float] = 0.98  # §3.2: S_p98 for memory


class AutopilotRecommender:
    def __init__(self, resource: str = "cpu") -> None:
        self.resource = resource
        if resource == "cpu":
            self.hist = ExponentialHistogram(CPU_FIRST_BUCKET, CPU_MAX, CPU_HALF_LIFE_S)
            self.p = CPU_PERCENTILE
        else:
            self.hist = ExponentialHistogram(MEM_FIRST_BUCKET, MEM_MAX, MEMORY_HALF_LIFE_S)
            self.p = MEMORY_PERCENTILE
        self.window_start: float | None = None
        self.window_values: list[float] = []

    def _flush(self) -> None:
        if self.window_start is None or not self.window_values:
            return
        if self.resource == "cpu":
            # Each sample of the window weighs 1/n so every window weighs 1.
            w = 1.0 / len(self.window_values)
            for v in self.window_values:
                self.hist.add(v, w, self.window_start)
        else:
            self.hist.add(max(self.window_values), 1.0, self.window_start)
        self.window_values = []

    def add_samples(self, ts: np.ndarray, values: np.ndarray) -> None:
        for t, v in zip(ts.tolist(), values.tolist(), strict=True):
            if self.window_start is None or t >= self.window_start + WINDOW_S:
                self._flush()
                self.window_start = t
            self.window_values.append(v)

    def recommend(self) -> float:
        self._flush()
        return self.hist.percentile(self.p)
