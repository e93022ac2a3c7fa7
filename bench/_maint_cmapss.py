"""C-MAPSS turbofan engines for `bench.maintenance`: "fails within 30 cycles" and remaining life,
through `engines.failure` (FailurePredictor, RemainingLifeRegressor) beside a gradient-boosting
reference trained on the same features.

Data (`cmapss/`): NASA C-MAPSS FD001 (one operating condition) and FD002 (six); `train_*` units
run to failure, `test_*` units stop early, `RUL_*` gives their true remaining cycles. Cite Saxena,
Goebel, Simon, Eklund, "Damage Propagation Modeling for Aircraft Engine Run-to-Failure
Simulation", PHM 2008. Train units -> test units, per subset; every test unit is scored once, at
its last cycle.

How the engines see an engine: one cycle is one grid step of `failure.STEP_SECONDS`, so the
predictor's 1 h / 6 h / 24 h windows span 6 / 36 / 144 cycles; a train unit fails one step after
its last cycle. The 21 sensors are numeric signals the predictor does not know (generic features:
level, change against the longer window, slopes). Operating conditions (FD002) change sensor
levels more than wear does, so each sensor is standardised within its condition (condition =
the rounded settings) with means and deviations of the train units only; sensors constant within
every condition carry nothing and are dropped. Constants, none fitted on test units:
- HORIZON_CYCLES 30 and RUL_CAP 125: the issue's label and cap (the cap is the literature's usual
  piecewise-linear target).
- MIN_HISTORY_CYCLES 6: training points start once the shortest feature window is full, so that
  short test histories (31 cycles in FD001) look like training points.
- The reference: scikit-learn's GradientBoostingClassifier / GradientBoostingRegressor with their
  default constants (100 trees of depth 3, learning rate 0.1), missing features filled with the
  train medians (it takes no NaN).
"""

from __future__ import annotations

import dataclasses
import warnings
from pathlib import Path
from typing import Final

import numpy as np
from sklearn.ensemble import GradientBoostingClassifier, GradientBoostingRegressor
from sklearn.metrics import average_precision_score, precision_recall_curve

from autoloop.engines import failure
from autoloop.engines.failure import featuring, signals

FOLDER: Final[str] = "cmapss"
SUBSETS: Final[tuple[str, ...]] = ("FD001", "FD002")
HORIZON_CYCLES: Final[int] = 30
RUL_CAP: Final[int] = 125
MIN_HISTORY_CYCLES: Final[int] = 6
STEP: Final[float] = signals.STEP_SECONDS
"""Seconds per cycle on the predictor's grid."""
CYCLES_PER_HOUR: Final[float] = 3600.0 / STEP


@dataclasses.dataclass(frozen=True)
class Units:
    ids: np.ndarray
    cycles: np.ndarray
    settings: np.ndarray
    sensors: np.ndarray


@dataclasses.dataclass(frozen=True)
class Result:
    subset: str
    method: str
    pr_auc: float
    precision_at_recall_0_8: float
    rmse: float
    positives: int
    units: int


def _read(path: Path) -> Units:
    a = np.loadtxt(path)
    return Units(a[:, 0].astype(int), a[:, 1], a[:, 2:5], a[:, 5:26])


def _every(units: Units, stride: int) -> Units:
    rows = (units.ids - 1) % stride == 0
    return Units(units.ids[rows], units.cycles[rows], units.settings[rows], units.sensors[rows])


def _conditions(settings: np.ndarray) -> list[tuple[float, ...]]:
    rounded = np.column_stack(
        [np.round(settings[:, 0]), np.round(settings[:, 1], 1), np.round(settings[:, 2])]
    )
    return [tuple(float(v) for v in row) for row in rounded]


def _standardiser(train: Units) -> dict[tuple[float, ...], tuple[np.ndarray, np.ndarray]]:
    keys = _conditions(train.settings)
    out = {}
    for key in set(keys):
        rows = train.sensors[[k == key for k in keys]]
        out[key] = (rows.mean(axis=0), rows.std(axis=0))
    return out


def _signals(
    units: Units, norm: dict[tuple[float, ...], tuple[np.ndarray, np.ndarray]], keep: np.ndarray
) -> np.ndarray:
    keys = _conditions(units.settings)
    out = np.full(units.sensors.shape, np.nan)
    for i, key in enumerate(keys):
        if key in norm:
            mean, std = norm[key]
            with np.errstate(all="ignore"):
                out[i] = (units.sensors[i] - mean) / std
    return out[:, keep]


def _series(units: Units, values: np.ndarray, names: list[str]) -> list[failure.NodeSeries]:
    out = []
    for unit in np.unique(units.ids):
        rows = units.ids == unit
        ts = units.cycles[rows] * STEP
        out.append(failure.NodeSeries(f"u{unit}", ts, {n: values[rows, j] for j, n in enumerate(names)}))
    return out


