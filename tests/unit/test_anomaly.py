"""Tests for `autoloop.engines.anomaly`: robust per-series detection, load explanation, bad data."""

from __future__ import annotations

import json
import math
from typing import Any

import numpy as np
import pytest

from autoloop.engines import anomaly
from autoloop.engines.anomaly import baselines

STEP = 15.0
N = 300  # 75 minutes of 15 s samples
T = np.arange(N) * STEP
TEST_START = 2700.0  # index 180: the first 45 minutes are the reference


def noise(seed: int, sigma: float = 1.0, n: int = N) -> np.ndarray:
    return np.random.default_rng(seed).normal(0.0, sigma, n)


@pytest.mark.parametrize(
    ("name", "kind"),
    [
        ("latency_ms", "latency"),
        ("http_request_duration_seconds_p99", "latency"),
        ("error_ratio", "errors"),
        ("http_5xx_rate", "errors"),
        ("container_memory_working_set_bytes", "memory"),
        ("cpu_cores", "cpu"),
        ("rps", "load"),
        ("http_requests_total", "load"),
        ("queue_depth", "other"),
    ],
)
def test_metric_kind_from_name(name: str, kind: str) -> None:
    assert anomaly.metric_kind(name) == kind


def test_clean_series_drops_nan_sorts_and_keeps_last_duplicate() -> None:
    t, x = anomaly.clean_series([30, 10, 20, 20, 40, math.nan], [3.0, 1.0, 2.0, 2.5, math.nan, 6.0])
    # NaN value at t=40 and NaN time are dropped; t=20 appears twice, the later sample (2.5) wins.
    assert t.tolist() == [10, 20, 30]
    assert x.tolist() == [1.0, 2.5, 3.0]


def test_counter_reset_becomes_a_rate() -> None:
    # 0 -> 10 -> 20 over 10 s steps is 1/s; the drop to 5 is a restart: 5 new requests in 10 s = 0.5/s.
    t, x = anomaly.clean_series([0, 10, 20, 30, 40], [0, 10, 20, 5, 15], counter=True)
    assert t.tolist() == [10, 20, 30, 40]
    assert x.tolist() == [1.0, 1.0, 0.5, 1.0]


def test_robust_scale_ignores_outliers_in_the_reference() -> None:
    x = 100.0 + noise(1)
    x[20:30] += 50.0  # an incident inside the reference must not inflate the scale
    s = anomaly.score_series(T, x, reference_end=TEST_START, metric="latency_ms")
    # Noise sigma is 1: the MAD-based scale stays near 1 (sampling error of ~180 points ~ 10 %).
    assert 0.8 < s.scale < 1.25
    assert abs(float(np.median(s.z[180:]))) < 0.5


def test_linear_trend_is_extrapolated_not_flagged() -> None:
    # Daily seasonality seen through one hour is a slope: 0.01 per s = 27 units over the test window.
    x = 100.0 + 0.01 * T + noise(2)
    report = anomaly.detect({"svc": {"latency_ms": (T, x)}}, test_start=TEST_START)
    assert report.anomalies == ()


def test_seasonal_profile_used_with_two_days_of_reference() -> None:
    t = np.arange(0.0, 3 * 86400.0, 60.0)
    x = 100.0 + 50.0 * np.sin(2 * np.pi * t / 86400.0) + noise(3, n=t.size)
    s = anomaly.score_series(t, x, reference_end=t[-1] - 3600.0, metric="cpu_cores")
    # The last hour follows the daily curve (a 50-unit swing), so its z-scores stay small; a
    # linear trend of the last day's reference could not follow the curve.
    assert float(np.max(np.abs(s.z[-60:]))) < 5.0


