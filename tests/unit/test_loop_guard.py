"""Judging a change after its rollout, OOM kills as first-class signals, expiring evidence, and the
circuit breaker that stops a rollback storm."""

from __future__ import annotations

import pytest

from autoloop.engines import learning, loop, safety
from autoloop.engines.loop import guard, models, pieces, sizing
from tests.unit.loop_config import MIB, loop_config

CFG = loop_config()
GOOD = {"replicas": 4.0, "cpu_request": 1.0, "memory_request": 512 * MIB}
SMALL = {"replicas": 3.0, "cpu_request": 1.0, "memory_request": 512 * MIB}


def obs(
    settings: dict[str, float],
    *,
    rps: float = 200.0,
    p95: float = 0.1,
    errors: float = 0.001,
    memory: float = 200 * MIB,
    oom: int = 0,
    complete: bool = True,
    ready: float = 1.0,
) -> loop.Observation:
    n = 20
    cpu = rps * 0.01 / settings["replicas"]
    return loop.Observation(
        settings=settings,
        rps=[rps] * n,
        latency_p95=[p95] * n,
        error_ratio=[errors] * n,
        cpu_per_pod=[cpu] * n,
        memory_per_pod=[memory] * n,
        oom_kills=oom,
        restarts=oom,
        rollout_complete=complete,
        ready_fraction=ready,
        pdb=safety.PdbStatus(present=False),
    )


def pending_state(now: float) -> loop.LoopState:
    return loop.LoopState(
        last_good=GOOD,
        last_good_at=now - 600,
        last_good_rps=200.0,
        change_times=[now - 300],
        pending=loop.Pending(decision_id="web-000001", applied_at=now - 300, previous=GOOD, settings=SMALL),
    )


def test_a_change_is_not_judged_while_its_rollout_runs() -> None:
    now = 10_000.0
    # The SLO is broken during the rollout (pods replaced, cold): that is not the outcome.
    d, st = loop.LoopEngine().step(
        CFG, pending_state(now), obs(SMALL, p95=0.5, complete=False, ready=0.5), now
    )
    assert d.action == "hold" and "rollout" in d.explanation.proposed and st.pending is not None
    assert st.rollbacks == 0


def test_a_breach_at_readiness_is_judged_at_the_end_of_the_window_not_before() -> None:
    now, engine = 10_000.0, loop.LoopEngine()
    d, st = engine.step(CFG, pending_state(now), obs(SMALL, p95=0.5), now)  # cold pods just ready
    assert d.action == "hold" and "settling" in d.explanation.proposed
    # Warm by the window's end: kept (no rollback), but not a last good setting.
    d, st = engine.step(CFG, st, obs(SMALL), now + CFG.settle_seconds)
    assert st.pending is None and st.rollbacks == 0 and st.last_good == GOOD


def test_a_change_is_judged_only_after_a_healthy_settle_window_from_readiness() -> None:
    now, engine = 10_000.0, loop.LoopEngine()
    d, st = engine.step(CFG, pending_state(now), obs(SMALL), now)  # ready now: the window starts
    assert d.action == "hold" and "settling" in d.explanation.proposed
    assert st.pending is not None and st.pending.ready_at == now
    d, st = engine.step(CFG, st, obs(SMALL), now + CFG.settle_seconds)
    assert st.pending is None and st.last_good == SMALL and st.last_good_at == now + CFG.settle_seconds


def test_a_stuck_rollout_is_judged_failed_after_the_progress_deadline() -> None:
    now = 10_000.0
    st = pending_state(now)
    late = now - 300 + guard.ROLLOUT_DEADLINE_S + 1
    d, st = loop.LoopEngine().step(CFG, st, obs(SMALL, p95=0.5, complete=False, ready=0.5), late)
    assert d.action == "rollback" and d.applied and st.rollbacks == 1
    # A stuck rollout is no evidence about capacity: no floor is learned from it.
    assert st.capacity_floor == 0.0


def test_an_oom_raises_memory_and_is_never_rolled_back_into() -> None:
    now = 10_000.0
    big = {**GOOD, "memory_request": 1024 * MIB}
    recommend = CFG.model_copy(update={"mode": "Recommend"})
    _, st = loop.LoopEngine().step(
        recommend,
        pending_state(now).model_copy(update={"pending": None}),
        obs(big, memory=400 * MIB),
        now - 600,
    )
    st.pending = loop.Pending(decision_id="web-000001", applied_at=now - 300, previous=big, settings=SMALL)
    st.last_good = big
    # The change lowered memory near the steady working set (400 MiB); its pods are OOM-killed.
    d, st = loop.LoopEngine().step(CFG, st, obs(SMALL, p95=0.5, errors=0.2, memory=512 * MIB, oom=2), now)
    floor = sizing.memory_floor(st, now)
    assert floor >= 512 * MIB * sizing.OOM_BUMP_RATIO
    assert (
        d.settings is not None and d.settings["memory_request"] >= 512 * MIB * sizing.OOM_BUMP_RATIO * 0.999
    )
    assert d.action in ("rollback", "change") and d.applied


