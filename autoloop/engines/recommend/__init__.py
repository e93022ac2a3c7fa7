"""Rightsizing recommender: a usage history in, a request recommendation with its band out.

Contract: `RightsizingRecommender(params).recommend(timestamps, usage, current_request=...)` is a
pure function of the history it is given (it sees only the past) and returns a frozen
`Recommendation`. The operator calls it each interval on the window it fetched from Prometheus;
`bench/rightsizing` calls the very same method step by step over replayed series. It must never
read a clock, a cluster or a file.

The need is learnt per workload (docs/engines/rightsizing.md): CPU, the recency-weighted quantile
of past usage at a level calibrated so that the realised overrun matches `risk` (`cpu.py`); memory,
the last peak times a conformal margin so that a share `risk` of horizons see usage above it, with
VPA's bump after an OOM kill (`memory.py`). A request is held in a band around the need whose width
follows from what a restart costs (`hysteresis.py`). Forecasts are remade at horizon boundaries
only, so a request is stable within a horizon (unless `surge_test` is on and the present
contradicts the forecast).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Final, Literal

import numpy as np
import numpy.typing as npt
from pydantic import BaseModel, ConfigDict, Field

from autoloop.engines.recommend import cpu, memory, windows
from autoloop.engines.recommend.hysteresis import Band

SECONDS_PER_DAY: Final[float] = 86_400.0
DEFAULT_HISTORY_DAYS: Final[int] = 14
"""Two weeks of windows: what a default Prometheus keeps (15 d retention)."""
CONFIDENT_HISTORY_DAYS: Final[int] = 7
"""Confidence is full after a week of history (each weekday seen once)."""
DEFAULT_HALF_LIFE_DAYS: Final[float] = 7.0
"""Chosen by leave-one-series-out cross-validation in bench/rightsizing (docs/benchmarks/rightsizing.md)."""
DEFAULT_RESTART_COST_HOURS: Final[float] = 9.6
"""Chosen by leave-one-series-out cross-validation in bench/rightsizing (docs/benchmarks/rightsizing.md)."""
DEFAULT_SURGE_TEST: Final[bool] = False
"""Chosen by leave-one-series-out cross-validation in bench/rightsizing (docs/benchmarks/rightsizing.md)."""
DEFAULT_CALIBRATION_STEP: Final[float] = 0.03
"""Chosen by leave-one-series-out cross-validation in bench/rightsizing (docs/benchmarks/rightsizing.md)."""


class RightsizingParams(BaseModel):
    """Parameters of the recommender (units: seconds, base resource units)."""

    model_config = ConfigDict(frozen=True)
    resource: Literal["cpu", "memory"] = "cpu"
    risk: float = Field(default=0.1, gt=0.0, lt=0.5)
    """CPU: the share of time usage may exceed the request; memory: the share of horizons whose
    peak may exceed it (each an OOM kill)."""
    horizon_seconds: float = Field(default=SECONDS_PER_DAY, gt=0)
    history_days: int = Field(default=DEFAULT_HISTORY_DAYS, ge=1, le=28)
    half_life_days: float = Field(default=DEFAULT_HALF_LIFE_DAYS, gt=0)
    """Recency weight of past windows: a window this old weighs half the newest."""
    restart_cost_hours: float = Field(default=DEFAULT_RESTART_COST_HOURS, ge=0)
    """What a change (a pod restart) costs, in hours of the current request: a request is lowered
    only when the saving over a horizon pays for it."""
    calibration_step: float = Field(default=DEFAULT_CALIBRATION_STEP, ge=0.0, le=1.0)
    """CPU: 0, the level is calibrated by replaying the band policy at every level on the past
    windows; > 0, by an online adaptive-conformal walk of the log level with this step
    (`cpu.online_level`)."""
    surge_test: bool = DEFAULT_SURGE_TEST
    """CPU: test within a horizon whether usage since the boundary overruns the request far beyond
    `risk` and, if so, follow today's samples once a horizon (`cpu.surged`). Off, a level shift
    is followed at the next horizon boundary."""
    min_request: float = Field(default=0.0, ge=0.0)


class Recommendation(BaseModel):
    """A request recommendation: `target` to set, `[lower, upper]` the band it may stay in."""

    model_config = ConfigDict(frozen=True)
    target: float
    lower: float
    upper: float
    need: float
    """CPU: the forecast usage quantile of the next horizon; memory: its forecast peak."""
    change: bool
    confidence: float
    """History available / a week (or `history_days` if shorter), in [0, 1]."""
    reason: str


class RightsizingRecommender:
    """Learns a workload's need from its history (see the module docstring)."""

    def __init__(self, params: RightsizingParams | None = None) -> None:
        self.params = params or RightsizingParams()
        p = self.params
        self.band = Band.for_cost(
            restart_cost_hours=p.restart_cost_hours,
            horizon_hours=p.horizon_seconds / 3600.0,
            hard_failure=p.resource == "memory",
        )
        self._half_life = p.half_life_days * SECONDS_PER_DAY / p.horizon_seconds
        # Forecasts change only at horizon boundaries: the last one is kept for the calls within.
        self._cache: tuple[tuple[float, int, int], cpu.Forecast | memory.Forecast] | None = None

    @property
    def quantile(self) -> float:
        return 1.0 - self.params.risk

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

        `oom_times` (Unix seconds) in the last horizon bump the memory need like VPA does."""
        ts = np.asarray(timestamps, dtype=np.float64)
        us = np.asarray(usage, dtype=np.float64)
        if ts.size == 0 or ts.size != us.size:
            raise ValueError("timestamps and usage must be non-empty and of equal length")
        p = self.params
        win = windows.split(ts, us, p.horizon_seconds, p.history_days)
        confidence = min(
            1.0, float(ts[-1] - ts[0]) / (min(p.history_days, CONFIDENT_HISTORY_DAYS) * p.horizon_seconds)
        )
        if p.resource == "memory":
            need, reason = self._memory_need(win, ts, us, current_request, request_set_at, oom_times)
        else:
            need, reason = self._cpu_need(win, current_request, request_set_at)
        need = max(need, p.min_request)
        lower, upper = self.band.lower(need), self.band.upper(need)
        hold = self.band.holds(current_request, need)
        verdict = (
            "request inside band, hold"
            if hold
            else f"request left band, {'up' if need > current_request else 'down'}"
        )
        return Recommendation(
            target=current_request if hold else self.band.target(need),
            lower=lower,
            upper=upper,
            need=need,
            change=not hold,
            confidence=confidence,
            reason=f"{reason}; {verdict}",
        )

    def _forecast(self, win: windows.Windows) -> cpu.Forecast | memory.Forecast:
        key = (win.boundary, win.start_index, len(win.full))
        if self._cache is not None and self._cache[0] == key:
            return self._cache[1]
        p = self.params
        fc: cpu.Forecast | memory.Forecast
        if p.resource == "memory":
            fc = memory.margin(win.full, risk=p.risk, half_life=self._half_life)
        else:
            fc = cpu.day_forecast(
                win.full,
                risk=p.risk,
                half_life=self._half_life,
                band=self.band,
                online_step=p.calibration_step,
            )
        self._cache = (key, fc)
        return fc

    def _cpu_need(self, win: windows.Windows, current: float, set_at: float | None) -> tuple[float, str]:
        p = self.params
        if not win.full:
            # Less than a horizon of history: the quantile of what there is.
            return float(
                np.quantile(win.partial, self.quantile)
            ), f"q{self.quantile:.3f} of the partial history"
        fc = self._forecast(win)
        assert isinstance(fc, cpu.Forecast)
        reason = (
            f"q{self.quantile:.3f} of next {p.horizon_seconds / 3600:.0f}h: recency-weighted usage "
            f"q{1 - fc.level:.4f} (level calibrated on {fc.calibrated_on} past horizons)"
        )
        if not p.surge_test or (set_at is not None and set_at >= win.boundary):
            return fc.need, reason
        span = float(win.partial_ts[-1] - win.boundary) if win.partial_ts.size else 0.0
        if not cpu.surged(win.partial, current, p.risk, span):
            return fc.need, reason
        lifted = cpu.need_today(win.partial, level=fc.level)
        if lifted > fc.need:
            return lifted, reason + f"; overrun since the boundary beyond risk, need {lifted:.4g}"
        return fc.need, reason

    def _memory_need(
        self,
        win: windows.Windows,
        ts: npt.NDArray[np.float64],
        us: npt.NDArray[np.float64],
        current: float,
        set_at: float | None,
        oom_times: Sequence[float],
    ) -> tuple[float, str]:
        p = self.params
        running = float(np.max(win.partial)) if win.partial.size else 0.0
        last = float(np.max(win.full[0])) if win.full else float(np.max(us))
        fc = self._forecast(win) if win.full else memory.Forecast(1.0 + memory.UNCALIBRATED_MARGIN, 0)
        assert isinstance(fc, memory.Forecast)
        need = max(last, running) * fc.margin
        reason = (
            f"peak of next {p.horizon_seconds / 3600:.0f}h at risk {p.risk:g}: last peak x {fc.margin:.3f} "
            f"(margin calibrated on {fc.calibrated_on} horizons)"
        )
        recent = [t for t in oom_times if t >= float(ts[-1]) - p.horizon_seconds]
        if recent:
            # The bump rests on the usage seen since the OOM (and the request it was killed at), so
            # a request already raised by the bump is held, not bumped again and again.
            used = float(np.max(us[np.searchsorted(ts, min(recent)) :], initial=0.0))
            if set_at is not None and set_at <= min(recent):
                used = max(used, current)
            need = max(need, memory.oom_bumped(used))
            reason += f"; OOM bump to {need:.4g}"
        return need, reason
