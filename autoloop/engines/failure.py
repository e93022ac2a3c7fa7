"""Failure prediction: per node, the probability of failing within a horizon and when.

Contract: `FailurePredictor().predict(series)` takes per-node metric series (epoch-second timestamps
and node-exporter / kube-state-metrics values, any sampling, gaps allowed) and returns, per node,
the calibrated probability of failure within `horizon_hours`, an expected time to failure and the
signals that drove it. `fit(history, failures)` trains on users' labelled history;
`autoloop.simulation.fleet.trained_predictor()` returns one trained on the simulator.

How: every series is resampled onto a regular grid (last sample carried forward, as a Prometheus
instant query does), turned into trend features (level, `predict_linear`-style slopes and hours
until full over 1/6/12/24 h, sawtooth drops), counter increases (reset-aware like `increase()`)
with their exponential growth rate, pressure conditions, temperature deltas and the hours since
the node last came back from an outage; a gradient-boosted classifier scores them and isotonic
calibration on node-grouped folds makes the scores probabilities. A node missing a signal (no
EDAC on a VM) gets NaN features, which the trees route natively; a node whose newest sample is
stale is down and gets no prediction.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Final

import numpy as np
from scipy import ndimage
from sklearn.calibration import CalibratedClassifierCV
from sklearn.ensemble import HistGradientBoostingClassifier
from sklearn.model_selection import GroupKFold
from threadpoolctl import threadpool_limits

DISK_AVAIL: Final = "node_filesystem_avail_bytes"
DISK_SIZE: Final = "node_filesystem_size_bytes"
MEM_AVAIL: Final = "node_memory_MemAvailable_bytes"
MEM_TOTAL: Final = "node_memory_MemTotal_bytes"
TEMP: Final = "node_hwmon_temp_celsius"
EDAC: Final = "node_edac_correctable_errors_total"
RESTARTS: Final = "kube_pod_container_status_restarts_total"
CARRIER: Final = "node_network_carrier_changes_total"
DISK_PRESSURE: Final = "kube_node_status_condition:DiskPressure"
MEMORY_PRESSURE: Final = "kube_node_status_condition:MemoryPressure"
METRICS: Final[tuple[str, ...]] = (
    DISK_AVAIL,
    DISK_SIZE,
    MEM_AVAIL,
    MEM_TOTAL,
    TEMP,
    EDAC,
    RESTARTS,
    CARRIER,
    DISK_PRESSURE,
    MEMORY_PRESSURE,
)
"""Input metric names (values: bytes, °C, counter totals, 0/1 conditions)."""

STEP_SECONDS: Final[float] = 600.0
"""Resampling grid step (10 min): finer than any trend we extrapolate, coarse enough to be cheap."""
LOOKBACK_HOURS: Final[float] = 72.0
"""History each prediction looks at; the longest feature window (sees a 48 h log rotation)."""
MIN_HISTORY_HOURS: Final[float] = 24.0
"""Training points start once a node has this much history."""
STALENESS_SECONDS: Final[float] = 900.0
"""A sample older than this at a grid point counts as missing (1.5 grid steps)."""
TRAIN_EVERY_HOURS: Final[float] = 1.0
"""Spacing of the labelled evaluation points drawn from training history."""
MAX_HOURS: Final[float] = 720.0
"""Cap for 'never' in hours-until-full features and expected time to failure (30 days)."""
MIN_SLOPE_PER_HOUR: Final[float] = 1e-4
"""Fill slopes below 0.01 %/h count as flat."""
REASON_MIN_DROP: Final[float] = 0.05
"""A signal group is named as a reason when neutralising it lowers the probability by >= 5 points."""

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


@dataclass(frozen=True)
class NodeSeries:
    """Observed metric series of one node (or workload)."""

    name: str
    timestamps: np.ndarray
    """Epoch seconds, increasing."""
    metrics: Mapping[str, np.ndarray]
    """Metric name (see METRICS) -> values aligned with timestamps; NaN = no sample. Missing names allowed."""


@dataclass(frozen=True)
class FailurePrediction:
    """Risk of one node within the horizon."""

    node: str
    probability: float
    """Calibrated probability of failing within horizon_hours (NaN when no recent data)."""
    expected_hours_to_failure: float
    """Trend extrapolation or constant-hazard estimate, capped at MAX_HOURS."""
    horizon_hours: float
    reasons: tuple[str, ...]
    """Signals that drove the probability, strongest first."""
    available: bool = True
    """False when the node had no sample in the last STALENESS_SECONDS (no prediction made)."""


class FailurePredictor:
    """Calibrated gradient-boosted failure classifier over trend and counter features."""

    def __init__(
        self,
        *,
        horizon_hours: float = 24.0,
        max_iter: int = 150,
        learning_rate: float = 0.1,
        calibration_folds: int = 3,
        random_state: int = 0,
    ) -> None:
        self.horizon_hours = horizon_hours
        self.max_iter = max_iter
        self.learning_rate = learning_rate
        self.calibration_folds = calibration_folds
        self.random_state = random_state

    # -- training -------------------------------------------------------------------------------

    def fit(self, history: Sequence[NodeSeries], failures: Mapping[str, Sequence[float]]) -> FailurePredictor:
        """Train on labelled history: per-node series plus the epoch seconds at which each node failed."""
        blocks, labels, groups = [], [], []
        for g, item in enumerate(history):
            ts = np.asarray(item.timestamps, dtype=float)
            if len(ts) == 0:
                continue
            grid = np.arange(ts[0], ts[-1] + 1e-6, STEP_SECONDS)
            resampled = {
                name: _resample(ts, np.asarray(v, float), grid)[None, :] for name, v in item.metrics.items()
            }
            x, y = _training_points(resampled, grid, [list(failures.get(item.name, ()))], self.horizon_hours)
            blocks.append(x)
            labels.append(y)
            groups.append(np.full(len(y), g))
        return self._fit_xy(np.concatenate(blocks), np.concatenate(labels), np.concatenate(groups))

    def fit_arrays(
        self,
        *,
        timestamps: np.ndarray,
        metrics: Mapping[str, np.ndarray],
        failure_times: Sequence[Sequence[float]],
    ) -> FailurePredictor:
        """Train on a fleet already on one regular STEP_SECONDS grid: metrics are (n_nodes, T) arrays."""
        x, y = _training_points(metrics, np.asarray(timestamps, float), failure_times, self.horizon_hours)
        n_nodes = len(failure_times)
        groups = np.repeat(np.arange(n_nodes), len(y) // n_nodes)
        return self._fit_xy(x, y, groups)

    def _fit_xy(self, x: np.ndarray, y: np.ndarray, groups: np.ndarray) -> FailurePredictor:
        keep = reporting(x)  # points where the node reported (not down)
        x, y, groups = x[keep], y[keep], groups[keep]
        if y.min() == y.max():
            raise ValueError("training history needs both failing and healthy points")
        base = HistGradientBoostingClassifier(
            max_iter=self.max_iter,
            learning_rate=self.learning_rate,
            max_leaf_nodes=15,
            l2_regularization=1.0,
            early_stopping=False,
            random_state=self.random_state,
        )
        folds = min(self.calibration_folds, len(np.unique(groups)))
        # Folds by node so calibration never sees a node the classifier was trained on.
        splits = list(GroupKFold(n_splits=folds).split(x, y, groups))
        # One OpenMP thread: on a busy small machine, spinning threads make boosting 10x slower.
        with threadpool_limits(limits=1, user_api="openmp"):
            self.model_ = CalibratedClassifierCV(base, method="isotonic", cv=splits).fit(x, y)
        self.reference_ = np.nanmedian(x[y == 0], axis=0)
        self.positive_rate_ = float(y.mean())
        self.n_train_ = len(y)
        return self

    # -- inference ------------------------------------------------------------------------------

    def predict_proba_features(self, x: np.ndarray) -> np.ndarray:
        """Probabilities for precomputed feature rows (benchmarks evaluate many points this way)."""
        with threadpool_limits(limits=1, user_api="openmp"):
            proba = self.model_.predict_proba(x)[:, 1]
        return np.where(reporting(x), proba, np.nan)

    def predict(self, series: Sequence[NodeSeries], *, now: float | None = None) -> list[FailurePrediction]:
        """Predict each node's risk at `now` (default: the newest sample over all nodes)."""
        if not series:
            return []
        if now is None:
            now = max((float(np.max(s.timestamps)) for s in series if len(s.timestamps)), default=0.0)
        grid = now - STEP_SECONDS * np.arange(_W, -1, -1)
        stacked: dict[str, np.ndarray] = {}
        for name in METRICS:
            rows = []
            for item in series:
                values = item.metrics.get(name)
                if values is None or len(item.timestamps) == 0:
                    rows.append(np.full(len(grid), np.nan))
                else:
                    rows.append(
                        _resample(np.asarray(item.timestamps, float), np.asarray(values, float), grid)
                    )
            stacked[name] = np.vstack(rows)
        x = features(stacked, np.array([_W]))[:, 0, :]
        return self._explain(series, x)

    def _explain(self, series: Sequence[NodeSeries], x: np.ndarray) -> list[FailurePrediction]:
        proba = self.predict_proba_features(x)
        # Occlusion: the probability with one signal group set to a healthy node's typical values.
        occluded = {}
        for group, names in GROUPS.items():
            cols = [FEATURES.index(n) for n in names]
            xo = x.copy()
            xo[:, cols] = self.reference_[cols]
            occluded[group] = self.predict_proba_features(xo)
        out = []
        for i, item in enumerate(series):
            if not math.isfinite(float(proba[i])):
                out.append(
                    FailurePrediction(
                        item.name, math.nan, math.nan, self.horizon_hours, ("no recent samples",), False
                    )
                )
                continue
            drops = sorted(((proba[i] - occluded[g][i], g) for g in GROUPS), reverse=True)
            drivers = [g for d, g in drops if d >= REASON_MIN_DROP]
            if not drivers and proba[i] >= 0.5:
                drivers = [drops[0][1]]
            trend = min((_trend_hours(g, x[i]) for g in drivers if g in ("disk", "memory")), default=math.inf)
            out.append(
                FailurePrediction(
                    node=item.name,
                    probability=float(proba[i]),
                    expected_hours_to_failure=expected_hours(float(proba[i]), trend, self.horizon_hours),
                    horizon_hours=self.horizon_hours,
                    reasons=tuple(_describe(g, x[i]) for g in drivers)
                    or ("no signal outside its healthy range",),
                )
            )
        return out


