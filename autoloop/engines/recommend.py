"""Rightsizing recommender: a usage history in, a request recommendation with its interval out.

Contract: `RightsizingRecommender(params).recommend(timestamps, usage, current_request=...)` is a
pure function of the history it is given (it sees only the past) and returns a frozen
`Recommendation`. The operator calls it each interval on the window it fetched from Prometheus;
`bench/rightsizing` calls the very same method step by step over replayed traces.

How it decides:
1. Forecast of the next horizon (one day by default): the history (two weeks by default) is cut
   into complete day windows ending at the last day boundary (so the forecast is stable within a
   day). Each window gives its usage quantile at the risk level, its median level, its peak and
   the level it ends at (median of its last two hours).
2. CPU: the risk quantile of the past days' minutes pooled, each day recency-weighted with a
   half-life of 0.5-16 days and rescaled to the latest level or not: which half-life and whether to
   rescale are chosen on the workload's own history (smallest mean absolute log error of the
   recency-weighted mean of the day quantiles, forecast at each past day boundary), since how fast
   to forget and whether a level change persists are properties of the workload. Pooling makes the
   risk what it says, the share of (weighted) past minutes above the need, where the mean of each
   day's quantile is right for no day when days differ in shape (with fewer than four days: that
   mean, until the backtest can choose). A surge (the median of the last hour above 1.3 x the
   forecast at q0.9, whatever the risk: a busy phase or a level shift, not a burst of minutes)
   lifts the need to the last hour's own risk quantile at once, and only while it lasts.
3. Memory forecasts the day peak from the newest week of windows: the recency-weighted mean of
   past peaks rescaled by the level each window ends at (a step inside a window leaves its median
   half-old), never scaled down within the last three windows (a weekend's lower level comes back
   on Monday), times the worst past miss of that forecast (VPA's 15 % margin until four windows
   exist). Windows whose median already exceeded their peak forecast are level shifts, answered
   by the surge (any sample of the last 30 min above the forecast peak lifts the need at once) and
   by the OOM bump, and do not count as misses. An OOM in the last horizon keeps the need at or
   above the usage peak since it, bumped like VPA does (x1.2, at least +100 MiB).
4. Hysteresis, "change only when the gain is worth it or the risk requires it". CPU (throttled,
   not killed): the request is held inside [need * 0.9, need * (1 + band)], band = the day-to-day
   spread of the adjusted windows, at least `hysteresis` (0.3) and at most 1; a new request is set
   a quarter into the band. Memory: a request under the need always rises; a new request covers
   the day-to-day spread plus two horizons of level growth; it is lowered only when that saves at
   least 10 % (the VPA updater's minimum change).
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
# Bounds on memory's margin (the worst past miss): a wild history must not produce a wild request.
MIN_MARGIN: Final[float] = 0.9
MAX_MARGIN: Final[float] = 1.5
# Windows needed before past misses calibrate memory's margin (two back-forecasts) and before the
# CPU forecast is chosen by backtest; memory's margin before that: VPA's safetyMarginFraction
# (vertical-pod-autoscaler/pkg/recommender/logic/recommender.go), so a young history is no
# riskier than VPA's.
MIN_CALIBRATION_WINDOWS: Final[int] = 4
UNCALIBRATED_MARGIN: Final[float] = 0.15
# Day windows of history: two weeks, what a default Prometheus keeps (15 d retention). A single
# week gives the backtest that chooses the CPU forecast only five past boundaries to judge the
# candidates on; two weeks give twelve (bench/rightsizing: cost at VPA's overrun 0.919 -> 0.899 of
# VPA's, with less overrun and fewer changes).
DEFAULT_HISTORY_DAYS: Final[int] = 14
# Memory's peak forecast and margin read the newest week of windows: the margin is the worst past
# miss, and the worst of two weeks only grows (unseen generated memory series: slack 0.287 with 14
# windows against 0.270 with 7, VPA 0.277, the same OOM events) for little gain in stability.
MEMORY_PEAK_WINDOWS: Final[int] = 7
# Confidence is full after a week of history (each weekday seen once), however far back the
# forecast looks: a longer history must not delay a new workload's first change.
CONFIDENT_HISTORY_DAYS: Final[int] = 7
# Half-lives (days) the CPU forecast chooses from by backtest, and the one used without a choice.
# The longest, 16 days, weighs two weeks of history almost evenly (bench/rightsizing: 0.899 ->
# 0.891 of VPA's cost at its overrun; unseen generated seeds unchanged).
HALF_LIFE_CANDIDATES_DAYS: Final[tuple[float, ...]] = (0.5, 1.0, 2.0, 4.0, 8.0, 16.0)
DEFAULT_HALF_LIFE_DAYS: Final[float] = 2.0
# Memory holds the highest level of the last three windows: a two-day weekend's lower level must
# not lower the request before Monday.
LEVEL_HOLD_WINDOWS: Final[int] = 3
# The widest hysteresis band (relative to the need), whatever the day-to-day spread.
MAX_BAND: Final[float] = 1.0
# Position of a new request inside the hysteresis band: a quarter above the need.
BAND_POSITION: Final[float] = 0.25
# CPU surge: when the median of the last hour exceeds 1.3 x the forecast day's q0.9, today is not
# the day the forecast expected (the traces' busy phases last hours, a level shift lasts for good;
# their bursts last minutes and move no median). The need is then at least that hour's own risk
# quantile, and falls back to the forecast once the hour's median does (bench/rightsizing: cost
# at VPA's overrun 0.891 -> 0.83 of VPA's, the generated series unchanged; the rule it replaces, a
# two-hour median above every past peak scaling the whole forecast, lifted late and far above the
# surge). The bar is q0.9 whatever the risk: a higher risk lowers the request, not the bar (a bar
# at the risk's own quantile gave 0.80, with surges, and changes, on ~1/3 of days at VPA's overrun).
# The ratio 1.5 was chosen with the earlier forecast (the mean of the day quantiles times a
# margin); re-measured on the pooled need, 1.3 gives 0.793 instead of 0.814 (unseen generated
# seeds 0.989 -> 0.975, 0.971 -> 0.956). 1.2 gives 0.786 but changes on more than 30 % of the
# CPU days (docs/benchmarks/rightsizing.md).
SURGE_WINDOW_SECONDS: Final[float] = 3_600.0
SURGE_RATIO: Final[float] = 1.3
SURGE_REFERENCE_QUANTILE: Final[float] = 0.9
# The level a day window ends at: the median of its last two hours (memory rescales by it).
END_LEVEL_SECONDS: Final[float] = 7_200.0
# Memory's surge window: one gate interval's worth of samples and then some.
MEMORY_SURGE_SECONDS: Final[float] = 1_800.0
# Share of a horizon a first aligned window must cover to be used.
MIN_WINDOW_FRACTION: Final[float] = 0.5
# Samples a window needs before its statistics count (a quarter of a day at 1/min).
MIN_WINDOW_SAMPLES: Final[int] = 60


# Memory: a new request covers the level's growth over this many horizons, so a steadily
# growing workload changes about every other horizon instead of every one (the issue allows a
# change on 30 % of days; each extra horizon of cover costs half a horizon of growth in slack).
HOLD_HORIZONS: Final[float] = 2.0
# Memory: a request is lowered only when that saves at least 10 % beyond the new target, the
# VPA updater's minimum change (updater/priority/update_priority_calculator.go,
# defaultUpdateThreshold = 0.10).
MIN_GAIN: Final[float] = 0.10
# CPU is throttled, not killed: a request up to 10 % under the need (the updater's minimum
# change) is held rather than raised for a difference the updater itself would not act on.
CPU_SHORTFALL_TOLERANCE: Final[float] = 0.10


def _relative_spread(values: npt.NDArray[np.float64]) -> float:
    """(q90 - q10) / median: how much what each window would have needed varies."""
    return float((np.quantile(values, 0.9) - np.quantile(values, 0.1)) / max(float(np.median(values)), 1e-12))


def _growth(level: npt.NDArray[np.float64]) -> float:
    """Median horizon-over-horizon growth of the level (newest first), at least 0."""
    if level.size < 3:
        return 0.0
    return max(0.0, float(np.expm1(np.median(np.log(level[:-1] / level[1:])))))


class RightsizingParams(BaseModel):
    """Parameters of the recommender (units: seconds, base resource units)."""

    model_config = ConfigDict(frozen=True)
    resource: Literal["cpu", "memory"] = "cpu"
    risk: float = Field(default=0.1, gt=0.0, lt=0.5)
    """Target fraction of time CPU usage may exceed the request; memory forecasts the peak."""
    horizon_seconds: float = Field(default=SECONDS_PER_DAY, gt=0)
    history_days: int = Field(default=DEFAULT_HISTORY_DAYS, ge=1, le=28)
    half_life_days: float | None = Field(default=None, gt=0)
    """Recency weight of past day windows; None: CPU picks it (and whether to rescale to the
    latest level) by backtest on the history; memory uses 2 days."""
    hysteresis: float = Field(default=0.3, ge=0.0)
    """CPU: the least relative width of the band a request is held in above the need."""
    min_request: float = Field(default=0.0, ge=0.0)
    aligned: bool = True
    """Forecast from complete horizon windows (stable within a horizon) rather than sliding ones."""
    surge: bool = True
    """Lift the need at once when the present contradicts the forecast (CPU: the recent median
    above `SURGE_RATIO` x the forecast q0.9; memory: a sample above the forecast peak)."""
    surge_window_seconds: float = Field(default=SURGE_WINDOW_SECONDS, gt=0)
    """Span of the CPU surge test."""


class Recommendation(BaseModel):
    """A request recommendation: `target` to set, `[lower, upper]` the band it may stay in."""

    model_config = ConfigDict(frozen=True)
    target: float
    lower: float
    upper: float
    need: float
    """The forecast usage quantile of the next horizon (memory: its peak, after the margin)."""
    change: bool
    confidence: float
    """History available / a week (or `history_days` if shorter), in [0, 1]."""
    reason: str


def _window_stats(
    values: npt.NDArray[np.float64], q: float, tail: int
) -> tuple[float, float, float, float, float]:
    """The window's risk quantile, its level (median: robust to bursts), its peak, the level it
    ends at (the median of its last `tail` samples) and its `SURGE_REFERENCE_QUANTILE`."""
    qs = np.quantile(values, (q, 0.5, 1.0, SURGE_REFERENCE_QUANTILE))
    return float(qs[0]), float(qs[1]), float(qs[2]), float(np.median(values[-tail:])), float(qs[3])


class RightsizingRecommender:
    """Seasonal, level-adjusted quantile forecaster with hysteresis (see the module docstring)."""

    def __init__(self, params: RightsizingParams | None = None) -> None:
        self.params = params or RightsizingParams()

    @property
    def quantile(self) -> float:
        risk = self.params.risk * (MEMORY_RISK_FACTOR if self.params.resource == "memory" else 1.0)
        return 1.0 - risk

    def forecast(self, timestamps: npt.ArrayLike, usage: npt.ArrayLike) -> tuple[float, float]:
        """The need for the next horizon and the confidence."""
        need, confidence, _, _, _ = self._forecast(timestamps, usage)
        return need, confidence

    def _forecast(
        self, timestamps: npt.ArrayLike, usage: npt.ArrayLike
    ) -> tuple[float, float, float, float, str]:
        """Need, confidence, the relative spread of the level-adjusted window statistics, the
        level's growth per horizon (>= 0), and a note for the reason when a surge lifted the need."""
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
        stats: list[tuple[float, float, float, float, float]] = []
        windows: list[npt.NDArray[np.float64]] = []
        for k in range(self.params.history_days):
            lo, hi = idx[k + 1], idx[k]
            if hi - lo < MIN_WINDOW_SAMPLES:
                break
            tail_start = max(lo, int(np.searchsorted(ts, ts[hi - 1] - END_LEVEL_SECONDS, side="right")))
            stats.append(_window_stats(us[lo:hi], self.quantile, hi - tail_start))
            windows.append(us[lo:hi])
        if not stats:
            return float(np.max(us)), 0.0, self.params.hysteresis, 0.0, ""
        quant = np.array([s[0] for s in stats])
        level = np.maximum(np.array([s[1] for s in stats]), 1e-12)
        end_level = np.maximum(np.array([s[3] for s in stats]), 1e-12)
        peak = np.array([s[2] for s in stats])
        note = ""
        if self.params.resource == "memory":
            # Memory rescales by the level each window hands on (its last hours): a step inside a
            # window leaves its median half-old, half-new, its end level new.
            recent = slice(0, MEMORY_PEAK_WINDOWS)
            need, base, spread = self._memory_need(peak[recent], end_level[recent])
            if self.params.surge:
                need, note = self._memory_surge(ts, us, now, need, base)
        else:
            adjusted = quant * level[0] / level
            # Day-to-day spread of what each past day would have needed: the band must cover it,
            # or ordinary variation alone would trigger changes.
            spread = (
                _relative_spread(adjusted)
                if adjusted.size >= MIN_CALIBRATION_WINDOWS
                else self.params.hysteresis
            )
            model = self._select(quant, level)
            # Until the backtest can choose the forecast, the mean of the windows' quantiles.
            need = (
                self._pooled_quantile(windows, level, model)
                if quant.size >= MIN_CALIBRATION_WINDOWS
                else self._combine(quant, level, model)
            )
            if self.params.surge:
                # The surge is judged against the need at a fixed quantile, whatever the risk: a
                # higher risk lowers the request, not the bar for a surge.
                reference = need * float(
                    np.median(np.array([s[4] for s in stats]) / np.maximum(quant, 1e-12))
                )
                need, note = self._surge(ts, us, now, need, reference)
        full = min(self.params.history_days, CONFIDENT_HISTORY_DAYS) * width
        confidence = min(1.0, (now - float(ts[0])) / full)
        return need, confidence, spread, _growth(level), note

    def _surge(
        self,
        ts: npt.NDArray[np.float64],
        us: npt.NDArray[np.float64],
        now: float,
        need: float,
        reference: float,
    ) -> tuple[float, str]:
        """CPU: while the median of the surge window exceeds `SURGE_RATIO` x `reference` (the
        forecast need at `SURGE_REFERENCE_QUANTILE`), the need is at least the window's own risk
        quantile; and why, for the reason."""
        recent = us[np.searchsorted(ts, now - self.params.surge_window_seconds, side="right") :]
        if not recent.size:
            return need, ""
        median = float(np.median(recent))
        if median <= SURGE_RATIO * reference:
            return need, ""
        lifted = max(need, float(np.quantile(recent, self.quantile)))
        minutes = self.params.surge_window_seconds / 60
        return lifted, (
            f"; surge: median of the last {minutes:.0f} min {median:.4g} > {SURGE_RATIO:g} x forecast "
            f"q{SURGE_REFERENCE_QUANTILE:g} {reference:.4g}, need {lifted:.4g}"
        )

    def _memory_surge(
        self, ts: npt.NDArray[np.float64], us: npt.NDArray[np.float64], now: float, need: float, base: float
    ) -> tuple[float, str]:
        """Memory: any sample of the last `MEMORY_SURGE_SECONDS` above the forecast peak `base`
        moves the need to that sample plus the margin the forecast carried (memory fails hard)."""
        recent = us[np.searchsorted(ts, now - MEMORY_SURGE_SECONDS, side="right") :]
        top = float(np.max(recent)) if recent.size else 0.0
        if top <= base:
            return need, ""
        lifted = max(need, top * need / max(base, 1e-12))
        minutes = MEMORY_SURGE_SECONDS / 60
        return (
            lifted,
            f"; surge: {top:.4g} in the last {minutes:.0f} min > forecast peak {base:.4g}, need {lifted:.4g}",
        )

    def _memory_need(
        self, peak: npt.NDArray[np.float64], level: npt.NDArray[np.float64]
    ) -> tuple[float, float, float]:
        """Memory's need, its forecast peak before the margin, and the day-to-day spread.

        The forecast peak is the recency-weighted mean of past windows' peaks, each rescaled to
        the latest level but never down (see `_memory_scale`). The margin is the worst miss of
        that forecast at past window boundaries. A window whose median already exceeded the peak
        forecast for it is a level shift (a step, a restart), not ordinary variation: the surge
        and the OOM bump answered it within a gate interval, and its half-old, half-new median
        would distort the rescaling, so it enters neither the forecast, the margin nor the spread.
        """
        n = peak.size
        forecasts = [
            self._memory_peak(peak[k + 1 :], level[k + 1 :], np.ones(n - k - 1, bool)) for k in range(n - 1)
        ]
        keep = np.array([level[k] <= forecasts[k] for k in range(n - 1)] + [True])
        base = self._memory_peak(peak, level, keep)
        if n < MIN_CALIBRATION_WINDOWS:
            # Until past windows can calibrate the margin, use VPA's 15 % safety margin.
            return base * (1.0 + UNCALIBRATED_MARGIN), base, MIN_GAIN
        misses = [
            peak[k] / self._memory_peak(peak[k + 1 :], level[k + 1 :], keep[k + 1 :])
            for k in range(n - 2)
            if keep[k]
        ]
        margin = (
            float(np.clip(np.max(misses), MIN_MARGIN, MAX_MARGIN)) if misses else 1.0 + UNCALIBRATED_MARGIN
        )
        adjusted = (peak * self._memory_scale(level))[keep]
        return base * margin, base, _relative_spread(adjusted)

    def _memory_peak(
        self, peak: npt.NDArray[np.float64], level: npt.NDArray[np.float64], keep: npt.NDArray[np.bool_]
    ) -> float:
        """Recency-weighted mean of the kept windows' peaks rescaled to the latest level."""
        if not keep.any():
            return float(peak[0])
        ages = np.flatnonzero(keep).astype(np.float64)
        return self._weighted((peak * self._memory_scale(level))[keep], ages)

    def _memory_scale(self, level: npt.NDArray[np.float64]) -> npt.NDArray[np.float64]:
        """Factors taking each memory window to the latest level. The last `LEVEL_HOLD_WINDOWS`
        are never scaled down: a weekend's lower level comes back on Monday, and memory fails
        hard; a lower level that lasts longer is followed."""
        ratio = level[0] / level
        ratio[:LEVEL_HOLD_WINDOWS] = np.maximum(ratio[:LEVEL_HOLD_WINDOWS], 1.0)
        return ratio

    def _weighted(
        self,
        values: npt.NDArray[np.float64],
        ages: npt.NDArray[np.float64] | None = None,
        half_life_days: float | None = None,
    ) -> float:
        """Recency-weighted mean (ages in horizons; by default newest first, one apart)."""
        if ages is None:
            ages = np.arange(values.size, dtype=np.float64)
        weights = self._recency(ages, half_life_days or self.params.half_life_days or DEFAULT_HALF_LIFE_DAYS)
        return float(np.sum(weights * values) / np.sum(weights))

    def _recency(self, ages: npt.NDArray[np.float64], half_life_days: float) -> npt.NDArray[np.float64]:
        """Weights of windows `ages` horizons old, halving every `half_life_days`."""
        return np.power(0.5, ages * self.params.horizon_seconds / SECONDS_PER_DAY / half_life_days)

    def _combine(
        self, quant: npt.NDArray[np.float64], level: npt.NDArray[np.float64], model: tuple[float, bool]
    ) -> float:
        """Recency-weighted mean of the windows' quantiles, rescaled to the latest level or not."""
        half_life, rescale = model
        return self._weighted(quant * (level[0] / level) if rescale else quant, half_life_days=half_life)

    def _pooled_quantile(
        self,
        windows: Sequence[npt.NDArray[np.float64]],
        level: npt.NDArray[np.float64],
        model: tuple[float, bool],
    ) -> float:
        """CPU need: the risk quantile of the windows' samples pooled, each window rescaled to the
        latest level or not (`model`) and weighted by its recency (each day counts once, whatever
        its number of samples)."""
        half_life, rescale = model
        scale = level[0] / level if rescale else np.ones(len(windows))
        recency = self._recency(np.arange(len(windows), dtype=np.float64), half_life)
        pooled = np.concatenate([w * f for w, f in zip(windows, scale, strict=True)])
        weights = np.concatenate([np.full(w.size, r / w.size) for w, r in zip(windows, recency, strict=True)])
        order = np.argsort(pooled, kind="stable")
        cumulative = np.cumsum(weights[order])
        at = int(np.searchsorted(cumulative, self.quantile * cumulative[-1]))
        return float(pooled[order[min(at, pooled.size - 1)]])

    def _backtest(
        self, quant: npt.NDArray[np.float64], level: npt.NDArray[np.float64], model: tuple[float, bool]
    ) -> list[float]:
        """Realised/forecast ratios of the model's forecast at each past window boundary."""
        return [
            quant[k] / max(self._combine(quant[k + 1 :], level[k + 1 :], model), 1e-12)
            for k in range(quant.size - 2)
        ]

    def _select(self, quant: npt.NDArray[np.float64], level: npt.NDArray[np.float64]) -> tuple[float, bool]:
        """The (half-life, rescale) forecast with the smallest mean absolute log error at past
        window boundaries: how fast to forget and whether a level change persists are properties
        of the workload, so they are chosen on its own history (a fixed half-life when
        `half_life_days` is set, or the history is too short to compare)."""
        if self.params.half_life_days is not None or quant.size < MIN_CALIBRATION_WINDOWS:
            return (self.params.half_life_days or DEFAULT_HALF_LIFE_DAYS, True)
        models = [(hl, rs) for hl in HALF_LIFE_CANDIDATES_DAYS for rs in (True, False)]
        errors = [float(np.mean(np.abs(np.log(self._backtest(quant, level, m))))) for m in models]
        return models[int(np.argmin(errors))]

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
        need, confidence, spread, growth, note = self._forecast(timestamps, usage)
        reason = f"q{self.quantile:.3f} forecast of next {self.params.horizon_seconds / 3600:.0f}h" + note
        if self.params.resource == "memory":
            ts = np.asarray(timestamps, dtype=np.float64)
            us = np.asarray(usage, dtype=np.float64)
            since = float(ts[-1]) - self.params.horizon_seconds
            recent_ooms = [t for t in oom_times if t >= since]
            if recent_ooms:
                # The bump rests on the usage seen since the OOM, not on the request: a request
                # already raised by the bump is then held instead of bumped again and again.
                start = np.searchsorted(ts, min(recent_ooms))
                peak = float(np.max(us[start:], initial=0.0))
                if request_set_at is not None and request_set_at <= min(recent_ooms):
                    peak = max(peak, current_request)
                need = max(need, peak * OOM_BUMP_RATIO, peak + OOM_MIN_BUMP_BYTES)
                reason += f"; OOM bump to {need:.4g}"
        need = max(need, self.params.min_request)
        if self.params.resource == "memory":
            headroom = min(spread + growth * HOLD_HORIZONS, MAX_BAND)
            new_target = need * (1.0 + headroom)
            lower, upper = need, new_target * (1.0 + MIN_GAIN)
        else:
            band = float(np.clip(spread, self.params.hysteresis, MAX_BAND))
            lower, upper = need * (1.0 - CPU_SHORTFALL_TOLERANCE), need * (1.0 + band)
            new_target = need * (1.0 + BAND_POSITION * band)
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
        target = new_target
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
