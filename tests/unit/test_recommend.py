"""The rightsizing recommender: quantile forecast, growth, OOM bump, hysteresis, past-only."""

from __future__ import annotations

import numpy as np
import pytest

from autoloop.engines import recommend

DAY = 86_400.0


def series(days: float, level: float = 1.0, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    n = int(days * 1440)
    ts = 60.0 * np.arange(1, n + 1)
    return ts, level * rng.uniform(0.5, 1.5, n)


def test_stationary_need_is_the_risk_quantile() -> None:
    ts, us = series(7)
    rec = recommend.RightsizingRecommender(recommend.RightsizingParams(risk=0.05))
    need, conf = rec.forecast(ts, us)
    # Uniform(0.5, 1.5): the 0.95 quantile is 1.45; conformal ratios are ~1 on a stationary series.
    assert need == pytest.approx(1.45, rel=0.02)
    assert conf == pytest.approx(1.0, abs=0.01)


@pytest.mark.parametrize(
    ("current", "change", "direction"),
    [
        (1.5, False, None),  # inside [need, need * 1.3] = [1.45, 1.885]
        (3.0, True, "down"),
        (1.0, True, "up"),
    ],
)
def test_hysteresis_band(current: float, change: bool, direction: str | None) -> None:
    ts, us = series(7)
    rec = recommend.RightsizingRecommender(recommend.RightsizingParams(risk=0.05, hysteresis=0.3))
    r = rec.recommend(ts, us, current_request=current)
    assert r.change is change
    assert r.upper == pytest.approx(r.lower * 1.3)
    if change:
        # A new request sits a quarter into the band: need * (1 + 0.25 * 0.3).
        assert r.target == pytest.approx(r.need * 1.075)
        assert direction is not None and direction in r.reason
    else:
        assert r.target == current


def test_step_up_is_followed_within_a_day() -> None:
    ts, us = series(7)
    us = us.copy()
    us[-1440:] *= 2.0  # the last day doubled
    need, _ = recommend.RightsizingRecommender(recommend.RightsizingParams(risk=0.05)).forecast(ts, us)
    # Older days are rescaled to the latest level: the need is about 2 x 1.45, not a blend.
    assert need > 2.5


def test_memory_oom_bumps_like_vpa() -> None:
    ts, us = series(3, level=1e9)
    rec = recommend.RightsizingRecommender(recommend.RightsizingParams(resource="memory"))
    peak = float(us[-600:].max())
    r = rec.recommend(ts, us, current_request=1.0e9, request_set_at=ts[-700], oom_times=[ts[-600]])
    assert r.need >= max(peak, 1.0e9) * recommend.OOM_BUMP_RATIO - 1e-6
    assert "OOM" in r.reason and r.change
    old = rec.recommend(ts, us, current_request=1.0e9, request_set_at=ts[-10], oom_times=[ts[-600]])
    assert "OOM" not in old.reason  # an OOM before the request was set does not count again


def test_sees_only_the_history_given() -> None:
    ts, us = series(8)
    rec = recommend.RightsizingRecommender()
    cut = 5 * 1440
    a = rec.recommend(ts[:cut], us[:cut], current_request=1.0)
    b = rec.recommend(ts[:cut], us[:cut].copy(), current_request=1.0)
    assert a == b


def test_empty_history_is_an_error() -> None:
    with pytest.raises(ValueError):
        recommend.RightsizingRecommender().forecast([], [])


def test_forecast_is_stable_within_a_day() -> None:
    ts, us = series(6)
    rec = recommend.RightsizingRecommender(recommend.RightsizingParams(risk=0.05))
    # Two calls 6 h apart inside day 7 see the same complete day windows (no surge): same need.
    ts7, us7 = series(7, seed=3)
    full_ts, full_us = np.concatenate([ts, ts7[-1440:]]), np.concatenate([us, us7[-1440:]])
    a, _ = rec.forecast(full_ts[: 6 * 1440 + 60], full_us[: 6 * 1440 + 60])
    b, _ = rec.forecast(full_ts[: 6 * 1440 + 420], full_us[: 6 * 1440 + 420])
    assert a == b
    # Sliding windows (aligned=False) drift with every call.
    sliding = recommend.RightsizingRecommender(recommend.RightsizingParams(risk=0.05, aligned=False))
    assert (
        sliding.forecast(full_ts[: 6 * 1440 + 60], full_us[: 6 * 1440 + 60])[0]
        != sliding.forecast(full_ts[: 6 * 1440 + 420], full_us[: 6 * 1440 + 420])[0]
    )


def test_band_widens_with_day_to_day_spread() -> None:
    ts, us = series(7)
    us = us.copy()
    # Alternate days at 1x and 2x level with the same median: quantiles spread, levels do not move.
    for d in range(0, 7, 2):
        day = us[d * 1440 : (d + 1) * 1440]
        us[d * 1440 : (d + 1) * 1440] = np.where(day > 1.0, 1.0 + 3.0 * (day - 1.0), day)
    rec = recommend.RightsizingRecommender(recommend.RightsizingParams(risk=0.05, hysteresis=0.1))
    r = rec.recommend(ts, us, current_request=100.0)
    # q0.95 is 1.45 on calm days and 2.35 on wide days: a spread near 0.5, far above the 0.1 floor.
    assert r.upper / r.lower - 1.0 > 0.3
