"""Demand forecasting with prediction intervals: a series with timestamps in, quantile forecasts out.

Contract: `Forecaster(...).fit(timestamps, values).predict() -> QuantileForecast` is pure (numpy and
scikit-learn); `forecast(...)` is the one-call form. The input is one metric of one workload (CPU
cores, memory bytes, requests/s: any non-negative quantity) sampled at any step (1 minute from
Prometheus is typical), possibly with gaps; the output is, for each of the next
`horizon_seconds / step_seconds` steps, the requested quantiles of the step's mean value.

How. The series is averaged into `step_seconds` bins. At long horizons a lasting level shift of
at least REGIME_SHIFT_FACTOR starts a new regime: the history before it is rescaled to the new
level (dropped if it sat at zero), so profiles and error histories describe the current level.
Candidates, simplest first:
* `last_value`: the last bin (naive);
* `seasonal_naive_day` / `seasonal_naive_week`: the same time one day / one week earlier;
* `seasonal_mean`: the mean of the same time over the last `SEASONAL_MEAN_DAYS` days;
* long horizons only (>= `LONG_HORIZON_SECONDS`): `recent_median`, the median of the last day;
  `seasonal_median`, a robust daily profile (median of the same time over the last `PROFILE_DAYS`
  days); `profile_level`, that profile shifted by the median gap between the last day and its own
  profile (a level step carries over); `profile_ratio`, the median daily shape (each value divided
  by its trailing day's median level) times the last day's level (multiplicative seasonality: a
  level step or growth scales the shape instead of being averaged into it);
* `gbm`: scikit-learn histogram gradient boosting with quantile loss, one model per quantile,
  trained on (origin, step-ahead) pairs with lag, rolling-mean, seasonal-lag and time-of-day
  features, all divided by the recent level so one model serves every load level;
* `ensemble`: the mean of `gbm` and the best simpler candidate.
`fit` holds out the most recent origins (a rolling-origin backtest: the GBM there is trained only on
data before them) and calibrates each candidate's quantiles by split conformal prediction
(conformalized quantile regression for the GBM), per step ahead, with errors in the input unit or
divided by the level, whichever scores better. At short horizons every candidate is calibrated on
its held-out errors; at long horizons the fixed rules are scored as they are deployed, causally:
at each held-out origin, offsets from their errors at the history's origins observed by then
(deployed: from every error). The fixed rules compete on score alone; a trained model must beat the best of them by more than one standard
error (the one-standard-error rule). The GBM is then refit on all data, a fixed rule re-calibrated
on its errors over the whole history. At long horizons, unless the GBM wins, the fixed rules are
combined rather than chosen (`combination`): their calibrated quantile forecasts are averaged per
quantile level, weighted by their held-out pinball loss at that level.
Daily and weekly seasonality is detected from the autocorrelation at those lags and reported.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Final

import numpy as np
import threadpoolctl
from sklearn.ensemble import HistGradientBoostingRegressor

SECONDS_PER_DAY: Final[int] = 86_400
DAYS_PER_WEEK: Final[int] = 7
DEFAULT_QUANTILES: Final[tuple[float, ...]] = (0.05, 0.5, 0.95)
# A seasonal lag counts as detected when the series' autocorrelation there exceeds this
# (a "moderate" correlation; white noise of n points stays below 2/sqrt(n) ~ 0.05 at n = 2,000).
SEASONALITY_ACF_THRESHOLD: Final[float] = 0.3
# Lags (in steps) of the last values fed to the GBM, and rolling-mean windows (in steps).
GBM_LAGS: Final[int] = 6
GBM_SHORT_WINDOW: Final[int] = 3
GBM_LONG_WINDOW: Final[int] = 12
# Training rows kept per fit (origins are thinned evenly beyond this) so one fit stays < 2 s.
GBM_MAX_ROWS: Final[int] = 5_000
GBM_MAX_ITER: Final[int] = 80
GBM_LEARNING_RATE: Final[float] = 0.15
GBM_MAX_LEAF_NODES: Final[int] = 8
GBM_MIN_SAMPLES_LEAF: Final[int] = 40
# The GBM is a candidate only with at least this many training origins before the holdout.
GBM_MIN_TRAIN_ORIGINS: Final[int] = 48
# Held-out origins: the last HOLDOUT_FRACTION of the series (several days on a week of history, so
# errors are seen across regimes, not one quiet afternoon), thinned to HOLDOUT_MAX_ORIGINS.
HOLDOUT_FRACTION: Final[float] = 0.4
HOLDOUT_MAX_ORIGINS: Final[int] = 300
# A chosen simple method is re-calibrated on its errors over the whole history (no training needed),
# at up to this many origins, and at most FULL_CALIBRATION_MAX_RESIDUALS (origin, step) errors: a
# day at 5-minute steps has 288 steps, and neighbouring origins' errors are nearly the same anyway.
FULL_CALIBRATION_MAX_ORIGINS: Final[int] = 2000
FULL_CALIBRATION_MAX_RESIDUALS: Final[int] = 60_000
# Calibration residuals of step h are pooled with those of steps h +- this fraction of the horizon.
CALIBRATION_POOL_FRACTION: Final[float] = 0.1
# Values sorted at once when pooling calibration residuals (a memory bound: 8 MB of float64).
POOLED_SORT_VALUES: Final[int] = 1_000_000
# Guards the level division for series that sit at zero: a fraction of the series' mean level.
LEVEL_FLOOR_FRACTION: Final[float] = 0.05
MIN_POINTS: Final[int] = 3
# Days averaged by the `seasonal_mean` candidate (same time of day on each of the last N days).
SEASONAL_MEAN_DAYS: Final[int] = 3
# Days in the robust daily profile of `seasonal_median` / `profile_level`: one week, so each weekday
# counts once and a weekly dip moves the median no more than any other day. With fewer days of
# history the median runs over the days there are.
PROFILE_DAYS: Final[int] = 7
# OpenMP threads per GBM fit. Fits are small and the operator runs many; on a busy 2-core machine
# an OpenMP team made one 0.35 s fit take 14-25 s (spin-waiting threads competing for cores).
GBM_THREADS: Final[int] = 1
CANDIDATES: Final[tuple[str, ...]] = (
    "last_value",
    "recent_median",
    "seasonal_naive_day",
    "seasonal_naive_week",
    "seasonal_mean",
    "seasonal_median",
    "profile_level",
    "profile_ratio",
    "gbm",
    "ensemble",
    "combination",
)

# Long horizons (at least this many seconds: a quarter of a day) switch on the daily-profile
# candidates and score every fixed rule as it will be deployed (offsets from its errors over the
# whole history, scored at the held-out origins). Below it the last observations carry most of the
# information (the GBM sees them, and the daily lags too), extra candidates are only more chances
# for a short holdout to pick a lucky loser, and the GBM is compared with the rules on one footing
# (each calibrated on the holdout).
LONG_HORIZON_SECONDS: Final[float] = 6 * 3600.0
PROFILE_CANDIDATES: Final[frozenset[str]] = frozenset(
    {"recent_median", "seasonal_median", "profile_level", "profile_ratio"}
)
# Long horizons: the fixed rules' quantile forecasts are averaged per quantile level with weights
# exp(-(loss / best loss - 1) / T) from their held-out pinball loss at that level (an exponentially
# weighted forecaster, Cesa-Bianchi & Lugosi, "Prediction, Learning, and Games", 2006, section 2.1,
# on relative loss). T = 0.1: a rule 10 % worse than the best weighs 1/e of it, 30 % worse 5 %.
COMBINATION_TEMPERATURE: Final[float] = 0.1
# ...with held-out losses discounted by age (discounted regret, same book, chapter 2): an origin one
# horizon older than the last counts half, so the weights follow the rules that work now.
COMBINATION_HALF_LIFE_HORIZONS: Final[float] = 1.0
# Long horizons: the held-out origins are split into blocks spanning this fraction of the horizon;
# a fixed rule's offsets in a block come from the errors observed before the block starts
# (conformal calibration over time, never from errors not yet seen).
ONLINE_CALIBRATION_BLOCK_FRACTION: Final[float] = 0.25
# ...at most this many blocks, each calibrated on history origins thinned evenly so each step's
# pooled residuals number at most ONLINE_CALIBRATION_POOL_VALUES (plenty for a 5 % quantile).
ONLINE_CALIBRATION_MAX_BLOCKS: Final[int] = 24
ONLINE_CALIBRATION_POOL_VALUES: Final[int] = 4000
# Long horizons: a level shift by at least this factor (the median of the day after a point against
# the day before it) that holds to the end of the series starts a new regime, and the history
# before it is rescaled to the new level: profiles and error histories at another level mislead
# every rule, while the daily shape and the relative noise carry over. A shift to a level already
# seen earlier in the history (a weekend, a recurring batch) is not a new regime, nor is one that
# has not yet lasted a day (a burst). How the constants in this block were measured:
# docs/benchmarks/forecast.md, "Constants of the forecaster".
REGIME_SHIFT_FACTOR: Final[float] = 3.0
# Candidates with fitted parameters (the others are fixed rules).
TRAINED: Final[frozenset[str]] = frozenset({"gbm", "ensemble"})


@dataclass(frozen=True)
class QuantileForecast:
    """Forecast quantiles of each future step's mean value."""

    timestamps: np.ndarray
    """(H,) Unix seconds at the start of each forecast step."""
    quantiles: tuple[float, ...]
    values: np.ndarray
    """(len(quantiles), H), in the unit of the input; non-decreasing along the quantile axis."""
    model: str
    """The candidate chosen by the backtest."""
    step_seconds: float
    backtest_pinball: dict[str, float] = field(default_factory=dict)
    """Mean pinball loss of each candidate on the held-out origins (input unit)."""
    seasonal_periods_seconds: tuple[int, ...] = ()
    """Detected seasonal periods (86400 daily, 604800 weekly)."""
    regime_start: float | None = None
    """Long horizons: Unix seconds where a lasting level shift (REGIME_SHIFT_FACTOR) started the
    regime the forecast rescaled the earlier history to; None if there is none."""

    def quantile(self, q: float) -> np.ndarray:
        """The forecast at quantile `q` (one of `quantiles`)."""
        return self.values[self.quantiles.index(q)]


