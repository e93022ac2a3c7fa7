"""Features of failure prediction: trend, counter and condition features on the regular grid.

Owns: the feature names (`GROUPS`, `FEATURES`, and the generic ones of any other signal), the
feature tensor at grid positions, labels, and the training points drawn from a history.
Must never: resample raw series (`signals`) or fit a model (`predicting`).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Final

import numpy as np
from scipy import ndimage

from autoloop.engines.failure import signals
from autoloop.engines.failure.signals import (
    CARRIER,
    DISK_AVAIL,
    DISK_PRESSURE,
    DISK_SIZE,
    EDAC,
    LOOKBACK_HOURS,
    MEM_AVAIL,
    MEM_TOTAL,
    MEMORY_PRESSURE,
    RESTARTS,
    STEP_SECONDS,
    TEMP,
)

MIN_HISTORY_HOURS: Final[float] = 24.0
"""Training points start once a node has this much history (or half of a shorter history)."""
TRAIN_EVERY_HOURS: Final[float] = 1.0
"""Spacing of the labelled evaluation points drawn from training history."""
MAX_HOURS: Final[float] = 720.0
"""Cap for 'never' in hours-until-full features and expected time to failure (30 days)."""
MIN_SLOPE_PER_HOUR: Final[float] = 1e-4
"""Fill slopes below 0.01 %/h count as flat."""

_H: Final[int] = int(3600 / STEP_SECONDS)  # grid steps per hour
_W: Final[int] = int(LOOKBACK_HOURS * _H)
_D: Final[int] = 24 * _H  # one day of grid steps

GROUPS: Final[dict[str, tuple[str, ...]]] = {
    "disk": (
        "disk_used",
        "disk_slope_1h",
        "disk_slope_6h",
        "disk_slope_12h",
        "disk_slope_24h",
        "disk_fall_24h",
        "disk_fall_72h",
        "disk_above_peak_72h",
        "disk_hours_to_full_1h",
        "disk_hours_to_full_6h",
        "disk_hours_to_full_12h",
        "disk_hours_to_full_24h",
        "disk_pressure_1h",
    ),
    "memory": (
        "mem_used",
        "mem_slope_1h",
        "mem_slope_6h",
        "mem_slope_12h",
        "mem_slope_24h",
        "mem_fall_24h",
        "mem_fall_72h",
        "mem_above_peak_72h",
        "mem_hours_to_full_1h",
        "mem_hours_to_full_6h",
        "mem_hours_to_full_12h",
        "mem_hours_to_full_24h",
        "mem_pressure_1h",
    ),
    "temperature": ("temp_1h", "temp_delta_24h", "temp_slope_6h"),
    "edac": (
        "edac_1h",
        "edac_6h",
        "edac_24h",
        "edac_accel",
        "edac_growth_12h",
        "edac_growth_24h",
    ),
    "restarts": (
        "restarts_1h",
        "restarts_6h",
        "restarts_24h",
        "restarts_accel",
        "restarts_growth_12h",
        "restarts_growth_24h",
    ),
    "network": (
        "carrier_1h",
        "carrier_6h",
        "carrier_24h",
        "carrier_accel",
        "carrier_growth_12h",
        "carrier_growth_24h",
    ),
}
"""Features by the signal they come from; reasons are given per group."""
CONTEXT: Final[tuple[str, ...]] = ("uptime_hours",)
"""Features that qualify the signals (how old the evidence is) but are never a reason themselves."""
FEATURES: Final[tuple[str, ...]] = tuple(name for names in GROUPS.values() for name in names) + CONTEXT


def features(metrics: Mapping[str, np.ndarray], idx: np.ndarray, extras: Sequence[str] = ()) -> np.ndarray:
    """Feature tensor (n_nodes, len(idx), len(feature_names(extras))) at grid positions idx of
    (n_nodes, T) arrays; signals absent from `metrics` give NaN features (the trees route them).

    Every window ends at (and includes) position idx; positions before the first sample count as
    missing, so early points simply have fewer samples.
    """
    n, t = next(iter(metrics.values())).shape
    nan = np.full((n, t), np.nan)

    def get(name: str) -> np.ndarray:
        return np.asarray(metrics.get(name, nan), dtype=float)

    disk = 1.0 - get(DISK_AVAIL) / get(DISK_SIZE)
    mem = 1.0 - get(MEM_AVAIL) / get(MEM_TOTAL)
    cols: dict[str, np.ndarray] = {}
    for prefix, used, pressure in (("disk", disk, get(DISK_PRESSURE)), ("mem", mem, get(MEMORY_PRESSURE))):
        level = _mean(used, _H // 2, idx)
        cols[f"{prefix}_used"] = level
        for hours in (1, 6, 12, 24):
            cols[f"{prefix}_slope_{hours}h"] = _slope(used, hours * _H, idx)
        # Log rotation and daily resets free space at once: the largest one-hour fall tells them apart
        # from a fill or a leak, which never falls.
        cols[f"{prefix}_fall_24h"] = _largest_fall(used, _D, idx)
        cols[f"{prefix}_fall_72h"] = _largest_fall(used, _W, idx)
        # A fill breaks past the peaks a healthy sawtooth keeps returning to.
        cols[f"{prefix}_above_peak_72h"] = level - _earlier_peak(used, _W, idx)
        for hours in (1, 6, 12, 24):
            cols[f"{prefix}_hours_to_full_{hours}h"] = _hours_to_full(level, cols[f"{prefix}_slope_{hours}h"])
        cols[f"{prefix}_pressure_1h"] = _mean(pressure, _H, idx)
    temp = get(TEMP)
    cols["temp_1h"] = _mean(temp, _H, idx)
    cols["temp_delta_24h"] = cols["temp_1h"] - _mean(temp, _D, idx)
    cols["temp_slope_6h"] = _slope(temp, 6 * _H, idx)
    for prefix, name in (("edac", EDAC), ("restarts", RESTARTS), ("carrier", CARRIER)):
        inc = _increments(get(name))
        for hours in (1, 6, 24):
            cols[f"{prefix}_{hours}h"] = _sum(inc, hours * _H, idx)
        cols[f"{prefix}_accel"] = np.log1p(cols[f"{prefix}_6h"] / 6.0) - np.log1p(
            cols[f"{prefix}_24h"] / 24.0
        )
        # Degradations that accelerate grow exponentially: the slope of the log hourly rate is their
        # growth rate, which with the current rate tells how far off the breaking point is.
        log_rate = np.log1p(_sum(inc, _H, np.arange(t)))
        for hours in (12, 24):
            cols[f"{prefix}_growth_{hours}h"] = _slope(log_rate, hours * _H, idx)
    # Hours since the node came back after a gap (a reboot or repair): evidence in windows that
    # span the outage describes the node before it was repaired.
    present = _present(metrics, disk, mem)
    cols["uptime_hours"] = _hours_since_gap(present, idx)
    # The node is 'up' at a point only if its latest grid value is fresh (a sample within
    # STALENESS_SECONDS): a node that just went down still has older samples in its windows.
    up = present[:, idx]
    stacked = [cols[name] for name in FEATURES]
    for name in extras:
        stacked += _signal_columns(get(name), name, idx)
    out = np.stack(stacked, axis=-1)
    out[~up] = np.nan
    return out


def signal_feature_names(name: str) -> tuple[str, ...]:
    """Generic features of a signal that is not built in: a counter's increases and their growth,
    any other signal's level, its change against its day and its trends."""
    if signals.is_counter(name):
        return tuple(f"{name}:{f}" for f in ("increase_1h", "increase_6h", "increase_24h", "growth_24h"))
    return tuple(f"{name}:{f}" for f in ("level_1h", "delta_24h", "slope_6h", "slope_24h"))


