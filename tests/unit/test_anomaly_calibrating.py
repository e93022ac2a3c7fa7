"""Reference calibration and the zero-MAD scale of the anomaly detector, with worked values."""

from __future__ import annotations

import numpy as np
import pytest

from autoloop.engines import anomaly
from autoloop.engines.anomaly import calibrating, robust, scoring


def test_run_levels_is_the_smallest_of_three_same_signed() -> None:
    z = np.array([1.0, 5.0, 4.0, 6.0, -7.0, 8.0])
    # Position 2: min(1, 5, 4) = 1; 3: min(5, 4, 6) = 4; 4 and 5: the signs differ -> 0.
    np.testing.assert_array_equal(calibrating.run_levels(z), [0.0, 0.0, 1.0, 4.0, 0.0, 0.0])


def test_calibrated_scales_down_to_the_ranked_reference_block() -> None:
    # Reference of 4 blocks of 3 samples; their run levels' block maxima are 12, 3, 9, 0.
    ref = np.array([12, 12, 12, 3, 3, 3, 9, 9, 9, 0, 0, 0], dtype=float)
    z = np.concatenate([ref, [20.0, 20.0, 20.0]])
    # rank 2 -> the second largest block, 9: scale by 6 / 9.
    out = calibrating.calibrated(z, ref.size, z_threshold=6.0, rank=2)
    np.testing.assert_allclose(out, z * 6.0 / 9.0)
    # rank 3 -> 3, below the threshold: never more sensitive than the robust scale alone.
    np.testing.assert_array_equal(calibrating.calibrated(z, ref.size, z_threshold=6.0, rank=3), z)
    # rank 5 > 4 blocks: too short a reference to calibrate, unchanged.
    np.testing.assert_array_equal(calibrating.calibrated(z, ref.size, z_threshold=6.0, rank=5), z)


def _spiky(seed: int, n: int = 400) -> tuple[np.ndarray, np.ndarray]:
    """Gaussian noise with a three-sample excursion of +12 sigma every 40 samples, and one more at
    the very end (the tested part)."""
    rng = np.random.default_rng(seed)
    t = np.arange(n, dtype=float) * 60.0
    x = 10.0 + rng.normal(0, 0.1, n)
    for start in range(15, n, 40):
        x[start : start + 3] += 1.2
    return t, x


def test_reference_rank_silences_excursions_the_reference_shows_routinely() -> None:
    t, x = _spiky(1)
    series = {"svc": {"value": (t, x)}}
    start = float(t[-40])  # the tested part holds one excursion like the nine before it
    # Persistence (the engine default) would silence this excursion too; the rank test alone here.
    plain = anomaly.detect(
        series, test_start=start, detector=anomaly.AnomalyDetector(false_alarm_probability=None)
    )
    ranked = anomaly.detect(
        series,
        test_start=start,
        detector=anomaly.AnomalyDetector(reference_rank=2, false_alarm_probability=None),
    )
    assert any(a.unexplained for a in plain.anomalies)
    assert not ranked.anomalies
    # A change far beyond anything in the reference still alarms.
    x2 = x.copy()
    x2[-10:] += 5.0
    again = anomaly.detect(
        {"svc": {"value": (t, x2)}}, test_start=start, detector=anomaly.AnomalyDetector(reference_rank=2)
    )
    assert any(a.unexplained for a in again.anomalies)


def test_mean_ad_columns_worked_value() -> None:
    r = np.array([[0.0], [0.0], [0.0], [4.0], [8.0]])
    # Median 0; absolute deviations 0, 0, 0, 4, 8 -> mean 2.4 (the MAD is 0).
    assert robust.mad_columns(r)[0] == 0.0
    assert robust.mean_ad_columns(r)[0] == pytest.approx(2.4)


def test_a_mostly_idle_series_with_bursts_is_scored_not_degenerate() -> None:
    # Bytes written by an idle disk: zero in 80 % of the samples, bursts in the rest. The MAD is
    # zero; the mean absolute deviation gives the scale, so a tenfold burst scores high.
    rng = np.random.default_rng(2)
    n = 300
    t = np.arange(n, dtype=float) * 300.0
    x = np.where(rng.random(n) < 0.2, rng.uniform(1e5, 1e6, n), 0.0)
    x[-5:] = 1e7
    s = scoring.score_series(t, x, reference_end=float(t[-5]), metric="disk_write_bytes")
    assert not s.degenerate
    assert s.scale == pytest.approx(robust.MEAN_AD_TO_SIGMA * np.mean(np.abs(x[:-5])), rel=0.05)
    assert float(np.min(s.z[-5:])) > 6.0


@pytest.mark.parametrize(("spike_sigmas", "alarms_with_rule"), [(20.0, True), (8.0, False)])
def test_single_factor_alarms_on_one_extreme_sample_only(spike_sigmas: float, alarms_with_rule: bool) -> None:
    rng = np.random.default_rng(4)
    n = 300
    t = np.arange(n, dtype=float) * 60.0
    x = 50.0 + rng.normal(0, 1.0, n)
    x[-10] += spike_sigmas  # one sample; the robust scale of N(0, 1) noise is ~1
    series = {"svc": {"value": (t, x)}}
    start = float(t[-30])
    # By default one wild sample never alarms, however far out.
    assert not anomaly.detect(series, test_start=start).anomalies
    # With single_factor 2 and z_threshold 6: one sample beyond 12 sigma alarms, 8 sigma does not.
    detector = anomaly.AnomalyDetector(single_factor=2.0)
    found = anomaly.detect(series, test_start=start, detector=detector).anomalies
    assert bool(found) is alarms_with_rule
    if found:
        assert found[0].detected_at == t[-10] and found[0].start == t[-10]
        assert found[0].end is not None  # back to normal right after
