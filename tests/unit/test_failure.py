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
    out = failure.signals.resample(np.array([0.0, 600.0, 1200.0]), np.array([1.0, 2.0, 3.0]), np.array(grid))
    np.testing.assert_array_equal(out, expected)


def test_increments_handle_counter_resets_like_increase() -> None:
    counter = np.array([[0.0, 5.0, 10.0, 2.0, 4.0]])
    # 5, 5, then a reset to 2 counts as +2 (PromQL increase()), then +2.
    np.testing.assert_array_equal(failure.featuring._increments(counter)[0, 1:], [5.0, 5.0, 2.0, 2.0])


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


def test_fit_without_failures_gives_the_base_rate_with_a_warning() -> None:
    sim = fleet.simulate_fleet(fleet.FleetConfig(n_nodes=3, days=3.0), random_state=1)
    model = failure.FailurePredictor().fit([sim.node_series(0)], {})
    n = model.n_train_
    # No failure: one class only; Jeffreys' smoothed rate (0 + 1/2) / (n + 1) for every node.
    assert n > 0 and model.warnings_
    out = model.predict([sim.node_series(0)])
    assert out[0].probability == pytest.approx(0.5 / (n + 1))


# -- fit never fails on the shape of a user's history ------------------------------------------------


def _fleet(
    *, step: float = STEP, days: float = 6.0, drop: tuple[str, ...] = (), fail_at_end: bool = False
) -> tuple[list[failure.NodeSeries], dict[str, list[float]]]:
    """Twelve nodes; every third one's disk fills over its last day before failing (2 days before the
    end of the history, or at its very end)."""
    rng = np.random.default_rng(3)
    n = int(days * 86400 / step)
    ts = NOW - step * np.arange(n - 1, -1, -1)
    history, failures = [], {}
    for i in range(12):
        used = 0.3 + rng.normal(0, 0.01, n)
        if i % 3 == 0:
            at = float(ts[-1] - (0.0 if fail_at_end else 2 * 86400))
            late = (ts > at - 86400) & (ts <= at)
            used[late] += np.linspace(0, 0.6, late.sum())
            failures[f"n{i}"] = [at]
        metrics = {
            failure.DISK_SIZE: np.full(n, SIZE),
            failure.DISK_AVAIL: SIZE * (1 - used),
            failure.MEM_TOTAL: np.full(n, TOTAL),
            failure.MEM_AVAIL: TOTAL * (0.5 + rng.normal(0, 0.01, n)),
        }
        history.append(failure.NodeSeries(f"n{i}", ts, {k: v for k, v in metrics.items() if k not in drop}))
    return history, failures


def _filling(history: list[failure.NodeSeries], failures: dict[str, list[float]]) -> tuple[float, float]:
    """Mean predicted probability of the failing nodes and of the healthy ones, 6 h before the
    first failure."""
    at = min(f[0] for f in failures.values()) - 6 * 3600.0
    model = failure.FailurePredictor(max_iter=30).fit(history, failures)
    cut = []
    for h in history:
        keep = h.timestamps <= at
        cut.append(failure.NodeSeries(h.name, h.timestamps[keep], {k: v[keep] for k, v in h.metrics.items()}))
    out = {p.node: p.probability for p in model.predict(cut, now=at)}
    sick = [out[n] for n in failures]
    well = [p for n, p in out.items() if n not in failures]
    return float(np.mean(sick)), float(np.mean(well))


def test_fit_tolerates_a_family_missing_on_every_node() -> None:
    # No node exports memory (and none exports temperature, EDAC ... either): the columns with no
    # value anywhere are left out instead of breaking the trees' binning.
    sick, well = _filling(*_fleet(drop=(failure.MEM_AVAIL, failure.MEM_TOTAL)))
    assert sick > 0.5 > well


def test_fit_reads_hourly_samples() -> None:
    # One sample an hour: each stays fresh for 1.5 h on the 10-min grid instead of reading as down.
    history, failures = _fleet(step=3600.0)
    model = failure.FailurePredictor(max_iter=30).fit(history, failures)
    assert model.n_train_ > 12 * 24 and model.positive_rate_ > 0
    sick, well = _filling(history, failures)
    assert sick > 0.5 > well


def test_a_history_that_ends_at_the_failure_keeps_its_positives() -> None:
    history, failures = _fleet(fail_at_end=True)
    model = failure.FailurePredictor(max_iter=30).fit(history, failures)
    # Four failing nodes x the 24 hourly points before their failure are known positives, although
    # their horizon runs past the end of the history; unknown negatives there are left out.
    assert model.positive_rate_ * model.n_train_ == pytest.approx(4 * 24)
    assert not model.warnings_


