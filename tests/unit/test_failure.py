"""Failure predictor: feature maths with worked values, labels, and the trained model end to end."""

from __future__ import annotations

import math

import numpy as np
import pytest

from autoloop.engines import failure
from autoloop.simulation import fleet

STEP = failure.STEP_SECONDS
NOW = 1_767_225_600.0 + 5 * 86400
TS = NOW - STEP * np.arange(72 * 6, -1, -1)  # 72 h of 10-minute samples ending at NOW
HOURS = (TS - TS[0]) / 3600.0
SIZE, TOTAL = 200e9, 32 * 2.0**30


def _node(name: str, disk_used: np.ndarray, **extra: np.ndarray) -> failure.NodeSeries:
    n = len(TS)
    metrics = {
        failure.DISK_SIZE: np.full(n, SIZE),
        failure.DISK_AVAIL: SIZE * (1 - disk_used),
        failure.MEM_TOTAL: np.full(n, TOTAL),
        failure.MEM_AVAIL: np.full(n, TOTAL * 0.55),
        failure.RESTARTS: np.zeros(n),
        failure.CARRIER: np.zeros(n),
        failure.DISK_PRESSURE: (1 - disk_used < 0.1).astype(float),
        failure.MEMORY_PRESSURE: np.zeros(n),
        **extra,
    }
    return failure.NodeSeries(name, TS, metrics)


@pytest.mark.parametrize(
    ("grid", "expected"),
    [
        # Last sample at or before each grid time; 2200 - 1200 = 1000 s > 900 s staleness -> NaN.
        ([0.0, 300.0, 1200.0, 2200.0], [1.0, 1.0, 3.0, np.nan]),
        # Before the first sample there is nothing to carry forward.
        ([-1.0], [np.nan]),
    ],
)
def test_resample_carries_last_sample_forward_until_stale(grid: list[float], expected: list[float]) -> None:
    out = failure._resample(np.array([0.0, 600.0, 1200.0]), np.array([1.0, 2.0, 3.0]), np.array(grid))
    np.testing.assert_array_equal(out, expected)


def test_increments_handle_counter_resets_like_increase() -> None:
    counter = np.array([[0.0, 5.0, 10.0, 2.0, 4.0]])
    # 5, 5, then a reset to 2 counts as +2 (PromQL increase()), then +2.
    np.testing.assert_array_equal(failure._increments(counter)[0, 1:], [5.0, 5.0, 2.0, 2.0])


def test_slope_and_hours_to_full_of_a_linear_fill() -> None:
    used = np.minimum(0.5 + 0.01 * HOURS, 0.9)[None, :]  # rising 1 %/h from 50 %, flat from hour 40
    idx = np.array([40 * 6])  # hour 40: used = 0.9, still on the straight part
    x = failure.features(
        {failure.DISK_AVAIL: SIZE * (1 - used), failure.DISK_SIZE: np.full_like(used, SIZE)}, idx
    )
    row = dict(zip(failure.FEATURES, x[0, 0], strict=True))
    assert row["disk_slope_6h"] == pytest.approx(0.01, rel=1e-6)
    # Level = mean of the last 3 samples (30 min) = 0.9 - 0.01 * (10 min / 60) = 0.89833...
    level = 0.9 - 0.01 / 6
    assert row["disk_used"] == pytest.approx(level)
    # predict_linear: (1 - level) / slope = 0.10167 / 0.01 = 10.17 h.
    assert row["disk_hours_to_full_6h"] == pytest.approx((1 - level) / 0.01, rel=1e-6)
    # Hours 16-40 are all on the straight part, so the 12 h and 24 h fits agree with the 6 h one.
    assert row["disk_hours_to_full_12h"] == pytest.approx((1 - level) / 0.01, rel=1e-6)
    assert row["disk_hours_to_full_24h"] == pytest.approx((1 - level) / 0.01, rel=1e-6)
    assert row["disk_fall_72h"] == pytest.approx(0.0, abs=1e-12)
    # Missing sensors give NaN features (the trees route them), not zeros.
    assert math.isnan(row["temp_1h"]) and math.isnan(row["edac_6h"])