def reporting(x: np.ndarray) -> np.ndarray:
    """Rows where the node reported disk or memory recently (feature rows of a down node are NaN)."""
    return np.isfinite(x[:, FEATURES.index("disk_used")]) | np.isfinite(x[:, FEATURES.index("mem_used")])


def expected_hours(probability: float, trend_hours: float, horizon_hours: float) -> float:
    """Time to failure: the nearer of a trend extrapolation and a constant-hazard estimate.

    The hazard estimate assumes the rate implied by P(fail within H) stays constant: lambda =
    -ln(1 - p) / H and mean time = 1 / lambda. `trend_hours` (hours until disk or memory is full)
    should be passed only when that trend drove the prediction, so a sawtooth disk that
    extrapolates to full does not produce a short time to failure; pass inf otherwise.
    """
    p = min(max(probability, 1e-6), 1 - 1e-6)
    hazard_hours = horizon_hours / -math.log(1.0 - p)
    return float(min(trend_hours, hazard_hours, MAX_HOURS))


def _trend_hours(group: str, row: np.ndarray) -> float:
    """Hours until full from the 6 h slope of the disk or memory group (inf when not rising)."""
    prefix = "disk" if group == "disk" else "mem"
    hours = float(row[FEATURES.index(f"{prefix}_hours_to_full_6h")])
    return hours if math.isfinite(hours) and hours < MAX_HOURS else math.inf