def feature_names(extras: Sequence[str] = ()) -> tuple[str, ...]:
    """Every feature column for the built-in signals plus `extras`, in tensor order."""
    return FEATURES + tuple(f for name in extras for f in signal_feature_names(name))


def groups(extras: Sequence[str] = ()) -> dict[str, tuple[str, ...]]:
    """Feature names per reason group: the built-in groups and one per extra signal."""
    return {**GROUPS, **{name: signal_feature_names(name) for name in extras}}


def _signal_columns(a: np.ndarray, name: str, idx: np.ndarray) -> list[np.ndarray]:
    t = a.shape[1]
    if signals.is_counter(name):
        inc = _increments(a)
        log_rate = np.log1p(np.maximum(_sum(inc, _H, np.arange(t)), 0.0))
        return [_sum(inc, h * _H, idx) for h in (1, 6, 24)] + [_slope(log_rate, _D, idx)]
    level = _mean(a, _H, idx)
    return [level, level - _mean(a, _D, idx), _slope(a, 6 * _H, idx), _slope(a, _D, idx)]


def _present(metrics: Mapping[str, np.ndarray], disk: np.ndarray, mem: np.ndarray) -> np.ndarray:
    """Grid points where the node reported: by disk or memory on nodes that export them (a
    condition from kube-state-metrics outlives a dead node), else by any signal."""
    core = np.isfinite(disk) | np.isfinite(mem)
    anything = np.zeros_like(core)
    for values in metrics.values():
        anything |= np.isfinite(np.asarray(values, dtype=float))
    return np.where(core.any(axis=1, keepdims=True), core, anything)


