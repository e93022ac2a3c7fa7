"""The loop decision engine: bad data, JSON state, determinism, rollback, damping, remedies."""

from __future__ import annotations

import itertools

import numpy as np
import pytest

from autoloop.engines import loop, safety
from autoloop.simulation import service
from tests.unit.loop_config import MIB, loop_config, observed

CFG = loop_config(
    bounds={"replicas": (1, 20), "cpu_request": (0.1, 4.0), "memory_request": (64 * MIB, 4096 * MIB)},
    error_slo_ratio=0.01,
)
PROFILE = service.ServiceProfile(base_rps=200.0, cpu_seconds_per_request=0.01)


def observe(settings: dict[str, float], t: float, rng: np.random.Generator) -> loop.Observation:
    return observe_load(settings, t, rng, PROFILE.base_rps)


def run(settings: dict[str, float], n: int, cfg: loop.LoopConfig = CFG, seed: int = 0):  # type: ignore[no-untyped-def]
    rng = np.random.default_rng(seed)
    engine, state, decisions = loop.LoopEngine(), loop.LoopState(), []
    for i in range(n):
        t = 300.0 * (i + 1)
        d, state = engine.step(cfg, state, observe(settings, t - 300, rng), t)
        state = loop.LoopState.model_validate_json(state.model_dump_json())
        decisions.append(d)
        if d.applied and d.settings:
            settings = {k: d.settings[k] for k in ("replicas", "cpu_request", "memory_request")}
    return decisions, state, settings


OVER = {"replicas": 10.0, "cpu_request": 1.0, "memory_request": 1024 * MIB}


def test_bad_metrics_mean_no_action() -> None:
    obs = observe(OVER, 0.0, np.random.default_rng(0)).model_copy(update={"latency_p95": [float("nan")]})
    d, state = loop.LoopEngine().step(CFG, loop.LoopState(), obs, 300.0)
    assert d.action == "none" and not d.applied and "metrics" in d.explanation.proposed
    assert state.history == [] and state.iteration == 1


def test_over_provisioned_service_gets_cheaper_within_bounds_and_state_stays_bounded() -> None:
    decisions, state, final = run(OVER, 70)
    start_cost, end_cost = CFG.cost(OVER), CFG.cost(final)
    assert end_cost < 0.7 * start_cost
    for d in decisions:
        if d.settings:
            assert all(CFG.bounds[k][0] <= d.settings[k] <= CFG.bounds[k][1] for k in CFG.bounds)
    assert len(state.history) <= loop.MAX_HISTORY and len(state.decisions) <= loop.MAX_DECISIONS
    assert state.model.fitted_on > 0
    # Every change carries its explanation and the validator's verdicts.
    change = next(d for d in decisions if d.action == "change")
    assert change.explanation.saw and change.explanation.proposed and change.verdicts


def test_deterministic_given_seed() -> None:
    a, _, _ = run(OVER, 15)
    b, _, _ = run(OVER, 15)
    assert [d.model_dump() for d in a] == [d.model_dump() for d in b]


def test_recommend_mode_never_applies() -> None:
    decisions, state, final = run(OVER, 20, cfg=CFG.model_copy(update={"mode": "Recommend"}))
    assert final == OVER and state.pending is None
    assert any(d.action == "change" and d.accepted and not d.applied for d in decisions)


def test_under_provisioned_only_remedies_while_slo_broken() -> None:
    settings = {"replicas": 2.0, "cpu_request": 0.5, "memory_request": 256 * MIB}
    start = dict(settings)
    rng, engine, state = np.random.default_rng(0), loop.LoopEngine(), loop.LoopState()
    broken_changes = 0
    for i in range(20):
        d, state = engine.step(CFG, state, observe(settings, 300.0 * i, rng), 300.0 * (i + 1))
        if d.action == "change" and d.explanation.saw["slo_met"] == 0.0:
            broken_changes += 1
            assert d.settings is not None
            assert all(d.settings[k] >= settings[k] for k in settings), "no knob may shrink while broken"
        if d.applied and d.settings:
            settings = {k: d.settings[k] for k in settings}
    assert broken_changes >= 1
    assert settings["replicas"] * settings["cpu_request"] > start["replicas"] * start["cpu_request"]
    assert d.explanation.saw["slo_met"] == 1.0


