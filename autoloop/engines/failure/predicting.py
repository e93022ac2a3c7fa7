"""The failure predictor: fit on labelled history, predict each node's risk, explain it.

Owns: `FailurePredictor` (parameters in `__init__`, learned state ending in `_`), its result
`FailurePrediction`, the time-to-failure estimate and the human reasons.
Must never: compute features itself (`featuring`) or read raw series other than through `signals`.
"""

from __future__ import annotations

import hashlib
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Final

import numpy as np
from sklearn.calibration import CalibratedClassifierCV
from sklearn.ensemble import HistGradientBoostingClassifier
from sklearn.model_selection import GroupKFold
from threadpoolctl import threadpool_limits

from autoloop.engines.failure import featuring, signals

REASON_MIN_DROP: Final[float] = 0.05
"""A signal group is named as a reason when neutralising it lowers the probability by >= 5 points."""


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
    """False when the node had no recent sample (no prediction made)."""


class _Constant:
    """The model when the history holds one class only: the smoothed base rate, (k + 1/2) / (n + 1)
    (Jeffreys' prior), the same for every point."""

    def __init__(self, positives: int, points: int) -> None:
        self.rate = (positives + 0.5) / (points + 1.0)

    def predict_proba(self, x: np.ndarray) -> np.ndarray:
        return np.column_stack([np.full(len(x), 1 - self.rate), np.full(len(x), self.rate)])


