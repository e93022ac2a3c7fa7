"""Remaining useful life: hours until a node (or engine, or disk) fails, capped.

Owns: `RemainingLifeRegressor`, the regression twin of `FailurePredictor` over the same features
(same signals, same grid, any numeric signal); trained on histories that run to a failure.
Must never: compute features itself (`featuring`) or read raw series other than through `signals`.

Why capped: far from failure nothing in the signals tells 300 h from 500 h left; the target is
min(hours left, `cap_hours`) (the piecewise-linear degradation target of Heimes, "Recurrent neural
networks for remaining useful life estimation", PHM 2008), so the model spends its capacity where
degradation shows.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import numpy as np
from sklearn.ensemble import HistGradientBoostingRegressor
from threadpoolctl import threadpool_limits

from autoloop.engines.failure import featuring, signals


class RemainingLifeRegressor:
    """Gradient-boosted regression of the capped hours to failure.

    cap_hours: the target's cap (hours); predictions lie in [0, cap_hours].
    min_history_hours: training points start once a unit has this much history.
    max_iter, learning_rate: the boosted trees' rounds and shrinkage.
    random_state: seeds the boosting.
    """

    def __init__(
        self,
        *,
        cap_hours: float = 72.0,
        min_history_hours: float = featuring.MIN_HISTORY_HOURS,
        max_iter: int = 300,
        learning_rate: float = 0.05,
        random_state: int = 0,
    ) -> None:
        self.cap_hours = cap_hours
        self.min_history_hours = min_history_hours
        self.max_iter = max_iter
        self.learning_rate = learning_rate
        self.random_state = random_state

    def fit(
        self, history: Sequence[signals.NodeSeries], failures: Mapping[str, Sequence[float]]
    ) -> RemainingLifeRegressor:
        """Train on per-unit series and the epoch seconds at which each unit failed."""
        extras = signals.extra_signals(name for item in history for name in item.metrics)
        names = (*signals.METRICS, *extras)
        xs, ys = [], []
        for _, item, grid, on_grid in signals.gridded(history, names):
            x, y, _ = featuring.remaining_points(
                on_grid,
                grid,
                [list(failures.get(item.name, ()))],
                self.cap_hours,
                extras,
                self.min_history_hours,
            )
            xs.append(x)
            ys.append(y)
        width = len(featuring.feature_names(extras))
        x_all = np.concatenate(xs) if xs else np.empty((0, width))
        y_all = np.concatenate(ys) if ys else np.empty(0)
        return self.fit_features(x_all, y_all, extras=extras)

    def fit_features(
        self, x: np.ndarray, y: np.ndarray, *, extras: Sequence[str] = ()
    ) -> RemainingLifeRegressor:
        """Train on precomputed feature rows (`featuring.features` with `extras`) and capped hours."""
        self.extras_ = tuple(extras)
        keep = featuring.reporting(x) if len(x) else np.zeros(0, dtype=bool)
        x, y = np.asarray(x, float)[keep], np.asarray(y, float)[keep]
        self.columns_ = np.isfinite(x).any(axis=0) if len(x) else np.zeros(x.shape[1], dtype=bool)
        self.n_train_ = len(y)
        self.constant_ = float(np.median(y)) if len(y) else self.cap_hours
        self.model_: HistGradientBoostingRegressor | None = None
        if len(y) >= 2 and self.columns_.any() and np.ptp(y) > 0:
            with threadpool_limits(limits=1, user_api="openmp"):
                self.model_ = HistGradientBoostingRegressor(
                    max_iter=self.max_iter,
                    learning_rate=self.learning_rate,
                    max_leaf_nodes=15,
                    l2_regularization=1.0,
                    early_stopping=False,
                    random_state=self.random_state,
                ).fit(x[:, self.columns_], y)
        return self

    def predict_features(self, x: np.ndarray) -> np.ndarray:
        """Capped hours to failure for precomputed feature rows (NaN where the unit is down)."""
        x = np.asarray(x, dtype=float)
        if self.model_ is None:
            out = np.full(len(x), self.constant_)
        else:
            with threadpool_limits(limits=1, user_api="openmp"):
                out = self.model_.predict(x[:, self.columns_])
        return np.where(featuring.reporting(x), np.clip(out, 0.0, self.cap_hours), np.nan)

    def predict(self, series: Sequence[signals.NodeSeries], *, now: float | None = None) -> np.ndarray:
        """Each unit's capped hours to failure at `now` (default: the newest sample over all units)."""
        if not series:
            return np.empty(0)
        if now is None:
            now = max((float(np.max(s.timestamps)) for s in series if len(s.timestamps)), default=0.0)
        window = int(signals.LOOKBACK_HOURS * 3600 / signals.STEP_SECONDS)
        grid = now - signals.STEP_SECONDS * np.arange(window, -1, -1)
        names = (*signals.METRICS, *self.extras_)
        rows = [signals.on_grid(item, names, grid) for item in series]
        stacked = {name: np.vstack([r[name] for r in rows]) for name in names}
        return self.predict_features(featuring.features(stacked, np.array([window]), self.extras_)[:, 0, :])