def _describe(group: str, row: np.ndarray) -> str:
    """A human reason from the raw feature values of one signal group."""

    def f(name: str) -> float:
        return float(row[FEATURES.index(name)])

    if group in ("disk", "memory"):
        prefix = "disk" if group == "disk" else "mem"
        used, slope, full = f(f"{prefix}_used"), f(f"{prefix}_slope_6h"), f(f"{prefix}_hours_to_full_6h")
        text = f"{group} {used:.0%} used"
        if slope > MIN_SLOPE_PER_HOUR:
            text += f" and rising {slope * 100:.1f}%/h"
            if full < MAX_HOURS:
                text += f", full in ~{full:.0f}h"
        if f(f"{prefix}_pressure_1h") > 0:
            text += f", {'Disk' if group == 'disk' else 'Memory'}Pressure"
        return text
    if group == "temperature":
        return f"temperature {f('temp_1h'):.0f}°C, {f('temp_delta_24h'):+.0f}°C against its 24h mean"
    if group == "edac":
        return f"{f('edac_6h'):.0f} corrected memory errors in 6h ({f('edac_24h'):.0f} in 24h)"
    if group == "restarts":
        return f"{f('restarts_6h'):.0f} container restarts in 6h ({f('restarts_24h'):.0f} in 24h)"
    return f"{f('carrier_6h'):.0f} NIC carrier changes in 6h ({f('carrier_24h'):.0f} in 24h)"


