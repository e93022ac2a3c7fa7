"""Rightsizing recommender: a usage history in, a request recommendation with its interval out.

Contract: `RightsizingRecommender(params).recommend(timestamps, usage, current_request=...)` is a
pure function of the history it is given (it sees only the past) and returns a frozen
`Recommendation`. The operator calls it each interval on the window it fetched from Prometheus;
`bench/rightsizing` calls the very same method step by step over replayed traces.

How it decides:
1. Forecast of the next horizon (one day by default): the history is cut into complete day
   windows ending at the last day boundary (so the forecast is stable within a day). Each window
   gives its usage quantile at the risk level, its median level and its peak. Older windows are
   rescaled to the latest level (growth and steps are followed within a day instead of through a
   24 h half-life), then combined with recency weights (half-life 2 days).
2. Conformal adjustment: the same forecast made at each past day boundary is compared with what
   that day then used; the median realised/forecast ratio (CPU) or the worst one (memory) is a
   multiplicative margin, clipped to [0.9, 1.5].
3. A sustained surge (the median of the last two hours above every level-adjusted past peak)
   lifts the need at once, so a level shift does not wait for the day boundary.
4. Memory forecasts the day peak (calibrated on the worst past miss; VPA's 15 % margin until
   enough past days exist to calibrate); an OOM since the current request was set bumps the need
   like VPA does (x1.2, at least +100 MiB).
5. Hysteresis: the request changes only when it leaves the band [need, need*(1+band)], band =
   the day-to-day spread of the adjusted windows, at least `hysteresis` (0.5) and at most 1; a new
   request is set a quarter into the band. Most days see no change.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Final, Literal

import numpy as np
import numpy.typing as npt
from pydantic import BaseModel, ConfigDict, Field

SECONDS_PER_DAY: Final[float] = 86_400.0
SECONDS_PER_HOUR: Final[float] = 3_600.0
# After an OOM the memory need grows by 20 % and at least 100 MiB: the constants of the Kubernetes
# VPA (vertical-pod-autoscaler/pkg/recommender/model/aggregations_config.go, DefaultOOMBumpUpRatio,
# DefaultOOMMinBumpUp) so autoloop is no more eager nor lazier than VPA after an OOM.
OOM_BUMP_RATIO: Final[float] = 1.2
OOM_MIN_BUMP_BYTES: Final[float] = 100.0 * 1024 * 1024
# Memory is a hard failure (OOM kill), CPU a soft one (throttling): memory's risk is 10x stricter.
MEMORY_RISK_FACTOR: Final[float] = 0.1
# Bounds on the conformal multiplier: a wild history must not produce a wild request.
MIN_CONFORMAL: Final[float] = 0.9
MAX_CONFORMAL: Final[float] = 1.5
# Windows needed before the conformal margin is used (two back-forecasts), and the margin used
# before that: VPA's safetyMarginFraction (vertical-pod-autoscaler/pkg/recommender/logic/
# recommender.go), so a young history is no riskier than VPA's.
MIN_CALIBRATION_WINDOWS: Final[int] = 4
UNCALIBRATED_MARGIN: Final[float] = 0.15
# The widest hysteresis band (relative to the need), whatever the day-to-day spread.
MAX_BAND: Final[float] = 1.0
# Position of a new request inside the hysteresis band: a quarter above the need.
BAND_POSITION: Final[float] = 0.25
# A surge is "sustained" when the median of the last two hours exceeds every past peak: bursts in
# the traces last minutes, a level shift lasts hours.
SURGE_WINDOW_SECONDS: Final[float] = 7_200.0
# Memory's surge window: one gate interval's worth of samples and then some.
MEMORY_SURGE_SECONDS: Final[float] = 1_800.0
# Share of a horizon a first aligned window must cover to be used.
MIN_WINDOW_FRACTION: Final[float] = 0.5
# Samples a window needs before its statistics count (a quarter of a day at 1/min).
MIN_WINDOW_SAMPLES: Final[int] = 60


class RightsizingParams(BaseModel):
    """Parameters of the recommender (units: seconds, base resource units)."""

    model_config = ConfigDict(frozen=True)
    resource: Literal["cpu", "memory"] = "cpu"
    risk: float = Field(default=0.1, gt=0.0, lt=0.5)
    """Target fraction of time usage may exceed the request (CPU); memory uses risk/10."""
    horizon_seconds: float = Field(default=SECONDS_PER_DAY, gt=0)
    history_days: int = Field(default=7, ge=1, le=28)
    half_life_days: float = Field(default=2.0, gt=0)
    """Recency weight of past day windows (after level rescaling)."""
    hysteresis: float = Field(default=0.5, ge=0.0)
    min_request: float = Field(default=0.0, ge=0.0)
    aligned: bool = True
    """Forecast from complete horizon windows (stable within a horizon) rather than sliding ones."""
    surge: bool = True
    """Lift the need at once when the recent median exceeds every level-adjusted past peak."""
    surge_window_seconds: float = Field(default=SURGE_WINDOW_SECONDS, gt=0)
    """Lift the need at once when the recent median exceeds every level-adjusted past peak."""


class Recommendation(BaseModel):
    """A request recommendation: `target` to set, `[lower, upper]` the band it may stay in."""

    model_config = ConfigDict(frozen=True)
    target: float
    lower: float
    upper: float
    need: float
    """The forecast usage quantile of the next horizon, after the conformal margin."""
    change: bool
    confidence: float
    """History available / history wanted, in [0, 1]."""
    reason: str


def _window_stats(values: npt.NDArray[np.float64], q: float) -> tuple[float, float, float]:
    """The window's risk quantile, its level (median: robust to bursts) and its peak."""
    qs = np.quantile(values, (q, 0.5, 1.0))
    return float(qs[0]), float(qs[1]), float(qs[2])


