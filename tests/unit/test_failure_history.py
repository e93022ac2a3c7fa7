"""The cluster-history engine: labels from readiness, the time-ordered split, scores on the past."""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np
import pytest

from autoloop.engines import failure
from autoloop.engines import failure_history as fh

STEP = 300.0
MIN_DOWN = 600.0  # 10 min: two 5-min samples


def ready_row(
    n: int, zeros: Sequence[int] = (), *, missing: Sequence[int] = ()
) -> tuple[np.ndarray, np.ndarray]:
    """n samples at STEP, Ready except at `zeros`, without a sample at `missing`."""
    ts = np.arange(n) * STEP
    values = np.ones(n)
    values[list(zeros)] = 0.0
    keep = np.ones(n, dtype=bool)
    keep[list(missing)] = False
    return ts[keep], values[keep]


def test_a_notready_run_long_enough_is_one_failure_at_its_start() -> None:
    ready = {
        "a": ready_row(100, range(10, 13)),  # 15 min down (3000 s to the Ready at 3900 s)
        "b": ready_row(100, [20]),  # 5 min: below the threshold
        "c": ready_row(100, range(30, 32)),  # exactly 10 min: counts
    }
    out = fh.readiness_failures(ready, min_down_seconds=MIN_DOWN, step_seconds=STEP)
    assert out == {"a": [10 * STEP], "b": [], "c": [30 * STEP]}


def test_a_gap_while_other_nodes_report_is_a_failure_but_a_monitoring_outage_is_not() -> None:
    outage = range(60, 70)  # nobody reports: Prometheus or kube-state-metrics was down
    ready = {
        "a": ready_row(100, missing=[*range(30, 35), *outage]),  # gone 25 min while b reported
        "b": ready_row(100, missing=outage),
    }
    out = fh.readiness_failures(ready, min_down_seconds=MIN_DOWN, step_seconds=STEP)
    assert out == {"a": [30 * STEP], "b": []}


def test_runs_without_a_known_start_and_planned_reboots_are_not_failures() -> None:
    ready = {
        "born-down": ready_row(100, range(0, 5)),  # NotReady since before its history
        "late": (np.arange(50, 100) * STEP, np.ones(50)),  # joined later: no gap before it
        "rebooted": ready_row(100, range(40, 45)),  # the plan's own maintenance rebooted it
        "still-down": ready_row(100, range(97, 100)),  # down at the end: 3 samples + one step
        "anchor": ready_row(100),
    }
    planned = {"rebooted": [(39 * STEP, 46 * STEP)]}
    out = fh.readiness_failures(ready, min_down_seconds=MIN_DOWN, step_seconds=STEP, planned=planned)
    assert out == {"born-down": [], "late": [], "rebooted": [], "still-down": [97 * STEP], "anchor": []}


def test_split_keeps_the_newest_failures_horizon_in_the_measured_part() -> None:
    h = 3600.0
    failures = {"a": [50 * h], "b": [90 * h]}
    # The newest 30 % starts at 70 h; the newest failure (ceil(0.3 * 2) = 1) needs its 24 h before
    # it: 90 - 24 = 66 h.
    assert fh.split_time(failures, start=0.0, end=100 * h, horizon_hours=24.0) == 66 * h
    # With no failure the split is the plain newest 30 %.
    assert fh.split_time({}, start=0.0, end=100 * h, horizon_hours=24.0) == 70 * h
    # Never before the history starts.
    assert fh.split_time({"a": [10 * h]}, start=0.0, end=100 * h, horizon_hours=24.0) == 0.0


def test_score_worked_example() -> None:
    p = np.array([0.9, 0.8, 0.2, 0.1, np.nan])
    y = np.array([True, False, True, False, True])  # the NaN point (node down) is not scored
    s = fh.score(p, y, threshold=0.5)
    # Flagged: 0.9 (failing) and 0.8 (healthy): precision 1/2; 1 of 2 failing points flagged.
    # Ranking 1, 0, 1, 0: AP = (1/1 + 2/3) / 2 = 0.8333.
    assert s.precision == 0.5 and s.recall == 0.5 and s.points == 4 and s.positives == 2
    assert s.average_precision == pytest.approx(5 / 6)


def test_score_is_undefined_rather_than_invented() -> None:
    nothing_flagged = fh.score(np.array([0.1, 0.2]), np.array([True, False]), threshold=0.5)
    assert nothing_flagged.precision is None and nothing_flagged.recall == 0.0
    no_failure = fh.score(np.array([0.9, 0.2]), np.array([False, False]), threshold=0.5)
    assert no_failure.recall is None and no_failure.average_precision is None
    assert not fh.better(no_failure, no_failure)
    worse = fh.Score(None, None, 0.3, 10, 2)
    good = fh.Score(None, None, 0.7, 10, 2)
    assert fh.better(good, worse) and not fh.better(worse, good) and not fh.better(good, good)


def _series(name: str, hours: float, signal: np.ndarray | None = None) -> failure.NodeSeries:
    ts = np.arange(0, hours * 3600.0, 600.0)
    metrics = {failure.TEMP: np.full(len(ts), 50.0)}
    if signal is not None:
        metrics["ripple"] = signal
    return failure.NodeSeries(name, ts, metrics)


def test_truncated_cuts_at_the_time_inclusive() -> None:
    cut = fh.truncated([_series("a", 10.0)], 3 * 3600.0)[0]
    assert cut.timestamps[-1] == 3 * 3600.0 and len(cut.metrics[failure.TEMP]) == len(cut.timestamps) == 19


def test_heldout_rows_keep_only_known_labels_and_read_only_the_past() -> None:
    hours = 72.0
    n = int(hours * 6)
    ripple = np.full(n, 10.0)
    ripple[60 * 6 :] = 50.0  # from 60 h on
    history = [_series("a", hours, ripple)]
    x, y = fh.heldout_rows(
        history,
        {"a": [66 * 3600.0]},
        since=48 * 3600.0,
        end=history[0].timestamps[-1],
        horizon_hours=12.0,
        extras=("ripple",),
    )
    # Hourly points 48..71 h; a point's label is known when t + 12 h <= 71.83 h (48..59 h) or
    # the failure at 66 h falls in its horizon (t in 54..65 h): 48..65 h, 18 points.
    assert len(y) == 18 and int(y.sum()) == 12
    level = list(failure.feature_names(("ripple",))).index("ripple:level_1h")
    # The point at 59 h has not seen the rise at 60 h yet; the one at 60 h has.
    assert x[11, level] == pytest.approx(10.0) and x[12, level] > 10.0
    assert not math.isnan(x[0, level])