def test_largest_fall_sees_a_log_rotation() -> None:
    used = np.where(HOURS < 30, 0.9, 0.5)[None, :]
    x = failure.features(
        {failure.DISK_AVAIL: SIZE * (1 - used), failure.DISK_SIZE: np.full_like(used, SIZE)},
        np.array([len(TS) - 1]),
    )
    row = dict(zip(failure.FEATURES, x[0, 0], strict=True))
    # The 40 %-point drop happened 42 h ago: outside the 24 h window, inside the 72 h one.
    assert row["disk_fall_24h"] == pytest.approx(0.0, abs=1e-12)
    assert row["disk_fall_72h"] == pytest.approx(0.4)


@pytest.mark.parametrize(
    ("failure_at_h", "expected"),
    [(24.0, True), (24.0 + 1 / 3600, False), (0.0, False), (0.5, True)],
)
def test_labels_fail_within_horizon(failure_at_h: float, expected: bool) -> None:
    # Window is (t, t + 24 h]: a failure exactly at t is not in the future, one at t + 24 h is.
    assert failure.labels(np.array([0.0]), [[failure_at_h * 3600]], 24.0)[0, 0] == expected


@pytest.mark.parametrize(
    ("p", "trend", "expected"),
    [
        (0.5, math.inf, 24 / math.log(2)),  # constant hazard: mean = H / -ln(1 - p) = 34.6 h
        (0.9, 5.0, 5.0),  # the trend is nearer than 24 / ln 10 = 10.4 h
        (1e-9, math.inf, failure.MAX_HOURS),  # practically never: capped
    ],
)
def test_expected_hours(p: float, trend: float, expected: float) -> None:
    assert failure.expected_hours(p, trend, 24.0) == pytest.approx(expected, rel=1e-6)


@pytest.fixture(scope="module")
def model() -> failure.FailurePredictor:
    return fleet.trained_predictor()


def test_trained_predictor_ranks_a_filling_disk_over_healthy_and_sawtooth(
    model: failure.FailurePredictor,
) -> None:
    rng = np.random.default_rng(0)
    flat = 0.4 + rng.normal(0, 0.003, len(TS))
    # Rising 2 %/h for the last 25 h: 90 % now, full in ~5 h.
    fill = np.clip(0.4 + np.maximum(HOURS - 47, 0) * 0.02, 0, 1) + rng.normal(0, 0.003, len(TS))
    # Healthy log rotation: climbs 60 % -> 90 % each day, freed at midnight.
    saw = 0.6 + 0.3 * ((HOURS % 24) / 24)
    out = {p.node: p for p in model.predict([_node("flat", flat), _node("fill", fill), _node("saw", saw)])}
    assert out["fill"].probability > 0.7
    assert out["flat"].probability < 0.1 and out["saw"].probability < 0.1
    assert "disk" in out["fill"].reasons[0] and "full in ~" in out["fill"].reasons[0]
    # The trend drove the prediction, so the time to failure is the extrapolation (~5 h), not the hazard.
    assert 3.0 < out["fill"].expected_hours_to_failure < 7.0
    assert out["flat"].reasons == ("no signal outside its healthy range",)


def test_accelerating_corrected_errors_raise_risk(model: failure.FailurePredictor) -> None:
    rng = np.random.default_rng(1)
    flat = 0.4 + rng.normal(0, 0.003, len(TS))
    progress = np.clip((HOURS - 24) / 48, 0, 1)
    edac = np.cumsum(rng.poisson(np.exp(np.log(80) * progress) / 6)).astype(float)
    temp = 55 + 10 * progress**2 + rng.normal(0, 1.5, len(TS))
    quiet = _node(
        "quiet", flat, **{failure.EDAC: np.zeros(len(TS)), failure.TEMP: 55 + rng.normal(0, 1.5, len(TS))}
    )
    sick = _node("sick", flat, **{failure.EDAC: edac, failure.TEMP: temp})
    out = {p.node: p for p in model.predict([quiet, sick])}
    assert out["sick"].probability > 0.5 > 0.1 > out["quiet"].probability
    assert any("corrected memory errors" in r for r in out["sick"].reasons)