@pytest.mark.parametrize(
    ("size", "severity", "detected_index", "false_alarm"),
    [
        # The rules alone (no persistence asked):
        # 8 sigma: above the 6-sigma threshold, below 1.5 x 6 = 9, so three samples are needed
        # (alarm at the third faulty sample, two scrapes after the start); below 2 x 6: warning.
        (8.0, "warning", 202, None),
        # 20 sigma >= 9: two samples suffice (one scrape of delay); 20 >= 12: critical.
        (20.0, "critical", 201, None),
        # Engine defaults (false-alarm probability 0.05 for the pass, one series: 0.025 a side).
        # No reference sample of the 180 reaches z +2.5, so the predictive rate is
        # Beta(0.5, 180.5) and two of the 120 tested samples beyond it are not rare enough
        # (tail 0.070), three are (0.024 <= 0.025): the 20-sigma step alarms at its third sample.
        (20.0, "critical", 202, 0.05),
    ],
)
def test_step_found_within_two_scrapes_with_its_start(
    size: float, severity: str, detected_index: int, false_alarm: float | None
) -> None:
    x = 50.0 + noise(4)
    x[200:] += size
    detector = anomaly.AnomalyDetector(false_alarm_probability=false_alarm)
    report = anomaly.detect({"svc": {"latency_ms": (T, x)}}, test_start=TEST_START, detector=detector)
    assert len(report.anomalies) == 1
    a = report.anomalies[0]
    assert a.start == T[200]
    assert a.detected_at == T[detected_index]
    assert (a.direction, a.shape, a.severity, a.end) == ("up", "step", severity, None)
    assert a.unexplained and report.unexplained_active


def test_ramp_is_classified_and_dated() -> None:
    x = 1000.0 + noise(5, sigma=10.0)
    x[200:] += np.arange(N - 200) * 5.0  # +5 MB per scrape: 500 MB over the last 100 samples
    a = anomaly.detect({"svc": {"memory_mb": (T, x)}}, test_start=TEST_START).anomalies[0]
    assert a.shape == "ramp"
    # A ramp crosses the noise gradually: the CUSUM start is within two minutes of the truth.
    assert T[200] - 120.0 <= a.start <= T[200] + 120.0


def test_burst_ends() -> None:
    x = 0.01 + noise(6, sigma=0.001)
    x[200:210] += 0.05
    a = anomaly.detect({"svc": {"error_ratio": (T, x)}}, test_start=TEST_START).anomalies[0]
    assert a.shape == "burst"
    assert a.end is not None and T[209] <= a.end <= T[214]
    assert not a.active


def _service_under_load(cpu_extra: float) -> dict[str, tuple[np.ndarray, np.ndarray]]:
    rps = 200.0 * (1.0 + noise(7, 0.02))
    rps[200:240] *= 1.8  # a load spike: 80 % more requests for ten minutes
    cpu = 0.005 * rps + 0.2 + noise(8, 0.01)
    cpu[200:] += cpu_extra
    return {"rps": (T, rps), "cpu_cores": (T, cpu)}


def test_load_spike_is_demand_not_a_fault() -> None:
    report = anomaly.detect({"svc": _service_under_load(0.0)}, test_start=TEST_START)
    # The request rate itself is flagged, as load; cpu follows it (elasticity 0.8 < 1.5): no alarm.
    assert [a.metric for a in report.anomalies] == ["rps"]
    assert report.anomalies[0].explained_by_load
    assert not report.unexplained_active


def test_cpu_hog_during_a_load_spike_is_still_found() -> None:
    # 1.5 extra cores on a ~1.2-core service: a jump the 80 % load change cannot account for.
    report = anomaly.detect({"svc": _service_under_load(1.5)}, test_start=TEST_START)
    cpu = [a for a in report.anomalies if a.metric == "cpu_cores"]
    assert cpu and cpu[0].unexplained
    assert report.unexplained_active


def test_pure_noise_gives_no_alarm_across_many_series() -> None:
    rng = np.random.default_rng(9)
    series = {
        f"svc-{i}": {
            m: (T, 100.0 + rng.normal(0.0, 5.0, N)) for m in ("latency_ms", "cpu_cores", "memory_mb")
        }
        for i in range(50)
    }
    # 150 series x 120 test samples of Gaussian noise: three consecutive |z| >= 6 (or two >= 9)
    # have odds below 1e-20.
    assert anomaly.detect(series, test_start=TEST_START).anomalies == ()