def test_any_numeric_signal_feeds_the_model_and_missing_ones_are_tolerated() -> None:
    # Only user signals: a gauge that climbs before the failure and a counter; no built-in family.
    history, failures = _fleet()
    rng = np.random.default_rng(5)
    custom = []
    for h in history:
        n = len(h.timestamps)
        used = 1 - h.metrics[failure.DISK_AVAIL] / SIZE
        signals = {"raid_rebuild_ratio": used + rng.normal(0, 0.01, n)}
        if h.name != "n1":  # one node lacks the counter altogether
            signals["smart_reallocated_sectors_total"] = np.cumsum(rng.poisson(1.0, n)).astype(float)
        custom.append(failure.NodeSeries(h.name, h.timestamps, signals))
    model = failure.FailurePredictor(max_iter=30).fit(custom, failures)
    assert model.extras_ == ("raid_rebuild_ratio", "smart_reallocated_sectors_total")
    assert "smart_reallocated_sectors_total:increase_6h" in model.feature_names_
    sick, well = _filling(custom, failures)
    assert sick > 0.5 > well
    at = min(f[0] for f in failures.values()) - 3600.0
    top = max(model.predict(custom, now=at), key=lambda p: p.probability)
    assert top.reasons[0].startswith("raid_rebuild_ratio")


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
    assert failure.featuring._hours_since_gap(present, np.array([idx]))[0, 0] == pytest.approx(expected_hours)


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


# -- remaining life --------------------------------------------------------------------------------


def _wearing_units(n: int, seed: int) -> tuple[list[failure.NodeSeries], dict[str, list[float]]]:
    """Units whose wear signal rises linearly to 1 at failure over 40-80 h, from a noisy floor."""
    rng = np.random.default_rng(seed)
    history, failures = [], {}
    for i in range(n):
        life = rng.uniform(40, 80)
        hours = np.arange(0.0, life, STEP / 3600.0)
        wear = hours / life + rng.normal(0, 0.01, hours.size)
        ts = NOW + hours * 3600.0
        history.append(failure.NodeSeries(f"u{i}", ts, {"wear": wear}))
        failures[f"u{i}"] = [float(ts[-1]) + STEP]
    return history, failures


def test_remaining_life_learns_the_hours_left_from_a_wear_signal() -> None:
    train, failures = _wearing_units(30, 1)
    model = failure.RemainingLifeRegressor(cap_hours=30.0, max_iter=100).fit(train, failures)
    test, test_failures = _wearing_units(10, 2)
    # Stop each test unit 10 h or 25 h before its failure: the capped truth is 10 or 25 h.
    for left in (10.0, 25.0):
        cut = []
        for h in test:
            keep = h.timestamps <= test_failures[h.name][0] - left * 3600.0
            cut.append(failure.NodeSeries(h.name, h.timestamps[keep], {"wear": h.metrics["wear"][keep]}))
        got = np.array([model.predict([c])[0] for c in cut])
        assert np.all(np.abs(got - left) < 5.0), got
    # A unit with no recent sample (an all-NaN feature row) gets no estimate.
    down = np.full((1, len(failure.feature_names(("wear",)))), np.nan)
    assert np.isnan(model.predict_features(down)[0])


def test_remaining_points_keep_only_known_targets() -> None:
    grid = np.arange(0.0, 10 * 3600.0 + 1, STEP)  # 10 h of grid
    metrics = {failure.DISK_AVAIL: np.ones((2, grid.size)), failure.DISK_SIZE: np.full((2, grid.size), 2.0)}
    # Node 0 fails at 8 h; node 1 never does. Points every hour from hour 1 (min history 1 h).
    x, y, node = failure.featuring.remaining_points(metrics, grid, [[8 * 3600.0], []], 4.0, (), 1.0)
    # Node 0: hours 1..7 before the failure (7 .. 1 h left, capped at 4); hours 8-10 have no
    # later failure and fewer than 4 h after them: unknown. Node 1: hours 1..6 (4 h follow), cap.
    np.testing.assert_array_equal(y[node == 0], [4, 4, 4, 4, 3, 2, 1])
    np.testing.assert_array_equal(y[node == 1], [4] * 6)
    assert x.shape == (13, len(failure.FEATURES))


# -- measured precision and version ----------------------------------------------------------------


def test_cross_validated_precision_on_the_clusters_own_past() -> None:
    history, failures = _fleet()
    model = failure.FailurePredictor(max_iter=30)
    held = failure.cross_validate(model, history, failures, folds=2)
    # 12 nodes x the hourly points of 6 days; the 4 failing nodes' disks fill over their last day:
    # held out by node, the fill is still recognised.
    assert held.nodes == 12 and held.positives == 4 * 24
    assert held.pr_auc > 0.8 and held.precision_at_recall_0_8 > 0.8
    # Scored on history without any failure there is nothing to measure precision on.
    quiet = [h for h in history if h.name not in failures]
    fitted = model.fit(history, failures)
    assert math.isnan(failure.evaluate(fitted, quiet, {}).pr_auc)


def test_version_names_the_training_data() -> None:
    history, failures = _fleet()
    a = failure.FailurePredictor(max_iter=10).fit(history, failures)
    b = failure.FailurePredictor(max_iter=10).fit(history, failures)
    c = failure.FailurePredictor(max_iter=10).fit(history[1:], failures)
    assert a.version_ == b.version_ != c.version_
    assert len(a.version_) == 12