def test_node_without_recent_samples_is_unavailable(model: failure.FailurePredictor) -> None:
    stale = failure.NodeSeries(
        "stale", TS[:10], {failure.DISK_AVAIL: np.ones(10), failure.DISK_SIZE: np.ones(10)}
    )
    live = _node("live", np.full(len(TS), 0.4))
    out = model.predict([stale, live, failure.NodeSeries("empty", np.array([]), {})])
    assert [p.available for p in out] == [False, True, False]
    assert math.isnan(out[0].probability)


def test_fit_on_labelled_history_gives_probabilities() -> None:
    sim = fleet.simulate_fleet(fleet.FleetConfig(n_nodes=30, days=10.0), random_state=9)
    history = [sim.node_series(i) for i in range(len(sim.nodes))]
    model = failure.FailurePredictor(max_iter=30).fit(history, sim.failure_times())
    out = model.predict(history)
    assert len(out) == 30
    assert all(0.0 <= p.probability <= 1.0 for p in out if p.available)


def test_fit_without_failures_is_refused() -> None:
    sim = fleet.simulate_fleet(fleet.FleetConfig(n_nodes=3, days=3.0), random_state=1)
    with pytest.raises(ValueError, match="both failing and healthy"):
        failure.FailurePredictor().fit([sim.node_series(0)], {})


def test_node_that_just_went_down_is_not_reporting() -> None:
    # Samples until 10 min before the last grid point, then nothing: the half-hour level still has
    # two samples, but the latest grid value is missing, so the node is down and gets no features.
    used = np.full((1, 20), 0.5)
    used[0, -1] = np.nan
    metrics = {failure.DISK_AVAIL: SIZE * (1 - used), failure.DISK_SIZE: np.full_like(used, SIZE)}
    x = failure.features(metrics, np.array([18, 19]))
    assert failure.reporting(x[0]).tolist() == [True, False]


@pytest.mark.parametrize(
    ("gap_at", "idx", "expected_hours"),
    [
        # Missing at position 6, evaluated at 18: 12 steps of 10 min = 2 h since the gap.
        (6, 18, 2.0),
        # No gap in the array at all: history before it is not a reboot -> capped at 72 h.
        (None, 18, failure.LOOKBACK_HOURS),
    ],
)
def test_uptime_counts_hours_since_the_last_gap(gap_at: int | None, idx: int, expected_hours: float) -> None:
    present = np.ones((1, 20), dtype=bool)
    if gap_at is not None:
        present[0, gap_at] = False
    assert failure._hours_since_gap(present, np.array([idx]))[0, 0] == pytest.approx(expected_hours)


def test_growth_is_the_slope_of_the_log_rate() -> None:
    # Errors per hour grow as 200 * e^(0.1 t): log1p(rate) ~ ln 200 + 0.1 t, so the 12 h and 24 h
    # growth features are ~0.1 per hour (log1p vs log differs by < 1/200 at these rates).
    hours = np.arange(len(TS)) / 6.0
    counter = np.cumsum(200 * np.exp(0.1 * hours) / 6.0)[None, :]
    used = np.full_like(counter, 0.4)
    metrics = {
        failure.DISK_AVAIL: SIZE * (1 - used),
        failure.DISK_SIZE: np.full_like(used, SIZE),
        failure.EDAC: counter,
    }
    row = dict(zip(failure.FEATURES, failure.features(metrics, np.array([len(TS) - 1]))[0, 0], strict=True))
    assert row["edac_growth_12h"] == pytest.approx(0.1, rel=0.02)
    assert row["edac_growth_24h"] == pytest.approx(0.1, rel=0.02)
    # A node without a restarts series has NaN growth (the trees route it), not zero.
    assert math.isnan(row["restarts_growth_12h"])