def _last_features(series: list[failure.NodeSeries], extras: tuple[str, ...]) -> np.ndarray:
    """Feature rows at each unit's last cycle (what `predict` computes, kept for both models)."""
    rows = []
    window = int(signals.LOOKBACK_HOURS * 3600 / STEP)
    for item in series:
        now = float(item.timestamps[-1])
        grid = now - STEP * np.arange(window, -1, -1)
        metrics = signals.on_grid(item, extras, grid)
        rows.append(featuring.features(metrics, np.array([window]), extras)[0, 0])
    return np.vstack(rows)


def _precision_at_recall(y: np.ndarray, score: np.ndarray, recall: float = 0.8) -> float:
    p, r, _ = precision_recall_curve(y, score)
    return float(np.max(p[r >= recall]))


def run_subset(root: Path, subset: str, *, unit_stride: int = 1) -> list[Result]:
    """autoloop and the reference on one subset; `unit_stride` > 1 trains on one train unit in
    `unit_stride` (the quick run)."""
    train = _read(root / FOLDER / f"train_{subset}.txt")
    train = _every(train, unit_stride)
    test = _read(root / FOLDER / f"test_{subset}.txt")
    true_rul = np.loadtxt(root / FOLDER / f"RUL_{subset}.txt")
    norm = _standardiser(train)
    keep = np.array([any(std[j] > 1e-9 for _, std in norm.values()) for j in range(train.sensors.shape[1])])
    names = [f"sensor_{j + 1:02d}" for j in range(train.sensors.shape[1]) if keep[j]]
    history = _series(train, _signals(train, norm, keep), names)
    failures = {h.name: [float(h.timestamps[-1]) + STEP] for h in history}
    horizon_h = HORIZON_CYCLES / CYCLES_PER_HOUR
    cap_h = RUL_CAP / CYCLES_PER_HOUR
    min_h = MIN_HISTORY_CYCLES / CYCLES_PER_HOUR
    clf = failure.FailurePredictor(horizon_hours=horizon_h, min_history_hours=min_h).fit(history, failures)
    reg = failure.RemainingLifeRegressor(cap_hours=cap_h, min_history_hours=min_h).fit(history, failures)
    tests = _series(test, _signals(test, norm, keep), names)
    extras = clf.extras_
    x_test = _last_features(tests, extras)
    y = true_rul <= HORIZON_CYCLES
    rul_true = np.minimum(true_rul, RUL_CAP)
    ours_p = clf.predict_proba_features(x_test)
    ours_rul = reg.predict_features(x_test) * CYCLES_PER_HOUR
    # The reference trains on the very rows the engines trained on.
    x_tr, y_tr, x_rul, rul_tr = _training_rows(history, failures, extras, horizon_h, cap_h, min_h)
    with np.errstate(all="ignore"), warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)  # all-NaN columns: filled with 0 below
        fill = np.nanmedian(x_tr, axis=0)
    fill = np.where(np.isfinite(fill), fill, 0.0)

    def filled(x: np.ndarray) -> np.ndarray:
        return np.where(np.isfinite(x), x, fill)

    ref_p = (
        GradientBoostingClassifier(random_state=0).fit(filled(x_tr), y_tr).predict_proba(filled(x_test))[:, 1]
    )
    ref_rul = GradientBoostingRegressor(random_state=0).fit(filled(x_rul), rul_tr).predict(filled(x_test))
    out = []
    for method, p, rul in (
        ("autoloop", ours_p, ours_rul),
        ("gradient boosting", ref_p, ref_rul * CYCLES_PER_HOUR),
    ):
        out.append(
            Result(
                subset,
                method,
                float(average_precision_score(y, p)),
                _precision_at_recall(y, p),
                float(np.sqrt(np.mean((np.clip(rul, 0, RUL_CAP) - rul_true) ** 2))),
                int(y.sum()),
                len(y),
            )
        )
    return out


def _training_rows(
    history: list[failure.NodeSeries],
    failures: dict[str, list[float]],
    extras: tuple[str, ...],
    horizon_h: float,
    cap_h: float,
    min_h: float,
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """The classifier's rows and labels, and the regressor's rows and capped hours."""
    xc, yc, xr, yr = [], [], [], []
    for item in history:
        grid = np.arange(item.timestamps[0], item.timestamps[-1] + 1e-6, STEP)
        metrics = signals.on_grid(item, extras, grid)
        fails = [failures[item.name]]
        x, y, _ = featuring.training_points(metrics, grid, fails, horizon_h, extras, min_h)
        xc.append(x)
        yc.append(y)
        x2, r2, _ = featuring.remaining_points(metrics, grid, fails, cap_h, extras, min_h)
        xr.append(x2)
        yr.append(r2)
    x_c, x_r = np.concatenate(xc), np.concatenate(xr)
    up_c, up_r = featuring.reporting(x_c), featuring.reporting(x_r)
    return x_c[up_c], np.concatenate(yc)[up_c], x_r[up_r], np.concatenate(yr)[up_r]
