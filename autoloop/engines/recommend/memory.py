"""Memory need: the horizon's peak, forecast from the last peak times a conformal margin.

Memory fails hard (an OOM kill), so the need is the peak of the next horizon, not a quantile of its
samples. The forecast is the newest peak seen (the last complete window's, or the running one's if
higher) times a margin: the (1 - risk) recency-weighted quantile of the workload's own
peak-to-previous-peak ratios (split conformal prediction on ratios, never below 1). `risk` is then
the share of horizons expected to see usage above the request. A leak or growth shows as ratios
above 1 and is covered; a flat workload gets a margin near 1. With fewer than
`MIN_CALIBRATION_RATIOS` ratios the margin is VPA's safety margin.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Final

import numpy as np

from autoloop.engines.recommend import windows
from autoloop.engines.recommend.windows import Array

MIN_CALIBRATION_RATIOS: Final[int] = 3
UNCALIBRATED_MARGIN: Final[float] = 0.15
"""VPA's safetyMarginFraction (vertical-pod-autoscaler/pkg/recommender/logic/recommender.go)."""
OOM_BUMP_RATIO: Final[float] = 1.2
"""After an OOM kill memory grows by 20 %: VPA's DefaultOOMBumpUpRatio (aggregations_config.go)."""
OOM_MIN_BUMP_BYTES: Final[float] = 100.0 * 1024 * 1024
"""... and by at least 100 MiB: VPA's DefaultOOMMinBumpUp (aggregations_config.go)."""


@dataclass(frozen=True)
class Forecast:
    margin: float
    calibrated_on: int


def margin(full: list[Array], *, risk: float, half_life: float) -> Forecast:
    """The conformal margin from the complete windows' peaks (newest first)."""
    peaks = np.array([float(np.max(w)) for w in full])
    ratios = peaks[:-1] / np.maximum(peaks[1:], 1e-12)
    if ratios.size < MIN_CALIBRATION_RATIOS:
        return Forecast(1.0 + UNCALIBRATED_MARGIN, 0)
    pool = windows.Pool.of([np.array([r]) for r in ratios], windows.recency(ratios.size, half_life))
    return Forecast(max(1.0, float(pool.quantile(np.array([1.0 - risk]))[0])), int(ratios.size))


def oom_bumped(used: float) -> float:
    """VPA's bump of the usage seen at or since an OOM kill."""
    return max(used * OOM_BUMP_RATIO, used + OOM_MIN_BUMP_BYTES)
