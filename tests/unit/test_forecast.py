"""Tests of the forecaster (autoloop.engines.forecast): resampling, calibration, model choice."""

from __future__ import annotations

import math

import numpy as np
import pytest

from autoloop.engines import forecast

DAY = 86_400


def test_resample_means_and_fills_gaps() -> None:
    # One sample a minute, values 0..14, but minutes 5..9 missing. 5-minute bins:
    # [0..4] -> mean 2, [5..9] empty -> interpolated (2 + 12) / 2 = 7, [10..14] -> mean 12.
    t = np.array([m * 60 for m in range(15) if not 5 <= m <= 9], dtype=float)
    v = t / 60
    times, z = forecast.resample(t, v, 300)
    assert times.tolist() == [0, 300, 600]
    assert z.tolist() == pytest.approx([2.0, 7.0, 12.0])


def test_resample_ignores_nan() -> None:
    _, z = forecast.resample(np.array([0.0, 60.0, 120.0]), np.array([1.0, np.nan, 3.0]), 300)
    assert z.tolist() == [2.0]


@pytest.mark.parametrize(
    ("q", "expected"),
    [
        # y - f = [-1, 0, 1]: q=0.9 -> (0.1 + 0 + 0.9) / 3; q=0.5 -> (0.5 + 0 + 0.5) / 3.
        (0.9, 1.0 / 3.0),
        (0.5, 1.0 / 3.0),
        # q=0.1 -> (0.9 + 0 + 0.1) / 3.
        (0.1, 1.0 / 3.0),
    ],
)
def test_pinball_loss(q: float, expected: float) -> None:
    assert forecast.pinball_loss(np.array([1.0, 2.0, 3.0]), np.full(3, 2.0), q) == pytest.approx(expected)


def test_pinball_loss_asymmetric() -> None:
    # Under-forecast by 2 at q=0.95 costs 0.95 * 2 = 1.9; over-forecast by 2 costs 0.05 * 2 = 0.1.
    assert forecast.pinball_loss(np.array([4.0]), np.array([2.0]), 0.95) == pytest.approx(1.9)
    assert forecast.pinball_loss(np.array([0.0]), np.array([2.0]), 0.95) == pytest.approx(0.1)


def test_conformal_offsets_order_statistics() -> None:
    # Residuals 1..19 (n = 19) at a single step: q=0.95 -> ceil(20 * 0.95) = 19th -> 19;
    # q=0.05 -> floor(20 * 0.05) = 1st -> 1; q=0.5 -> ceil(19 * 0.5) = 10th -> 10.
    resid = np.arange(1.0, 20.0)[None, :, None].repeat(3, axis=0)
    out = forecast._conformal_offsets(resid, (0.05, 0.5, 0.95))
    assert out[:, 0].tolist() == [1.0, 10.0, 19.0]


def test_conformal_offsets_pool_neighbouring_steps_per_quantile() -> None:
    # 20 steps pool h +- round(0.1 * 20) = 2 steps; each quantile has its own residuals (a
    # quantile model) and 30 % are missing. Reference: the order-statistic rule above applied to
    # each pool, written out directly.
    rng = np.random.default_rng(3)
    resid = rng.normal(size=(3, 40, 20))
    resid[rng.random(resid.shape) < 0.3] = np.nan
    qs = (0.05, 0.5, 0.95)
    out = forecast._conformal_offsets(resid, qs)
    for qi, q in enumerate(qs):
        for h in (0, 1, 10, 19):
            pool = np.sort(resid[qi, :, max(0, h - 2) : h + 3].ravel())
            pool = pool[np.isfinite(pool)]
            n = len(pool)
            k = (
                math.ceil((n + 1) * q)
                if q > 0.5
                else math.floor((n + 1) * q)
                if q < 0.5
                else math.ceil(n * q)
            )
            assert out[qi, h] == pool[min(max(k, 1), n) - 1]