class RightsizingRecommender:
    """Seasonal, level-adjusted quantile forecaster with a conformal margin and hysteresis."""

    def __init__(self, params: RightsizingParams | None = None) -> None:
        self.params = params or RightsizingParams()

    @property
    def quantile(self) -> float:
        risk = self.params.risk * (MEMORY_RISK_FACTOR if self.params.resource == "memory" else 1.0)
        return 1.0 - risk

    def forecast(self, timestamps: npt.ArrayLike, usage: npt.ArrayLike) -> tuple[float, float]:
        """The need for the next horizon (after the conformal margin) and the confidence."""
        need, confidence, _ = self._forecast(timestamps, usage)
        return need, confidence

    def _forecast(self, timestamps: npt.ArrayLike, usage: npt.ArrayLike) -> tuple[float, float, float]:
        """Need, confidence, and the relative spread of the level-adjusted window statistics."""
        ts = np.asarray(timestamps, dtype=np.float64)
        us = np.asarray(usage, dtype=np.float64)
        if ts.size == 0 or ts.size != us.size:
            raise ValueError("timestamps and usage must be non-empty and of equal length")
        now = float(ts[-1])
        width = self.params.horizon_seconds
        start = np.searchsorted(ts, now - (self.params.history_days + 1) * width, side="right")
        ts, us = ts[start:], us[start:]
        # Window k holds samples in [end - (k+1)*width, end - k*width). Aligned windows end at the
        # last horizon boundary (Unix-time multiple), so the forecast changes once per horizon
        # instead of drifting every call; the partial current window only acts through the surge
        # test. Before the first boundary has a full window behind it, windows end now.
        end = now
        if self.params.aligned:
            boundary = math.floor(now / width) * width
            if boundary - float(ts[0]) >= width * MIN_WINDOW_FRACTION:
                end = boundary
        edges = end - width * np.arange(self.params.history_days + 1)
        idx = np.searchsorted(ts, edges[::-1], side="right")[::-1]
        stats: list[tuple[float, float, float]] = []
        for k in range(self.params.history_days):
            lo, hi = idx[k + 1], idx[k]
            if hi - lo < MIN_WINDOW_SAMPLES:
                break
            stats.append(_window_stats(us[lo:hi], self.quantile))
        if not stats:
            return float(np.max(us)), 0.0, self.params.hysteresis
        quant = np.array([s[0] for s in stats])
        level = np.maximum(np.array([s[1] for s in stats]), 1e-12)
        peak = np.array([s[2] for s in stats])
        basis = peak if self.params.resource == "memory" else quant
        adjusted = basis * (level[0] / level)
        # Day-to-day spread of what each past day would have needed: the band must cover it, or
        # ordinary variation alone would trigger changes.
        spread = (
            float((np.quantile(adjusted, 0.9) - np.quantile(adjusted, 0.1)) / max(np.median(adjusted), 1e-12))
            if adjusted.size >= MIN_CALIBRATION_WINDOWS
            else self.params.hysteresis
        )
        if self.params.resource == "memory":
            # Memory fails hard at the peak: forecast the peak, calibrated on the worst past miss.
            # Until past days can calibrate the margin, use VPA's 15 % safety margin.
            calibrated = peak.size >= MIN_CALIBRATION_WINDOWS
            margin = self._conformal(peak, level, strict=True) if calibrated else 1.0 + UNCALIBRATED_MARGIN
            need = self._combine(peak, level) * margin
        else:
            need = self._combine(quant, level) * self._conformal(quant, level, strict=False)
        if self.params.surge:
            need = self._surge(ts, us, now, need, peak, level)
        confidence = min(1.0, (now - float(ts[0])) / (self.params.history_days * width))
        return need, confidence, spread

    def _surge(
        self,
        ts: npt.NDArray[np.float64],
        us: npt.NDArray[np.float64],
        now: float,
        need: float,
        peak: npt.NDArray[np.float64],
        level: npt.NDArray[np.float64],
    ) -> float:
        """Lift the need at once when the present already contradicts the forecast.

        CPU: the median of the surge window above every level-adjusted past peak (a level shift,
        not a burst) scales the need by the new level. Memory: any sample of the last
        `MEMORY_SURGE_SECONDS` above the forecast peak moves the need to that sample plus the
        margin the forecast carried, since memory fails hard at the limit.
        """
        if self.params.resource == "memory":
            recent = us[np.searchsorted(ts, now - MEMORY_SURGE_SECONDS, side="right") :]
            top = float(np.max(recent)) if recent.size else 0.0
            base = float(self._combine(peak, level))
            return max(need, top * need / max(base, 1e-12)) if top > base else need
        recent = us[np.searchsorted(ts, now - self.params.surge_window_seconds, side="right") :]
        if recent.size and float(np.median(recent)) > float(np.max(peak * level[0] / level)):
            return max(need, float(np.median(recent)) * need / max(float(level[0]), 1e-12))
        return need

    def _combine(self, quant: npt.NDArray[np.float64], level: npt.NDArray[np.float64]) -> float:
        """Rescale each window's quantile to the latest level; recency-weighted mean."""
        ages = np.arange(quant.size, dtype=np.float64)
        weights = np.power(
            0.5, ages * self.params.horizon_seconds / SECONDS_PER_DAY / self.params.half_life_days
        )
        adjusted = quant * (level[0] / level)
        return float(np.sum(weights * adjusted) / np.sum(weights))

    def _conformal(
        self, quant: npt.NDArray[np.float64], level: npt.NDArray[np.float64], *, strict: bool
    ) -> float:
        """Realised/forecast over past day boundaries: the median (CPU) or the worst (memory)."""
        ratios = [quant[k] / self._combine(quant[k + 1 :], level[k + 1 :]) for k in range(quant.size - 2)]
        if len(ratios) < MIN_CALIBRATION_WINDOWS - 2:
            return 1.0
        stat = np.max(ratios) if strict else np.median(ratios)
        return float(np.clip(stat, MIN_CONFORMAL, MAX_CONFORMAL))

    def recommend(
        self,
        timestamps: npt.ArrayLike,
        usage: npt.ArrayLike,
        *,
        current_request: float,
        request_set_at: float | None = None,
        oom_times: Sequence[float] = (),
    ) -> Recommendation:
        """The recommendation at the last timestamp given the history so far.

        `oom_times` (Unix seconds) after `request_set_at` bump the memory need like VPA does.
        """
        need, confidence, spread = self._forecast(timestamps, usage)
        reason = f"q{self.quantile:.3f} forecast of next {self.params.horizon_seconds / 3600:.0f}h"
        if self.params.resource == "memory":
            since = -np.inf if request_set_at is None else request_set_at
            ts = np.asarray(timestamps, dtype=np.float64)
            us = np.asarray(usage, dtype=np.float64)
            recent_ooms = [t for t in oom_times if t >= since]
            if recent_ooms:
                peak = float(np.max(us[np.searchsorted(ts, min(recent_ooms)) :], initial=current_request))
                peak = max(peak, current_request)
                need = max(need, peak * OOM_BUMP_RATIO, peak + OOM_MIN_BUMP_BYTES)
                reason += f"; OOM bump to {need:.4g}"
        need = max(need, self.params.min_request)
        band = float(np.clip(spread, self.params.hysteresis, MAX_BAND))
        lower, upper = need, need * (1.0 + band)
        if lower <= current_request <= upper:
            return Recommendation(
                target=current_request,
                lower=lower,
                upper=upper,
                need=need,
                change=False,
                confidence=confidence,
                reason=reason + "; request inside band, hold",
            )
        target = need * (1.0 + BAND_POSITION * band)
        direction = "up" if target > current_request else "down"
        return Recommendation(
            target=target,
            lower=lower,
            upper=upper,
            need=need,
            change=True,
            confidence=confidence,
            reason=reason + f"; request left band, {direction}",
        )
