"""The pure helpers of the ResourceAllocation operator and of `metrics.demand`."""

from __future__ import annotations

import math

import numpy as np
import pytest

from autoloop.api.resourceallocation import Capacity
from autoloop.engines import allocate, safety
from autoloop.metrics import demand
from autoloop.metrics.source import MetricsUnavailable, Series
from autoloop.operator import allocation_demand, kube
from autoloop.operator import resourceallocation as ra
from tests.unit.fake_source import FakeSource

GIB = 2.0**30
MIB = 2.0**20


def node(name: str, cpu: float, memory_gib: float) -> kube.Node:
    return kube.Node(
        name=name,
        labels={},
        annotations={},
        cpu_allocatable=cpu,
        memory_allocatable=memory_gib * GIB,
        pods_allocatable=110,
        unschedulable=False,
        ready=True,
    )


def workload(replicas: int, cpu: float | None, memory: float | None) -> kube.Workload:
    return kube.Workload(
        kind="Deployment",
        name="web",
        namespace="ns",
        replicas=replicas,
        ready_replicas=replicas,
        container="web",
        cpu_request=cpu,
        memory_request=memory,
        cpu_limit=None,
        memory_limit=None,
        selector={"app": "web"},
    )


@pytest.mark.parametrize(
    ("capacity", "want"),
    [
        # 10 % reserve: 16 → 14.4 cores, 64 → 57.6 GiB; 4 → 3.6, 8 → 7.2.
        (Capacity(reserve_percent=10), [("a", 14.4, 57.6), ("b", 3.6, 7.2)]),
        # A 10-core total override is split 16:4 = 8 and 2; memory keeps the reserve.
        (Capacity(reserve_percent=10, cpu="10"), [("a", 8.0, 57.6), ("b", 2.0, 7.2)]),
        # 36Gi split 64:8 → 32 and 4 GiB; no reserve on CPU.
        (Capacity(reserve_percent=0, memory="36Gi"), [("a", 16.0, 32.0), ("b", 4.0, 4.0)]),
    ],
)
def test_node_capacity(capacity: Capacity, want: list[tuple[str, float, float]]) -> None:
    got = ra.node_capacity([node("a", 16, 64), node("b", 4, 8)], capacity)
    assert [(n.name, round(n.cpu_cores, 6), round(n.memory_gib, 6)) for n in got] == want


def test_unmanaged_pods_take_their_share_of_each_node() -> None:
    pods = [
        # Managed: ns/web's own pods are what the allocation moves, so they do not count.
        kube.PodRequests("ns", "web-1", "a", {"app": "web", "pod": "x"}, 2.0, 4 * GIB),
        # Same labels in another namespace: not ours.
        kube.PodRequests("other", "web-1", "a", {"app": "web"}, 1.0, 2 * GIB),
        kube.PodRequests("kube-system", "dns", "b", {"k8s-app": "dns"}, 0.5, 1 * GIB),
        kube.PodRequests("ns", "batch", "b", {"app": "batch"}, 5.0, 1 * GIB),
    ]
    used = ra.requests_of_others(pods, "ns", [workload(3, 1.0, GIB)])
    assert used == {"a": (1.0, 2 * GIB), "b": (5.5, 2 * GIB)}
    got = ra.node_capacity([node("a", 16, 64), node("b", 4, 8)], Capacity(reserve_percent=10), used)
    # a: 14.4 - 1 = 13.4 cores, 57.6 - 2 = 55.6 GiB; b: 3.6 - 5.5 < 0 → 0 cores, 7.2 - 2 = 5.2 GiB.
    assert [(n.name, round(n.cpu_cores, 6), round(n.memory_gib, 6)) for n in got] == [
        ("a", 13.4, 55.6),
        ("b", 0.0, 5.2),
    ]
    # A total override is the pool given to these workloads: not reduced again.
    override = ra.node_capacity([node("a", 16, 64), node("b", 4, 8)], Capacity(cpu="10"), used)
    assert [round(n.cpu_cores, 6) for n in override] == [8.0, 2.0]


@pytest.mark.parametrize(
    ("horizon", "history", "sample", "want"),
    [
        (3600, 7 * 86400, 60, 300),  # long history: 12 steps per horizon
        (300, 120, 5, 20),  # 2 minutes of history: 25 s would give < 6 bins, 120 / 6 = 20 s
        (3600, 60, 15, 15),  # 60 / 6 = 10 s is finer than the 15 s samples
        (300, 0, 0, allocation_demand.MIN_FORECAST_STEP_SECONDS),  # nothing at all: the floor
    ],
)
def test_forecast_step(horizon: float, history: float, sample: float, want: float) -> None:
    assert allocation_demand.forecast_step(horizon, history, sample) == pytest.approx(want)


