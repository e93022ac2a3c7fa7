"""How good a failure model is on labelled history: held-out by node, as the status reports it.

Owns: `Evaluation` and `evaluate` / `cross_validate` (PR-AUC and precision at recall 0.8 of
"fails within the horizon" on the hourly points `fit` trains on).
Must never: choose or tune a model; it scores one, or refits clones of it on node-grouped folds.

Why by node: points of one node an hour apart are nearly the same point; a model scored on nodes it
trained on reports its memory, not its foresight (the operator shows this figure in status as the
model's measured precision on the cluster's own past).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import numpy as np
from sklearn.metrics import average_precision_score, precision_recall_curve

from autoloop.engines.failure import featuring, predicting, signals


@dataclass(frozen=True)
class Evaluation:
    """Scores of "fails within the horizon" on labelled points (NaN without both classes)."""

    pr_auc: float
    precision_at_recall_0_8: float
    points: int
    positives: int
    nodes: int


def _points(
    model: predicting.FailurePredictor,
    history: Sequence[signals.NodeSeries],
    failures: Mapping[str, Sequence[float]],
) -> tuple[np.ndarray, np.ndarray]:
    """The model's probabilities and the labels at the hourly points of `history`."""
    probs, labels = [], []
    names = (*signals.METRICS, *model.extras_)
    for _, item, grid, on_grid in signals.gridded(history, names):
        x, y, _ = featuring.training_points(
            on_grid,
            grid,
            [list(failures.get(item.name, ()))],
            model.horizon_hours,
            model.extras_,
            model.min_history_hours,
        )
        p = model.predict_proba_features(x)
        ok = np.isfinite(p)
        probs.append(p[ok])
        labels.append(y[ok])
    return (np.concatenate(probs) if probs else np.empty(0)), (
        np.concatenate(labels) if labels else np.empty(0, dtype=bool)
    )


def _scores(p: np.ndarray, y: np.ndarray, nodes: int) -> Evaluation:
    if len(y) == 0 or y.min() == y.max():
        return Evaluation(float("nan"), float("nan"), len(y), int(y.sum()), nodes)
    precision, recall, _ = precision_recall_curve(y, p)
    return Evaluation(
        float(average_precision_score(y, p)),
        float(np.max(precision[recall >= 0.8])),
        len(y),
        int(y.sum()),
        nodes,
    )


def evaluate(
    model: predicting.FailurePredictor,
    history: Sequence[signals.NodeSeries],
    failures: Mapping[str, Sequence[float]],
) -> Evaluation:
    """Score a fitted model on labelled history it did not train on."""
    p, y = _points(model, history, failures)
    return _scores(p, y, len(history))


def cross_validate(
    model: predicting.FailurePredictor,
    history: Sequence[signals.NodeSeries],
    failures: Mapping[str, Sequence[float]],
    *,
    folds: int = 3,
) -> Evaluation:
    """Held-out scores on the history itself: nodes split into `folds` groups (failing nodes dealt
    out evenly), each scored by a clone of `model` (same parameters) fitted on the others."""
    failing = [i for i, h in enumerate(history) if failures.get(h.name)]
    healthy = [i for i, h in enumerate(history) if not failures.get(h.name)]
    order = failing + healthy
    group = {node: k % max(folds, 1) for k, node in enumerate(order)}
    probs, labels = [], []
    for fold in range(max(folds, 1)):
        train = [history[i] for i in order if group[i] != fold]
        test = [history[i] for i in order if group[i] == fold]
        if not train or not test:
            continue
        clone = predicting.FailurePredictor(
            horizon_hours=model.horizon_hours,
            max_iter=model.max_iter,
            learning_rate=model.learning_rate,
            calibration_folds=model.calibration_folds,
            random_state=model.random_state,
            min_history_hours=model.min_history_hours,
        ).fit(train, failures)
        p, y = _points(clone, test, failures)
        probs.append(p)
        labels.append(y)
    p_all = np.concatenate(probs) if probs else np.empty(0)
    y_all = np.concatenate(labels) if labels else np.empty(0, dtype=bool)
    return _scores(p_all, y_all, len(history))
