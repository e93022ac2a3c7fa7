"""The clairvoyant bound of bench/rightsizing: exact DP, charges that match the bench's metrics,
and a relaxation that no real schedule beats."""

from __future__ import annotations

import itertools

import numpy as np
import pytest

from bench import _rs_oracle, _rs_series, rightsizing


def _brute_force(
    cost: np.ndarray, over: np.ndarray, lam: float, mu: float, day_w: float, spd: int, cap: int | None
) -> float:
    """Every level sequence; a change at a day boundary may count for either day."""
    n_slots, n_levels = cost.shape
    best = np.inf
    for seq in itertools.product(range(n_levels), repeat=n_slots):
        changes = [i for i in range(1, n_slots) if seq[i] != seq[i - 1]]
        inside = [i for i in changes if i % spd != 0]
        boundary = [i for i in changes if i % spd == 0]
        value = sum(cost[i, seq[i]] + lam * over[i, seq[i]] for i in range(n_slots))
        for sides in itertools.product((0, 1), repeat=len(boundary)):
            per_day = [0] * (n_slots // spd)
            for i in inside:
                per_day[i // spd] += 1
            for i, side in zip(boundary, sides, strict=True):
                per_day[i // spd - side] += 1
            if cap is not None and max(per_day) > cap:
                continue
            best = min(best, value + mu * day_w * sum(n > 0 for n in per_day))
    return best


@pytest.mark.parametrize("cap", [None, 1, 2])
def test_dp_is_the_exact_minimum_over_schedules(cap: int | None) -> None:
    rng = np.random.default_rng(7)
    lambdas, mus = np.array([0.5, 3.0]), np.array([0.0, 0.4, 2.0])
    for _ in range(6):
        cost, over = rng.random((6, 3)), rng.random((6, 3))
        value, c, o, n = _rs_oracle.lagrangian_dp(
            cost, over, lambdas=lambdas, mus=mus, day_w=0.5, slots_per_day=3, max_changes=cap, track=True
        )
        for (li, lam), (mi, mu) in itertools.product(enumerate(lambdas), enumerate(mus)):
            assert value[li, mi] == pytest.approx(_brute_force(cost, over, lam, mu, 0.5, 3, cap))
            # the tracked parts describe the minimising schedule itself
            assert c[li, mi] + lam * o[li, mi] + mu * n[li, mi] == pytest.approx(value[li, mi])


def _series(days: int, seed: int) -> _rs_series.Series:
    rng = np.random.default_rng(seed)
    minutes = np.arange(days * _rs_oracle.MIN_PER_DAY)
    usage = (
        1.0 + 0.5 * np.sin(2 * np.pi * minutes / _rs_oracle.MIN_PER_DAY) + rng.gamma(2.0, 0.2, minutes.size)
    )
    return _rs_series.Series("t", "cpu", 1.7e9 + 60.0 * minutes, usage)


def test_charges_add_up_to_the_bench_day_metrics() -> None:
    s = _series(4, 1)
    days = 3
    u = s.usage[_rs_oracle.MIN_PER_DAY :]
    charges = _rs_oracle.slot_charges(u, days, float(np.mean(s.usage)), days)
    rng = np.random.default_rng(2)
    levels = rng.integers(0, charges.grid.size, days * _rs_oracle.SLOTS_PER_DAY)
    request = np.concatenate(
        [np.full(_rs_oracle.MIN_PER_DAY, 1.0), np.repeat(charges.grid[levels], _rs_oracle.SLOT_MIN)]
    )
    metrics = rightsizing.day_metrics(s, rightsizing.Replay(request, [], []))
    rows = np.arange(levels.size)
    assert np.sum(charges.cost[rows, levels]) == pytest.approx(np.mean([d["cost"] for d in metrics]))
    assert np.sum(charges.overrun[rows, levels]) == pytest.approx(np.mean([d["overrun"] for d in metrics]))


def test_no_schedule_beats_the_lower_bound() -> None:
    """Off-grid levels, changes anywhere: cost >= L(lambda, mu) - lambda * overrun - mu * change days."""
    series = [_series(3, 3), _series(3, 4)]
    sweep = _rs_oracle.sweep(series, warmup_days=1, caps=(None,))[None]
    rng = np.random.default_rng(5)
    n_total = 4
    spd = _rs_oracle.SLOTS_PER_DAY
    for _ in range(20):
        cost = over = changed = 0.0
        for s in series:
            levels = np.empty(2 * spd)
            levels[0] = rng.uniform(0.5, 3.0)
            for i in range(1, levels.size):
                levels[i] = rng.uniform(0.5, 3.0) if rng.random() < 0.02 else levels[i - 1]
            request = np.concatenate(
                [np.ones(_rs_oracle.MIN_PER_DAY), np.repeat(levels, _rs_oracle.SLOT_MIN)]
            )
            metrics = rightsizing.day_metrics(s, rightsizing.Replay(request, [], []))
            cost += sum(d["cost"] for d in metrics) / n_total
            over += sum(d["overrun"] for d in metrics) / n_total
            change_days = {i // spd for i in np.flatnonzero(np.diff(levels) != 0) + 1}
            changed += len(change_days) / n_total
        lower = sweep.lower - _rs_oracle.LAMBDAS[:, None] * over - _rs_oracle.MUS[None, :] * changed
        assert np.max(lower) <= cost + 1e-12
    low, achievable = _rs_oracle.bounds(sweep, overrun=0.02, change_fraction=0.5)
    assert low <= achievable
