"""Tests for `autoloop.engines.anomaly.persisting`: a change must persist before it alarms."""

from __future__ import annotations

import numpy as np
import pytest

from autoloop.engines import anomaly
from autoloop.engines.anomaly import persisting

STEP = 15.0
N = 120  # 30 minutes of 15 s samples, as the operator reads them
T = np.arange(N) * STEP
TEST_START = float(T[-20])  # the last 5 minutes are tested


def _cpu(seed: int) -> np.ndarray:
    """A quiet service's cpu in cores, quantised to the millicore as cAdvisor reports it."""
    rng = np.random.default_rng(seed)
    return np.round(0.2 + rng.normal(0.0, 0.01, N), 3)


@pytest.mark.parametrize(
    ("count", "tested", "exceeded", "reference", "expected"),
    [
        # One tested sample: the predictive mean of Beta(1 + 1/2, 8 + 1/2) = 1.5 / 10.
        (1, 1, 1, 9, 0.15),
        # Two of two: E[p^2] = a (a + 1) / ((a + b) (a + b + 1)) = 1.5 * 2.5 / (10 * 11).
        (2, 2, 1, 9, 1.5 * 2.5 / 110),
        (0, 5, 1, 9, 1.0),
        (6, 5, 1, 9, 0.0),
    ],
)
def test_exceedance_tail_worked_values(
    count: int, tested: int, exceeded: int, reference: int, expected: float
) -> None:
    got = persisting.exceedance_tail(count, tested=tested, exceeded=exceeded, reference=reference)
    assert got == pytest.approx(expected)


def test_a_noisier_reference_asks_for_more_persistence() -> None:
    # 20 tested samples after 100 of reference, at the per-side share of a pass over 25 series
    # (0.05 / 25 / 2 = 0.001): none, one burst (3) or two bursts (6) beyond the level.
    needed = [persisting.required_count(tested=20, exceeded=k, reference=100, alpha=0.001) for k in (0, 3, 6)]
    assert needed == [4, 6, 7]
    # Never reachable: every tested sample is no rarer than the reference says.
    assert persisting.required_count(tested=3, exceeded=50, reference=100, alpha=0.001) == 4


def test_a_garbage_collection_burst_raises_nothing() -> None:
    # Three scrapes at +0.3 cores (30 robust sigma) in the tested part, then back: a GC burst,
    # like the one the reference showed 20 minutes earlier. With 5 of the 100 reference samples
    # beyond z +2.5 (the burst and two noise scrapes), one series (0.025 a side) needs 5 tested
    # samples there; the burst has 3.
    x = _cpu(1)
    x[20:23] += 0.3
    x[-12:-9] += 0.3
    series = {"svc": {"cpu_cores": (T, x)}}
    assert anomaly.detect(series, test_start=TEST_START).anomalies == ()
    # The rules alone (no persistence) raise it: the strong pair fires at the burst's second scrape.
    rules_only = anomaly.AnomalyDetector(false_alarm_probability=None)
    assert anomaly.detect(series, test_start=TEST_START, detector=rules_only).anomalies


def test_a_single_wild_scrape_raises_nothing() -> None:
    x = _cpu(2)
    x[-8] += 1.0
    assert anomaly.detect({"svc": {"cpu_cores": (T, x)}}, test_start=TEST_START).anomalies == ()


def test_a_sustained_step_still_alarms_once_it_persists() -> None:
    x = _cpu(3)
    x[-15:] += 0.1  # +10 sigma from the sixth tested sample on
    report = anomaly.detect({"svc": {"cpu_cores": (T, x)}}, test_start=TEST_START)
    assert len(report.anomalies) == 1
    a = report.anomalies[0]
    assert a.direction == "up" and a.unexplained
    assert a.start == T[-15]
    # One series, 0.025 a side; the reference has 1 of 100 samples beyond z +2.5, so three tested
    # samples beyond it are needed for a predictive tail below 0.025: the step's third sample.
    assert a.detected_at == T[-13]


def test_a_step_down_is_judged_on_the_lower_side_alone() -> None:
    # Upward bursts in the reference do not make a drop need more persistence.
    x = _cpu(4)
    for at in (10, 40, 70):
        x[at : at + 3] += 0.3
    x[-10:] -= 0.1
    report = anomaly.detect({"svc": {"cpu_cores": (T, x)}}, test_start=TEST_START)
    assert [a.direction for a in report.anomalies] == ["down"]
    assert report.anomalies[0].detected_at == T[-8]