def steady_working_set_seen(now: float) -> models.LoopState:
    """A loop that saw one healthy pass at a 150 MiB working set (512 MiB limit) 10 minutes ago."""
    recommend = CFG.model_copy(update={"mode": "Recommend"})
    st = pending_state(now).model_copy(update={"pending": None})
    _, st = loop.LoopEngine().step(recommend, st, obs(GOOD, memory=150 * MIB), now - 600)
    return st


def test_an_oom_far_above_the_steady_working_set_is_answered_with_replicas_not_memory() -> None:
    now = 10_000.0
    st = steady_working_set_seen(now)
    # Overloaded pods are killed with their queues' memory: 150 MiB steady, 512 MiB limit.
    d, st = loop.LoopEngine().step(
        CFG, st, obs(GOOD, rps=400.0, p95=2.0, errors=0.2, memory=512 * MIB, oom=3), now
    )
    assert sizing.memory_floor(st, now) < 512 * MIB
    assert d.action == "change" and d.settings is not None
    assert (
        d.settings["replicas"] > GOOD["replicas"] and d.settings["memory_request"] == GOOD["memory_request"]
    )


def test_memory_is_never_planned_below_the_working_set_plus_margin() -> None:
    st = loop.LoopState(since=0.0)
    sizing.note_memory(st, 400 * MIB, 1024 * MIB, False, 0.2, now=100.0)
    assert sizing.memory_floor(st, 100.0) == pytest.approx(480 * MIB, rel=1e-4)
    # Even at a resize slot after a day of observation, memory does not go below the floor.
    plan = sizing.memory_plan(st, 1024 * MIB, 86_400.0 - 1, True, 400 * MIB)
    assert plan >= 800 * MIB * (1 - 1e-4)  # twice the steady peak: rollouts swell working sets
    # The floor expires a day after its last rise.
    assert sizing.memory_floor(st, 100.0 + sizing.MEMORY_FLOOR_TTL_S) == 0.0


def test_last_good_expires_and_is_tied_to_its_load() -> None:
    st = loop.LoopState(last_good=GOOD, last_good_at=0.0, last_good_rps=200.0)
    assert guard.good_for(st, 250.0, 3600.0) == GOOD
    assert guard.good_for(st, 200.0 * guard.LAST_GOOD_LOAD_BAND * 1.1, 3600.0) is None
    assert guard.good_for(st, 200.0, guard.LAST_GOOD_TTL_S + 1) is None


def test_capacity_floor_expires() -> None:
    st = loop.LoopState()
    guard.raise_floor(st, SMALL, 200.0, now=0.0)
    with_floor = sizing.replicas_needed(st, 1.0, 200.0, 0.01, 60.0, guard.FLOOR_TTL_S)
    without = sizing.replicas_needed(st, 1.0, 200.0, 0.01, guard.FLOOR_TTL_S + 1, guard.FLOOR_TTL_S)
    # 3 pods x 1 core x 1.1 per 200 rps is 3.3 cores -> 4 pods; later the setpoint alone: 2/0.6 -> 4.
    assert with_floor == 4 and without == 4
    assert st.capacity_floor == 3 * 1.1 / 200.0
    high = sizing.replicas_needed(st, 1.0, 200.0, 0.001, 60.0, guard.FLOOR_TTL_S)
    low = sizing.replicas_needed(st, 1.0, 200.0, 0.001, guard.FLOOR_TTL_S + 1, guard.FLOOR_TTL_S)
    assert high == 4 and low == 1