@pytest.mark.parametrize(
    ("current", "target", "want"),
    [
        # Down by more than 50 %: replicas 4 → 2, CPU 1 → 0.5, memory 256Mi → 128Mi (exactly 50 %).
        (
            {"replicas": 4, "cpu_request": 1.0, "memory_request": 256 * MIB},
            {"replicas": 1, "cpu_request": 0.05, "memory_request": 100 * MIB},
            {"replicas": 2, "cpu_request": 0.5, "memory_request": 128 * MIB},
        ),
        # Up: replicas 1 → 2 (at least one), CPU 0.3 → 0.45 (floored to the millicore grid).
        (
            {"replicas": 1, "cpu_request": 0.3, "memory_request": 256 * MIB},
            {"replicas": 5, "cpu_request": 1.0, "memory_request": 300 * MIB},
            {"replicas": 2, "cpu_request": 0.45, "memory_request": 300 * MIB},
        ),
        # 0.333 → 0.1 clamps at 0.1665, rounded up to 0.167 so the step stays under 50 %.
        (
            {"replicas": 3, "cpu_request": 0.333},
            {"replicas": 3, "cpu_request": 0.1},
            {"replicas": 3, "cpu_request": 0.167},
        ),
        # No current memory: straight to the target (safety's maxStep then refuses).
        (
            {"replicas": 3},
            {"replicas": 3, "memory_request": 64 * MIB},
            {"replicas": 3, "memory_request": 64 * MIB},
        ),
    ],
)
def test_step_toward(current: dict[str, float], target: dict[str, float], want: dict[str, float]) -> None:
    got = ra.step_toward(current, target)
    assert got.keys() == want.keys()
    for k in want:
        assert got[k] == pytest.approx(want[k]), k


def test_step_toward_passes_the_max_step_rule() -> None:
    current = {"replicas": 7.0, "cpu_request": 0.777, "memory_request": 333 * MIB}
    target = {"replicas": 1.0, "cpu_request": 3.0, "memory_request": 64 * MIB}
    change = safety.ProposedChange(
        target=safety.Target(namespace="ns", kind="Deployment", name="web"),
        current=current,
        proposed=ra.step_toward(current, target),
    )
    policy = safety.SafetyPolicy(owner_namespace="ns", target=change.target, max_step_percent=50)
    assert safety.max_step(change, policy, safety.SafetyContext(now=0)).passed


def test_infeasible_condition_names_budget_and_shortfall() -> None:
    err = allocate.AllocationInfeasibleError([allocate.BindingConstraint("budget", 0.03, 0.005, "USD/h")])
    reason, message = ra.infeasible_condition(err)
    assert reason == "BudgetTooLow"
    assert "spec.budget.maxCostPerHour allows 0.005" in message
    assert "short by 0.025 USD/h" in message  # 0.03 - 0.005


def test_infeasible_condition_pod_size_names_the_workload() -> None:
    err = allocate.AllocationInfeasibleError(
        [allocate.BindingConstraint("pod-size", 20.0, 16.0, "cores per pod (largest node)", workload="db")]
    )
    reason, message = ra.infeasible_condition(err)
    assert reason == "PodTooLarge"
    assert "pod-size for db" in message and "short by 4" in message


def test_forecast_error_relative_pinball() -> None:
    t = np.arange(0.0, 601.0, 50.0)
    measured = Series(timestamps=t, values=np.ones_like(t))
    previous = {"scoredAt": 100.0, "horizonSeconds": 300.0, "scoredCpu": 2.0}
    # Samples at 150..400 (6 of them) all 1.0 below the forecast 2.0: loss (1 - 0.95) × 1 = 0.05,
    # divided by the mean demand 1.0.
    assert allocation_demand.forecast_error(previous, measured, 0.95) == pytest.approx(0.05)
    # Under-forecast by 0.5: loss 0.95 × 0.5 = 0.475.
    assert allocation_demand.forecast_error({**previous, "scoredCpu": 0.5}, measured, 0.95) == pytest.approx(
        0.475
    )
    assert allocation_demand.forecast_error({}, measured, 0.95) is None
    # Only one sample (t = 600) after a forecast made at 550: not scored yet.
    assert allocation_demand.forecast_error({**previous, "scoredAt": 550.0}, measured, 0.95) is None


@pytest.mark.parametrize(
    ("previous", "now", "want"),
    [
        ({}, 1000.0, {"scoredAt": 1000.0, "scoredCpu": 1.5}),  # nothing kept yet: this one
        (
            {"scoredAt": 900.0, "scoredCpu": 2.0},
            1000.0,
            {"scoredAt": 900.0, "scoredCpu": 2.0},
        ),  # 100 s < 300 s
        (
            {"scoredAt": 700.0, "scoredCpu": 2.0},
            1000.0,
            {"scoredAt": 1000.0, "scoredCpu": 1.5},
        ),  # horizon over
    ],
)
def test_scored_forecast_kept_for_one_horizon(
    previous: dict[str, float], now: float, want: dict[str, float]
) -> None:
    assert allocation_demand.scored_forecast(previous, 1.5, now, 300.0) == want