class FailurePredictor:
    """Calibrated gradient-boosted failure classifier over trend and counter features.

    horizon_hours: the label is "fails within this many hours".
    max_iter, learning_rate: the boosted trees' rounds and shrinkage.
    calibration_folds: node-grouped folds of the isotonic calibration.
    random_state: seeds the boosting.
    min_history_hours: training points start once a node has this much history.
    """

    def __init__(
        self,
        *,
        horizon_hours: float = 24.0,
        max_iter: int = 150,
        learning_rate: float = 0.1,
        calibration_folds: int = 3,
        random_state: int = 0,
        min_history_hours: float = featuring.MIN_HISTORY_HOURS,
    ) -> None:
        self.horizon_hours = horizon_hours
        self.max_iter = max_iter
        self.learning_rate = learning_rate
        self.calibration_folds = calibration_folds
        self.random_state = random_state
        self.min_history_hours = min_history_hours

    # -- training -------------------------------------------------------------------------------

    def fit(
        self, history: Sequence[signals.NodeSeries], failures: Mapping[str, Sequence[float]]
    ) -> FailurePredictor:
        """Train on labelled history: per-node series (any sampling, any numeric signals; the ones
        not built in get generic features) plus the epoch seconds at which each node failed."""
        extras = signals.extra_signals(name for item in history for name in item.metrics)
        names = (*signals.METRICS, *extras)
        blocks, labels, groups = [], [], []
        for g, item, grid, on_grid in signals.gridded(history, names):
            x, y, _ = featuring.training_points(
                on_grid,
                grid,
                [list(failures.get(item.name, ()))],
                self.horizon_hours,
                extras,
                self.min_history_hours,
            )
            blocks.append(x)
            labels.append(y)
            groups.append(np.full(len(y), g))
        width = len(featuring.feature_names(extras))
        return self._fit_xy(
            np.concatenate(blocks) if blocks else np.empty((0, width)),
            np.concatenate(labels) if labels else np.empty(0, dtype=bool),
            np.concatenate(groups) if groups else np.empty(0, dtype=int),
            extras,
        )

    def fit_arrays(
        self,
        *,
        timestamps: np.ndarray,
        metrics: Mapping[str, np.ndarray],
        failure_times: Sequence[Sequence[float]],
    ) -> FailurePredictor:
        """Train on a fleet already on one regular STEP_SECONDS grid: metrics are (n_nodes, T) arrays
        (any signal names; the ones not built in get generic features)."""
        extras = signals.extra_signals(metrics)
        x, y, node = featuring.training_points(
            metrics,
            np.asarray(timestamps, float),
            failure_times,
            self.horizon_hours,
            extras,
            self.min_history_hours,
        )
        return self._fit_xy(x, y, node, extras)

    def fit_features(
        self, x: np.ndarray, y: np.ndarray, groups: np.ndarray, *, extras: Sequence[str] = ()
    ) -> FailurePredictor:
        """Train on precomputed feature rows (`featuring.features` with `extras`), labels and the
        unit (node) of each row; for histories that are not on a clock (cycles, runs)."""
        return self._fit_xy(np.asarray(x, float), np.asarray(y, bool), np.asarray(groups), tuple(extras))

    def _fit_xy(
        self, x: np.ndarray, y: np.ndarray, groups: np.ndarray, extras: Sequence[str]
    ) -> FailurePredictor:
        self.extras_ = tuple(extras)
        self.feature_names_ = featuring.feature_names(self.extras_)
        self.warnings_: list[str] = []
        keep = featuring.reporting(x) if len(x) else np.zeros(0, dtype=bool)
        x, y, groups = x[keep], y[keep], groups[keep]
        # A column with no value anywhere (a family no node exports) carries nothing and breaks the
        # trees' binning: it is left out and reads as missing at prediction time.
        self.columns_ = np.isfinite(x).any(axis=0) if len(x) else np.zeros(x.shape[1], dtype=bool)
        self.reference_ = np.full(x.shape[1], np.nan)
        if len(x):
            healthy = x[y == 0] if (y == 0).any() else x
            with np.errstate(all="ignore"):
                self.reference_[self.columns_] = np.nanmedian(healthy[:, self.columns_], axis=0)
        self.positive_rate_ = float(y.mean()) if len(y) else 0.0
        self.n_train_ = len(y)
        self.version_ = _version(self, x, y)
        self.model_: Any
        if len(y) == 0 or y.min() == y.max() or not self.columns_.any():
            self.warnings_.append(
                f"training history holds {int(y.sum())} failing and {int((~y).sum())} healthy points: "
                "every node gets the base rate"
            )
            self.model_ = _Constant(int(y.sum()), len(y))
            return self
        base = HistGradientBoostingClassifier(
            max_iter=self.max_iter,
            learning_rate=self.learning_rate,
            max_leaf_nodes=15,
            l2_regularization=1.0,
            early_stopping=False,
            random_state=self.random_state,
        )
        xs = x[:, self.columns_]
        splits = _calibration_splits(y, groups, self.calibration_folds)
        # One OpenMP thread: on a busy small machine, spinning threads make boosting 10x slower.
        with threadpool_limits(limits=1, user_api="openmp"):
            if splits is None:
                self.warnings_.append("too few failing nodes to calibrate: probabilities are the trees' own")
                self.model_ = base.fit(xs, y)
            else:
                self.model_ = CalibratedClassifierCV(base, method="isotonic", cv=splits).fit(xs, y)
        return self

    # -- inference ------------------------------------------------------------------------------

    def predict_proba_features(self, x: np.ndarray) -> np.ndarray:
        """Probabilities for precomputed feature rows (benchmarks evaluate many points this way)."""
        x = np.asarray(x, dtype=float)
        with threadpool_limits(limits=1, user_api="openmp"):
            proba = self.model_.predict_proba(x[:, self.columns_])[:, 1]
        return np.where(featuring.reporting(x), proba, np.nan)

    def predict(
        self, series: Sequence[signals.NodeSeries], *, now: float | None = None
    ) -> list[FailurePrediction]:
        """Predict each node's risk at `now` (default: the newest sample over all nodes)."""
        if not series:
            return []
        if now is None:
            now = max((float(np.max(s.timestamps)) for s in series if len(s.timestamps)), default=0.0)
        window = int(signals.LOOKBACK_HOURS * 3600 / signals.STEP_SECONDS)
        grid = now - signals.STEP_SECONDS * np.arange(window, -1, -1)
        names = (*signals.METRICS, *self.extras_)
        rows = [signals.on_grid(item, names, grid) for item in series]
        stacked = {name: np.vstack([r[name] for r in rows]) for name in names}
        x = featuring.features(stacked, np.array([window]), self.extras_)[:, 0, :]
        return self._explain(series, x)

    def _explain(self, series: Sequence[signals.NodeSeries], x: np.ndarray) -> list[FailurePrediction]:
        proba = self.predict_proba_features(x)
        # Occlusion: the probability with one signal group set to a healthy node's typical values.
        occluded = {}
        for group, names in featuring.groups(self.extras_).items():
            cols = [self.feature_names_.index(n) for n in names]
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
            drops = sorted(((proba[i] - occluded[g][i], g) for g in occluded), reverse=True)
            drivers = [g for d, g in drops if d >= REASON_MIN_DROP]
            if not drivers and proba[i] >= 0.5 and drops:
                drivers = [drops[0][1]]
            trend = min((_trend_hours(g, x[i]) for g in drivers if g in ("disk", "memory")), default=math.inf)
            out.append(
                FailurePrediction(
                    node=item.name,
                    probability=float(proba[i]),
                    expected_hours_to_failure=expected_hours(float(proba[i]), trend, self.horizon_hours),
                    horizon_hours=self.horizon_hours,
                    reasons=tuple(_describe(g, x[i], self.feature_names_) for g in drivers)
                    or ("no signal outside its healthy range",),
                )
            )
        return out


