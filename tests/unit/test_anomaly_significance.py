"""Practical significance (`anomaly.significance`): a change within 10 % of the expected value (the
Kubernetes HPA's default tolerance) never alarms on its own, however large its z; z is unchanged."""

from __future__ import annotations

import numpy as np
import pytest

from autoloop.engines import anomaly

STEP = 15.0
N = 120  # 30 minutes of 15 s samples, as the operator reads a loop's target
T = np.arange(N) * STEP
TEST_START = 1500.0  # index 100: the last 5 minutes are tested
LEVEL = 100.0


def _noiseless_latency(step: float, seed: int = 0) -> np.ndarray:
    """Latency steady at 100 ms to 0.15 % (near-noiseless, as the workload simulator's; just above
    the scale's 0.1 % floor, so the reference is not marked constant and its anomalies count as
    unexplained), stepping by `step` (a share of the level) at index 104, inside the tested part."""
    x = LEVEL * (1.0 + np.random.default_rng(seed).normal(0.0, 0.0015, N))
    x[104:] *= 1.0 + step
    return x


@pytest.mark.parametrize("seed", range(3))
def test_a_one_percent_step_on_a_noiseless_series_is_not_an_alarm_and_twenty_percent_is(seed: int) -> None:
    small = {"svc": {"latency_ms": (T, _noiseless_latency(0.01, seed))}}
    large = {"svc": {"latency_ms": (T, _noiseless_latency(0.20, seed))}}
    quiet = anomaly.detect(small, test_start=TEST_START)
    assert quiet.anomalies == () and not quiet.unexplained_active, quiet.summary()
    loud = anomaly.detect(large, test_start=TEST_START)
    assert loud.unexplained_active, loud.summary()
    (a,) = loud.anomalies
    assert (a.metric, a.direction, a.start) == ("latency_ms", "up", T[104])
    assert a.relative_change == pytest.approx(0.20, abs=0.01)


def test_the_score_itself_is_not_touched() -> None:
    # The 1 % step still reads many robust sigma (the score is never capped nor rescaled): only
    # the alarm rules ignore it.
    s = anomaly.score_series(T, _noiseless_latency(0.01), reference_end=TEST_START, metric="latency_ms")
    assert float(np.median(s.z[104:])) > 6.0


def test_without_the_tolerance_z_alone_decides() -> None:
    detector = anomaly.AnomalyDetector(min_relative_change=None)
    report = detector.detect({"svc": {"latency_ms": (T, _noiseless_latency(0.01))}}, test_start=TEST_START)
    assert report.unexplained_active, report.summary()


def test_negligible_is_the_hpa_tolerance_inclusive_and_relative_to_the_expected_value() -> None:
    assert anomaly.MIN_RELATIVE_CHANGE == 0.1
    x = np.array([109.0, 110.0, 111.0, 90.0, 89.0, 0.5, 0.0])
    expected = np.array([100.0, 100.0, 100.0, 100.0, 100.0, 0.0, 0.0])
    got = anomaly.significance.negligible(x, expected)
    # Within 10 % (inclusive, as the HPA's "within tolerance"); beyond it on either side counts;
    # an expected value of zero leaves no tolerance: every deviation counts.
    assert got.tolist() == [True, True, False, True, False, False, True]
    assert not anomaly.significance.negligible(x, expected, min_relative=None).any()
    assert not anomaly.significance.negligible(x, expected, min_relative=0.0).any()


def test_a_ramp_is_dated_where_it_began_not_where_it_left_the_tolerance() -> None:
    # A slow rise of 1 % a scrape from index 100 alarms only once beyond 10 %, but the anomaly's
    # start is where the rise began (dating may look at samples within the tolerance).
    x = _noiseless_latency(0.0)
    x[100:] *= 1.0 + 0.01 * np.arange(1, N - 99)
    (a,) = anomaly.detect({"svc": {"latency_ms": (T, x)}}, test_start=TEST_START).anomalies
    assert a.detected_at >= T[110]
    assert T[100] - 2 * STEP <= a.start <= T[102], a


def test_a_rise_from_a_near_zero_error_rate_is_still_an_anomaly() -> None:
    # The tolerance is relative: around a level near zero it is next to nothing, so errors
    # appearing on a service that had almost none still alarm.
    rng = np.random.default_rng(3)
    errors = 0.001 + np.abs(rng.normal(0.0, 0.0005, N))
    errors[104:] += 0.05
    report = anomaly.detect({"svc": {"error_ratio": (T, errors)}}, test_start=TEST_START)
    assert report.unexplained_active, report.summary()