def _daily_series(
    days: int, step: int, noise: float, seed: int = 0
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    t = np.arange(0, days * DAY, step, dtype=float)
    signal = 10.0 + 5.0 * np.sin(2 * np.pi * t / DAY)
    return t, signal, signal + rng.normal(0.0, noise, len(t))


def test_detects_daily_seasonality_and_not_in_noise() -> None:
    t, _, v = _daily_series(6, 300, 0.5)
    model = forecast.Forecaster(horizon_seconds=3600, step_seconds=300).fit(t, v)
    assert DAY in model.seasonal_periods_
    rng = np.random.default_rng(1)
    noise = forecast.Forecaster(horizon_seconds=3600, step_seconds=300).fit(t, 10 + rng.normal(0, 1, len(t)))
    assert noise.seasonal_periods_ == ()


def test_interval_matches_known_noise_on_a_seasonal_series() -> None:
    # Daily sine + N(0, 0.5) noise per 5-minute step, forecast at 5-minute steps: the true
    # 5 % / 95 % quantiles are signal -+ 1.645 * 0.5 = -+ 0.82. Expect the forecast within 0.3 of
    # the signal at the median on average (the point averages a few noisy days, sd ~0.25) and a
    # 90 % interval half-width within 35 % of 0.82.
    t, _, v = _daily_series(8, 300, 0.5, seed=2)
    fc = forecast.forecast(t, v, horizon_seconds=3600, step_seconds=300)
    future = 10.0 + 5.0 * np.sin(2 * np.pi * fc.timestamps / DAY)
    assert fc.model != "last_value"
    assert np.abs(fc.quantile(0.5) - future).mean() < 0.3
    half = (fc.quantile(0.95) - fc.quantile(0.05)) / 2
    assert np.abs(half.mean() - 1.645 * 0.5) < 0.35 * 1.645 * 0.5


def test_coverage_over_a_rolling_backtest() -> None:
    # 10 origins on a noisy seasonal series: the 90 % interval covers between 80 % and 98 % of the
    # 120 future steps (binomial sd at 90 % over 120 points is ~3 %).
    t, _, v = _daily_series(9, 300, 1.0, seed=3)
    covered = total = 0
    for origin in np.linspace(7 * DAY, 9 * DAY - 3700, 10):
        origin = np.floor(origin / 300) * 300
        hist = t < origin
        fc = forecast.forecast(t[hist], v[hist], horizon_seconds=3600, step_seconds=300)
        times, z = forecast.resample(t, v, 300)
        y = z[np.searchsorted(times, fc.timestamps)]
        covered += int(((y >= fc.quantile(0.05)) & (y <= fc.quantile(0.95))).sum())
        total += len(y)
    assert 0.80 <= covered / total <= 0.98


def test_quantiles_are_ordered_non_negative_and_on_the_grid() -> None:
    t, _, v = _daily_series(3, 60, 3.0)
    fc = forecast.forecast(t, np.maximum(v - 9.0, 0.0), horizon_seconds=1800, step_seconds=300)
    assert fc.values.shape == (3, 6)
    assert (np.diff(fc.values, axis=0) >= 0).all()
    assert (fc.values >= 0).all()
    # Steps start one step after the last (complete or partial) bin of the history.
    last_bin = np.floor(t[-1] / 300) * 300
    assert fc.timestamps.tolist() == [last_bin + 300 * k for k in range(1, 7)]


def test_constant_series_gives_a_point_interval() -> None:
    t = np.arange(0, 2 * DAY, 60, dtype=float)
    fc = forecast.forecast(t, np.full(len(t), 4.0), horizon_seconds=3600, step_seconds=300)
    assert fc.values == pytest.approx(np.full((3, 12), 4.0))


def test_short_history_falls_back_to_last_value() -> None:
    t = np.arange(0, 2 * 3600, 60, dtype=float)
    v = np.linspace(1.0, 2.0, len(t))
    fc = forecast.forecast(t, v, horizon_seconds=3600, step_seconds=300)
    assert fc.model == "last_value"
    assert fc.quantile(0.5)[0] == pytest.approx(forecast.resample(t, v, 300)[1][-1], rel=0.05)


def test_too_short_history_is_refused() -> None:
    with pytest.raises(ValueError, match="at least"):
        forecast.forecast(np.array([0.0, 60.0]), np.array([1.0, 2.0]), step_seconds=300)


def test_rolling_median_uses_the_steps_there_are() -> None:
    # Window 3 over [5, 1, 3, 9, 2]: [5] -> 5, [5, 1] -> 3, [5, 1, 3] -> 3, [1, 3, 9] -> 3,
    # [3, 9, 2] -> 3. A NaN is skipped: [nan, 4] -> 4.
    z = np.array([5.0, 1.0, 3.0, 9.0, 2.0])
    assert forecast._rolling_median(z, 3).tolist() == [5.0, 3.0, 3.0, 3.0, 3.0]
    assert forecast._rolling_median(np.array([np.nan, 4.0]), 3).tolist()[1] == 4.0


def test_profile_is_the_median_of_the_same_hour_over_past_days() -> None:
    # 4 steps a "day"; origin t = 11 (day 2, last step), targets 1 and 4 steps ahead: indices 12
    # and 15, whose same-phase values one, two, three days back are 8/4/0 and 11/7/3. Values are
    # the index squared, so the medians are 4**2 = 16 and 7**2 = 49.
    z = np.arange(12, dtype=float) ** 2
    t = np.array([[11, 11]])
    h = np.array([[1, 4]])
    assert forecast._profile_values(z, t, h, 4).tolist() == [[16.0, 49.0]]
    # Origin t = 2: target 3 has no full day behind it -> NaN, and `_profile` refuses.
    assert np.isnan(forecast._profile_values(z, np.array([[2]]), np.array([[1]]), 4)[0, 0])
    assert forecast._profile(z, np.array([[2]]), np.array([[1]]), 4) is None


def _noisy_days(days: int, seed: int, level: np.ndarray | None = None) -> tuple[np.ndarray, np.ndarray]:
    # Hourly-ish daily shape at 5-minute steps with day-to-day noise of sd 1 on each hour.
    rng = np.random.default_rng(seed)
    t = np.arange(0, days * DAY, 300, dtype=float)
    shape = 10.0 + 5.0 * np.sin(2 * np.pi * t / DAY)
    noise = np.repeat(rng.normal(0.0, 1.0, days * 24), 12)
    base = shape if level is None else shape * level
    return t, base + noise


def test_day_ahead_uses_a_daily_profile_and_beats_yesterday() -> None:
    # Each hour of each day is the shape plus N(0, 1). Yesterday's value errs by sd sqrt(2) = 1.41;
    # the median of 7 days by about sqrt(1 + pi / (2 * 7)) = 1.06. Over 4 days ahead the profile
    # forecast's mean absolute error must be below seasonal naive's (expected ratio ~0.75).
    t, v = _noisy_days(14, seed=4)
    err_model = err_naive = 0.0
    for end in (10, 11, 12, 13):
        hist = t < end * DAY
        model = forecast.Forecaster(horizon_seconds=DAY, step_seconds=3600).fit(t[hist], v[hist])
        fc = model.predict()
        # The rules are averaged per quantile level; the median's weight sits on the profiles.
        assert fc.model == "combination"
        combo = model.combination_
        assert combo is not None
        profiles = [
            i for i, r in enumerate(combo.rules) if r in ("seasonal_median", "profile_level", "seasonal_mean")
        ]
        assert combo.weights[profiles, 1].sum() > 0.5
        times, z = forecast.resample(t, v, 3600)
        at = np.searchsorted(times, fc.timestamps)
        err_model += float(np.abs(fc.quantile(0.5) - z[at]).mean())
        err_naive += float(np.abs(z[at - 24] - z[at]).mean())
    assert err_model < 0.9 * err_naive


def test_short_horizons_do_not_try_the_daily_profiles() -> None:
    t, v = _noisy_days(8, seed=5)
    fc = forecast.forecast(t, v, horizon_seconds=3600, step_seconds=300)
    assert not set(fc.backtest_pinball) & forecast.PROFILE_CANDIDATES
    long = forecast.forecast(t, v, horizon_seconds=DAY, step_seconds=3600)
    assert set(long.backtest_pinball) >= forecast.PROFILE_CANDIDATES


def test_day_ahead_follows_a_level_step() -> None:
    # The level doubles 2 days before the end: a profile of 7 past days would sit near the old
    # level (mean 10); the chosen forecast's median must follow the new one (mean 20) within 15 %.
    t, _ = _noisy_days(12, seed=6)
    level = np.where(t < 10 * DAY, 1.0, 2.0)
    t, v = _noisy_days(12, seed=6, level=level)
    fc = forecast.forecast(t, v, horizon_seconds=DAY, step_seconds=3600)
    assert abs(fc.quantile(0.5).mean() - 20.0) < 0.15 * 20.0


def test_quantile_losses_weight_origins() -> None:
    # Median only (pinball = |error| / 2). Origin 0 errs by 2 on both steps (loss 1 each), origin 1
    # by 4 on its one observed step (loss 2). Unweighted: (1 + 1 + 2) / 3 = 4/3. Origin weights
    # 1 and 0.5: (1 + 1 + 0.5 * 2) / (1 + 1 + 0.5) = 1.2.
    y = np.array([[2.0, 2.0], [4.0, np.nan]])
    qf = np.zeros((1, 2, 2))
    assert forecast._quantile_losses(y, qf, (0.5,)).tolist() == pytest.approx([4.0 / 3.0])
    weighted = forecast._quantile_losses(y, qf, (0.5,), np.array([1.0, 0.5]))
    assert weighted.tolist() == pytest.approx([1.2])


def test_origin_pinball_skips_unobserved_steps_and_weights_by_observed() -> None:
    # Two origins, two steps, median only (pinball = |error| / 2). Origin 0: errors 2 and 4 ->
    # mean 1.5; origin 1: error 2, second step unobserved -> 1.0. Observed steps 2 and 1, mean
    # 1.5, weights 2/1.5 and 1/1.5: losses 2.0 and 0.667, whose mean (4/3) is the mean over the
    # three observed steps, (1 + 2 + 1) / 3.
    y = np.array([[2.0, 4.0], [2.0, np.nan]])
    pred = np.zeros((1, 2, 2))
    losses = forecast._origin_pinball(y, pred, np.ones((2, 1)), np.zeros((1, 2)), (0.5,))
    assert losses.tolist() == pytest.approx([2.0, 2.0 / 3.0])
    assert losses.mean() == pytest.approx(4.0 / 3.0)


def _next_day_by_rules(t: np.ndarray, v: np.ndarray, *rules: str) -> list[np.ndarray]:
    """Each fixed rule's raw hourly forecast of the day after the series."""
    model = forecast.Forecaster(horizon_seconds=DAY, step_seconds=3600).fit(t, v)
    s = model.series_
    origin, hh = np.array([len(s.z) - 1]), np.arange(1, 25)
    out = []
    for rule in rules:
        raw = model._predict_raw(rule, s, origin, hh, train_end=0)
        assert raw is not None
        out.append(raw[0, 0])
    return out


def test_profile_level_carries_a_recent_step() -> None:
    # The level drops by 4 eighteen hours before the end. The 7-day profile still says mean 10;
    # `profile_level` adds the median gap of the last day to its profile, which is -4 (18 of the
    # 24 gaps are after the step), so its forecast averages 10 - 4 = 6 (within 10 %).
    t, v = _noisy_days(10, seed=7)
    v = np.where(t < 9.25 * DAY, v, v - 4.0)
    level, profile = _next_day_by_rules(t, v, "profile_level", "seasonal_median")
    assert abs(level.mean() - 6.0) < 0.1 * 6.0
    assert abs(profile.mean() - 10.0) < 0.1 * 10.0


def test_profile_ratio_scales_the_daily_shape_to_the_new_level() -> None:
    # A daily shape 10 +- 5 whose level doubles 3 days before the end (noise N(0, 1) per hour).
    # The 7-day median profile mixes 4 old days and 3 new ones (mean 10); the ratio profile takes
    # each day's shape relative to its own level and multiplies by the last day's: mean 20 and
    # the doubled amplitude (peak-to-trough ~20), each within 10-15 %.
    t, _ = _noisy_days(10, seed=8)
    t, v = _noisy_days(10, seed=8, level=np.where(t < 7 * DAY, 1.0, 2.0))
    ratio, profile = _next_day_by_rules(t, v, "profile_ratio", "seasonal_median")
    assert abs(ratio.mean() - 20.0) < 0.1 * 20.0
    assert abs(np.ptp(ratio) - 20.0) < 0.15 * 20.0
    assert abs(profile.mean() - 10.0) < 0.1 * 10.0


def test_combination_weights_follow_each_quantiles_loss() -> None:
    # Two rules on a day profile whose level steps from 10 to 14 and back every other day (4
    # steps a day). Whatever the losses, each quantile's weights are exp(-(L / L_min - 1) / T)
    # normalised: the best rule at a level weighs most there, and the weights sum to one.
    days, per_day = 20, 4
    level = np.where(np.arange(days) % 2 == 0, 10.0, 14.0).repeat(per_day)
    t = np.arange(days * per_day, dtype=float) * (DAY / per_day)
    model = forecast.Forecaster(horizon_seconds=DAY, step_seconds=DAY / per_day)
    model.fit(t, level + np.tile([0.0, 1.0, 2.0, 1.0], days))
    combo = model.combination_
    assert combo is not None and model.model_ == "combination"
    assert combo.weights.sum(axis=0) == pytest.approx(np.ones(3))
    # An alternating level is predicted exactly by the value 2 days back, i.e. by no rule here
    # except partly by the 3-day mean: yesterday's value is off by 4 at every step.
    naive = combo.rules.index("seasonal_naive_day")
    assert (combo.weights[naive] < combo.weights.max(axis=0)).all()


def _weekly_days(days: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Hourly samples: a daily shape (10 +- 5) times 0.5 on days 5 and 6 of every week, plus
    N(0, 0.2) noise."""
    rng = np.random.default_rng(seed)
    t = np.arange(days * 24, dtype=float) * 3600.0
    weekend = np.where((t // DAY) % 7 >= 5, 0.5, 1.0)
    return t, weekend * (10.0 + 5.0 * np.sin(2 * np.pi * t / DAY)) + rng.normal(0.0, 0.2, len(t))


def test_day_ahead_with_under_two_weeks_uses_the_weekly_naive() -> None:
    # 13 days of history end on day 13, a weekend day (13 % 7 = 6): the target day sits at half
    # the weekday level. Every profile of the last 7 days (5 weekdays of 7) says the weekday
    # level, mean 10; the value a day and a week earlier (days 12 and 6, weekend days) say 5.
    # The weekly naive is defined only from day 7 on, after the holdout starts; it must still
    # join the combination, having shown on day 12 that it knows weekends, and with the daily
    # naive carry the median (mean within 10 % of 5).
    t, v = _weekly_days(14, seed=11)
    hist = t < 13 * DAY
    model = forecast.Forecaster(horizon_seconds=DAY, step_seconds=3600).fit(t[hist], v[hist])
    fc = model.predict()
    combo = model.combination_
    assert combo is not None
    assert "seasonal_naive_week" in combo.rules
    assert combo.weights[combo.rules.index("seasonal_naive_week"), 1] > 0.2
    assert abs(fc.quantile(0.5).mean() - 5.0) < 0.1 * 5.0


def test_rule_backtest_calibrates_each_origin_on_past_errors_only() -> None:
    # Two series equal up to hour 200 and noisier after it (N(0, 3) added). The held-out
    # quantile forecasts of a rule at origins up to 200 - 24 (their targets observed before the
    # change) must be identical: the offsets there come from errors seen by then.
    t, v = _noisy_days(12, seed=12)
    t, v = t[::12], v[::12]  # hourly
    rng = np.random.default_rng(13)
    w = np.where(np.arange(len(v)) > 200, v + rng.normal(0.0, 3.0, len(v)), v)
    hh = np.arange(1, 25)
    held = np.arange(150, len(v) - 1)
    out = []
    for series in (v, w):
        model = forecast.Forecaster(horizon_seconds=DAY, step_seconds=3600).fit(t, series)
        bt = model._backtest_rule("seasonal_naive_day", model.series_, hh, held, units=(False,))
        assert bt is not None
        out.append(bt)
    early = held <= 200 - 24
    assert np.isfinite(out[0].forecasts[:, early]).all()
    np.testing.assert_array_equal(out[0].forecasts[:, early], out[1].forecasts[:, early])
    # ...while later origins, calibrated on the noisier errors, differ.
    assert not np.allclose(out[0].forecasts[:, ~early], out[1].forecasts[:, ~early], equal_nan=True)


def _hourly_days(days: int, seed: int, level: np.ndarray | float = 1.0) -> np.ndarray:
    """Hourly values: a daily shape times `level`, with 10 % multiplicative noise."""
    rng = np.random.default_rng(seed)
    hours = np.arange(days * 24)
    shape = 1.0 + 0.5 * np.sin(2 * np.pi * hours / 24)
    return shape * level * np.exp(rng.normal(0.0, 0.1, len(hours)))


@pytest.mark.parametrize("factor", [10.0, 0.1, 100.0])
def test_regime_start_finds_a_large_level_step_to_the_hour(factor: float) -> None:
    hours = np.arange(10 * 24)
    at = 7 * 24 + 5
    z = _hourly_days(10, seed=7, level=np.where(hours < at, 1.0, factor))
    assert abs(forecast._regime_start(z, 24) - at) <= 1


def test_regime_start_ignores_small_steps_bursts_and_levels_seen_before() -> None:
    hours = np.arange(14 * 24)
    # A 2x step is within what daily and weekly swings do: no new regime.
    assert forecast._regime_start(_hourly_days(14, 8, np.where(hours < 200, 1.0, 2.0)), 24) == 0
    # A 20x burst that is still on after 12 h may yet end: not a regime before it has lasted a day.
    assert forecast._regime_start(_hourly_days(14, 8, np.where(hours < 14 * 24 - 12, 1.0, 20.0)), 24) == 0
    # A 30 h burst that ended two days ago: the level did not hold to the end.
    burst = (hours >= 10 * 24) & (hours < 10 * 24 + 30)
    assert forecast._regime_start(_hourly_days(14, 8, np.where(burst, 20.0, 1.0)), 24) == 0
    # Weekends at a quarter of the weekday level, two weeks ending on a Sunday: seen before.
    weekend = np.where((hours // 24) % 7 >= 5, 0.25, 1.0)
    assert forecast._regime_start(_hourly_days(14, 8, weekend), 24) == 0
    # ...while a series that only ever sat at one level and then moved 4x has a new regime.
    assert forecast._regime_start(_hourly_days(14, 8, np.where(hours < 250, 1.0, 4.0)), 24) > 0


def test_day_ahead_after_a_large_step_forecasts_from_the_new_regime() -> None:
    # The level rises 100x two days before the end (a new workload, a traffic migration). Profiles
    # and error histories from the old level would mix both levels for a week; the forecast for
    # the next day must sit at the new level with an interval about as wide as its noise.
    hours = np.arange(11 * 24)
    at = 7 * 24 + 9
    level = np.where(hours < at, 0.01, 1.0)
    z = _hourly_days(11, seed=9, level=level)
    t = hours * 3600.0
    end = 10 * 24
    model = forecast.Forecaster(horizon_seconds=DAY, step_seconds=3600).fit(t[:end], z[:end])
    assert model.regime_start_ is not None and abs(model.regime_start_ - t[at]) <= 3600
    fc = model.predict()
    truth = z[end:]
    q05, q50, q95 = fc.values
    assert abs(q50.mean() / truth.mean() - 1.0) < 0.1
    covered = np.mean((truth >= q05) & (truth <= q95))
    assert covered >= 0.75
    # 10 % noise: a 90 % interval spans about +-16 % of the level, not the step.
    assert ((q95 - q05) / q50).mean() < 0.8


def test_history_at_zero_before_a_new_regime_is_dropped_not_rescaled() -> None:
    # An idle workload (exactly zero, a few tiny blips) starts serving: no rescaling of zeros can
    # give the new level's shape, and blips rescaled by an infinite ratio would be absurd.
    hours = np.arange(10 * 24)
    at = 6 * 24 + 3
    z = _hourly_days(10, seed=10, level=np.where(hours < at, 0.0, 2.0))
    z[[20, 50, 90]] = 1e-6
    t = hours * 3600.0
    assert forecast._regime_ratio(z, at, 24) is None
    assert forecast._regime_ratio(
        _hourly_days(10, 10, np.where(hours < at, 1.0, 5.0)), at, 24
    ) == pytest.approx(5.0, rel=0.1)
    model = forecast.Forecaster(horizon_seconds=DAY, step_seconds=3600).fit(t, z)
    assert model.regime_start_ is not None
    assert len(model.series_.z) == len(z) - at
    fc = model.predict()
    assert np.isfinite(fc.values).all() and fc.values.max() < 10.0


@pytest.mark.parametrize(
    ("idle", "n", "at", "step"),
    [(0.0, 1851, 1689, 300.0), (1e-9, 1851, 1689, 300.0), (0.0, 803, 536, 900.0)],
)
def test_a_workload_idle_until_hours_ago_gets_a_forecast_of_its_own_size(
    idle: float, n: int, at: int, step: float
) -> None:
    # Near-zero for days, then busy for the last 13-22 h (not a day yet, so not a new regime).
    # Errors and daily shapes in units of the idle level are ~1e9 times the busy level; scaled
    # by today's level they once gave a q95 of 1e8-1e11 cores. The forecast must stay the series' size.
    rng = np.random.default_rng(11)
    t = np.arange(n) * 300.0
    v = np.where(np.arange(n) < at, idle, 1.0) * np.exp(rng.normal(0.0, 0.2, n))
    for horizon in (6 * 3600, DAY):
        fc = forecast.forecast(t, v, horizon_seconds=horizon, step_seconds=step)
        assert np.isfinite(fc.values).all()
        assert fc.values.max() <= 2 * v.max() + 1e-9
        assert 0.5 < float(np.median(fc.quantile(0.5))) < 2.0
