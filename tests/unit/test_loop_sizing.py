"""Replicas for the short-term load, pod resources for the long-term level, latency per pod size."""

from __future__ import annotations

import math

import numpy as np
import pytest

from autoloop.engines import learning, loop, safety
from autoloop.engines.loop import pieces, sizing
from autoloop.simulation import service_laws, service_pods

MIB = 2.0**20


def test_setpoint_rises_while_healthy_at_the_setpoint_and_backs_off_on_a_breach() -> None:
    st = loop.LoopState()
    sizing.learn_setpoint(st, 1.0, 0.6, 0.3, True, 0.8)  # healthy, at the prior setpoint 0.6
    assert st.setpoints["1"] == pytest.approx(0.6 + sizing.SETPOINT_STEP_UP)
    sizing.learn_setpoint(st, 1.0, 0.3, 0.3, True, 0.8)  # healthy far below it: nothing learned
    assert st.setpoints["1"] == pytest.approx(0.62)
    sizing.learn_setpoint(st, 1.0, 0.6, 0.9, True, 0.8)  # over the planning target at 0.6
    assert st.setpoints["1"] == pytest.approx(0.6 * sizing.SETPOINT_BACKOFF)


def test_a_breach_far_above_the_setpoint_or_far_below_it_leaves_the_setpoint() -> None:
    st = loop.LoopState(setpoints={"1": 0.6})
    assert "too few pods" in sizing.learn_setpoint(st, 1.0, 0.9, 2.0, False, 0.8)
    assert "too small" in sizing.learn_setpoint(st, 1.0, 0.2, 2.0, False, 0.8)
    assert st.setpoints == {"1": 0.6}


def test_an_unknown_smaller_pod_size_gets_a_proportionally_lower_setpoint() -> None:
    st = loop.LoopState(setpoints={"1": 0.8})
    # Worst case: a single-threaded request's service time grows as 1/size.
    assert sizing.setpoint(st, 0.5) == pytest.approx(0.4)
    assert sizing.setpoint(st, 2.0) == pytest.approx(0.8)
    assert sizing.setpoint(loop.LoopState(), 1.0) == sizing.SETPOINT_PRIOR


def test_halving_pods_is_not_chosen_when_the_latency_prior_says_it_costs_the_same() -> None:
    st = loop.LoopState(setpoints={"1": 0.8})
    # 40 pods' worth of load: granularity is no issue; halving gains nothing under the 1/size prior.
    assert sizing.cheapest_size(st, 1.0, 3200.0, 0.01, (0.1, 4.0), 0.1) == 1.0
    # Two big pods for a small load: halving saves a pod's worth and is chosen.
    big = loop.LoopState(setpoints={"4": 0.8})
    assert sizing.cheapest_size(big, 4.0, 30.0, 0.01, (0.1, 4.0), 0.1) == 2.0


def test_random_walk_forecast_follows_a_trend_with_an_upper_margin() -> None:
    hist = [
        learning.Experience(
            t=300.0 * k,
            replicas=4,
            cpu_request=1,
            memory_request=1,
            rps=100.0 * 1.05**k,
            cpu_per_pod=0.5,
            memory_per_pod=1,
            latency_p95=0.1,
            error_ratio=0,
            utilisation=0.5,
        )
        for k in range(12)
    ]
    upper, level = sizing.forecast(loop.LoopState(history=hist))
    # The level is the mean of the last three passes (their noise averages out).
    assert level == pytest.approx(100.0 * (1.05**9 + 1.05**10 + 1.05**11) / 3)
    # A steady 5 % growth a pass: drift log(1.05), no spread.
    assert upper == pytest.approx(level * 1.05, rel=1e-6)
    # A rise within the last window counts as the level.
    assert sizing.forecast(loop.LoopState(history=hist), recent=300.0)[1] == 300.0


def run_day(law: str, hours: float = 24.0) -> tuple[int, int, list[loop.Decision]]:
    """The loop on a pod-level service with a daily sine load; (restarting changes, OOM kills)."""
    params = service_laws.draw_params(law, np.random.default_rng(3))  # type: ignore[arg-type]
    dep = service_pods.Deployment(params, 10, 1.0, 1024 * MIB)
    cap = (1.0 - params.overhead_cores) / params.work_s
    slo = service_laws.pod_response(params, 0.8 * cap, 1.0, 1.0, 0.5)[0]
    cfg = loop.LoopConfig(
        namespace="ns",
        target=safety.Target(namespace="ns", kind="Deployment", name="web"),
        mode="Auto",
        bounds={"replicas": (1, 50), "cpu_request": (0.1, 4.0), "memory_request": (64 * MIB, 4096 * MIB)},
        latency_slo_seconds=slo,
    )
    engine, state = loop.LoopEngine(), loop.LoopState()
    settings = {"replicas": 10.0, "cpu_request": 1.0, "memory_request": 1024 * MIB}
    restarts, ooms, window, decisions = 0, 0, [], []
    for k in range(int(hours * 240)):
        t = 15.0 * (k + 1)
        rps = 2.5 / params.work_s * (1.0 + 0.6 * math.sin(2 * math.pi * t / 86_400.0))
        s = dep.step(t, 15.0, rps)
        ooms += s.oom_kills
        window.append(s)
        if len(window) == 20:
            obs = loop.Observation(
                settings=settings,
                rps=[w.rps for w in window],
                latency_p95=[w.latency_p95 for w in window],
                error_ratio=[w.error_ratio for w in window],
                cpu_per_pod=[w.cpu_per_pod for w in window],
                memory_per_pod=[w.memory_per_pod for w in window],
                oom_kills=sum(w.oom_kills for w in window),
                restarts=sum(w.restarts for w in window),
                rollout_complete=window[-1].rollout_complete,
                ready_fraction=window[-1].ready_fraction,
                pdb=safety.PdbStatus(present=False),
            )
            d, state = engine.step(cfg, state, obs, t)
            decisions.append(d)
            window = []
            if d.applied and d.settings:
                settings = {kn: d.settings[kn] for kn in loop.KNOBS}
                restarts += dep.apply(
                    round(settings["replicas"]), settings["cpu_request"], settings["memory_request"]
                )
    return restarts, ooms, decisions