def test_the_breaker_opens_after_a_storm_and_freezes_everything_but_capacity() -> None:
    now = 20_000.0
    st = loop.LoopState(breaker_events=[now - 3000, now - 2000, now - 1000])
    history_obs = obs(GOOD, rps=20.0)
    engine = loop.LoopEngine()
    for k in range(3):
        _, st = engine.step(
            CFG.model_copy(update={"mode": "Recommend"}), st, history_obs, now - 900 + 300 * k
        )
    assert st.frozen_until is None
    # A fourth OOM pass within the hour exceeds the budget of three.
    d, st = engine.step(CFG, st, obs(GOOD, rps=20.0, oom=1, memory=300 * MIB), now)
    assert d.breaker is not None and "budget 3" in d.breaker and st.frozen_until == now + guard.FREEZE_S
    # While frozen the over-provisioned service is not shrunk and not restarted...
    d, st = engine.step(CFG, st, obs(GOOD, rps=20.0), now + 600)
    assert d.breaker is not None
    assert d.settings is None or (
        d.settings["replicas"] >= GOOD["replicas"] and d.settings["cpu_request"] == GOOD["cpu_request"]
    )
    # ... but a load that needs more pods still gets them (adding replicas restarts nothing).
    d, st = engine.step(CFG, st, obs(GOOD, rps=400.0, p95=0.3), now + 1200)
    assert d.action == "change" and d.settings is not None and d.settings["replicas"] > GOOD["replicas"]
    assert not d.restarts_pods
    # The breaker closes after the freeze.
    d, st = engine.step(
        CFG, st.model_copy(update={"pending": None}), obs(GOOD, rps=20.0), now + guard.FREEZE_S + 1
    )
    assert d.breaker is None


def test_the_loop_stops_when_the_slo_stays_broken_and_no_remedy_helps() -> None:
    st = loop.LoopState()
    cfg = CFG
    for k in range(guard.UNHELPFUL_REMEDIES + 1):
        now = 1000.0 + 300.0 * k
        guard.track_broken(st, {"latency_p95": 0.5, "error_ratio": 0.0}, cfg, False, now)
        st.change_times = [now]  # a remedy was applied at this pass, judged a settle window later
    assert st.remedies_unhelpful == guard.UNHELPFUL_REMEDIES
    reason = guard.breaker(st, 5000.0)
    assert reason is not None and "none helped" in reason


def test_a_remedy_is_not_judged_before_its_settle_window() -> None:
    st = loop.LoopState()
    broken = {"latency_p95": 0.5, "error_ratio": 0.0}
    guard.track_broken(st, broken, CFG, False, 1000.0)
    for k in range(1, 6):  # a remedy every 10 s: none has had time to show its effect
        st.change_times = [1000.0 + 10.0 * k]
        guard.track_broken(st, broken, CFG, False, 1000.0 + 10.0 * k + 9.0)
    assert st.remedies_unhelpful == 0 and guard.breaker(st, 1100.0) is None
    guard.track_broken(st, broken, CFG, False, 1050.0 + CFG.settle_seconds)
    assert st.remedies_unhelpful == 1


def test_a_remedy_that_helps_resets_the_count() -> None:
    st = loop.LoopState()
    guard.track_broken(st, {"latency_p95": 0.5, "error_ratio": 0.0}, CFG, False, 0.0)
    st.change_times = [1.0]
    guard.track_broken(st, {"latency_p95": 0.3, "error_ratio": 0.0}, CFG, False, 300.0)
    assert st.remedies_unhelpful == 0
    guard.track_broken(st, {"latency_p95": 0.1, "error_ratio": 0.0}, CFG, True, 600.0)
    assert st.broken_since is None


def test_pods_killed_by_overload_get_at_least_one_period_of_the_hpa_scale_up() -> None:
    now = 10_000.0
    st = steady_working_set_seen(now)
    # 200 rps need 2 cores: 4 pods at the setpoint; but pods die of overload (their queues' memory
    # at the 512 MiB limit, 150 MiB steady), and what dying pods use says little about the need.
    d, st = loop.LoopEngine().step(
        CFG, st, obs(GOOD, rps=200.0, p95=2.0, errors=0.3, memory=512 * MIB, oom=3), now
    )
    assert d.action == "change" and d.applied and d.settings is not None
    assert d.settings["replicas"] == sizing.hpa_scale_up(GOOD["replicas"]) == 8  # max(4 + 4, 2 x 4)
    assert d.settings["memory_request"] == GOOD["memory_request"]


def test_an_oom_in_a_breach_longer_than_the_kept_hour_is_still_told_apart() -> None:
    st = loop.LoopState()
    st.history = [
        learning.Experience(
            t=0.0, replicas=4, cpu_request=1, memory_request=512 * MIB, rps=200.0, cpu_per_pod=0.5,
            memory_per_pod=150 * MIB, latency_p95=0.1, error_ratio=0.001, utilisation=0.5,
        )
    ]  # fmt: skip
    assert sizing.remember_peak(st, CFG, 0.0) == 150 * MIB
    # An hour later every kept pass is a breach: the remembered peak still counts, for a day.
    st.history = [h.model_copy(update={"latency_p95": 2.0, "memory_per_pod": 512 * MIB}) for h in st.history]
    assert sizing.healthy_peak(st, CFG, 3600.0) == pytest.approx(150 * MIB, rel=1e-4)  # kept to 5 digits
    assert sizing.healthy_peak(st, CFG, sizing.MEMORY_FLOOR_TTL_S + 1) == 0.0