def test_rollback_to_last_good_when_slo_breaks_after_change() -> None:
    good = {"replicas": 4.0, "cpu_request": 1.0, "memory_request": 512 * MIB}
    bad = {"replicas": 1.0, "cpu_request": 0.5, "memory_request": 512 * MIB}
    rng = np.random.default_rng(0)
    obs = observe(bad, 1000.0, rng)
    # The last good settings are fresh and were good at this load (they expire and are tied to it).
    state = loop.LoopState(
        last_good=good,
        last_good_at=900.0,
        last_good_rps=float(np.mean(obs.rps)),
        change_times=[1000.0],
        pending=loop.Pending(
            decision_id="web-000001",
            applied_at=1000.0,
            previous=good,
            settings=bad,
            predicted_latency=0.1,
            strategy="large",
            ready_at=1000.0,  # its rollout finished: the settle window ran from there
        ),
    )
    d, state = loop.LoopEngine().step(CFG, state, obs, 1000.0 + CFG.settle_seconds)
    assert d.action == "rollback" and d.applied
    assert {k: d.settings[k] for k in good} == good  # type: ignore[index]
    assert "roll back" in d.explanation.proposed
    assert state.rollbacks == 1 and state.breaker_events == [1000.0 + CFG.settle_seconds]
    # The capacity that failed (1 x 0.5 cores) plus 10 %, per request/s seen, becomes a floor.
    seen_rps = d.explanation.saw["rps"]
    assert state.capacity_floor == pytest.approx(0.5 * 1.1 / seen_rps)


def test_damping_blocks_a_scale_down_soon_after_a_scale_up() -> None:
    rng = np.random.default_rng(0)
    state = loop.LoopState()
    engine = loop.LoopEngine()
    for i in range(8):  # learn on the over-provisioned service without acting
        _, state = engine.step(
            CFG.model_copy(update={"mode": "Recommend"}),
            state,
            observe(OVER, 300.0 * i, rng),
            300.0 * (i + 1),
        )
    now = 300.0 * 9
    state = state.model_copy(update={"last_up_at": now - 60})
    d, _ = engine.step(CFG, state, observe(OVER, now - 300, rng), now)
    assert d.action == "hold"
    # Same situation once the reverse-hold window has passed: the engine removes pods.
    later = state.model_copy(update={"last_up_at": now - CFG.reverse_hold_seconds - 1})
    d2, _ = engine.step(CFG, later, observe(OVER, now - 300, rng), now)
    assert d2.action == "change" and d2.settings is not None and d2.settings["replicas"] < OVER["replicas"]


def test_steady_service_settles_without_oscillating() -> None:
    decisions, _, _ = run(OVER, 90)
    applied = [(i, d) for i, d in enumerate(decisions) if d.applied and d.action == "change"]
    # Damping + hysteresis + deadband: the descent happens early, the last half is (nearly) quiet.
    assert applied and applied[0][0] < 20
    assert sum(1 for i, _ in applied if i >= 45) <= 2
    # No knob goes up, down, up again within the reverse-hold window (6 iterations of 5 min).
    for (i, a), (j, b) in itertools.pairwise(applied):
        if j - i < CFG.reverse_hold_seconds / 300:
            assert {a.explanation.direction, b.explanation.direction} != {"up", "down"}


def test_state_keeps_applied_decisions_lean_and_returns_them_whole() -> None:
    decisions, state, _ = run(dict(OVER), 30)
    changed = [d for d in decisions if d.action == "change"]
    assert changed and all(d.verdicts for d in changed)  # the caller gets every rule's verdict
    applied = [d.id for d in decisions if d.applied]
    # The state keeps only the last applied decisions, without verdicts or what was seen.
    assert [d.id for d in state.decisions] == applied[-loop.MAX_DECISIONS :]
    for kept in state.decisions:
        assert kept.verdicts == [] and kept.explanation.saw == {}


def test_daily_change_budget_stops_the_loop_for_the_day() -> None:
    free, _, _ = run(OVER, 30)
    capped, state, _ = run(OVER, 30, cfg=CFG.model_copy(update={"max_changes_per_day": 2}))
    assert sum(d.applied for d in free) > 2
    # 30 passes of 5 min are within one day: two changes, then the budget refuses with its reason.
    assert sum(d.applied for d in capped) == 2
    second = [i for i, d in enumerate(capped) if d.applied][1]
    refused = [d for d in capped[second + 1 :] if d.action == "change" and not d.accepted]
    assert refused
    assert all("2 changes in the last 24h (max 2)" in " ".join(d.explanation.validator) for d in refused)
    assert state.change_times == [d.t for d in capped if d.applied]


def test_change_times_keep_the_last_day_bounded() -> None:
    day = safety.SECONDS_PER_DAY
    assert loop.change_times_after([0.0, 10.0, day], day + 5.0) == [10.0, day, day + 5.0]
    many = loop.change_times_after([float(k) for k in range(500)], 500.0)
    assert (
        len(many) == loop.MAX_CHANGE_TIMES
        and many[-1] == 500.0
        and many[0] == 500.0 - loop.MAX_CHANGE_TIMES + 1
    )


