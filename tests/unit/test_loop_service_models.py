"""The pod-level service models bench/loop runs the engine on, and its HPA baseline."""

from __future__ import annotations

import dataclasses
import math

import numpy as np
import pytest

from autoloop.simulation import service_laws, service_pods
from bench import _loop_hpa, _loop_load

MIB = 2.0**20
PARAMS = dataclasses.replace(
    service_laws.draw_params("erlang", np.random.default_rng(0)), ready_delay_s=60.0, overhead_cores=0.05
)


def test_small_pods_answer_slower_at_equal_utilisation() -> None:
    # Same utilisation (0.6 of usable CPU) on a 0.5-core and a 1-core pod: the small pod serves
    # each single-threaded request at half speed, so its p95 is higher.
    def p95(cpu: float) -> float:
        cap = (cpu - PARAMS.overhead_cores) / PARAMS.work_s
        return service_laws.pod_response(PARAMS, 0.6 * cap, cpu, 1.0, 0.5)[0]

    assert p95(0.5) > 1.5 * p95(1.0)
    # Two cores (two workers, M/M/2) at the same utilisation wait less than one.
    assert p95(2.05) < p95(1.05)


def test_cold_pods_are_slower_until_warm() -> None:
    m = service_laws.warm_multiplier(
        PARAMS, np.array([0.0, 10 * PARAMS.warm_tau_s]), cold_start=True, cache=True
    )
    assert m[0] == pytest.approx(PARAMS.cold_factor * (1 + PARAMS.cache_speedup))
    assert m[1] == pytest.approx(1.0, abs=1e-3)


def test_overload_times_out_and_sheds() -> None:
    cap = (1.0 - PARAMS.overhead_cores) / PARAMS.work_s
    p95, _, errors, used = service_laws.pod_response(PARAMS, 2 * cap, 1.0, 1.0, 0.5)
    assert p95 == service_laws.TIMEOUT_S and errors == pytest.approx(1 - 0.98 / 2) and used <= 1.0


def test_a_template_change_rolls_25_percent_at_a_time_and_replicas_alone_restart_nothing() -> None:
    dep = service_pods.Deployment(PARAMS, 8, 1.0, 2048 * MIB)
    assert not dep.apply(10, 1.0, 2048 * MIB)  # scale out: the 8 old pods stay
    dep.step(15.0, 15.0, 10.0)
    assert sum(p.revision == 0 and p.started < 0 for p in dep.pods) == 8 and len(dep.pods) == 10
    dep = service_pods.Deployment(PARAMS, 8, 1.0, 2048 * MIB)
    assert dep.apply(8, 0.5, 2048 * MIB)
    t, seen_ready = 0.0, []
    while t < 1200:
        t += 15.0
        s = dep.step(t, 15.0, 10.0)
        seen_ready.append(sum(p.ready(t) for p in dep.pods))
        assert len(dep.pods) <= 8 + 2  # maxSurge 25 % of 8
        if s.rollout_complete:
            break
    assert s.rollout_complete and all(p.revision == 1 for p in dep.pods)
    assert min(seen_ready) >= 8 - 2  # maxUnavailable 25 % of 8
    # Surge 2 plus 2 unavailable: up to 4 new pods start at once, so at least two waves.
    assert t >= 2 * PARAMS.ready_delay_s


def test_oom_kills_back_off_like_crash_loop() -> None:
    small = dataclasses.replace(PARAMS, memory_base=300 * MIB, cache_bytes=0.0)
    dep = service_pods.Deployment(small, 1, 1.0, 200 * MIB)
    t, kills, starts = 0.0, 0, []
    while t < 1800:
        t += 15.0
        s = dep.step(t, 15.0, 1.0)
        if s.oom_kills:
            kills += 1
            starts.append(dep.pods[0].backoff_until - t)
    assert kills >= 4
    # 10 s, 20 s, 40 s, ... up to 300 s (kubelet CrashLoopBackOff).
    assert starts[:4] == [10.0, 20.0, 40.0, 80.0] and max(starts) <= service_pods.BACKOFF_MAX_S


def test_flash_crowd_triples_the_load_for_half_an_hour() -> None:
    t = np.arange(0, 7200, 60.0)
    m = _loop_load.flash_multiplier(t, 600.0)
    assert m[0] == 1.0 and m.max() == 3.0
    assert np.sum(m == 3.0) == pytest.approx(31, abs=1)  # 30 min held, one-minute samples


def step(ready: int, used: float, request: float = 1.0) -> service_pods.PodStep:
    return service_pods.PodStep(
        rps=0,
        latency_p95=0,
        error_ratio=0,
        cpu_per_pod=0,
        memory_per_pod=0,
        oom_kills=0,
        restarts=0,
        ready_fraction=1,
        rollout_complete=True,
        cost_per_hour=0,
        ready_cpu_used=used,
        ready_cpu_requested=ready * request,
        ready_pods=ready,
    )


def test_hpa_tolerance_scale_up_and_scale_down_stabilisation() -> None:
    hpa = _loop_hpa.Hpa(1, 50)
    # 10 pods at 75 % vs a 70 % target: ratio 1.07, inside the 0.1 tolerance.
    assert hpa.desired(0.0, 10, step(10, 7.5)) == 10
    # 10 pods at 140 %: ratio 2 -> 20 pods (scale-up limit max(2 x 10, 10 + 4) = 20).
    assert hpa.desired(15.0, 10, step(10, 14.0)) == 20
    # Load falls to 35 % of 20 pods: the raw recommendation is 10, but the highest
    # recommendation of the last 300 s (20) holds...
    assert hpa.desired(30.0, 20, step(20, 7.0)) == 20
    # ... until the window has passed.
    assert hpa.desired(30.0 + 301.0, 20, step(20, 7.0)) == 10
    # ceil(1.5 x 3) = 5, limited by max(2 x 3, 3 + 4) = 7: 5.
    assert hpa.desired(700.0, 3, step(3, 3 * 1.05)) == 5
    assert math.ceil(1.5 * 3) == 5