def reporting(x: np.ndarray) -> np.ndarray:
    """Rows where the node reported recently (feature rows of a down node are all NaN)."""
    return np.isfinite(x).any(axis=-1)


def labels(times: np.ndarray, failure_times: Sequence[Sequence[float]], horizon_hours: float) -> np.ndarray:
    """(n_nodes, len(times)) booleans: the node fails in (t, t + horizon]."""
    out = np.zeros((len(failure_times), len(times)), dtype=bool)
    for i, fails in enumerate(failure_times):
        for f in fails:
            out[i] |= (times < f) & (f <= times + horizon_hours * 3600.0)
    return out


def training_points(
    metrics: Mapping[str, np.ndarray],
    grid: np.ndarray,
    failure_times: Sequence[Sequence[float]],
    horizon_hours: float,
    extras: Sequence[str] = (),
    min_history_hours: float = MIN_HISTORY_HOURS,
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Features, labels and node index every TRAIN_EVERY_HOURS once a node has `min_history_hours`
    of history (or half of a shorter history).

    A point whose horizon runs past the end of the history has a known label only when a failure
    falls inside what was seen: such positives are kept (a history that ends at the failure), the
    unknown negatives are left out.
    """
    step = max(1, int(TRAIN_EVERY_HOURS * _H))
    first = min(int(min_history_hours * _H), (len(grid) - 1) // 2)
    idx = np.arange(first, len(grid), step)
    x = features(metrics, idx, extras)
    y = labels(grid[idx], failure_times, horizon_hours)
    known = (grid[idx] + horizon_hours * 3600.0 <= grid[-1])[None, :] | y
    node = np.broadcast_to(np.arange(y.shape[0])[:, None], y.shape)
    return x[known], y[known], node[known]


def _windows(w: int, idx: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Prefix-sum positions for windows (idx - w, idx]."""
    hi = idx + 1
    lo = np.clip(hi - w, 0, None)
    return lo, hi


def _cumsum(a: np.ndarray) -> np.ndarray:
    return np.concatenate([np.zeros((a.shape[0], 1)), np.cumsum(a, axis=1)], axis=1)


def _sum(a: np.ndarray, w: int, idx: np.ndarray) -> np.ndarray:
    """Window sums of the finite values (NaN when the window has none)."""
    ok = np.isfinite(a)
    lo, hi = _windows(w, idx)
    c, k = _cumsum(np.where(ok, a, 0.0)), _cumsum(ok.astype(float))
    count = k[:, hi] - k[:, lo]
    return np.where(count > 0, c[:, hi] - c[:, lo], np.nan)


def _mean(a: np.ndarray, w: int, idx: np.ndarray) -> np.ndarray:
    ok = np.isfinite(a)
    lo, hi = _windows(w, idx)
    c, k = _cumsum(np.where(ok, a, 0.0)), _cumsum(ok.astype(float))
    count = k[:, hi] - k[:, lo]
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(count > 0, (c[:, hi] - c[:, lo]) / count, np.nan)


def _largest_fall(a: np.ndarray, w: int, idx: np.ndarray) -> np.ndarray:
    """Largest drop of the 1 h mean over one hour within the window ending at idx."""
    hourly = _mean(a, _H, np.arange(a.shape[1]))
    falls = np.full(a.shape, -np.inf)
    falls[:, _H:] = hourly[:, :-_H] - hourly[:, _H:]
    falls[~np.isfinite(falls)] = -np.inf
    size = min(w, a.shape[1])
    peak = ndimage.maximum_filter1d(falls, size=size, axis=1, origin=(size - 1) // 2, mode="nearest")[:, idx]
    return np.where(np.isfinite(peak), np.maximum(peak, 0.0), np.nan)


def _earlier_peak(a: np.ndarray, w: int, idx: np.ndarray) -> np.ndarray:
    """Highest 1 h mean in the window ending 6 h before idx (the recent peak before the trend)."""
    hourly = _mean(a, _H, np.arange(a.shape[1]))
    hourly[~np.isfinite(hourly)] = -np.inf
    size = min(w, a.shape[1])
    peak = ndimage.maximum_filter1d(hourly, size=size, axis=1, origin=(size - 1) // 2, mode="nearest")
    before = peak[:, np.clip(idx - 6 * _H, 0, None)]
    return np.where(np.isfinite(before) & (idx >= 6 * _H), before, np.nan)


def _hours_since_gap(present: np.ndarray, idx: np.ndarray) -> np.ndarray:
    """Hours since the last missing grid point, capped at LOOKBACK_HOURS (history before the
    array's first position is not a gap: it says nothing about reboots)."""
    steps = np.arange(present.shape[1])
    last_gap = np.maximum.accumulate(np.where(present, -1, steps), axis=1)[:, idx]
    hours = (idx[None, :] - last_gap) / _H
    return np.where(last_gap < 0, LOOKBACK_HOURS, np.minimum(hours, LOOKBACK_HOURS))


def _slope(a: np.ndarray, w: int, idx: np.ndarray) -> np.ndarray:
    """Least-squares slope per hour over the window (PromQL deriv()), NaN with < 3 samples."""
    ok = np.isfinite(a)
    t = np.broadcast_to(np.arange(a.shape[1], dtype=float) / _H, a.shape)
    y = np.where(ok, a, 0.0)
    tw = np.where(ok, t, 0.0)
    lo, hi = _windows(w, idx)
    # Centre time on the window end so the sums stay small and well conditioned.
    sums = [_cumsum(v) for v in (ok.astype(float), tw, tw * tw, y, tw * y)]
    sw, st, stt, sy, sty = (s[:, hi] - s[:, lo] for s in sums)
    with np.errstate(invalid="ignore", divide="ignore"):
        den = sw * stt - st * st
        slope = (sw * sty - st * sy) / den
    return np.where((sw >= 3) & (den > 1e-12), slope, np.nan)


def _hours_to_full(level: np.ndarray, slope: np.ndarray) -> np.ndarray:
    """Hours until the used fraction reaches 1 at the current slope (predict_linear), capped."""
    with np.errstate(invalid="ignore", divide="ignore"):
        hours = (1.0 - level) / slope
    hours = np.where(slope > MIN_SLOPE_PER_HOUR, np.clip(hours, 0.0, MAX_HOURS), MAX_HOURS)
    return np.where(np.isfinite(level) & np.isfinite(slope), hours, np.nan)


def _increments(counter: np.ndarray) -> np.ndarray:
    """Per-step increases with counter resets handled as PromQL increase() does."""
    d = np.diff(counter, prepend=np.nan, axis=1)
    return np.where(d < 0, counter, d)


def remaining_points(
    metrics: Mapping[str, np.ndarray],
    grid: np.ndarray,
    failure_times: Sequence[Sequence[float]],
    cap_hours: float,
    extras: Sequence[str] = (),
    min_history_hours: float = MIN_HISTORY_HOURS,
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Features, hours to the next failure capped at `cap_hours`, and node index, at the points
    where that target is known: a failure follows within the history, or `cap_hours` of history
    follow the point."""
    step = max(1, int(TRAIN_EVERY_HOURS * _H))
    first = min(int(min_history_hours * _H), (len(grid) - 1) // 2)
    idx = np.arange(first, len(grid), step)
    times = grid[idx]
    remaining = np.full((len(failure_times), len(idx)), np.inf)
    for i, fails in enumerate(failure_times):
        for f in fails:
            ahead = (f - times) / 3600.0
            remaining[i] = np.where((ahead > 0) & (ahead < remaining[i]), ahead, remaining[i])
    known = np.isfinite(remaining) | (times + cap_hours * 3600.0 <= grid[-1])[None, :]
    x = features(metrics, idx, extras)
    node = np.broadcast_to(np.arange(len(failure_times))[:, None], remaining.shape)
    return x[known], np.minimum(remaining, cap_hours)[known], node[known]