def test_a_downsizing_is_explained_by_what_it_was_planned_on() -> None:
    # The explanation's `predicted` holds what sizing used: a downsizing that was accepted keeps
    # the forecast utilisation under the learned setpoint. A latency the plan did not use (the
    # response model's curve) would read as a contradiction, e.g. 484 ms predicted for a 250 ms target.
    decisions, _, _ = run(OVER, 40)
    downs = [d for d in decisions if d.applied and d.explanation.direction == "down"]
    assert downs
    for d in downs:
        p = d.explanation.predicted
        assert p["utilisation"] <= 1.05 * p["setpoint"]
        assert "latency_p95" not in p


def observe_load(
    settings: dict[str, float], t: float, rng: np.random.Generator, rps: float
) -> loop.Observation:
    """An interval of the service simulator at `rps` requests/s (0.01 CPU s each)."""
    profile = service.ServiceProfile(base_rps=rps, cpu_seconds_per_request=0.01)
    s = service.Settings(
        replicas=int(settings["replicas"]),
        cpu_request_cores=settings["cpu_request"],
        cpu_limit_cores=None,
        memory_request_bytes=settings["memory_request"],
        memory_limit_bytes=settings["memory_request"],
    )
    return observed(
        settings, [service.simulate_step(profile, s, t + 10 * i, rng, step_seconds=10) for i in range(30)]
    )


def test_a_flash_crowd_is_met_in_one_pass_past_the_step_the_budget_and_the_cooldown() -> None:
    cfg = loop_config(error_slo_ratio=0.01)
    settings = {"replicas": 4.0, "cpu_request": 1.0, "memory_request": 1024 * MIB}
    rng, engine, state = np.random.default_rng(0), loop.LoopEngine(), loop.LoopState()
    for i in range(8):  # learn at 200 rps (2 cores of demand) without acting
        t = 300.0 * (i + 1)
        _, state = engine.step(
            cfg.model_copy(update={"mode": "Recommend"}),
            state,
            observe_load(settings, t - 300, rng, 200.0),
            t,
        )
    now = 300.0 * 9
    # Four changes in the last hour (the budget), the last one a minute ago (within the cooldown).
    state = state.model_copy(update={"change_times": [now - 3000, now - 2000, now - 1000, now - 60]})
    # 1,500 rps need 15 cores: at the prior setpoint 0.6, 25 one-core pods; 4 are overloaded.
    d, state = engine.step(cfg, state, observe_load(settings, now - 300, rng, 1500.0), now)
    assert d.explanation.saw["slo_met"] == 0.0
    assert d.action == "change" and d.applied and d.settings is not None
    # One pass: 4 -> 25 pods (+525 %), where 50 % steps would take five passes.
    assert d.settings["replicas"] >= 25
    why = {v.rule: v.reason for v in d.verdicts}
    for rule in ("maxStep", "changeBudget", "cooldown"):
        assert "SLO is broken now and the change only adds capacity" in why[rule]
    # The explanation (the status' decision text) says so in one line.
    assert d.explanation.validator == [
        "accepted: the SLO is broken now and the change only adds capacity (remedy); "
        "exempt from maxStep, cooldown, changeBudget"
    ]
    assert not d.restarts_pods


def test_a_flash_crowd_remedy_still_stays_within_the_bounds() -> None:
    cfg = loop_config(
        error_slo_ratio=0.01,
        bounds={"replicas": (1, 12), "cpu_request": (0.1, 4.0), "memory_request": (64 * MIB, 4096 * MIB)},
    )
    settings = {"replicas": 4.0, "cpu_request": 1.0, "memory_request": 1024 * MIB}
    rng, engine, state = np.random.default_rng(0), loop.LoopEngine(), loop.LoopState()
    for i in range(8):
        t = 300.0 * (i + 1)
        _, state = engine.step(
            cfg.model_copy(update={"mode": "Recommend"}),
            state,
            observe_load(settings, t - 300, rng, 200.0),
            t,
        )
    d, _ = engine.step(cfg, state, observe_load(settings, 300.0 * 8, rng, 1500.0), 300.0 * 9)
    assert d.applied and d.settings is not None and d.settings["replicas"] == 12


def test_a_shrink_still_takes_max_steps_and_the_budget() -> None:
    # The SLO holds: a scale-down is no remedy; it moves at most 50 % and waits for the budget.
    decisions, _, _ = run({"replicas": 20.0, "cpu_request": 1.0, "memory_request": 1024 * MIB}, 30)
    downs = [d for d in decisions if d.applied and d.explanation.direction == "down"]
    assert downs
    prev = 20.0
    for d in decisions:
        if d.applied and d.settings:
            if d.settings["replicas"] < prev:
                assert d.settings["replicas"] >= prev - max(prev * 0.5, 1.0)
            prev = d.settings["replicas"]
    refused = [d for d in decisions if d.action == "change" and not d.accepted]
    assert all("remedy" not in " ".join(d.explanation.validator) for d in refused)