def pinball_loss(y: np.ndarray, forecast: np.ndarray, q: float) -> float:
    """Mean pinball (quantile) loss of `forecast` for quantile `q` of `y`."""
    d = np.asarray(y, dtype=float) - np.asarray(forecast, dtype=float)
    return float(np.mean(np.maximum(q * d, (q - 1.0) * d)))


def resample(
    timestamps: np.ndarray, values: np.ndarray, step_seconds: float
) -> tuple[np.ndarray, np.ndarray]:
    """Mean of the values in each `step_seconds` bin (aligned to multiples of the step).

    Empty bins inside the range are filled by linear interpolation; NaN values are ignored.
    Returns bin start times and bin means.
    """
    t = np.asarray(timestamps, dtype=float)
    v = np.asarray(values, dtype=float)
    ok = np.isfinite(t) & np.isfinite(v)
    t, v = t[ok], v[ok]
    if len(t) == 0:
        raise ValueError("no finite samples")
    b = np.floor(t / step_seconds).astype(np.int64)
    first = int(b.min())
    idx = b - first
    n = int(idx.max()) + 1
    sums = np.bincount(idx, weights=v, minlength=n)
    counts = np.bincount(idx, minlength=n)
    have = counts > 0
    z = np.empty(n)
    z[have] = sums[have] / counts[have]
    if not have.all():
        pos = np.arange(n)
        z[~have] = np.interp(pos[~have], pos[have], z[have])
    return (first + np.arange(n)) * step_seconds, z


def _acf(z: np.ndarray, lag: int) -> float:
    if lag <= 0 or len(z) < 2 * lag:
        return float("nan")
    x = z - z.mean()
    den = float(np.dot(x, x))
    return float(np.dot(x[:-lag], x[lag:]) / den) if den > 0 else float("nan")


def _seasonal_index(t: np.ndarray, h: np.ndarray, period: int, back: int = 0) -> np.ndarray:
    """Index of the latest observed step (<= t) at the same phase as t + h, `back` periods earlier."""
    return t + h - period * (np.ceil(h / period).astype(np.int64) + back)


