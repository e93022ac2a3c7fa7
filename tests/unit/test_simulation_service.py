"""Behaviour of the synthetic service model (autoloop.simulation.service)."""

from __future__ import annotations

import math

import numpy as np
import pytest

from autoloop.simulation import service as svc

MIB = 1024.0**2
GIB = 1024.0**3

# 100 rps × 0.01 CPU-s/request = 1 core of demand; 4 pods × 0.5 core limit = 2 cores → ρ = 0.5.
PROFILE = svc.ServiceProfile(base_rps=100.0, cpu_seconds_per_request=0.01, noise=0.0)
SETTINGS = svc.Settings(
    replicas=4,
    cpu_request_cores=0.5,
    cpu_limit_cores=0.5,
    memory_request_bytes=256 * MIB,
    memory_limit_bytes=512 * MIB,
)


def step(
    profile: svc.ServiceProfile = PROFILE,
    settings: svc.Settings = SETTINGS,
    t: float = 100.0,
    *,
    seed: int = 0,
    fault: svc.Fault | None = None,
    downstream: tuple[svc.ServiceState, ...] = (),
) -> svc.ServiceState:
    return svc.simulate_step(
        profile, settings, t, np.random.default_rng(seed), fault=fault, downstream=downstream
    )


def with_replicas(n: int) -> svc.Settings:
    return svc.Settings(n, 0.5, 0.5, 256 * MIB, 512 * MIB)


def test_noise_free_step_matches_hand_computation() -> None:
    s = step()
    # ρ = 1 core / (4 × 0.5) = 0.5; wait mean = 0.05 × 0.5/0.5 = 0.05.
    assert s.utilisation == pytest.approx(0.5)
    # p50 = 0.05 + 0.05 × ln2 = 0.08466
    assert s.latency_p50_seconds == pytest.approx(0.05 + 0.05 * math.log(2.0))
    # p95 = 0.05 × e^(1.645×0.3) + 0.05 × ln20 = 0.08184 + 0.14979 = 0.23163
    assert s.latency_p95_seconds == pytest.approx(0.05 * math.exp(svc.Z_P95 * 0.3) + 0.05 * math.log(20.0))
    # CPU per pod = 100/4 × 0.01 = 0.25 cores; memory = 128Mi + 1Mi × 25 = 153Mi.
    assert s.cpu_cores_per_pod == pytest.approx(0.25)
    assert s.memory_bytes_per_pod == pytest.approx(153 * MIB)
    assert s.error_ratio == pytest.approx(svc.BASELINE_ERROR_RATIO)
    assert s.oom_kills == 0
    assert s.latency_p50_seconds < s.latency_p95_seconds < s.latency_p99_seconds


@pytest.mark.parametrize("replicas", [3, 4, 6, 10])
def test_more_replicas_lower_latency_at_same_load(replicas: int) -> None:
    fewer = step(settings=with_replicas(replicas))
    more = step(settings=with_replicas(replicas + 1))
    assert more.utilisation < fewer.utilisation
    assert more.latency_p95_seconds < fewer.latency_p95_seconds
    assert more.latency_p50_seconds < fewer.latency_p50_seconds


def test_under_provisioned_service_sheds_load_as_errors() -> None:
    # 1 pod × 0.5 core = 50 rps of capacity for 100 rps offered: ρ = 2, half the load is shed.
    s = step(settings=with_replicas(1))
    assert s.utilisation == pytest.approx(2.0)
    assert s.error_ratio == pytest.approx(1.0 - (1 - svc.BASELINE_ERROR_RATIO) * 0.5)
    assert s.cpu_cores_per_pod == pytest.approx(0.5)  # throttled at the limit
    # Saturated: p99 = 0.05 × 2.01 + 0.05 × 99 × ln100 = 22.9 s → capped at the timeout.
    assert s.latency_p99_seconds == svc.REQUEST_TIMEOUT_SECONDS
    assert step(settings=with_replicas(4)).error_ratio < 0.01


def test_no_cpu_limit_bursts_above_request() -> None:
    limited = svc.Settings(2, 0.5, 0.5, 256 * MIB, None)
    unlimited = svc.Settings(2, 0.5, None, 256 * MIB, None)
    # Demand 1 core on 2 × 0.5 = 1 core → ρ = 1; unlimited: 2 × 0.75 cores → ρ = 2/3.
    assert step(settings=limited).utilisation == pytest.approx(1.0)
    assert step(settings=unlimited).utilisation == pytest.approx(2.0 / 3.0)