@pytest.mark.parametrize(
    ("coverages", "want"), [([1.0, 0.5, 2.0], 2 / 3), ([0.99], 0.0), ([1.0], 1.0), ([], None)]
)
def test_sla_score(coverages: list[float], want: float | None) -> None:
    assert ra.sla_score(coverages) == (pytest.approx(want) if want is not None else None)


def test_covers_and_cost() -> None:
    knobs = {"replicas": 2.0, "cpu_request": 0.5, "memory_request": 1 * GIB}
    assert ra.covers(knobs, 1.0, 2 * GIB)  # 2 × 0.5 = 1 core, 2 × 1 GiB
    assert not ra.covers(knobs, 1.2, 2 * GIB)
    assert ra.covers(knobs, 1.5, 2 * GIB, share=0.5)  # half of 1.5 = 0.75 ≤ 1
    assert not ra.covers({"replicas": 2.0}, 0.1, 0.0)  # no requests: reserves nothing
    # 2 × (0.5 × 0.0316 + 1 × 0.0042) = 0.04 USD/h
    assert ra.cost_per_hour(knobs, 0.0316, 0.0042) == pytest.approx(0.04)


@pytest.mark.parametrize(
    ("replicas", "min_replicas", "want_min", "want_max"),
    [(3, 1, 1, 10), (8, 2, 2, 16), (2, 0, 1, 10), (1, 12, 12, 12)],
)
def test_workload_demand_bounds(replicas: int, min_replicas: int, want_min: int, want_max: int) -> None:
    d = ra.workload_demand(workload(replicas, 0.5, 256 * MIB), 1.2, 3 * GIB, min_replicas=min_replicas)
    assert (d.min_replicas, d.max_replicas) == (want_min, want_max)
    assert d.cpu_cores == 1.2 and d.memory_gib == pytest.approx(3.0)
    assert d.current_cpu_cores == 0.5 and d.current_memory_gib == pytest.approx(0.25)


def test_target_knobs_on_the_quantity_grid() -> None:
    a = allocate.WorkloadAllocation("web", 3, 0.125, 0.3, 0.0, 1.0, 0.0)
    # 0.3 GiB = 307.2 MiB, written as 308Mi (memory rounds up).
    assert ra.target_knobs(a) == {"replicas": 3.0, "cpu_request": 0.125, "memory_request": 308 * MIB}


def test_safety_policy_cooldown_and_bounds() -> None:
    nodes = (allocate.Node("a", 14.4, 57.6), allocate.Node("b", 3.6, 7.2))
    policy = ra.safety_policy("ns", workload(3, 0.5, 256 * MIB), nodes, min_replicas=2, interval_seconds=60)
    assert policy.cooldown_seconds == 59  # the interval less the 1 s a pass may run early
    assert policy.bounds["replicas"].min == 2 and policy.bounds["replicas"].max == 10
    assert policy.bounds["cpu_request"].max == 14.4
    assert policy.bounds["memory_request"].max == pytest.approx(57.6 * GIB)
    assert policy.max_step_percent == 50


def test_peak_forecast_short_history() -> None:
    # Two minutes of 5-second samples around 2 cores: the forecaster falls back to the last value;
    # the 0.95 peak sits at or above the level and within a few noise widths of it.
    rng = np.random.default_rng(0)
    t = 1_000_000.0 + np.arange(0, 120, 5.0)
    series = Series(timestamps=t, values=2.0 + rng.normal(0, 0.02, len(t)))
    peak, median, shift = allocation_demand.peak_forecast(series, horizon_seconds=300, quantile=0.95)
    assert 1.95 <= median <= 2.05
    assert median <= peak <= 2.5
    assert shift is None


