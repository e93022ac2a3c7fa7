"""bench.anomaly's NAB scoring: windows caught, new alarms, false alarms a day (worked values)."""

from __future__ import annotations

import numpy as np

from bench import _anomaly_nab as nab

H = nab.PASS_EVERY_S


def test_new_alarms_count_a_raised_alarm_once() -> None:
    # Raised at passes 1, 2 (still raised), 4: two new alarms.
    assert nab.new_alarms([None, 1.0, 2.0, None, 4.0]) == [None, 1.0, None, None, 4.0]


def test_score_catches_windows_by_any_alarm_and_counts_new_alarms_outside() -> None:
    series = nab.Series("s", np.array([0.0]), np.array([0.0]), ((10 * H, 12 * H), (30 * H, 31 * H)))
    ends = [float(k * H) for k in range(1, 49)]  # 48 hourly passes: 2 days
    alarms: list[float | None] = [None] * 48
    # An alarm raised from hour 9 (before the first window) through hour 11 (inside it): one new
    # alarm, outside the windows (a false alarm), but the window is caught by the raised pass at 11.
    for k in (8, 9, 10):
        alarms[k] = float((k + 1) * H) - 60.0
    # A lone alarm at hour 40: a second false alarm. The second window is missed.
    alarms[39] = 40 * H - 60.0
    got = nab.score(series, alarms, ends)
    assert (got.windows, got.caught, got.false_alarms) == (2, 1, 2)
    assert got.days == 2.0  # 2 false alarms over 2 days: 1 a day


def test_windows_before_the_first_pass_are_not_counted() -> None:
    series = nab.Series("s", np.array([0.0]), np.array([0.0]), ((0.0, 0.5 * H), (5 * H, 6 * H)))
    got = nab.score(series, [None, None, None], [3 * H, 4 * H, 5 * H])
    # The first window ended before the first pass's tested hour began (2 h): unseen.
    assert got.windows == 1 and got.caught == 0