def test_memory_limit_below_need_oom_kills_every_pod() -> None:
    # Need = 128Mi + 25Mi = 153Mi > 150Mi limit.
    tight = svc.Settings(4, 0.5, 0.5, 128 * MIB, 150 * MIB)
    s = step(settings=tight)
    assert s.oom_kills == 4
    assert s.memory_bytes_per_pod == pytest.approx(150 * MIB)
    assert s.error_ratio >= svc.OOM_ERROR_RATIO
    assert step().oom_kills == 0


def test_memory_leak_ramps_then_oom_kills_and_restarts() -> None:
    # Headroom 512Mi − 153Mi = 359Mi at 1 MiB/s → an OOM kill every 359 s after the start.
    fault = svc.Fault("memory-leak", start_seconds=0.0)
    early = step(t=100.0, fault=fault)
    assert early.memory_bytes_per_pod == pytest.approx((153 + 100) * MIB)
    assert early.oom_kills == 0
    kills = [step(t=float(t), fault=fault).oom_kills for t in range(1, 800)]
    assert [t for t, k in zip(range(1, 800), kills, strict=True) if k] == [359, 718]
    after = step(t=400.0, fault=fault)  # restarted at 359 s, leaked 41 s since
    assert after.memory_bytes_per_pod == pytest.approx((153 + 41) * MIB)


@pytest.mark.parametrize(
    ("kind", "signal"),
    [
        ("cpu-hog", "utilisation"),
        ("cpu-hog", "cpu_cores_per_pod"),
        ("cpu-hog", "latency_p95_seconds"),
        ("memory-leak", "memory_bytes_per_pod"),
        ("latency", "latency_p50_seconds"),
        ("latency", "latency_p99_seconds"),
        ("error-burst", "error_ratio"),
        ("bad-rollout", "error_ratio"),
        ("bad-rollout", "latency_p95_seconds"),
    ],
)
def test_each_fault_raises_its_signal_only_after_start(kind: svc.FaultKind, signal: str) -> None:
    fault = svc.Fault(kind, start_seconds=50.0, magnitude=1.0)
    healthy = getattr(step(t=100.0), signal)
    before = getattr(step(t=40.0, fault=fault), signal)
    after = getattr(step(t=100.0, fault=fault), signal)
    assert before == pytest.approx(getattr(step(t=40.0), signal))
    assert after > healthy * 1.1


def test_faults_leave_unrelated_signals_alone() -> None:
    healthy = step()
    latency = step(fault=svc.Fault("latency", 0.0))
    assert latency.error_ratio == pytest.approx(healthy.error_ratio)
    burst = step(fault=svc.Fault("error-burst", 0.0))
    assert burst.latency_p95_seconds == pytest.approx(healthy.latency_p95_seconds)
    # error-burst magnitude 1 → 20 % failures on top of the baseline.
    assert burst.error_ratio == pytest.approx(1 - (1 - svc.BASELINE_ERROR_RATIO) * 0.8)


def test_downstream_latency_and_errors_propagate_to_caller() -> None:
    slow = step(fault=svc.Fault("latency", 0.0, magnitude=2.0))
    failing = step(fault=svc.Fault("error-burst", 0.0, magnitude=2.0))
    alone = step()
    behind_slow = step(downstream=(slow,))
    assert behind_slow.latency_p95_seconds == pytest.approx(
        alone.latency_p95_seconds + slow.latency_p95_seconds
    )
    behind_failing = step(downstream=(failing,))
    # 1 − (1 − 0.001) × (1 − 0.9 × e_d)
    expected = 1 - (1 - svc.BASELINE_ERROR_RATIO) * (1 - svc.DOWNSTREAM_ERROR_GAIN * failing.error_ratio)
    assert behind_failing.error_ratio == pytest.approx(expected)
    assert behind_failing.error_ratio > 0.3


def test_diurnal_load_peaks_at_quarter_period() -> None:
    profile = svc.ServiceProfile(base_rps=100.0, diurnal_amplitude=0.5, period_seconds=400.0, noise=0.0)
    rng = np.random.default_rng(0)
    # sin(2π·100/400) = 1 → 150 rps; sin(2π·300/400) = −1 → 50 rps.
    assert svc.offered_load(profile, 100.0, rng) == pytest.approx(150.0)
    assert svc.offered_load(profile, 300.0, rng) == pytest.approx(50.0)


def test_same_seed_replays_exactly_and_noise_varies() -> None:
    noisy = svc.ServiceProfile(noise=0.1)
    a = [step(noisy, t=float(t), seed=7) for t in range(5)]
    b = [step(noisy, t=float(t), seed=7) for t in range(5)]
    assert a == b
    assert step(noisy, seed=1) != step(noisy, seed=2)


def test_cost_per_hour_uses_requests() -> None:
    # 4 × (0.5 core × 0.0316 + 0.25 GiB × 0.0042) = 4 × 0.01685 = 0.0674 USD/h
    assert svc.cost_per_hour(SETTINGS) == pytest.approx(0.0674)
    assert svc.cost_per_hour(
        SETTINGS, cpu_price_per_core_hour=0.0, memory_price_per_gib_hour=1.0
    ) == pytest.approx(1.0)


