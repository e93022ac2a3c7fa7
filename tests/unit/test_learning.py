"""Response-model refit/backtest/switch, Thompson sampling, the distilled policy."""

from __future__ import annotations

import numpy as np
import pytest

from autoloop.engines import learning


def exp(
    rho: float, rps: float = 100.0, replicas: float = 2.0, a: float = 0.05, b: float = 0.1
) -> learning.Experience:
    return learning.Experience(
        t=0.0,
        replicas=replicas,
        cpu_request=1.0,
        memory_request=2**30,
        rps=rps,
        cpu_per_pod=rho,
        memory_per_pod=100e6 + 1e6 * rps / replicas,
        latency_p95=a + b * rho / (1 - rho),
        error_ratio=0.0,
        utilisation=rho,
    )


def test_refit_recovers_latency_curve_and_memory_line() -> None:
    hist = [exp(r, rps=50 + 10 * i) for i, r in enumerate(np.linspace(0.1, 0.8, 12))]
    m = learning.refit(hist, version=3)
    assert (m.latency_base, m.latency_wait) == pytest.approx((0.05, 0.1), rel=1e-6)
    assert (m.memory_base, m.memory_per_rps) == pytest.approx((100e6, 1e6), rel=1e-6)
    assert m.version == 3 and learning.backtest(m, hist) == pytest.approx(0.0, abs=1e-9)
    # latency(rho) = target solved for rho: 0.05 + 0.1 x = 0.25 -> x = 2 -> rho = 2/3.
    assert m.max_utilisation(0.25) == pytest.approx(2 / 3)


def test_refit_needs_enough_points() -> None:
    with pytest.raises(ValueError):
        learning.refit([exp(0.5)] * (learning.MIN_POINTS_TO_FIT - 1))


def test_switch_only_when_backtest_improves() -> None:
    hist = [exp(r) for r in np.linspace(0.1, 0.8, 18)]
    wrong = learning.ResponseModel(latency_base=1.0, latency_wait=1.0)
    new, msg = learning.maybe_switch(wrong, hist)
    assert new.version == 1 and "switched" in msg
    same, msg2 = learning.maybe_switch(new, hist)
    assert same is new and "kept" in msg2


def test_thompson_prefers_the_strategy_that_succeeds() -> None:
    stats = learning.StrategyStats()
    for _ in range(20):
        stats = stats.update("small", True).update("large", False).update("medium", False)
    rng = np.random.default_rng(0)
    picks = [stats.choose(rng) for _ in range(200)]
    # Beta(21,1) vs Beta(1,21): "small" wins essentially always.
    assert picks.count("small") >= 195
    assert stats.mean("small") == pytest.approx(21 / 22)
    assert learning.StrategyStats.model_validate_json(stats.model_dump_json()) == stats


def test_distilled_policy_reproduces_threshold_rule() -> None:
    rng = np.random.default_rng(1)
    feats = rng.uniform(0, 1, size=(200, 3))
    acts = ["up" if f[0] > 0.7 else ("down" if f[0] < 0.3 else "hold") for f in feats]
    rules = learning.distil(feats.tolist(), acts)
    assert 1 <= len(rules) <= 2**learning.TREE_MAX_DEPTH
    assert learning.apply_rules(rules, [0.9, 0.5, 0.5]) == "up"
    assert learning.apply_rules(rules, [0.1, 0.5, 0.5]) == "down"
    assert learning.apply_rules(rules, [0.5, 0.5, 0.5]) == "hold"
