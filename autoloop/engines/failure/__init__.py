"""Failure prediction: per node, the probability of failing within a horizon and when.

Contract: `FailurePredictor().predict(series)` takes per-node metric series (epoch-second timestamps
and node-exporter / kube-state-metrics values or any other numeric signal, any sampling, gaps
allowed) and returns, per node, the calibrated probability of failure within `horizon_hours`, an
expected time to failure and the signals that drove it. `fit(history, failures)` trains on users'
labelled history and never fails on its shape: families missing on every node, hourly samples,
histories that end at the failure, one class only (the base rate, with a warning in `warnings_`).
`autoloop.simulation.fleet.trained_predictor()` returns one trained on the simulator. Pure
computation: no Kubernetes, no network.

How: every series is resampled onto a regular grid (last sample carried forward, as a Prometheus
instant query does; stale after 1.5 of its own sampling interval), turned into trend features
(level, `predict_linear`-style slopes and hours until full over 1/6/12/24 h, sawtooth drops),
counter increases (reset-aware like `increase()`) with their exponential growth rate, pressure
conditions, temperature deltas and the hours since the node last came back from an outage; any
other signal gets level, day-delta and slopes (counters, by their `_total` name: increases and
growth). A gradient-boosted classifier scores them and isotonic calibration on node-grouped folds
makes the scores probabilities. A node missing a signal gets NaN features, which the trees route
natively; a node whose newest sample is stale is down and gets no prediction.

`RemainingLifeRegressor` estimates the hours left (capped) from the same features.

Rooms: `signals` (names, series, resampling), `featuring` (features, labels, training points),
`predicting` (the classifier), `remaining` (the remaining-life regressor), `evaluating` (PR-AUC
and precision at recall 0.8 on labelled history, held out by node: what a model's status shows).
"""

from autoloop.engines.failure.evaluating import Evaluation, cross_validate, evaluate
from autoloop.engines.failure.featuring import (
    CONTEXT,
    FEATURES,
    GROUPS,
    MAX_HOURS,
    MIN_HISTORY_HOURS,
    MIN_SLOPE_PER_HOUR,
    TRAIN_EVERY_HOURS,
    feature_names,
    features,
    labels,
    reporting,
)
from autoloop.engines.failure.predicting import (
    REASON_MIN_DROP,
    FailurePrediction,
    FailurePredictor,
    expected_hours,
)
from autoloop.engines.failure.remaining import RemainingLifeRegressor
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
    METRICS,
    RESTARTS,
    STALENESS_SECONDS,
    STEP_SECONDS,
    TEMP,
    NodeSeries,
)

__all__ = [
    "CARRIER",
    "CONTEXT",
    "DISK_AVAIL",
    "DISK_PRESSURE",
    "DISK_SIZE",
    "EDAC",
    "FEATURES",
    "GROUPS",
    "LOOKBACK_HOURS",
    "MAX_HOURS",
    "MEMORY_PRESSURE",
    "MEM_AVAIL",
    "MEM_TOTAL",
    "METRICS",
    "MIN_HISTORY_HOURS",
    "MIN_SLOPE_PER_HOUR",
    "REASON_MIN_DROP",
    "RESTARTS",
    "STALENESS_SECONDS",
    "STEP_SECONDS",
    "TEMP",
    "TRAIN_EVERY_HOURS",
    "Evaluation",
    "FailurePrediction",
    "FailurePredictor",
    "NodeSeries",
    "RemainingLifeRegressor",
    "cross_validate",
    "evaluate",
    "expected_hours",
    "feature_names",
    "features",
    "labels",
    "reporting",
]