# -- features ---------------------------------------------------------------------------------------


def features(metrics: Mapping[str, np.ndarray], idx: np.ndarray) -> np.ndarray:
    """Feature tensor (n_nodes, len(idx), len(FEATURES)) at grid positions idx of (n_nodes, T) arrays.

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
    present = np.isfinite(disk) | np.isfinite(mem)
    cols["uptime_hours"] = _hours_since_gap(present, idx)
    # The node is 'up' at a point only if its latest grid value is fresh (a sample within
    # STALENESS_SECONDS): a node that just went down still has older samples in its windows.
    up = present[:, idx]
    out = np.stack([cols[name] for name in FEATURES], axis=-1)
    out[~up] = np.nan
    return out


def _training_points(
    metrics: Mapping[str, np.ndarray],
    grid: np.ndarray,
    failure_times: Sequence[Sequence[float]],
    horizon_hours: float,
) -> tuple[np.ndarray, np.ndarray]:
    """Features every TRAIN_EVERY_HOURS after the first LOOKBACK_HOURS, labelled 'fails within horizon'."""
    step = int(TRAIN_EVERY_HOURS * _H)
    # Points whose horizon runs past the end of the history have unknown labels: leave them out.
    last = int(np.searchsorted(grid, grid[-1] - horizon_hours * 3600.0, side="right"))
    first = min(int(MIN_HISTORY_HOURS * _H), len(grid) - 1)
    idx = np.arange(first, max(last, first + 1), step)
    x = features(metrics, idx)
    y = labels(grid[idx], failure_times, horizon_hours)
    return x.reshape(-1, len(FEATURES)), y.reshape(-1)


def labels(times: np.ndarray, failure_times: Sequence[Sequence[float]], horizon_hours: float) -> np.ndarray:
    """(n_nodes, len(times)) booleans: the node fails in (t, t + horizon]."""
    out = np.zeros((len(failure_times), len(times)), dtype=bool)
    for i, fails in enumerate(failure_times):
        for f in fails:
            out[i] |= (times < f) & (f <= times + horizon_hours * 3600.0)
    return out


def _resample(ts: np.ndarray, values: np.ndarray, grid: np.ndarray) -> np.ndarray:
    """Last sample at or before each grid time, NaN when older than STALENESS_SECONDS."""
    ok = np.isfinite(values) & np.isfinite(ts)
    ts, values = ts[ok], values[ok]
    out = np.full(len(grid), np.nan)
    if len(ts) == 0:
        return out
    pos = np.searchsorted(ts, grid, side="right") - 1
    fresh = (pos >= 0) & (grid - ts[np.clip(pos, 0, None)] <= STALENESS_SECONDS)
    out[fresh] = values[pos[fresh]]
    return out


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
