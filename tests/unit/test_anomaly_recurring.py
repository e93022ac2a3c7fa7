"""Recurrence: a job at the same time every day is masked, a new excursion is not (worked values)."""

from __future__ import annotations

import numpy as np
import pytest

from autoloop.engines import anomaly
from autoloop.engines.anomaly import recurring

DAY = 86400.0
STEP = 300.0  # NAB's 5-minute samples


def _grid(days: float) -> np.ndarray:
    return np.arange(0.0, days * DAY, STEP)


def test_a_sample_every_earlier_day_matched_is_recurring() -> None:
    # Three days, the last hour tested. At 03:30 each day the series reaches +30 (earlier days)
    # and +25 (the tested day): both earlier days beat it within one bin (15 min), so it recurs.
    t = _grid(3.0)
    z = np.zeros(t.size)
    job = int(3.5 * 3600 / STEP)  # 03:30
    per_day = int(DAY / STEP)
    z[job] = 30.0
    z[per_day + job + 2] = 35.0  # ten minutes late on day two: still within one bin
    first = 2 * per_day + job - 3
    z[2 * per_day + job] = 25.0
    z[2 * per_day + job + 4] = -25.0  # no earlier day went down there: not recurring
    mask = recurring.recurring(t, z, first, period_s=DAY)
    assert mask[2 * per_day + job]
    assert not mask[2 * per_day + job + 4]
    # A tested sample beyond what one of the days reached is new (40 > 30 on day one).
    z[2 * per_day + job] = 40.0
    assert not recurring.recurring(t, z, first, period_s=DAY)[2 * per_day + job]


@pytest.mark.parametrize(
    ("days", "fitted_from_days", "expected"),
    [
        # Two whole earlier days of reference: the job recurs.
        (3.0, 0.0, True),
        # One earlier day only (the profile's own minimum is two): one coincidence is no habit.
        (2.0, 0.0, False),
        # Three days, but the baseline rests on the last 1.5 only (a level shift before): the
        # older day's residuals measure the shift, so only one day counts.
        (3.0, 1.5, False),
    ],
)
def test_recurrence_needs_two_periods_the_baseline_rests_on(
    days: float, fitted_from_days: float, expected: bool
) -> None:
    t = _grid(days)
    z = np.zeros(t.size)
    per_day = int(DAY / STEP)
    at = t.size - 6  # half an hour before the end, tested
    z[at - np.arange(1, int(days)) * per_day] = 20.0
    z[at] = 15.0
    first = t.size - 12
    mask = recurring.recurring(t, z, first, period_s=DAY, fitted_from=int(fitted_from_days * per_day))
    assert bool(mask[at]) is expected


def _daily_job(seed: int, *, new: bool) -> dict[str, dict[str, tuple[np.ndarray, np.ndarray]]]:
    """Three days of noise with a backup job of +40 sigma at 03:25 and 03:30 every day (two
    15-minute bins, one sample in each: the median profile does not learn it); the tested hour
    holds the job (or, `new`, the same jump at 05:00)."""
    rng = np.random.default_rng(seed)
    t = _grid(3.0) + 2 * DAY  # any clock
    x = 10.0 + rng.normal(0.0, 1.0, t.size)
    at = 3.5 * 3600.0
    for day in range(3):
        x[np.isin(t - (2 + day) * DAY - at, (-STEP, 0.0))] += 40.0
    if new:
        x[np.isin(t - 4 * DAY - 5.0 * 3600.0, (-STEP, 0.0))] += 40.0
    return {"svc": {"disk_write_bytes": (t, x)}}


@pytest.mark.parametrize(
    ("new", "recurrence", "alarms"),
    [
        # The 03:30 job on the tested day: two samples at +40 would alarm (two beyond 1.5 x 6), but
        # both earlier days did the same then: no anomaly.
        (False, True, 0),
        (False, False, 1),
        # The same jump at 05:00, when no earlier day did it: an anomaly.
        (True, True, 1),
    ],
)
def test_detect_masks_a_daily_job_not_a_new_jump(new: bool, recurrence: bool, alarms: int) -> None:
    series = _daily_job(31, new=new)
    t = series["svc"]["disk_write_bytes"][0]
    end = 4 * DAY + (5.0 if new else 3.5) * 3600.0 + 1800.0
    window = {"svc": {"disk_write_bytes": (t[t <= end], series["svc"]["disk_write_bytes"][1][t <= end])}}
    detector = anomaly.AnomalyDetector(recurrence=recurrence, false_alarm_probability=None)
    report = anomaly.detect(window, test_start=end - 3600.0, detector=detector)
    assert len(report.anomalies) == alarms, report.summary()


def test_the_score_keeps_where_its_baseline_starts() -> None:
    # A reference of 200 samples with a level shift of 50 sigma at index 120: the baseline rests
    # on the samples from the shift on, and the score says so (recurrence reads it).
    rng = np.random.default_rng(32)
    t = np.arange(240, dtype=float) * 60.0
    x = 10.0 + rng.normal(0.0, 1.0, t.size)
    x[120:] += 50.0
    s = anomaly.score_series(t, x, reference_end=t[200], metric="queue_depth")
    assert 115 <= s.fitted_from <= 125
    calm = anomaly.score_series(t, x - np.where(np.arange(t.size) >= 120, 50.0, 0.0), reference_end=t[200])
    assert calm.fitted_from == 0