# --- the exporter's pure parts (autoloop.simulation.exporter) ---------------------------------

from autoloop.simulation import exporter as exp  # noqa: E402


@pytest.mark.parametrize(
    ("text", "value"),
    [("128Mi", 128 * MIB), ("250m", 0.25), ("1.5", 1.5), ("2Gi", 2 * GIB), ("1k", 1000.0), ("1e3", 1000.0)],
)
def test_parse_quantity(text: str, value: float) -> None:
    assert exp.parse_quantity(text) == pytest.approx(value)


@pytest.mark.parametrize(
    ("text", "value"), [("0.05", 0.05), ("50ms", 0.05), ("1m30s", 90.0), ("24h", 86400.0)]
)
def test_parse_duration(text: str, value: float) -> None:
    assert exp.parse_duration(text) == pytest.approx(value)


@pytest.mark.parametrize("bad", ["", "12Xi", "abc", "1m30"])
def test_parse_rejects_garbage(bad: str) -> None:
    with pytest.raises(ValueError):
        exp.parse_duration(bad) if bad == "1m30" else exp.parse_quantity(bad)


def test_annotations_parse_and_bad_values_fall_back_to_defaults() -> None:
    p = exp.PREFIX
    warnings: list[str] = []
    spec = exp.spec_from_annotations(
        {
            p + "rps": "200",
            p + "cpu-per-request": "20m",
            p + "memory-base": "256Mi",
            p + "latency-base": "banana",  # bad → default 0.05
            p + "period": "10m",
            p + "calls": "db, cache ,",
            p + "fault": "memory-leak",
            p + "fault-start": "1700000000",
            p + "fault-magnitude": "-3",  # bad → 1.0
        },
        where="ns/web",
        warn=warnings.append,
    )
    assert len(warnings) == 2
    assert "ns/web" in warnings[0] and "latency-base" in warnings[0] and "fault-magnitude" in warnings[1]
    assert spec.profile.base_rps == 200.0
    assert spec.profile.cpu_seconds_per_request == pytest.approx(0.02)
    assert spec.profile.memory_base_bytes == 256 * MIB
    assert spec.profile.base_latency_seconds == svc.ServiceProfile().base_latency_seconds
    assert spec.profile.period_seconds == 600.0
    assert spec.profile.calls == ("db", "cache")
    assert (spec.fault_kind, spec.fault_start, spec.fault_magnitude) == ("memory-leak", 1.7e9, 1.0)
    assert exp.spec_from_annotations({p + "fault": "meteor"}).fault_kind is None


def test_settings_from_deployment_prefers_ready_replicas() -> None:
    dep = {
        "spec": {
            "replicas": 5,
            "template": {
                "spec": {
                    "containers": [
                        {
                            "name": "app",
                            "resources": {"requests": {"cpu": "250m"}, "limits": {"memory": "1Gi"}},
                        }
                    ]
                }
            },
        },
        "status": {"readyReplicas": 3},
    }
    s = exp.settings_from_deployment(dep)
    assert s == svc.Settings(3, 0.25, None, GIB, GIB)  # memory request defaults to the limit
    dep["status"] = {}
    assert exp.settings_from_deployment(dep).replicas == 5


def histogram_quantile(q: float, bounds: tuple[float, ...], cumulative: list[float]) -> float:
    """Prometheus' histogram_quantile: linear interpolation inside the bucket holding rank q·count."""
    rank = q * cumulative[-1]
    lower, below = 0.0, 0.0
    for b, c in zip(bounds, cumulative, strict=True):
        if c >= rank:
            return lower + (b - lower) * (rank - below) / (c - below)
        lower, below = b, c
    return bounds[-1]


@pytest.mark.parametrize("replicas", [3, 4, 8])
def test_histogram_quantiles_match_simulated_quantiles(replicas: int) -> None:
    state = step(settings=with_replicas(replicas))
    cdf = exp.latency_cdf(state, exp.LATENCY_BUCKETS)
    for q, want in (
        (0.5, state.latency_p50_seconds),
        (0.95, state.latency_p95_seconds),
        (0.99, state.latency_p99_seconds),
    ):
        got = histogram_quantile(q, exp.LATENCY_BUCKETS, cdf)
        # Buckets are 15 % wide, but the distribution is smooth: interpolation stays within 2 %.
        assert got == pytest.approx(want, rel=0.02), (q, replicas)