def _pods_becoming_ready(ready_at: tuple[int, ...], seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Memory per pod (MB) of a 3-replica service while its pods become ready at `ready_at`
    samples: the same load spread over 1, then 2, then 3 pods (the cluster test's simulator)."""
    rps = 60.0 * (1.0 + noise(seed, 0.02))
    ready = 1 + sum((np.arange(N) >= k).astype(int) for k in ready_at)
    return rps, 100.0 + rps / ready


@pytest.mark.parametrize("ready_at", [(2, 24), (12, 24), (30, 90), (60, 120)])
def test_pods_becoming_ready_in_the_reference_are_not_a_trend(ready_at: tuple[int, ...]) -> None:
    # Memory per pod steps down 160 -> 130 -> 120 MB inside the reference and then stays put. A
    # line through those steps, extrapolated, would put the steady value far above "expected"
    # (a false alarm seen on the cluster test); the newest level is the baseline instead.
    for seed in range(5):
        rps, mem = _pods_becoming_ready(ready_at, seed)
        report = anomaly.detect({"svc": {"rps": (T, rps), "memory_mb": (T, mem)}}, test_start=TEST_START)
        assert report.anomalies == (), f"seed {seed}: {report.summary()}"


def test_a_trend_is_not_extrapolated_further_than_it_was_measured() -> None:
    # Memory per pod falls steadily over a 5-minute reference (pods becoming ready share the load)
    # and the test window is 30 minutes long. Extrapolated, that line ends far below zero ("went up
    # from ~-1.4e9", a false alarm seen on the cluster test); a trend measured over less than the
    # horizon is not one to extrapolate, the reference's level is the baseline.
    t = np.arange(0.0, 2100.0, 15.0)
    n_ref = int(np.searchsorted(t, 300.0))
    y = np.where(t < 300.0, 400.0 - 0.5 * t, 250.0)[:, None] + noise(4, 0.2, t.size)[:, None]
    expected, _, _ = baselines.baseline(t, y, n_ref, 86400.0, np.zeros_like(y))
    assert 250.0 <= expected[-1, 0] <= 400.0, expected[-1, 0]
    # Measured over as long as it is extrapolated, the trend is kept.
    t2 = np.arange(0.0, 600.0, 15.0)
    y2 = (400.0 - 0.2 * t2)[:, None] + noise(5, 0.2, t2.size)[:, None]
    expected2, _, _ = baselines.baseline(t2, y2, 21, 86400.0, np.zeros_like(y2))
    assert abs(expected2[-1, 0] - (400.0 - 0.2 * t2[-1])) < 5.0


def test_a_constant_reference_has_no_level_shift() -> None:
    flat = np.full((180, 1), 7.0)
    assert anomaly._level_shift_starts(flat, np.zeros_like(flat)).tolist() == [0]


def test_a_fault_after_a_level_shift_in_the_reference_is_found() -> None:
    _, mem = _pods_becoming_ready((12, 24), 13)
    # A leak's first step: +18 MB on the newest level of 120 MB, +15 % (beyond the 10 % tolerance
    # below which no change alarms, `anomaly.significance`), far above that level's noise.
    mem[200:] += 18.0
    report = anomaly.detect({"svc": {"memory_mb": (T, mem)}}, test_start=TEST_START)
    assert [(a.metric, a.start, a.direction) for a in report.anomalies] == [("memory_mb", T[200], "up")]


def test_a_step_taken_with_load_keeps_the_load_coupling() -> None:
    # Load rose 50 % for good inside the reference and CPU followed: that is demand, and the
    # baseline keeps following load, so a later load dip (CPU dipping with it) is not a fault.
    rps = 200.0 * (1.0 + noise(14, 0.02))
    rps[90:] *= 1.5
    rps[230:250] *= 0.7
    cpu = 0.005 * rps + 0.2 + noise(15, 0.01)
    report = anomaly.detect({"svc": {"rps": (T, rps), "cpu_cores": (T, cpu)}}, test_start=TEST_START)
    assert not report.unexplained_active, report.summary()


@pytest.mark.parametrize(
    ("t", "x"),
    [
        ([], []),
        ([0.0], [1.0]),
        (T, np.full(N, math.nan)),
        (T, np.full(N, 7.0)),
        (T, np.where(np.arange(N) % 3 == 0, math.nan, 5.0 + noise(10))),
        (T[:10], np.arange(20.0)),  # mismatched lengths are trimmed
        ([math.inf, 1.0], [1.0, math.inf]),
    ],
    ids=["empty", "single", "all-nan", "constant", "gappy-nan", "mismatched", "inf"],
)
def test_bad_data_never_raises_nor_alarms(t: Any, x: Any) -> None:
    report = anomaly.detect({"svc": {"latency_ms": (t, x)}}, test_start=TEST_START)
    assert not report.unexplained_active
    json.dumps(report.to_dict())


def test_constant_reference_then_change_is_low_confidence() -> None:
    x = np.zeros(N)
    x[200:] = 0.001  # an error ratio stuck at exactly 0, then a tiny rise
    report = anomaly.detect({"svc": {"error_ratio": (T, x)}}, test_start=TEST_START)
    assert len(report.anomalies) == 1
    a = report.anomalies[0]
    assert a.low_confidence and a.severity == "warning" and not a.unexplained
    assert not report.unexplained_active


def test_gaps_do_not_hide_a_step() -> None:
    keep = np.ones(N, dtype=bool)
    keep[100:150] = False  # a 12-minute scrape outage in the reference
    keep[205:208] = False
    x = 50.0 + noise(11)
    x[200:] += 20.0
    report = anomaly.detect({"svc": {"latency_ms": (T[keep], x[keep])}}, test_start=TEST_START)
    assert len(report.anomalies) == 1 and report.anomalies[0].start == T[200]


def test_counter_reset_is_not_an_anomaly() -> None:
    counts = np.cumsum(np.full(N, 150.0) + noise(12, 5.0))
    counts[220:] -= counts[219]  # the pod restarted: the counter starts again from zero
    report = anomaly.detect({"svc": {"requests_total": (T, counts)}}, test_start=TEST_START)
    assert report.anomalies == ()


def test_multivariate_check_finds_a_joint_shift_no_single_metric_shows() -> None:
    rng = np.random.default_rng(13)
    metrics = {m: (T, 100.0 + rng.normal(0.0, 1.0, N)) for m in ("latency_ms", "cpu_cores", "memory_mb")}
    for m in metrics:
        # 2.5 sigma on each for three minutes: under the 6-sigma pair rule, and the CUSUM drift
        # (2.5) eats it; jointly the points sit 4.3 sigma from the reference cloud.
        metrics[m][1][200:212] += 2.5
    assert anomaly.detect({"svc": metrics}, test_start=TEST_START).anomalies == ()
    joint = anomaly.detect(
        {"svc": metrics}, test_start=TEST_START, detector=anomaly.AnomalyDetector(multivariate=True)
    )
    assert [a.metric for a in joint.anomalies] == ["*"]
    assert T[198] <= joint.anomalies[0].start <= T[212]


def test_to_dict_is_json_safe_and_bounded() -> None:
    series = {}
    for i in range(30):
        x = 10.0 + noise(100 + i)
        x[200:] += 30.0
        series[f"svc-{i}"] = {"latency_ms": (T, x)}
    report = anomaly.detect(series, test_start=TEST_START)
    d = report.to_dict()
    assert d["count"] == 30
    assert len(d["anomalies"]) == anomaly.MAX_REPORTED_ANOMALIES
    assert len(json.dumps(d)) < 20_000
    assert "svc-" in report.summary() and "(+27 more)" in report.summary()


def test_scores_are_not_capped() -> None:
    # A 2000-sigma step is reported as such: a cap made every large change look alike.
    x = 50.0 + noise(16)
    x[200:] += 2000.0
    a = anomaly.detect({"svc": {"latency_ms": (T, x)}}, test_start=TEST_START).anomalies[0]
    assert a.peak_z > 1000.0


def test_a_constant_large_reference_is_its_own_baseline() -> None:
    # A database's memory (431 MB) without a single change: rounding (1e-16 of the level) once
    # made the robust fit weigh every sample as an outlier and expect ~0 bytes.
    x = np.full(N, 431_562_752.0)
    s = anomaly.score_series(T, x, reference_end=TEST_START, metric="memory_bytes")
    assert s.expected[-1] == pytest.approx(431_562_752.0)
    assert s.degenerate and float(np.max(np.abs(s.z))) < 1e-6


def test_a_step_of_the_metrics_resolution_is_not_an_anomaly() -> None:
    # A queue length around 3 (integer counts, mostly constant: MAD 0). One more item is one step
    # of the metric's resolution, not 1 / (0.1 % of 3) = 333 sigma.
    rng = np.random.default_rng(17)
    x = 3.0 + (rng.random(N) < 0.1).astype(float)
    x[200:] = 4.0
    s = anomaly.score_series(T, x, reference_end=TEST_START, metric="queue_depth")
    assert s.scale == pytest.approx(1.0)
    assert anomaly.detect({"svc": {"queue_depth": (T, x)}}, test_start=TEST_START).anomalies == ()


@pytest.mark.parametrize(
    ("kind", "direction"),
    # Latency is two-sided: requests failing fast are quicker, a fall can be an error burst.
    [("latency", 0), ("errors", 1), ("memory", 1), ("cpu", 0), ("load", 0), ("other", 0)],
)
def test_only_errors_and_memory_have_one_harmful_direction(kind: Any, direction: int) -> None:
    assert anomaly.harmful_direction(kind) == direction


def _heap_collection() -> np.ndarray:
    """A heap that grows through the reference and is collected in the tested part: memory drops
    by 300 MB, ~30 robust sigma below the extrapolated growth, and stays down."""
    x = 1000.0 + np.arange(N) * 1.5 + noise(21, sigma=5.0)
    x[220:] -= 300.0
    return x


@pytest.mark.parametrize(
    ("metric", "harmless_directions", "benign"),
    [
        # A fall of memory (a heap collection) is reported but harms nothing: never unexplained.
        ("memory_working_set_bytes", True, True),
        # The same fall of cpu can be a hang or lost work, of latency a fail-fast error path:
        # unexplained.
        ("cpu_cores", True, False),
        ("latency_ms", True, False),
        # Asked to count every direction, the memory fall is unexplained again.
        ("memory_working_set_bytes", False, False),
    ],
)
def test_a_fall_of_memory_is_benign_a_fall_of_cpu_is_not(
    metric: str, harmless_directions: bool, benign: bool
) -> None:
    detector = anomaly.AnomalyDetector(harmless_directions=harmless_directions)
    report = anomaly.detect(
        {"svc": {metric: (T, _heap_collection())}}, test_start=TEST_START, detector=detector
    )
    assert len(report.anomalies) == 1
    a = report.anomalies[0]
    assert a.direction == "down" and a.active
    assert (a.benign, a.unexplained, report.unexplained_active) == (benign, not benign, not benign)
    assert ("harms nothing" in a.explanation) == benign


def test_a_rise_of_memory_stays_unexplained() -> None:
    x = 1000.0 + noise(22, sigma=5.0)
    x[220:] += 300.0
    a = anomaly.detect({"svc": {"memory_working_set_bytes": (T, x)}}, test_start=TEST_START).anomalies[0]
    assert a.direction == "up" and not a.benign and a.unexplained
