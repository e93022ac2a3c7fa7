"""CPU need: the recency-weighted quantile of past usage, at a risk level calibrated per workload.

The need for the next horizon is the (1 - a) quantile of the pooled samples of the past windows,
each window weighing 2^(-age / half-life) in total. `a` starts at the requested risk and is
calibrated on the workload's own history, at each past window boundary remaking the forecast from
the windows before it and judging the request the band policy would have held. Online
(`online_level`, the default): an adaptive-conformal walk of log `a` by each window's overrun, a
small step at a time. Batch (step 0): the band policy is replayed at every level and `a` is the
level at which the recency-weighted share of samples above the replayed request equals the
requested risk; exact on stationary usage, but on usage that switches between idle and flat out
that share is a step in `a` and the level it picks jumps from day to day.

Within a horizon (when the recommender's `surge_test` is on), a sequential test guards against a
level shift the forecast cannot see yet: if the samples since the last boundary exceed the
current request far more often than the risk allows (binomial tail below `SURGE_ALPHA`), the
forecast is rejected and the need becomes the quantile of those samples at the calibrated level,
once a horizon (a request changed since the boundary is not tested again). The need never
exceeds the highest usage seen.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Final

import numpy as np
from scipy import special

from autoloop.engines.recommend import windows
from autoloop.engines.recommend.hysteresis import Band
from autoloop.engines.recommend.windows import Array

RISK_GRID: Final[Array] = np.power(2.0, np.arange(-10, 5) / 2.0)
"""Calibrated levels tried, as multiples of the requested risk (1/32 to 4, in steps of sqrt 2)."""
MAX_LEVEL: Final[float] = 0.5
MIN_CALIBRATION_WINDOWS: Final[int] = 3
"""Past boundaries needed before the level is calibrated (fewer: the requested risk as is)."""
SURGE_ALPHA: Final[float] = 1e-3
"""False-alarm probability of the in-horizon test, were samples independent."""
SURGE_MIN_SECONDS: Final[float] = 3_600.0
"""The test needs an hour of samples: a shorter stretch says little about the level."""


@dataclass(frozen=True)
class Forecast:
    need: float
    level: float
    """The calibrated risk level the need is the (1 - level) quantile at."""
    calibrated_on: int
    """Past boundaries the level was calibrated on."""


def _replayed_exceedance(past: list[Array], needs: Array, band: Band, weights: Array) -> Array:
    """Recency-weighted share of samples above the request the band policy would have held, per
    level (columns of `needs`, rows: past windows newest first)."""
    request = band.target(1.0) * needs[-1]
    share = np.zeros(needs.shape[1])
    for k in range(len(past) - 1, -1, -1):
        move = (request < band.lower(needs[k])) | (request > band.upper(needs[k]))
        request = np.where(move, band.target(1.0) * needs[k], request)
        ordered = np.sort(past[k])
        above = ordered.size - np.searchsorted(ordered, request, side="right")
        share += weights[k] * above / ordered.size
    return share / float(np.sum(weights))


def _past_need(full: list[Array], k: int, level: float, half_life: float) -> float:
    """The need the forecast at the boundary after window k (newest first) would have made."""
    pool = windows.Pool.of(full[k + 1 :], windows.recency(len(full) - k - 1, half_life))
    return float(pool.quantile(np.array([1.0 - level]))[0])


def online_level(full: list[Array], *, risk: float, half_life: float, band: Band, step: float) -> float:
    """The level after an adaptive-conformal walk over the past boundaries, oldest first.

    Gibbs and Candes, "Adaptive Conformal Inference Under Distribution Shift" (NeurIPS 2021), on
    the log of the level: after each past window, a <- a * exp(step * (risk - e) / risk), where e
    is the window's share of samples above the request the band policy held. Whatever the
    sequence, the long-run mean of e stays within O(1 / (step * windows)) of `risk`; the newest
    windows count most, so a shift in shape moves the level within a few horizons, not at once."""
    level, lowest = risk, risk * float(RISK_GRID[0])
    request: float | None = None
    # The oldest boundary has a single window behind it: too little to judge a forecast on.
    for k in range(len(full) - 3, -1, -1):
        need = _past_need(full, k, level, half_life)
        if request is None or not band.holds(request, need):
            request = band.target(need)
        exceeded = float(np.mean(full[k] > request))
        level = min(max(level * float(np.exp(step * (risk - exceeded) / risk)), lowest), MAX_LEVEL)
    return level


def day_forecast(
    full: list[Array], *, risk: float, half_life: float, band: Band, online_step: float = 0.0
) -> Forecast:
    """The need from complete windows (newest first), its level calibrated on their history:
    by replaying the band policy at every level of `RISK_GRID` (`online_step` 0) or by the
    online walk of `online_level` (`online_step` > 0)."""
    levels = np.minimum(risk * RISK_GRID, MAX_LEVEL)
    n_past = len(full) - 1
    level = risk
    if online_step > 0 and n_past >= MIN_CALIBRATION_WINDOWS:
        level = online_level(full, risk=risk, half_life=half_life, band=band, step=online_step)
    elif n_past >= MIN_CALIBRATION_WINDOWS:
        needs = np.array(
            [
                windows.Pool.of(full[k + 1 :], windows.recency(len(full) - k - 1, half_life)).quantile(
                    1 - levels
                )
                for k in range(n_past)
            ]
        )
        # The oldest boundary has a single window behind it: too little to judge a forecast on.
        usable = n_past - 1
        share = _replayed_exceedance(full[:usable], needs[:usable], band, windows.recency(usable, half_life))
        share = np.maximum.accumulate(share)
        level = float(np.exp(np.interp(np.log(risk), np.log(np.maximum(share, 1e-12)), np.log(levels))))
    pool = windows.Pool.of(full, windows.recency(len(full), half_life))
    need = float(pool.quantile(np.array([1.0 - level]))[0])
    return Forecast(need, level, max(n_past - 1, 0) if n_past >= MIN_CALIBRATION_WINDOWS else 0)


def surged(partial: Array, current: float, risk: float, span_seconds: float) -> bool:
    """Whether the samples since the boundary overrun `current` far beyond what `risk` allows
    (never on less than `SURGE_MIN_SECONDS` of samples)."""
    if partial.size < 2 or span_seconds < SURGE_MIN_SECONDS:
        return False
    above = int(np.sum(partial > current))
    if above <= risk * partial.size:
        return False
    # P(X >= above) for X ~ Binomial(n, risk): the chance of this many overruns were risk kept.
    return float(special.bdtrc(above - 1, partial.size, risk)) < SURGE_ALPHA


def need_today(partial: Array, *, level: float) -> float:
    """The need today's samples call for at the calibrated level: once the test has rejected the
    forecast, the past windows no longer describe the present, today's samples do."""
    return float(np.quantile(partial, 1.0 - level))