def test_a_lasting_level_shift_is_recorded_once_per_shift() -> None:
    # Five days at 0.1 core, then two at 1 core (10x, lasting): a day-ahead forecast rests on the
    # new level, and the shift is in the status record; re-found a grid step away next pass it is
    # the same shift (no new Event), a shift days later is new.
    rng = np.random.default_rng(3)
    t = np.arange(0, 7 * 86_400, 300.0)
    at = 5 * 86_400 + 3600.0
    level = np.where(t < at, 0.1, 1.0) * (1 + 0.3 * np.sin(2 * np.pi * t / 86_400))
    series = Series(timestamps=t, values=level * np.exp(rng.normal(0, 0.05, len(t))))
    fc = allocation_demand.peak_forecast(series, horizon_seconds=86_400, quantile=0.95)
    assert fc.level_shift_at is not None and abs(fc.level_shift_at - at) <= 2 * 3600
    assert 1.0 < fc.peak < 2.0 and 0.8 < fc.median < 1.2
    d = allocation_demand.Demand(
        workload(1, 1.0, 1e9), fc.peak, 1e9, fc.median, None, series, {"cpu": fc.level_shift_at}
    )
    record = d.forecast_record(float(t[-1]), 86_400, {})
    assert record["cpuLevelShiftAt"] == fc.level_shift_at
    assert d.new_level_shifts({}) == {"cpu": fc.level_shift_at}
    assert d.new_level_shifts({"cpuLevelShiftAt": fc.level_shift_at - 3600}) == {}
    assert d.new_level_shifts({"cpuLevelShiftAt": fc.level_shift_at - 3 * 86_400}) == {
        "cpu": fc.level_shift_at
    }


def test_peak_forecast_needs_three_bins() -> None:
    series = Series(timestamps=np.array([0.0, 5.0]), values=np.array([1.0, 1.0]))
    with pytest.raises(ValueError, match="at least"):
        allocation_demand.peak_forecast(series, horizon_seconds=300, quantile=0.95)


# --- metrics.demand ------------------------------------------------------------------------------


def test_demand_queries_sum_over_pods_and_escape() -> None:
    cpu = demand.demand_query("cpu", namespace='n"s', workload="web")
    assert cpu.startswith("sum(rate(container_cpu_usage_seconds_total{") and 'namespace="n\\"s"' in cpu
    assert "avg" not in cpu
    assert demand.demand_query("memory", namespace="ns", workload="web").startswith(
        "sum(container_memory_working_set_bytes{"
    )
    assert 'service="web"' in demand.demand_query("rps", namespace="ns", workload="web")
    with pytest.raises(ValueError):
        demand.demand_query("gpu", namespace="ns", workload="web")


def test_fetch_history_long_series_one_query() -> None:
    end = 2_000_000.0
    source = FakeSource(first=end - 14 * 86400, end=end)
    s = demand.fetch_history(source, "q", start=end - 14 * 86400, end=end)
    # 14 days / 10,000 points = 120.96 s, rounded up to 121 s.
    assert source.calls == [(end - 14 * 86400, end, 121)]
    assert len(s) > demand.MIN_SAMPLES


def test_fetch_history_young_series_is_read_again_finer() -> None:
    end = 2_000_000.0
    source = FakeSource(first=end - 600, end=end)  # ten minutes of data in a two-week window
    s = demand.fetch_history(source, "q", start=end - 14 * 86400, end=end)
    assert len(source.calls) == 2
    start2, _, step2 = source.calls[1]
    assert start2 < end - 600 + 121  # from one coarse step before the first coarse sample
    # The fine grid spans up to 721 s in MIN_SAMPLES steps (~12 s): the 600 s of data give ≥ 49.
    assert step2 < 121 and len(s) >= 600 / step2 - 1


def test_fetch_history_series_younger_than_a_coarse_step() -> None:
    end = 2_000_000.0
    source = FakeSource(first=end - 60, end=end)  # the coarse grid sees nothing
    s = demand.fetch_history(source, "q", start=end - 14 * 86400, end=end)
    # Second query over the last two coarse steps (242 s) at the 5 s floor (242 / 60 < 5).
    assert source.calls[1] == (end - 242, end, demand.MIN_STEP_SECONDS)
    assert math.isclose(float(s.timestamps[-1]), end - 2, abs_tol=5)


def test_fetch_history_other_failures_propagate() -> None:
    source = FakeSource(first=0, end=100, fail="PrometheusUnreachable")
    with pytest.raises(MetricsUnavailable) as exc:
        demand.fetch_history(source, "q", start=0, end=100)
    assert exc.value.reason == "PrometheusUnreachable"


def test_managed_elsewhere_names_the_other_owner_only() -> None:
    w = workload(3, 1.0, GIB)
    assert kube.managed_elsewhere(w, "ResourceAllocation", "ns", "shop") is None  # nobody
    for ours in ("ResourceAllocation/ns/shop", "ns/shop"):  # ours, current and pre-0.2 form
        w.annotations[kube.MANAGED_BY_ANNOTATION] = ours
        assert kube.managed_elsewhere(w, "ResourceAllocation", "ns", "shop") is None
    w.annotations[kube.MANAGED_BY_ANNOTATION] = "OptimizationLoop/ns/shop"  # same name, other kind
    assert kube.managed_elsewhere(w, "ResourceAllocation", "ns", "shop") == "OptimizationLoop/ns/shop"
