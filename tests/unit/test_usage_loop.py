"""The usage loop: rightsizing requests from usage alone, through the safety validator."""

from __future__ import annotations

import numpy as np
import pytest

from autoloop.engines import loop, safety, usage_loop

MIB = 2.0**20
GIB = 2.0**30
DAY = 86_400.0
NOW = 3 * DAY
CFG = loop.LoopConfig(
    namespace="ns",
    target=safety.Target(namespace="ns", kind="Deployment", name="worker"),
    mode="Auto",
    bounds={"cpu_request": (0.05, 4.0), "memory_request": (64 * MIB, 8 * GIB)},
    max_step_percent=50.0,
    min_confidence=0.1,
    cooldown_seconds=600.0,
)
OVER = {"replicas": 3.0, "cpu_request": 2.0, "memory_request": 2 * GIB}


def observation(
    settings: dict[str, float],
    *,
    days: float = 2.0,
    cpu: float = 0.2,
    memory: float = 200 * MIB,
    **extra: object,
) -> usage_loop.UsageObservation:
    rng = np.random.default_rng(7)
    ts = NOW - 60.0 * np.arange(int(days * 1440))[::-1]
    daily = 1 + 0.3 * np.sin(2 * np.pi * ts / DAY)
    return usage_loop.UsageObservation(
        settings=settings,
        timestamps=ts.tolist(),
        cpu_per_pod=(cpu * daily * rng.uniform(0.9, 1.1, ts.size)).tolist(),
        memory_per_pod=(memory * rng.uniform(0.95, 1.0, ts.size)).tolist(),
        pdb=safety.PdbStatus(present=False),
        **extra,  # type: ignore[arg-type]
    )


def test_over_provisioned_requests_step_down_by_at_most_max_step() -> None:
    d = usage_loop.usage_step(CFG, observation(OVER), NOW, "worker-1")
    assert d.action == "change" and d.accepted and d.applied, d.explanation
    assert d.settings is not None
    # Usage peaks near 0.2 × 1.3 × 1.1 ≈ 0.29 cores and 200 MiB: both far below; a 50 % step at most.
    assert d.settings["cpu_request"] == pytest.approx(1.0)
    assert d.settings["memory_request"] == pytest.approx(1 * GIB)
    assert d.settings["replicas"] == 3.0  # without an SLO signal replicas are left alone
    assert d.explanation.direction == "down"
    assert "q0.900" in d.explanation.proposed and d.explanation.predicted["cpu_request_need"] < 0.4


def test_close_enough_requests_are_held() -> None:
    fitted = {"replicas": 3.0, "cpu_request": 0.33, "memory_request": 260 * MIB}
    d = usage_loop.usage_step(CFG, observation(fitted), NOW, "worker-2")
    assert d.action == "hold" and not d.applied, d.explanation.proposed


def test_recommend_mode_accepts_but_does_not_apply() -> None:
    d = usage_loop.usage_step(CFG.model_copy(update={"mode": "Recommend"}), observation(OVER), NOW, "w")
    assert d.action == "change" and d.accepted and not d.applied


@pytest.mark.parametrize(
    ("extra", "rule"),
    [
        ({"last_change_at": NOW - 60}, "cooldown"),  # changed a minute ago, cooldown 10 min
        ({"anomaly_active": True}, "anomalyFreeze"),
        ({"pdb": safety.PdbStatus(present=True, disruptions_allowed=0)}, "pdbHeadroom"),
    ],
)
def test_every_change_passes_the_safety_validator(extra: dict[str, object], rule: str) -> None:
    obs = observation(OVER).model_copy(update=extra)
    d = usage_loop.usage_step(CFG, obs, NOW, "w")
    assert d.action == "change" and not d.accepted and not d.applied
    assert [v.rule for v in d.verdicts if not v.passed] == [rule]


def test_an_oom_since_the_last_change_freezes_every_decrease() -> None:
    obs = observation(OVER, oom_times=[NOW - 120.0], last_change_at=NOW - DAY)
    d = usage_loop.usage_step(CFG, obs, NOW, "w")
    assert not d.accepted and any(v.rule == "sloGuard" and not v.passed for v in d.verdicts)


def test_memory_below_usage_grows() -> None:
    tight = {"replicas": 2.0, "cpu_request": 0.3, "memory_request": 150 * MIB}
    d = usage_loop.usage_step(CFG, observation(tight), NOW, "w")
    assert d.settings is not None and d.settings["memory_request"] > 150 * MIB and d.accepted


def test_too_little_history_or_no_knob_means_no_action() -> None:
    assert usage_loop.usage_step(CFG, observation(OVER, days=0.01), NOW, "w").action == "none"
    bare = CFG.model_copy(update={"bounds": {"replicas": (1.0, 5.0)}})
    assert usage_loop.usage_step(bare, observation(OVER), NOW, "w").action == "none"
    nans = observation(OVER).model_copy(update={"cpu_per_pod": [float("nan")] * 2880})
    d = usage_loop.usage_step(CFG, nans, NOW, "w")
    assert d.action == "none" and "usable cpu samples" in d.explanation.proposed