def test_histogram_of_saturated_service_sits_at_the_timeout() -> None:
    # ρ = 2: p95 = p99 = the 10 s timeout, a point mass the last bucket (8.9 s, 10 s] holds;
    # histogram_quantile interpolates inside it, so it reads between 8.9 s and 10 s.
    state = step(settings=with_replicas(1))
    assert state.latency_p95_seconds == svc.REQUEST_TIMEOUT_SECONDS
    cdf = exp.latency_cdf(state, exp.LATENCY_BUCKETS)
    assert 0.85 * svc.REQUEST_TIMEOUT_SECONDS < histogram_quantile(0.95, exp.LATENCY_BUCKETS, cdf) <= 10.0
    assert histogram_quantile(0.5, exp.LATENCY_BUCKETS, cdf) == pytest.approx(
        state.latency_p50_seconds, rel=0.02
    )


def _deployment(name: str, replicas: int, annotations: dict[str, str]) -> dict[str, object]:
    return {
        "metadata": {"namespace": "ns", "name": name, "annotations": annotations},
        "spec": {
            "replicas": replicas,
            "template": {"spec": {"containers": [{"name": "app", "resources": {"limits": {"cpu": "1"}}}]}},
        },
        "status": {"readyReplicas": replicas},
    }


def _pod(name: str) -> dict[str, object]:
    return {
        "metadata": {"name": name},
        "spec": {"containers": [{"name": "app", "resources": {"limits": {"cpu": "1"}}}]},
        "status": {"phase": "Running"},
    }


def _samples(sim: exp.Simulator) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    out = {}
    for family in exp.SimCollector(sim).collect():
        for s in family.samples:
            out[(s.name, tuple(sorted(s.labels.items())))] = s.value
    return out


def test_simulator_counts_requests_and_drops_series_of_deleted_pods() -> None:
    sim = exp.Simulator(seed=1)
    p = exp.PREFIX
    web = _deployment("web", 2, {p + "rps": "100", p + "calls": "db", p + "noise": "0"})
    # 1-core pods: web 2 × 100 rps capacity (ρ = 0.5), db 2 × 100 (ρ = 0.5): nothing is shed.
    db = _deployment("db", 2, {p + "rps": "100", p + "noise": "0", p + "latency-base": "0.2"})
    sim.observe(
        [web, db], {("ns", "web"): [_pod("web-a"), _pod("web-b")], ("ns", "db"): [_pod("db-a"), _pod("db-b")]}
    )
    for t in range(10):
        sim.step(1000.0 + t, 1.0)
    got = _samples(sim)
    ok = got[("http_requests_total", (("code", "200"), ("namespace", "ns"), ("service", "web")))]
    # 10 ticks × 100 rps = 1000 requests, ~0.2 % failing (own + downstream baseline errors).
    assert ok == pytest.approx(1000 * (1 - 0.001) * (1 - 0.9 * 0.001), rel=1e-6)
    # web's p50 includes db's (0.2 s base): web's latency sum/count exceeds db's mean.

    def key(service: str, suffix: str) -> tuple[str, tuple[tuple[str, str], ...]]:
        return (f"http_request_duration_seconds_{suffix}", (("namespace", "ns"), ("service", service)))

    assert got[key("web", "sum")] / got[key("web", "count")] > got[key("db", "sum")] / got[key("db", "count")]
    # CPU: 100 rps / 2 pods × 0.01 s = 0.5 core-s per second → 5 s after 10 ticks.
    cpu_key = (
        "container_cpu_usage_seconds_total",
        (("container", "app"), ("namespace", "ns"), ("pod", "web-a")),
    )
    assert got[cpu_key] == pytest.approx(5.0)
    sim.observe([web], {("ns", "web"): [_pod("web-b")]})
    after = _samples(sim)
    assert cpu_key not in after
    assert not any(dict(labels).get("service") == "db" for _, labels in after)


@pytest.mark.parametrize(
    ("selector", "labels", "selected"),
    [
        ({"matchLabels": {"app": "web"}}, {"app": "web", "x": "1"}, True),
        ({"matchLabels": {"app": "web"}}, {"app": "db"}, False),
        (
            {"matchExpressions": [{"key": "tier", "operator": "In", "values": ["a", "b"]}]},
            {"tier": "b"},
            True,
        ),
        ({"matchExpressions": [{"key": "tier", "operator": "NotIn", "values": ["a"]}]}, {"tier": "a"}, False),
        ({"matchExpressions": [{"key": "tier", "operator": "Exists"}]}, {}, False),
        ({}, {"app": "web"}, False),  # an empty selector selects nothing
    ],
)
def test_deployment_selector_matching(
    selector: dict[str, object], labels: dict[str, str], selected: bool
) -> None:
    dep = {"spec": {"selector": selector}}
    assert exp._selects(dep, {"metadata": {"labels": labels}}) is selected