def _rolling_median(z: np.ndarray, window: int) -> np.ndarray:
    """Median of the finite values of z over the last `window` steps up to each index (fewer at
    the start); NaN where there is none."""
    padded = np.concatenate([np.full(window - 1, np.nan), z])
    views = np.lib.stride_tricks.sliding_window_view(padded, window)
    out = np.full(len(z), np.nan)
    full = np.isfinite(views).all(axis=1)
    if full.any():
        out[full] = np.median(views[full], axis=1)
    for i in np.flatnonzero(~full):
        row = views[i][np.isfinite(views[i])]
        if len(row):
            out[i] = np.median(row)
    return out


def _profile_values(z: np.ndarray, T: np.ndarray, Hh: np.ndarray, day: int) -> np.ndarray:
    """Median of the same time of day as each target t + h over the last PROFILE_DAYS days before
    origin t (the days there are); NaN where no day is behind it."""
    idx = np.stack([_seasonal_index(T, Hh, day, back) for back in range(PROFILE_DAYS)])
    vals = np.where(idx >= 0, z[np.maximum(idx, 0)], np.nan)
    # Sorting puts NaN last; the median of the k finite values sits at (k - 1) / 2.
    k = np.isfinite(vals).sum(axis=0)
    vals = np.sort(vals, axis=0)
    lo = np.maximum((k - 1) // 2, 0)
    hi = np.maximum(k // 2, 0)
    med = 0.5 * (np.take_along_axis(vals, lo[None], 0)[0] + np.take_along_axis(vals, hi[None], 0)[0])
    return np.where(k > 0, med, np.nan)


def _profile(z: np.ndarray, T: np.ndarray, Hh: np.ndarray, day: int) -> np.ndarray | None:
    """`_profile_values`, or None if some target has not even one day behind it."""
    out = _profile_values(z, T, Hh, day)
    return None if not np.isfinite(out).all() else out


# Days of history a fixed rule needs behind an origin before it forecasts every step ahead
# (`profile_level` re-levels by the last day's gap to a profile that itself needs a day).
RULE_HISTORY_DAYS: Final[dict[str, int]] = {
    "last_value": 0,
    "recent_median": 0,
    "seasonal_naive_day": 1,
    "seasonal_median": 1,
    "profile_ratio": 1,
    "profile_level": 2,
    "seasonal_mean": SEASONAL_MEAN_DAYS,
    "seasonal_naive_week": DAYS_PER_WEEK,
}


def _first_origin(rule: str, day: int) -> int:
    """The first origin (index) at which fixed rule `rule` forecasts every step ahead."""
    return max(0, RULE_HISTORY_DAYS[rule] * day - 1)


def _regime_start(z: np.ndarray, day: int, median: np.ndarray | None = None) -> int:
    """Index where the series' current level regime starts (0 if it spans the whole history).

    A regime starts after index t when the median of the day after t differs from the median of
    the day up to t by at least REGIME_SHIFT_FACTOR, every later day's median stays beyond the
    geometric midpoint of the two, and the new level lies beyond every day-median before t by
    the square root of the factor (it was never seen before). The latest such shift wins.
    `median`: `_day_median(z, day)` when already computed."""
    n = len(z)
    if n < 2 * day or day < 2:
        return 0
    floor = LEVEL_FLOOR_FRACTION * float(np.nanmedian(np.abs(z))) + 1e-12
    if median is None:
        median = _day_median(z, day)
    log_level = np.log(np.maximum(np.nan_to_num(median, nan=floor), floor))
    t = np.arange(day - 1, n - day)
    before, after = log_level[t], log_level[t + day]
    jump = after - before
    threshold = math.log(REGIME_SHIFT_FACTOR)
    # Running extremes of the day medians before each t (complete days only) and after t + day.
    prefix_max = np.maximum.accumulate(log_level[day - 1 :])[t - (day - 1)]
    prefix_min = np.minimum.accumulate(log_level[day - 1 :])[t - (day - 1)]
    suffix_max = np.maximum.accumulate(log_level[::-1])[::-1][t + day]
    suffix_min = np.minimum.accumulate(log_level[::-1])[::-1][t + day]
    midpoint = 0.5 * (before + after)
    up = (jump >= threshold) & (suffix_min > midpoint) & (after - prefix_max >= 0.5 * threshold)
    down = (jump <= -threshold) & (suffix_max < midpoint) & (prefix_min - after >= 0.5 * threshold)
    found = np.flatnonzero(up | down)
    if not len(found):
        return 0
    # Around a step the jump stays above the threshold for up to a day, so the peak only says
    # roughly where; the shift is the split that puts most points on their side of the midpoint.
    last = found[-1]
    cluster = found[found > last - day]
    peak = cluster[np.argmax(np.abs(jump[cluster]))]
    lo, hi = max(0, int(t[cluster[0]]) - day + 1), min(n, int(t[last]) + day + 1)
    with np.errstate(divide="ignore", invalid="ignore"):
        high = np.log(np.maximum(np.abs(z[lo:hi]), floor)) > midpoint[peak]
    new_side = high if jump[peak] > 0 else ~high
    new_side &= np.isfinite(z[lo:hi])
    old_side = ~new_side & np.isfinite(z[lo:hi])
    # Points on the old side before each split plus points on the new side from it on.
    agree = np.concatenate([[0], np.cumsum(old_side)]) + np.concatenate(
        [np.cumsum(new_side[::-1])[::-1], [0]]
    )
    start = lo + int(np.argmax(agree[1:])) + 1
    # Less than a day at the new level is a burst until it has lasted longer.
    return start if n - start >= day else 0


def _regime_ratio(z: np.ndarray, start: int, day: int) -> float | None:
    """How many times the level from `start` on exceeds the level before it (medians over up to a
    week on each side, so weekly swings mostly cancel); None if the earlier level is zero, which
    says nothing about the shape at the new one."""
    week = DAYS_PER_WEEK * day
    before = float(np.nanmedian(np.abs(z[max(0, start - week) : start])))
    after = float(np.nanmedian(np.abs(z[start : start + week])))
    return after / before if before > 0 and math.isfinite(after / before) else None


def _take(z: np.ndarray, idx: np.ndarray) -> np.ndarray:
    ok = (idx >= 0) & (idx < len(z))
    out = np.full(idx.shape, np.nan)
    out[ok] = z[idx[ok]]
    return out


@dataclass(frozen=True)
class _Series:
    """A resampled series with what every feature needs precomputed."""

    times: np.ndarray
    z: np.ndarray
    level: np.ndarray  # recent median level at each index (the normaliser)
    cumsum: np.ndarray
    day: int  # steps per day
    step: float
    scale: np.ndarray  # median level over the last day: the unit of scaled interval offsets

    def mean_last(self, t: np.ndarray, k: int) -> np.ndarray:
        lo = np.maximum(t - k + 1, 0)
        return (self.cumsum[t + 1] - self.cumsum[lo]) / (t + 1 - lo)


def _day_median(z: np.ndarray, day: int) -> np.ndarray:
    """Median of |z| over the last `day` steps up to each index (fewer at the start)."""
    padded = np.concatenate([np.full(day - 1, np.nan), np.abs(z)])
    return np.asarray(np.nanmedian(np.lib.stride_tricks.sliding_window_view(padded, day), axis=1))


def _prepare(times: np.ndarray, z: np.ndarray, step: float, median: np.ndarray | None = None) -> _Series:
    """`median`: `_day_median(z, day)` when already computed."""
    day = max(1, round(SECONDS_PER_DAY / step))
    cumsum = np.concatenate([[0.0], np.cumsum(z)])
    # The level is the median of |z| over the last day: a median, so one burst does not widen
    # every interval and squash every normalised feature for a whole day afterwards.
    if median is None:
        median = _day_median(z, day)
    # ...but never below the last few steps: during a burst the burst is the level the GBM sees
    # (its inputs stay near 1). Interval widths scale with the median alone, so one burst does
    # not multiply them by the burst's height.
    level = median
    t = np.arange(len(z))
    lo = np.maximum(t - GBM_SHORT_WINDOW + 1, 0)
    abs_cum = np.concatenate([[0.0], np.cumsum(np.abs(z))])
    level = np.maximum(level, (abs_cum[t + 1] - abs_cum[lo]) / (t + 1 - lo))
    floor = LEVEL_FLOOR_FRACTION * float(np.median(np.abs(z))) + 1e-12
    return _Series(times, z, np.maximum(level, floor), cumsum, day, step, np.maximum(median, floor))


def _features(s: _Series, t: np.ndarray, h: np.ndarray) -> np.ndarray:
    """One row per (origin t, steps ahead h); every value column divided by the level at t."""
    lev = s.level[t]
    cols = [h.astype(float)]
    cols += [_take(s.z, t - lag) / lev for lag in range(GBM_LAGS)]
    cols += [s.mean_last(t, GBM_SHORT_WINDOW) / lev, s.mean_last(t, GBM_LONG_WINDOW) / lev]
    cols.append(s.mean_last(t, s.day) / lev)
    week = s.day * DAYS_PER_WEEK
    for period, back in ((s.day, 0), (s.day, 1), (week, 0)):
        cols.append(_take(s.z, _seasonal_index(t, h, period, back)) / lev)
    # Today versus yesterday at the origin: carries a level shift onto the seasonal lags.
    cols.append((s.z[t] - _take(s.z, t - s.day)) / lev)
    phase = 2.0 * np.pi * ((s.times[t] + h * s.step) % SECONDS_PER_DAY) / SECONDS_PER_DAY
    cols += [np.sin(phase), np.cos(phase)]
    return np.stack(cols, axis=1)


def _conformal_offsets(resid: np.ndarray, quantiles: Sequence[float]) -> np.ndarray:
    """(Q, H) offsets: split-conformal quantiles of residuals, per quantile and step ahead.

    `resid` is (Q, origins, H): the errors of each quantile's raw prediction (the same errors for
    every quantile when the method gives a single point). For step h the residuals of steps h +- w
    are pooled. Upper quantiles use the ceil((n+1)q)-th order statistic and lower ones the
    floor((n+1)q)-th: the finite-sample split-conformal rule (Lei et al. 2018, JASA,
    "Distribution-free predictive inference for regression", Thm 2.2) for each one-sided bound;
    applied to quantile-model residuals this is conformalized quantile regression (Romano et al.
    2019, NeurIPS, "Conformalized quantile regression").
    """
    n_q, n_o, n_h = resid.shape
    w = round(CALIBRATION_POOL_FRACTION * n_h)
    out = np.zeros((n_q, n_h))
    # A point method's residuals are the same for every quantile: sort them once.
    rows = 1 if all(np.array_equal(resid[0], resid[i], equal_nan=True) for i in range(1, n_q)) else n_q
    pad = np.full((rows, n_o, w), np.nan)
    windows = np.lib.stride_tricks.sliding_window_view(
        np.concatenate([pad, resid[:rows], pad], axis=2), 2 * w + 1, axis=2
    )  # (rows, origins, H, 2w + 1): the pooled steps h - w .. h + w of each step h
    chunk = max(1, POOLED_SORT_VALUES // max(1, n_o * (2 * w + 1)))
    for h0 in range(0, n_h, chunk):
        pool = windows[:, :, h0 : h0 + chunk].transpose(0, 2, 1, 3).reshape(rows, -1, n_o * (2 * w + 1))
        pool = np.sort(pool, axis=2)  # NaN last
        n = np.isfinite(pool).sum(axis=2)  # (rows, steps in chunk)
        for qi, q in enumerate(quantiles):
            r = qi if rows > 1 else 0
            if q > 0.5:
                k = np.ceil((n[r] + 1) * q)
            elif q < 0.5:
                k = np.floor((n[r] + 1) * q)
            else:
                k = np.ceil(n[r] * q)
            k = np.minimum(np.maximum(k.astype(np.int64), 1), np.maximum(n[r], 1)) - 1
            picked = np.take_along_axis(pool[r], k[:, None], axis=1)[:, 0]
            out[qi, h0 : h0 + pool.shape[1]] = np.where(n[r] > 0, picked, 0.0)
    return out


def _quantile_losses(
    y: np.ndarray, qf: np.ndarray, qs: Sequence[float], origin_weights: np.ndarray | None = None
) -> np.ndarray:
    """(Q,) mean pinball loss of quantile forecasts `qf` (Q, origins, H) over the observed `y`,
    each origin's steps weighted by `origin_weights` (default 1)."""
    seen = np.isfinite(y)
    w = seen * (1.0 if origin_weights is None else origin_weights[:, None])
    out = np.zeros(len(qs))
    for qi, q in enumerate(qs):
        d = np.where(seen, y - qf[qi], 0.0)
        out[qi] = (np.maximum(q * d, (q - 1.0) * d) * w).sum() / max(float(w.sum()), np.finfo(float).tiny)
    return out


def _origin_pinball(
    y: np.ndarray, pred: np.ndarray, unit: np.ndarray, offsets: np.ndarray, qs: Sequence[float]
) -> np.ndarray:
    """Pinball loss per origin, averaged over quantiles and steps ahead.

    Unobserved targets (NaN) are skipped, and each origin's loss is weighted by its share of the
    observed steps, so the mean over origins is the mean over every observed (origin, step)."""
    seen = np.isfinite(y)
    weight = seen.sum(axis=1) / max(float(seen.sum(axis=1).mean()), 1.0)
    total = np.zeros(len(y))
    for qi, q in enumerate(qs):
        d = np.where(seen, y - (pred[qi] + unit * offsets[qi][None, :]), 0.0)
        total += np.maximum(q * d, (q - 1.0) * d).sum(axis=1) / np.maximum(seen.sum(axis=1), 1)
    return weight * total / len(qs)


class Forecaster:
    """Quantile forecaster for one series, model chosen per series by a rolling-origin backtest.

    Parameters: `horizon_seconds` and `step_seconds` set the forecast grid; `quantiles` the levels
    returned; `candidates` the methods compared (see the module docstring); `random_state` seeds
    the gradient boosting. Learned state ends in `_`.
    """

    def __init__(
        self,
        *,
        horizon_seconds: float = 3600.0,
        step_seconds: float = 300.0,
        quantiles: Sequence[float] = DEFAULT_QUANTILES,
        candidates: Sequence[str] = CANDIDATES,
        random_state: int = 0,
    ) -> None:
        self.horizon_seconds = horizon_seconds
        self.step_seconds = step_seconds
        self.quantiles = tuple(quantiles)
        self.candidates = tuple(candidates)
        self.random_state = random_state

    @property
    def _n_steps(self) -> int:
        return max(1, round(self.horizon_seconds / self.step_seconds))

    def fit(
        self, timestamps: Sequence[float] | np.ndarray, values: Sequence[float] | np.ndarray
    ) -> Forecaster:
        """Resample, detect seasonality, backtest the candidates, keep and refit the best."""
        if any(not 0.0 < q < 1.0 for q in self.quantiles):
            raise ValueError("quantiles must lie strictly between 0 and 1")
        times, z = resample(np.asarray(timestamps), np.asarray(values), self.step_seconds)
        if len(z) < MIN_POINTS:
            raise ValueError(f"need at least {MIN_POINTS} steps of history, got {len(z)}")
        long_horizon = self.horizon_seconds >= LONG_HORIZON_SECONDS
        # Long horizons forecast at the current level regime (see REGIME_SHIFT_FACTOR).
        day = max(1, round(SECONDS_PER_DAY / self.step_seconds))
        median: np.ndarray | None = _day_median(z, day)  # found again only if z is rescaled
        start = _regime_start(z, day, median) if long_horizon else 0
        self.regime_start_ = float(times[start]) if start else None
        if start:
            ratio = _regime_ratio(z, start, day)
            if ratio is None:
                times, z = times[start:], z[start:]
            else:
                z = z.copy()
                z[:start] *= ratio
            median = None
        s = _prepare(times, z, self.step_seconds, median)
        H = self._n_steps
        hh = np.arange(1, H + 1)
        self.series_ = s
        self.gbm_: _GbmModel | None = None
        self.seasonal_periods_ = tuple(
            p * SECONDS_PER_DAY for p in (1, DAYS_PER_WEEK) if _acf(z, s.day * p) > SEASONALITY_ACF_THRESHOLD
        )
        n = len(z)
        # Held-out origins t (their targets t+1..t+H observed): the last `span` of them.
        span = int(HOLDOUT_FRACTION * n)
        last_origin = n - 1 - H
        if span < 1 or last_origin < 1:
            self._fallback(s)
            return self
        first_val = max(1, last_origin - span + 1)
        count = min(HOLDOUT_MAX_ORIGINS, last_origin - first_val + 1)
        val_t = np.unique(np.linspace(first_val, last_origin, count).astype(np.int64))
        y = s.z[val_t[:, None] + hh[None, :]]
        lev = s.scale[val_t][:, None]
        # Held-out origins overlap (consecutive horizons share steps): about span / H independent ones.
        n_eff = max(2.0, min(len(val_t), span / H))
        scores: dict[str, float] = {}
        errors: dict[str, float] = {}
        fitted: dict[str, tuple[np.ndarray, bool]] = {}
        preds: dict[str, np.ndarray] = {}
        rule_scores: dict[str, float] = {}
        # Long horizons: each fixed rule is backtested as deployed (`_RuleBacktest`), including
        # rules defined only from a later held-out origin on (the weekly naive on 8-14 days).
        held_t = np.unique(
            np.linspace(first_val, n - 2, min(HOLDOUT_MAX_ORIGINS, n - 1 - first_val)).astype(np.int64)
        )
        backtests: dict[str, _RuleBacktest] = {}
        for name in self.candidates:
            if name in ("ensemble", "combination") or (name in PROFILE_CANDIDATES and not long_horizon):
                continue
            if long_horizon and name not in TRAINED:
                bt = self._backtest_rule(name, s, hh, held_t)
                if bt is not None:
                    backtests[name] = bt
            pred = self._predict_raw(name, s, val_t, hh, train_end=first_val)
            if pred is None:
                continue
            preds[name] = pred
            losses, off, scaled = self._calibrate(y, pred, lev)
            scores[name], errors[name] = float(losses.mean()), float(losses.std() / np.sqrt(n_eff))
            fitted[name] = (off, scaled)
            if name in backtests:
                rule_scores[name] = backtests[name].score
                fitted[name] = (backtests[name].offsets, backtests[name].scaled)
            elif name not in TRAINED:
                rule_scores[name] = scores[name]
        if not scores:
            self._fallback(s)
            return self
        # Stage 1: the fixed rules (nothing fitted) compete on score alone (at long horizons on
        # their score as deployed, the last day's partly observed origins included).
        rule = min(rule_scores, key=lambda k: rule_scores[k]) if rule_scores else None
        # The ensemble averages the GBM with the best rule: it hedges the GBM where the series
        # repeats itself exactly and the rule where it does not.
        if "ensemble" in self.candidates and "gbm" in scores and rule is not None:
            self.ensemble_partner_ = rule
            pred = 0.5 * (preds["gbm"] + preds[rule])
            losses, off, scaled = self._calibrate(y, pred, lev)
            scores["ensemble"], errors["ensemble"] = (
                float(losses.mean()),
                float(losses.std() / np.sqrt(n_eff)),
            )
            fitted["ensemble"] = (off, scaled)
        # Stage 2, the one-standard-error rule (Hastie, Tibshirani & Friedman, "The Elements of
        # Statistical Learning", 2nd ed., section 7.10): a trained model replaces the best rule only
        # if it beats it by more than its standard error on the same footing (quantiles calibrated
        # on the holdout), so a lucky holdout does not pick a model that generalises worse.
        trained = [k for k in scores if k in TRAINED]
        best = rule if rule is not None else min(trained, key=lambda k: scores[k])
        if trained and rule is not None:
            top = min(trained, key=lambda k: scores[k])
            if scores[top] + errors[top] < scores[rule]:
                best = top
        scores.update(rule_scores)
        self.model_ = best
        self.offsets_, self.scaled_ = fitted[best]
        self.backtest_pinball_ = scores
        self.combination_: _Combination | None = None
        if long_horizon and best not in TRAINED and "combination" in self.candidates:
            self.combination_ = self._combine(s, hh, held_t, backtests)
            if self.combination_ is not None:
                self.model_ = "combination"
                scores["combination"] = self.combination_.backtest_pinball
                return self
        if best in ("gbm", "ensemble"):
            self.gbm_ = self._fit_gbm(s, hh, train_end=n)
        else:
            self._recalibrate_on_history(s, hh)
        return self

    def _calibrate(
        self, y: np.ndarray, pred: np.ndarray, lev: np.ndarray
    ) -> tuple[np.ndarray, np.ndarray, bool]:
        """Conformal offsets from errors in the input unit or divided by the level, whichever
        scores the lower pinball loss: errors of some series grow with the level, others do not.
        Returns the per-origin losses, the offsets and whether they are scaled."""
        best: tuple[np.ndarray, np.ndarray, bool] | None = None
        for scaled in (False, True):
            unit = lev if scaled else np.ones_like(lev)
            off = _conformal_offsets((y[None] - pred) / unit[None], self.quantiles)
            loss = _origin_pinball(y, pred, unit, off, self.quantiles)
            if best is None or loss.mean() < best[0].mean():
                best = (loss, off, scaled)
        assert best is not None
        return best

    def _history_errors(
        self, name: str, s: _Series, hh: np.ndarray, *, partial: bool = False
    ) -> tuple[np.ndarray, np.ndarray, np.ndarray] | None:
        """Origins t, targets y and raw predictions of a simple method at every usable origin of
        the history (thinned to FULL_CALIBRATION_MAX_ORIGINS); None if too few. With `partial`
        the origins of the last horizon count too, their unobserved targets NaN: at a day ahead
        they are the only evidence of what happened in the last day (a restart, a step)."""
        first = RULE_HISTORY_DAYS[name] * s.day
        last = len(s.z) - 1 - len(hh)
        if last - first < len(hh):
            return None
        end = len(s.z) - 2 if partial else last
        count = min(FULL_CALIBRATION_MAX_ORIGINS, FULL_CALIBRATION_MAX_RESIDUALS // len(hh))
        t = np.unique(np.linspace(first, end, count).astype(np.int64))
        pred = self._predict_raw(name, s, t, hh, train_end=0)
        if pred is None:
            return None
        return t, _take(s.z, t[:, None] + hh[None, :]), pred

    def _recalibrate_on_history(self, s: _Series, hh: np.ndarray) -> None:
        """Offsets of a simple method from its errors at every usable origin of the history."""
        long_horizon = self.horizon_seconds >= LONG_HORIZON_SECONDS
        found = self._history_errors(self.model_, s, hh, partial=long_horizon)
        if found is None:
            return
        t, y, pred = found
        unit = s.scale[t][:, None] if self.scaled_ else np.ones((len(t), 1))
        self.offsets_ = _conformal_offsets((y[None] - pred) / unit[None], self.quantiles)

    def _backtest_rule(
        self,
        name: str,
        s: _Series,
        hh: np.ndarray,
        held_t: np.ndarray,
        units: Sequence[bool] = (False, True),
    ) -> _RuleBacktest | None:
        """Quantile forecasts of a fixed rule at the held-out origins `held_t`, calibrated as it is
        deployed but honestly: the offsets used at an origin come only from errors already observed
        there (split conformal over time, recomputed per block of held-out origins), so a rule whose
        bias is absorbed by its offsets is not scored on the errors that set them. NaN where the rule
        is undefined or has less than one horizon of complete errors behind it. Errors in the input
        unit or divided by the level (`units`: whether scaled), whichever scores better; deployed
        offsets from every error. None if the rule has no history errors or no scored origin."""
        found = self._history_errors(name, s, hh, partial=True)
        if found is None:
            return None
        t, y_hist, pred_hist = found
        H = len(hh)
        y = _take(s.z, held_t[:, None] + hh[None, :])
        pred = np.full((len(self.quantiles), len(held_t), H), np.nan)
        defined = held_t >= _first_origin(name, s.day)
        if defined.any():
            raw = self._predict_raw(name, s, held_t[defined], hh, train_end=0)
            if raw is not None:
                pred[:, defined] = raw
        span = float(held_t[-1] - held_t[0] + 1)
        block_steps = max(1.0, ONLINE_CALIBRATION_BLOCK_FRACTION * H, span / ONLINE_CALIBRATION_MAX_BLOCKS)
        pooled_steps = 2 * round(CALIBRATION_POOL_FRACTION * H) + 1
        keep = min(len(t), max(2, ONLINE_CALIBRATION_POOL_VALUES // pooled_steps))
        thin = np.unique(np.linspace(0, len(t) - 1, keep).astype(np.int64))
        block_of = ((held_t - held_t[0]) // block_steps).astype(np.int64)
        blocks = [np.flatnonzero(block_of == b) for b in np.unique(block_of)]
        best: _RuleBacktest | None = None
        for scaled in units:
            resid = (y_hist[None] - pred_hist) / self._unit(s, t, scaled)[None]
            qf = np.full_like(pred, np.nan)
            for block in blocks:
                c = held_t[block[0]]
                complete = t[t + H <= c]
                if len(complete) < 2 or complete[-1] - complete[0] < H:
                    continue
                observed = (t[thin, None] + hh[None, :]) <= c
                off = _conformal_offsets(np.where(observed[None], resid[:, thin], np.nan), self.quantiles)
                unit = self._unit(s, held_t[block], scaled)
                qf[:, block] = pred[:, block] + unit[None] * off[:, None, :]
            scored = np.isfinite(qf).all(axis=(0, 2)) & np.isfinite(y).any(axis=1)
            if not scored.any():
                return None
            loss = _quantile_losses(y[scored], qf[:, scored], self.quantiles).mean()
            if best is None or loss < best.score:
                deployed = _conformal_offsets(resid, self.quantiles)
                best = _RuleBacktest(qf, float(loss), deployed, scaled)
        return best

    def _combine(
        self, s: _Series, hh: np.ndarray, held_t: np.ndarray, backtests: dict[str, _RuleBacktest]
    ) -> _Combination | None:
        """Per-quantile weighted average of the fixed rules' calibrated quantile forecasts.

        Each rule's honest held-out quantile forecasts (`_backtest_rule`; the last day's partly
        observed origins included) are scored per quantile level on the origins where every member
        is scored (rules scored over less than two horizons are left out); a rule's loss L at a level
        (discounted: an origin one horizon older counts half) sets its weight there,
        exp(-(L / L_best - 1) / COMBINATION_TEMPERATURE). The best median rule need not give the
        best tails, and averaging near-tied rules cancels part of their errors. None with fewer
        than two rules."""
        y = _take(s.z, held_t[:, None] + hh[None, :])
        usable = {k: np.isfinite(b.forecasts).all(axis=(0, 2)) for k, b in backtests.items()}
        # A rule needs two horizons of scored origins (the weekly naive joins ~9 days in).
        names = [k for k, ok in usable.items() if ok.any() and held_t[-1] - held_t[ok][0] >= 2 * len(hh)]
        if len(names) < 2:
            return None
        common = np.logical_and.reduce([usable[k] for k in names]) & np.isfinite(y).any(axis=1)
        if not common.any():
            return None
        qf = np.stack([backtests[k].forecasts[:, common] for k in names])  # (rules, Q, origins, H)
        age = (held_t[common][-1] - held_t[common]) / (COMBINATION_HALF_LIFE_HORIZONS * len(hh))
        recency = np.exp2(-age)
        loss = np.stack([_quantile_losses(y[common], f, self.quantiles, recency) for f in qf])
        best = np.maximum(loss.min(axis=0, keepdims=True), np.finfo(float).tiny)
        weights = np.exp(-(loss / best - 1.0) / COMBINATION_TEMPERATURE)
        weights /= weights.sum(axis=0, keepdims=True)
        combined = np.einsum("rq,rqth->qth", weights, qf)
        score = float(_quantile_losses(y[common], combined, self.quantiles).mean())
        offsets = tuple((backtests[k].offsets, backtests[k].scaled) for k in names)
        return _Combination(tuple(names), weights, offsets, score)

    def _unit(self, s: _Series, t: np.ndarray, scaled: bool) -> np.ndarray:
        """(len(t), 1) unit of the interval offsets at origins t: the level, or 1."""
        return s.scale[t][:, None] if scaled else np.ones((len(t), 1))

    def _fallback(self, s: _Series) -> None:
        """Too short to backtest: last value, offsets from one-step changes grown by sqrt(h)."""
        d = np.diff(s.z) / s.scale[1:] if len(s.z) > 1 else np.zeros(1)
        growth = np.sqrt(np.arange(1, self._n_steps + 1))[None, :]
        resid = np.broadcast_to(d[:, None] * growth, (len(self.quantiles), len(d), self._n_steps))
        self.model_ = "last_value"
        self.offsets_ = _conformal_offsets(resid, self.quantiles)
        self.scaled_ = True
        self.backtest_pinball_ = {}

    def _fit_gbm(self, s: _Series, hh: np.ndarray, *, train_end: int) -> _GbmModel | None:
        """One gradient-boosting model per quantile on origins whose targets end before `train_end`."""
        H = len(hh)
        last_train = train_end - 1 - H
        start = min(s.day, max(GBM_LAGS, last_train // 4))
        n_orig = last_train - start + 1
        if n_orig < GBM_MIN_TRAIN_ORIGINS:
            return None
        stride = max(1, math.ceil(n_orig * H / GBM_MAX_ROWS))
        # The newest origins matter most: thin from the end backwards so the last one is kept.
        tr = np.arange(last_train, start - 1, -stride)[::-1]
        TT, HT = np.meshgrid(tr, hh, indexing="ij")
        X = _features(s, TT.ravel(), HT.ravel())
        target = s.z[(TT + HT).ravel()] / s.level[TT.ravel()]
        # A feature with no value at all in training (a weekly lag on a short series) is dropped.
        cols = np.isfinite(X).any(axis=0)
        models = []
        with threadpoolctl.threadpool_limits(limits=GBM_THREADS, user_api="openmp"):
            for q in self.quantiles:
                model = HistGradientBoostingRegressor(
                    loss="quantile",
                    quantile=q,
                    max_iter=GBM_MAX_ITER,
                    learning_rate=GBM_LEARNING_RATE,
                    max_leaf_nodes=GBM_MAX_LEAF_NODES,
                    min_samples_leaf=GBM_MIN_SAMPLES_LEAF,
                    early_stopping=False,
                    random_state=self.random_state,
                )
                models.append(model.fit(X[:, cols], target))
        return _GbmModel(tuple(models), cols)

    def _predict_raw(
        self, name: str, s: _Series, t: np.ndarray, hh: np.ndarray, *, train_end: int
    ) -> np.ndarray | None:
        """(Q, len(t), H) raw predictions of candidate `name` at origins `t`, None if unavailable.

        Simple methods give one point for every quantile. For `gbm` and `ensemble` during the
        backtest (`train_end` > 0) a model is trained on origins before `train_end` only;
        otherwise the fitted `gbm_` is used.
        """
        T, Hh = np.meshgrid(t, hh, indexing="ij")
        Q = len(self.quantiles)
        point: np.ndarray | None
        if name == "last_value":
            point = s.z[T]
        elif name in ("seasonal_naive_day", "seasonal_naive_week"):
            period = s.day * (1 if name.endswith("day") else DAYS_PER_WEEK)
            idx = _seasonal_index(T, Hh, period)
            point = None if idx.min() < 0 else s.z[idx]
        elif name == "seasonal_mean":
            idx = np.stack([_seasonal_index(T, Hh, s.day, back) for back in range(SEASONAL_MEAN_DAYS)])
            point = None if idx.min() < 0 else s.z[idx].mean(axis=0)
        elif name == "recent_median":
            point = np.broadcast_to(_rolling_median(s.z, s.day)[t][:, None], T.shape)
        elif name in ("seasonal_median", "profile_level"):
            point = _profile(s.z, T, Hh, s.day)
            if point is not None and name == "profile_level":
                # Re-level the profile by how far the last day sat from its own profile (median
                # of the differences): a step or drift in the level carries into the next day.
                now = np.arange(len(s.z))
                resid = s.z - _profile_values(s.z, now - 1, np.ones_like(now), s.day)
                offset = _rolling_median(resid, s.day)[t]
                point = point + np.nan_to_num(offset)[:, None]
        elif name == "profile_ratio":
            # Shape x level: each past value relative to the median of its own trailing day, so
            # days at another level (before a step) still give the shape, at today's level.
            point = _profile(s.z / s.scale, T, Hh, s.day)
            if point is not None:
                point = point * s.scale[t][:, None]
        elif name in ("gbm", "ensemble"):
            gbm = self._fit_gbm(s, hh, train_end=train_end) if train_end > 0 else self.gbm_
            if gbm is None:
                return None
            raw = gbm.predict(s, T, Hh)
            if name == "gbm":
                return raw
            partner = self._predict_raw(self.ensemble_partner_, s, t, hh, train_end=0)
            return None if partner is None else 0.5 * (raw + partner)
        else:
            raise ValueError(f"unknown candidate {name!r}")
        return None if point is None else np.broadcast_to(point, (Q, *point.shape))

    def predict(self) -> QuantileForecast:
        """Quantiles of the next `horizon_seconds / step_seconds` steps after the fitted series."""
        s: _Series = self.series_
        hh = np.arange(1, self._n_steps + 1)
        last = np.array([len(s.z) - 1])
        # A guard for relative units gone wrong: errors or a daily shape measured in units of a
        # level near zero (a workload idle until hours ago), applied at today's level, can reach
        # 1e9 times the series. No interval reaches further from its point than the history's
        # whole range, and no quantile lies above its maximum plus that range.
        reach = float(np.max(s.z) - np.min(s.z))
        top = float(np.max(s.z)) + reach
        combo: _Combination | None = getattr(self, "combination_", None)
        if combo is not None:
            values = np.zeros((len(self.quantiles), len(hh)))
            for name, w, (off, scaled) in zip(combo.rules, combo.weights, combo.offsets, strict=True):
                raw = self._predict_raw(name, s, last, hh, train_end=0)
                assert raw is not None  # every rule was available at the later held-out origins
                spread = np.clip(self._unit(s, last, scaled)[0] * off, -reach, reach)
                values += w[:, None] * (np.minimum(raw[:, 0, :], top) + spread)
        else:
            raw = self._predict_raw(self.model_, s, last, hh, train_end=0)
            pred = (
                raw[:, 0, :] if raw is not None else np.broadcast_to(s.z[-1], (len(self.quantiles), len(hh)))
            )
            values = pred + np.clip((s.scale[-1] if self.scaled_ else 1.0) * self.offsets_, -reach, reach)
        values = np.clip(np.sort(values, axis=0), 0.0, top)
        return QuantileForecast(
            timestamps=s.times[-1] + hh * s.step,
            quantiles=self.quantiles,
            values=values,
            model=self.model_,
            step_seconds=s.step,
            backtest_pinball=dict(self.backtest_pinball_),
            seasonal_periods_seconds=self.seasonal_periods_,
            regime_start=self.regime_start_,
        )


@dataclass(frozen=True)
class _RuleBacktest:
    """A fixed rule's honest held-out quantile forecasts and its deployed calibration."""

    forecasts: np.ndarray  # (Q, held-out origins, H); NaN where the rule was not scored
    score: float  # mean pinball loss over the scored origins
    offsets: np.ndarray  # (Q, H) conformal offsets from every error of the history
    scaled: bool  # offsets in units of the level


@dataclass(frozen=True)
class _Combination:
    """Fixed rules averaged per quantile level (see `Forecaster._combine`)."""

    rules: tuple[str, ...]
    weights: np.ndarray  # (rules, quantiles), each column sums to 1
    offsets: tuple[tuple[np.ndarray, bool], ...]  # each rule's (Q, H) offsets and whether scaled
    backtest_pinball: float  # at the held-out origins, the weights fitted there


@dataclass(frozen=True)
class _GbmModel:
    """Quantile GBMs (one per quantile) on level-normalised features, and the columns they use."""

    models: tuple[HistGradientBoostingRegressor, ...]
    columns: np.ndarray

    def predict(self, s: _Series, T: np.ndarray, Hh: np.ndarray) -> np.ndarray:
        X = _features(s, T.ravel(), Hh.ravel())[:, self.columns]
        lev = s.level[T]
        with threadpoolctl.threadpool_limits(limits=GBM_THREADS, user_api="openmp"):
            return np.stack([m.predict(X).reshape(T.shape) * lev for m in self.models])


def forecast(
    timestamps: Sequence[float] | np.ndarray,
    values: Sequence[float] | np.ndarray,
    *,
    horizon_seconds: float = 3600.0,
    step_seconds: float = 300.0,
    quantiles: Sequence[float] = DEFAULT_QUANTILES,
    random_state: int = 0,
) -> QuantileForecast:
    """Fit a `Forecaster` on one series and forecast the horizon after its end."""
    model = Forecaster(
        horizon_seconds=horizon_seconds,
        step_seconds=step_seconds,
        quantiles=quantiles,
        random_state=random_state,
    )
    return model.fit(timestamps, values).predict()