def _version(model: FailurePredictor, x: np.ndarray, y: np.ndarray) -> str:
    """A short name for what the model learned from: its parameters, signals and training points
    (the same data and parameters give the same version, so a retrain on unchanged history does not
    look like a new model)."""
    digest = hashlib.sha256()
    params = (model.horizon_hours, model.max_iter, model.learning_rate, model.calibration_folds)
    digest.update(repr((params, model.random_state, model.min_history_hours, model.extras_)).encode())
    digest.update(np.ascontiguousarray(x, dtype=float).tobytes())
    digest.update(np.ascontiguousarray(y, dtype=bool).tobytes())
    return digest.hexdigest()[:12]


def _calibration_splits(
    y: np.ndarray, groups: np.ndarray, folds: int
) -> list[tuple[np.ndarray, np.ndarray]] | None:
    """Node-grouped folds (calibration never sees a node the classifier was trained on), or None
    when some fold's training part would hold one class only (too few failing nodes)."""
    n = min(folds, len(np.unique(groups)))
    if n < 2:
        return None
    splits = list(GroupKFold(n_splits=n).split(y, y, groups))
    if any(y[train].min() == y[train].max() for train, _ in splits):
        return None
    return splits


def expected_hours(probability: float, trend_hours: float, horizon_hours: float) -> float:
    """Time to failure: the nearer of a trend extrapolation and a constant-hazard estimate.

    The hazard estimate assumes the rate implied by P(fail within H) stays constant: lambda =
    -ln(1 - p) / H and mean time = 1 / lambda. `trend_hours` (hours until disk or memory is full)
    should be passed only when that trend drove the prediction, so a sawtooth disk that
    extrapolates to full does not produce a short time to failure; pass inf otherwise.
    """
    p = min(max(probability, 1e-6), 1 - 1e-6)
    hazard_hours = horizon_hours / -math.log(1.0 - p)
    return float(min(trend_hours, hazard_hours, featuring.MAX_HOURS))


def _trend_hours(group: str, row: np.ndarray) -> float:
    """Hours until full from the 6 h slope of the disk or memory group (inf when not rising)."""
    prefix = "disk" if group == "disk" else "mem"
    hours = float(row[featuring.FEATURES.index(f"{prefix}_hours_to_full_6h")])
    return hours if math.isfinite(hours) and hours < featuring.MAX_HOURS else math.inf


def _describe(group: str, row: np.ndarray, names: Sequence[str]) -> str:
    """A human reason from the raw feature values of one signal group."""

    def f(name: str) -> float:
        return float(row[list(names).index(name)])

    if group in ("disk", "memory"):
        prefix = "disk" if group == "disk" else "mem"
        used, slope, full = f(f"{prefix}_used"), f(f"{prefix}_slope_6h"), f(f"{prefix}_hours_to_full_6h")
        text = f"{group} {used:.0%} used"
        if slope > featuring.MIN_SLOPE_PER_HOUR:
            text += f" and rising {slope * 100:.1f}%/h"
            if full < featuring.MAX_HOURS:
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
    if group == "network":
        return f"{f('carrier_6h'):.0f} NIC carrier changes in 6h ({f('carrier_24h'):.0f} in 24h)"
    if signals.is_counter(group):
        return f"{group}: +{f(f'{group}:increase_6h'):.4g} in 6h (+{f(f'{group}:increase_24h'):.4g} in 24h)"
    return f"{group}: {f(f'{group}:level_1h'):.4g}, {f(f'{group}:delta_24h'):+.4g} against its 24h mean"