def test_a_remedy_is_judged_against_the_breach_when_it_was_applied() -> None:
    st = loop.LoopState()
    guard.track_broken(st, {"latency_p95": 0.3, "error_ratio": 0.0}, CFG, False, 0.0)
    # The load triples: the breach grows though the first remedy was applied (not helped).
    st.change_times = [0.0]
    guard.track_broken(st, {"latency_p95": 2.0, "error_ratio": 0.2}, CFG, False, 300.0)
    assert st.remedies_unhelpful == 1
    # The next remedy brings it from 20x the error SLO to 2x: it helped, though still worse than
    # the breach's start (1.5x); the count of remedies in a row that did not help restarts.
    st.change_times = [300.0]
    guard.track_broken(st, {"latency_p95": 0.4, "error_ratio": 0.0}, CFG, False, 600.0)
    assert st.remedies_unhelpful == 0


def test_the_breaker_lets_replicas_follow_the_load_down_once_the_storm_is_over() -> None:
    now = 20_000.0
    st = loop.LoopState(frozen_until=now + guard.FREEZE_S, frozen_reason="storm", breaker_events=[now - 900])
    st.history = [
        learning.Experience(
            t=now - 300.0 * k, replicas=12, cpu_request=1, memory_request=512 * MIB, rps=20.0,
            cpu_per_pod=0.02, memory_per_pod=150 * MIB, latency_p95=0.1, error_ratio=0.001, utilisation=0.02,
        )
        for k in (3, 2, 1)
    ]  # fmt: skip
    assert guard.calm(st, CFG, now)
    plan = {"replicas": 6.0, "cpu_request": 0.5, "memory_request": 256 * MIB}
    cur = {"replicas": 12.0, "cpu_request": 1.0, "memory_request": 512 * MIB}
    assert pieces.frozen(plan, cur, oom=False, calm=True) == {**cur, "replicas": 6.0}
    assert pieces.frozen(plan, cur, oom=False, calm=False) == cur
    # An OOM kill within the settle window, or a breach in it, is no calm.
    assert not guard.calm(st.model_copy(update={"breaker_events": [now - 60]}), CFG, now)
    broken = [h.model_copy(update={"latency_p95": 1.0}) for h in st.history]
    assert not guard.calm(st.model_copy(update={"history": broken}), CFG, now)


def test_pods_dying_of_overload_mid_rollout_get_replicas_and_the_rollout_is_still_judged() -> None:
    now = 10_000.0
    recommend = CFG.model_copy(update={"mode": "Recommend"})
    st = pending_state(now).model_copy(update={"pending": None})
    _, st = loop.LoopEngine().step(recommend, st, obs(SMALL, memory=150 * MIB), now - 600)
    rollout = {**SMALL, "memory_request": 600 * MIB}
    st.pending = loop.Pending(
        decision_id="web-000001", applied_at=now - 120, previous=SMALL, settings=rollout, restarts=True
    )
    d, st = loop.LoopEngine().step(
        CFG, st, obs(rollout, p95=2.0, errors=0.3, memory=600 * MIB, oom=3, complete=False, ready=0.5), now
    )
    assert d.action == "change" and d.applied and d.settings is not None and not d.restarts_pods
    assert d.settings["replicas"] > SMALL["replicas"]
    assert d.settings["memory_request"] == rollout["memory_request"]
    assert st.pending is not None and st.pending.decision_id == "web-000001" and st.pending.restarts
    assert st.pending.settings["replicas"] == d.settings["replicas"]


def test_a_judged_change_records_when_it_was_measured_to_the_second() -> None:
    # An epoch time, as in a cluster: six significant digits would move it by up to 5,000 s.
    now, engine = 1_796_675_104.47, loop.LoopEngine()
    st = pending_state(now)
    st.decisions = [
        models.Decision(
            id="web-000001",
            t=now - 300,
            action="change",
            accepted=True,
            applied=True,
            explanation=models.Explanation(saw={}, proposed="replicas 4->3"),
        )
    ]
    _, st = engine.step(CFG, st, obs(SMALL), now)
    _, st = engine.step(CFG, st, obs(SMALL, p95=0.1234567), now + CFG.settle_seconds)
    assert st.pending is None
    [judged] = [d for d in st.decisions if d.id == "web-000001"]
    assert judged.explanation.measured is not None
    assert judged.explanation.measured["at"] == round(now + CFG.settle_seconds)
    assert judged.explanation.measured["latency_p95"] == pytest.approx(0.1234567, rel=1e-5)
