"""A cluster's own failure history: labels from node readiness, a time-ordered split, scores on the past.

Owns: the label rule (when a node's readiness history says it failed), the split of a history into
an older part to train on and a newest part to measure on, and the precision, recall and PR-AUC a
`FailurePredictor` reaches on that newest part.
Must never: read Prometheus or Kubernetes (the operator hands in plain arrays), or fit a model
itself (`autoloop.engines.failure`).

Label rule: on the grid of times at which any of the nodes reported readiness, a node is down
where its Ready condition is 0 (NotReady or Unknown) or where it has no sample while other nodes
do (deleted and re-registered, or its kube-state-metrics series stopped). A down run lasting at
least `min_down_seconds` is one failure, dated at the run's first point. Runs that begin before the
node's first sample (no start known) or inside a planned maintenance of that node (its own reboot,
not a fault) are not failures. Times at which no node reported at all are a monitoring outage:
they are not on the grid, so they never count.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Final

import numpy as np
from sklearn.metrics import average_precision_score

from autoloop.engines import failure
from autoloop.engines.failure import signals

TEST_FRACTION: Final[float] = 0.3
"""Newest share of the history both models are measured on (at least one failure's horizon)."""
EVAL_EVERY_HOURS: Final[float] = 1.0
"""Spacing of the held-out points, the same as the training points (`failure.TRAIN_EVERY_HOURS`)."""

Readiness = Mapping[str, tuple[np.ndarray, np.ndarray]]
"""Node -> (epoch seconds, Ready condition value 1/0) as a Prometheus range query returns it."""


def down_runs(down: np.ndarray) -> list[tuple[int, int]]:
    """(start, stop) index pairs of the True runs of a boolean row, stop exclusive."""
    edges = np.diff(np.concatenate([[0], down.astype(np.int8), [0]]))
    return list(zip(np.flatnonzero(edges == 1).tolist(), np.flatnonzero(edges == -1).tolist(), strict=True))


def readiness_failures(
    ready: Readiness,
    *,
    min_down_seconds: float,
    step_seconds: float,
    planned: Mapping[str, Sequence[tuple[float, float]]] | None = None,
) -> dict[str, list[float]]:
    """Failure times per node from readiness histories (see the module's label rule).

    `planned` lists each node's own maintenance intervals (start, end): a NotReady that begins in
    one is the maintenance's reboot, not a failure.
    """
    stamps = [np.asarray(ts, dtype=float) for ts, _ in ready.values() if len(ts)]
    grid = np.unique(np.concatenate(stamps)) if stamps else np.empty(0)
    out: dict[str, list[float]] = {}
    for node, (ts, values) in ready.items():
        out[node] = []
        ts = np.asarray(ts, dtype=float)
        if len(ts) == 0:
            continue
        row = np.full(len(grid), np.nan)
        row[np.searchsorted(grid, ts)] = np.asarray(values, dtype=float)
        first = int(np.searchsorted(grid, ts[0]))
        down = (row == 0) | np.isnan(row)
        down[:first] = False  # before the node existed
        windows = (planned or {}).get(node, ())
        for start, stop in down_runs(down):
            if start == first:
                continue  # down since before its history began: no start to date
            end = grid[stop] if stop < len(grid) else grid[-1] + step_seconds
            began = float(grid[start])
            if end - began >= min_down_seconds and not any(a <= began <= b for a, b in windows):
                out[node].append(began)
    return out


def split_time(
    failures: Mapping[str, Sequence[float]],
    *,
    start: float,
    end: float,
    horizon_hours: float,
    test_fraction: float = TEST_FRACTION,
) -> float:
    """Where the newest part begins: the newest `test_fraction` of the span, moved earlier when
    needed so that it holds the whole horizon before the newest `test_fraction` of the failures
    (at least one), so both models are measured on failures neither was trained on."""
    split = end - test_fraction * (end - start)
    times = sorted(t for ts in failures.values() for t in ts)
    if times:
        newest = max(1, math.ceil(test_fraction * len(times)))
        split = min(split, times[-newest] - horizon_hours * 3600.0)
    return float(max(start, split))


def truncated(history: Sequence[failure.NodeSeries], until: float) -> list[failure.NodeSeries]:
    """Each node's series up to `until` (inclusive): what was known at that time."""
    out = []
    for item in history:
        ts = np.asarray(item.timestamps, dtype=float)
        stop = int(np.searchsorted(ts, until, side="right"))
        if stop:
            out.append(
                failure.NodeSeries(
                    item.name, ts[:stop], {k: np.asarray(v)[:stop] for k, v in item.metrics.items()}
                )
            )
    return out


def heldout_rows(
    history: Sequence[failure.NodeSeries],
    failures: Mapping[str, Sequence[float]],
    *,
    since: float,
    end: float,
    horizon_hours: float,
    extras: Sequence[str],
) -> tuple[np.ndarray, np.ndarray]:
    """Feature rows and labels at hourly points in [since, end] whose label is known (the horizon
    ends inside the history, or a failure falls in it) and whose node reported. Features read only
    the past of each point, so rows of the newest part never see what followed them."""
    names = (*signals.METRICS, *extras)
    step = max(1, int(EVAL_EVERY_HOURS * 3600.0 / signals.STEP_SECONDS))
    xs, ys = [], []
    for item in history:
        ts = np.asarray(item.timestamps, dtype=float)
        if len(ts) == 0:
            continue
        grid = np.arange(ts[0], ts[-1] + 1e-6, signals.STEP_SECONDS)
        first = int(np.searchsorted(grid, since))
        idx = np.arange(first, len(grid), step)
        if len(idx) == 0:
            continue
        x = failure.features(signals.on_grid(item, names, grid), idx, extras)[0]
        y = failure.labels(grid[idx], [list(failures.get(item.name, ()))], horizon_hours)[0]
        keep = ((grid[idx] + horizon_hours * 3600.0 <= end) | y) & failure.reporting(x)
        xs.append(x[keep])
        ys.append(y[keep])
    width = len(failure.feature_names(extras))
    return (
        np.concatenate(xs) if xs else np.empty((0, width)),
        np.concatenate(ys) if ys else np.empty(0, dtype=bool),
    )


@dataclass(frozen=True)
class Score:
    """How a model did on held-out points of the cluster's past."""

    precision: float | None
    """Share of points at or above the threshold that failed within the horizon (None: none were)."""
    recall: float | None
    """Share of failing points at or above the threshold (None: no failing point)."""
    average_precision: float | None
    """PR-AUC over every threshold (None: no failing point, nothing to rank)."""
    points: int
    positives: int


def score(probability: np.ndarray, y: np.ndarray, *, threshold: float) -> Score:
    """Precision and recall at `threshold`, and average precision, over the points with a probability."""
    ok = np.isfinite(probability)
    p, y = np.asarray(probability, float)[ok], np.asarray(y, bool)[ok]
    flagged = p >= threshold
    tp = int((flagged & y).sum())
    positives = int(y.sum())
    return Score(
        precision=tp / int(flagged.sum()) if flagged.any() else None,
        recall=tp / positives if positives else None,
        average_precision=float(average_precision_score(y, p)) if 0 < positives < len(y) else None,
        points=len(y),
        positives=positives,
    )


def score_model(
    model: failure.FailurePredictor,
    history: Sequence[failure.NodeSeries],
    failures: Mapping[str, Sequence[float]],
    *,
    since: float,
    end: float,
    threshold: float,
) -> Score:
    """`model`'s score on the hourly points of [since, end] (its own horizon and signals)."""
    x, y = heldout_rows(
        history, failures, since=since, end=end, horizon_hours=model.horizon_hours, extras=model.extras_
    )
    return score(model.predict_proba_features(x) if len(x) else np.empty(0), y, threshold=threshold)


def better(candidate: Score, incumbent: Score) -> bool:
    """The candidate replaces the incumbent only when it ranks the held-out failures strictly better
    (PR-AUC); with no failure to rank, nothing is measured and the incumbent stays."""
    if candidate.average_precision is None or incumbent.average_precision is None:
        return False
    return candidate.average_precision > incumbent.average_precision
