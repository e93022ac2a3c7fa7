"""ResourceAllocation's demand: each workload's usage history from Prometheus, forecast over the
horizon at the SLA quantile, and the forecast kept for scoring against what is measured next.

Pure apart from `forecast_demand`, which reads Prometheus through a `MetricSource`; no Kubernetes
calls (a workload is passed in, already read).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Final, NamedTuple

import numpy as np

from autoloop.engines import forecast
from autoloop.metrics.demand import demand_query
from autoloop.metrics.history_cache import HistoryCache
from autoloop.metrics.source import MetricSource, MetricsUnavailable, Series
from autoloop.operator import kube

LOOKBACK_SECONDS: Final[float] = 14 * 86_400.0
"""History read per metric: two weeks, so daily and weekly seasonality can be detected."""
HORIZON_STEPS: Final[int] = 12
"""Forecast steps per horizon when history allows (1 h horizon: 5-minute steps)."""
MIN_HISTORY_BINS: Final[int] = 6
"""Bins of history wanted at the forecast step; a shorter history gets a finer step."""
MIN_FORECAST_STEP_SECONDS: Final[float] = 5.0
MIN_ERROR_SAMPLES: Final[int] = 3
"""Measured samples needed before a previous forecast is scored."""
FORECAST_RANDOM_STATE: Final[int] = 0
LEVEL_SHIFT_TOLERANCE_SECONDS: Final[float] = 6 * 3600.0
"""A level shift placed within this of the one recorded last pass is the same shift."""


def forecast_step(horizon_seconds: float, history_seconds: float, sample_seconds: float) -> float:
    """The forecast grid: HORIZON_STEPS per horizon, finer when the history is too short to hold
    MIN_HISTORY_BINS of those, never finer than the samples (nor MIN_FORECAST_STEP_SECONDS)."""
    step = horizon_seconds / HORIZON_STEPS
    if history_seconds < MIN_HISTORY_BINS * step:
        step = history_seconds / MIN_HISTORY_BINS
    return max(step, sample_seconds, MIN_FORECAST_STEP_SECONDS)


def sample_step(series: Series) -> float:
    """The median spacing of a series' samples (seconds); 0 for fewer than two samples."""
    if len(series) < 2:
        return 0.0
    return float(np.median(np.diff(series.timestamps)))


class PeakForecast(NamedTuple):
    peak: float
    """The highest step's `quantile` forecast over the horizon (input unit)."""
    median: float
    """The mean of the median forecast over the horizon."""
    level_shift_at: float | None
    """Where the forecaster found the current level regime to start (Unix s), if it did."""


def peak_forecast(series: Series, *, horizon_seconds: float, quantile: float) -> PeakForecast:
    """The forecast's peak at `quantile` and mean median over the horizon.

    The allocation must hold for the whole horizon, so its demand is the highest step's quantile."""
    span = float(series.timestamps[-1] - series.timestamps[0]) if len(series) else 0.0
    step = forecast_step(horizon_seconds, span, sample_step(series))
    fc = forecast.forecast(
        series.timestamps,
        series.values,
        horizon_seconds=horizon_seconds,
        step_seconds=step,
        quantiles=(0.5, quantile),
        random_state=FORECAST_RANDOM_STATE,
    )
    return PeakForecast(
        float(np.max(fc.quantile(quantile))), float(np.mean(fc.quantile(0.5))), fc.regime_start
    )


def forecast_error(previous: dict[str, float], measured: Series, quantile: float) -> float | None:
    """Relative pinball loss of the scored CPU forecast (`scoredCpu`, made at `scoredAt`) against
    the usage measured in its horizon so far: mean pinball loss / mean usage. None until
    MIN_ERROR_SAMPLES are in."""
    made_at, horizon = previous.get("scoredAt"), previous.get("horizonSeconds")
    predicted = previous.get("scoredCpu")
    if made_at is None or horizon is None or predicted is None:
        return None
    inside = (measured.timestamps > made_at) & (measured.timestamps <= made_at + horizon)
    y = measured.values[inside]
    if len(y) < MIN_ERROR_SAMPLES or float(np.mean(y)) <= 0:
        return None
    return forecast.pinball_loss(y, np.full(len(y), predicted), quantile) / float(np.mean(y))