@pytest.mark.parametrize("law", ["erlang", "ps"])
def test_a_day_on_a_pod_level_service_restarts_pods_at_most_six_times(law: str) -> None:
    restarts, ooms, decisions = run_day(law)
    print(restarts, ooms)
    assert restarts <= 6
    assert sum(d.restarts_pods for d in decisions if d.applied) == restarts
    # Replicas answered the daily cycle without restarting anything.
    assert sum(1 for d in decisions if d.applied and not d.restarts_pods) >= 4


def test_a_bursty_load_is_not_planned_above_the_highest_pass_of_the_hour() -> None:
    rows = [10.0, 100.0] * 6  # bursts: the log changes' spread alone would plan for ~40x the level
    hist = [
        learning.Experience(
            t=300.0 * k,
            replicas=4,
            cpu_request=1,
            memory_request=1,
            rps=r,
            cpu_per_pod=0.5,
            memory_per_pod=1,
            latency_p95=0.1,
            error_ratio=0,
            utilisation=0.5,
        )
        for k, r in enumerate(rows)
    ]
    upper, level = sizing.forecast(loop.LoopState(history=hist))
    assert level == pytest.approx(70.0)  # the last three passes: 100, 10, 100
    steps = np.diff(np.log(rows))
    assert upper == pytest.approx(100.0 * math.exp(max(float(np.mean(steps)), 0.0)))
    # A new high in the current window is planned for as it is.
    assert sizing.forecast(loop.LoopState(history=hist), recent=250.0)[0] >= 250.0


def test_the_hpa_formula_counts_what_pods_use_and_its_scale_up_policy() -> None:
    st = loop.LoopState(setpoints={"1": 0.5})
    # 10 pods at 90 % of 1 core at a 0.5 setpoint: ceil(10 x 0.9 / 0.5) = 18 pods.
    assert sizing.pods_for_use(10, 0.9, 1.0, 1.0, st) == 18
    # 25 pods asked for, 3 ready and saturated (1 core each), 22 starting at 0.05: 4.1 cores in
    # use, ceil(4.1 / 0.5) = 9 <= 25, so pods on their way are not asked for twice.
    assert sizing.pods_for_use(25, (3 * 1.0 + 22 * 0.05) / 25, 1.0, 1.0, st) == 9
    # The same 9 cores in use, in 2-core pods (the prior gives a larger pod no higher setpoint
    # than 0.5): ceil(9 / (2 x 0.5)) = 9.
    assert sizing.pods_for_use(10, 0.9, 1.0, 2.0, st) == 9
    # One HPA period: the larger of +4 pods and +100 %.
    assert [sizing.hpa_scale_up(n) for n in (1, 3, 4, 10)] == [5, 7, 8, 20]
    # A remedy: the formula, or at least one such period while pods die of overload.
    assert sizing.remedy_pods(st, 10, 0.9, 1.0, 1.0, overload=False) == 18
    assert sizing.remedy_pods(st, 10, 0.3, 1.0, 1.0, overload=True) == 20


def test_a_plan_takes_max_steps_while_the_slo_holds_and_not_while_it_is_broken() -> None:
    cur = {"replicas": 4.0, "cpu_request": 1.0, "memory_request": 512 * MIB}
    plan = {"replicas": 25.0, "cpu_request": 1.0, "memory_request": 512 * MIB}
    lo = {"replicas": 1.0, "cpu_request": 0.1, "memory_request": 64 * MIB}
    hi = {"replicas": 50.0, "cpu_request": 4.0, "memory_request": 4096 * MIB}
    assert pieces.within_limits(plan, cur, 0.5, lo, hi, slo_ok=True)["replicas"] == 6.0
    assert pieces.within_limits(plan, cur, 0.5, lo, hi, slo_ok=False)["replicas"] == 25.0
    # Broken: nothing shrinks, and the bounds still hold.
    down = {**plan, "replicas": 2.0, "cpu_request": 0.5}
    assert pieces.within_limits(down, cur, 0.5, lo, hi, slo_ok=False) == cur
    assert (
        pieces.within_limits({**plan, "replicas": 80.0}, cur, 0.5, lo, hi, slo_ok=False)["replicas"] == 50.0
    )