def scored_forecast(previous: dict[str, float], cpu: float, now: float, horizon: float) -> dict[str, float]:
    """The forecast kept for scoring: the previous one until its horizon is over, then this one.

    Forecasts are remade every interval; scoring only the latest would see one interval of data.
    Keeping one for a whole horizon scores it on the horizon it was made for."""
    made_at, kept = previous.get("scoredAt"), previous.get("scoredCpu")
    if made_at is not None and kept is not None and now < made_at + horizon:
        return {"scoredAt": made_at, "scoredCpu": kept}
    return {"scoredAt": now, "scoredCpu": round(cpu, 6)}


@dataclass(frozen=True)
class Demand:
    """One workload's measured history and forecast, base units (cores, bytes, requests/s)."""

    workload: kube.Workload
    cpu: float
    memory: float
    cpu_median: float
    rps: float | None
    cpu_history: Series
    level_shift_at: dict[str, float] = field(default_factory=dict)
    """Per resource (`cpu`, `memory`): where a lasting level shift started the regime the
    forecast rests on (Unix s; see `engines.forecast.REGIME_SHIFT_FACTOR`)."""

    def forecast_record(
        self, now: float, horizon_seconds: float, previous: dict[str, float]
    ) -> dict[str, float]:
        out = {
            "cpu": round(self.cpu, 6),
            "memory": round(self.memory, 1),
            "cpuMedian": round(self.cpu_median, 6),
            "madeAt": now,
            "horizonSeconds": horizon_seconds,
            **scored_forecast(previous, self.cpu, now, horizon_seconds),
        }
        if self.rps is not None:
            out["rps"] = round(self.rps, 4)
        for resource, at in self.level_shift_at.items():
            out[f"{resource}LevelShiftAt"] = at
        return out

    def new_level_shifts(self, previous: dict[str, float]) -> dict[str, float]:
        """The level shifts not in the previous record (`forecast_record`): a new one, or one
        placed more than LEVEL_SHIFT_TOLERANCE_SECONDS away (not the same step re-located on a
        moved forecast grid)."""
        return {
            r: at
            for r, at in self.level_shift_at.items()
            if abs(at - previous.get(f"{r}LevelShiftAt", -math.inf)) > LEVEL_SHIFT_TOLERANCE_SECONDS
        }


def level_shift_messages(demands: list[Demand], previous: dict[str, dict[str, float]]) -> list[str]:
    """One line per level shift not in last pass's records (`previous`: workload name to its
    `forecast` record), for a `LevelShift` Event."""
    out = []
    for d in demands:
        for resource, at in d.new_level_shifts(previous.get(d.workload.name, {})).items():
            since = datetime.fromtimestamp(at, tz=UTC).isoformat(timespec="minutes")
            out.append(
                f"{d.workload.name}: {resource} demand has held a new level since {since}; "
                "the forecast scales the history before it to that level (drops it if it was zero)"
            )
    return out


def forecast_demand(
    source: MetricSource,
    histories: HistoryCache,
    namespace: str,
    w: kube.Workload,
    *,
    start: float,
    end: float,
    horizon_seconds: float,
    quantile: float,
) -> Demand:
    """One workload's CPU and memory (and requests/s when served) history and forecast.

    Raises MetricsUnavailable when CPU or memory has no data, ValueError when the history is too
    short to forecast."""
    history = {
        r: histories.fetch(
            source, demand_query(r, namespace=namespace, workload=w.name), start=start, end=end
        )
        for r in ("cpu", "memory")
    }
    cpu = peak_forecast(history["cpu"], horizon_seconds=horizon_seconds, quantile=quantile)
    memory = peak_forecast(history["memory"], horizon_seconds=horizon_seconds, quantile=quantile)
    rps: float | None
    try:
        rps_history = histories.fetch(
            source, demand_query("rps", namespace=namespace, workload=w.name), start=start, end=end
        )
        rps = peak_forecast(rps_history, horizon_seconds=horizon_seconds, quantile=quantile).peak
    except (MetricsUnavailable, ValueError):
        rps = None  # not every workload serves HTTP; CPU and memory are what is allocated
    shifts = {
        r: f.level_shift_at for r, f in (("cpu", cpu), ("memory", memory)) if f.level_shift_at is not None
    }
    return Demand(w, cpu.peak, memory.peak, cpu.median, rps, history["cpu"], shifts)
