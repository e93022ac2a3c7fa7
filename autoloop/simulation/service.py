"""A pure model of one HTTP service: offered load in, CPU, memory, latency and errors out.

Contract: numpy only, no I/O, no clock. Every function is deterministic for a given
``numpy.random.Generator`` state and draws its random numbers in a fixed order, so a seeded run
replays exactly. The model is used by the dev exporter (``autoloop.simulation.exporter``), by the
benchmarks and by tests; it has the physics an optimiser must respect:

* per-pod capacity (requests/s) = usable CPU cores / CPU seconds per request, where usable cores are
  the CPU limit, or the request times a burst factor when there is no limit;
* utilisation ρ = offered rps / (replicas × capacity); latency grows like a queue,
  ``base × (1 + ρ/(1−ρ))``, with p95/p99 above p50, capped at a request timeout;
* load beyond capacity (ρ > 1) is shed as errors;
* memory per pod = base + per_rps × rps/replicas; above the memory limit the pod is OOM-killed
  (counted, errors spike while it restarts);
* downstream services add their latency and (most of) their errors to the caller;
* faults (cpu-hog, memory-leak, latency, error-burst, bad-rollout) move the matching signals from
  their start time on.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Final, Literal

import numpy as np

MIB: Final[float] = 1024.0**2
GIB: Final[float] = 1024.0**3

# A container without a CPU limit may use idle node CPU beyond its request; 1.5× the request is a
# conservative stand-in for what a moderately packed node leaves free.
BURST_FACTOR_NO_LIMIT: Final[float] = 1.5
# Utilisation at which the queue term is evaluated once saturated; keeps latency finite (the
# timeout cap below then decides).
RHO_SATURATION: Final[float] = 0.99
# Typical ingress/proxy request timeout (nginx `proxy_read_timeout` defaults to 60 s; many services
# set ~10 s). Latency quantiles never exceed this.
REQUEST_TIMEOUT_SECONDS: Final[float] = 10.0
# Spread of the service time at zero load: lognormal with σ = 0.3 gives p95/p50 = e^(1.645·0.3) ≈ 1.64
# and p99/p50 = e^(2.326·0.3) ≈ 2.01, typical of a healthy, uncontended HTTP handler.
SERVICE_TIME_SIGMA: Final[float] = 0.3
Z_P95: Final[float] = 1.6448536269514722
Z_P99: Final[float] = 2.3263478740408408
# Queueing wait is exponential-like (M/M/1): its q-quantile is mean × ln(1/(1−q)).
WAIT_QUANTILE_P50: Final[float] = math.log(2.0)
WAIT_QUANTILE_P95: Final[float] = math.log(20.0)
WAIT_QUANTILE_P99: Final[float] = math.log(100.0)
# A healthy service still fails a few requests in a thousand (client aborts, deploys).
BASELINE_ERROR_RATIO: Final[float] = 0.001
# Fraction of requests that fail while an OOM-killed pod restarts within the step.
OOM_ERROR_RATIO: Final[float] = 0.5
# Gains with which a downstream service's latency / errors reach the caller: calls are sequential
# (latency adds fully); a retry or fallback rescues some downstream failures.
DOWNSTREAM_LATENCY_GAIN: Final[float] = 1.0
DOWNSTREAM_ERROR_GAIN: Final[float] = 0.9
# Fault strengths per unit magnitude.
CPU_HOG_FRACTION_PER_MAGNITUDE: Final[float] = 0.5  # of usable CPU per pod burnt by the hog
MEMORY_LEAK_BYTES_PER_SECOND: Final[float] = 1.0 * MIB  # per pod
LATENCY_FAULT_SECONDS: Final[float] = 0.2  # added to every quantile
ERROR_BURST_RATIO: Final[float] = 0.2
BAD_ROLLOUT_ERROR_RATIO: Final[float] = 0.1
BAD_ROLLOUT_LATENCY_FACTOR: Final[float] = 1.0  # latency × (1 + factor × magnitude)

# Prices: Google Compute Engine N2 predefined on-demand, us-central1
# (cloud.google.com/compute/vm-instance-pricing, "N2 standard": $0.031611 per vCPU hour,
# $0.004237 per GB hour), rounded.
CPU_PRICE_PER_CORE_HOUR: Final[float] = 0.0316
MEMORY_PRICE_PER_GIB_HOUR: Final[float] = 0.0042

FaultKind = Literal["cpu-hog", "memory-leak", "latency", "error-burst", "bad-rollout"]
FAULT_KINDS: Final[tuple[str, ...]] = ("cpu-hog", "memory-leak", "latency", "error-burst", "bad-rollout")


@dataclass(frozen=True)
class ServiceProfile:
    """How a service behaves under load; independent of how it is deployed."""

    base_rps: float = 50.0
    diurnal_amplitude: float = 0.0  # fraction of base_rps
    period_seconds: float = 86400.0
    cpu_seconds_per_request: float = 0.01
    memory_base_bytes: float = 128 * MIB
    memory_bytes_per_rps: float = 1 * MIB
    base_latency_seconds: float = 0.05
    noise: float = 0.05  # relative standard deviation of load and latency
    calls: tuple[str, ...] = ()  # downstream services, called sequentially


@dataclass(frozen=True)
class Settings:
    """How a service is deployed: the knobs an optimiser turns."""

    replicas: int
    cpu_request_cores: float
    cpu_limit_cores: float | None
    memory_request_bytes: float
    memory_limit_bytes: float | None


@dataclass(frozen=True)
class Fault:
    """An injected failure, active from ``start_seconds`` on."""

    kind: FaultKind
    start_seconds: float
    magnitude: float = 1.0


@dataclass(frozen=True)
class ServiceState:
    """What one step of the service looks like from the outside."""

    rps: float  # offered requests per second
    cpu_cores_per_pod: float
    memory_bytes_per_pod: float
    latency_p50_seconds: float
    latency_p95_seconds: float
    latency_p99_seconds: float
    error_ratio: float  # failed / offered, in [0, 1]
    oom_kills: int  # OOM kills during this step, across all pods
    utilisation: float  # ρ = offered CPU demand / usable CPU; > 1 means overloaded


def offered_load(profile: ServiceProfile, t_seconds: float, rng: np.random.Generator) -> float:
    """Requests/s offered at time ``t_seconds``: a diurnal sine with multiplicative noise, never < 0."""
    phase = 2.0 * math.pi * t_seconds / profile.period_seconds
    mean = profile.base_rps * (1.0 + profile.diurnal_amplitude * math.sin(phase))
    return max(0.0, mean * (1.0 + profile.noise * float(rng.standard_normal())))


def usable_cpu_cores(settings: Settings) -> float:
    """CPU cores one pod can use: its limit, or its request times the burst factor when unlimited."""
    if settings.cpu_limit_cores is not None:
        return settings.cpu_limit_cores
    return settings.cpu_request_cores * BURST_FACTOR_NO_LIMIT


def _active(fault: Fault | None, t_seconds: float, kind: str) -> float:
    """The fault's magnitude if it is of ``kind`` and has started, else 0."""
    if fault is None or fault.kind != kind or t_seconds < fault.start_seconds:
        return 0.0
    return max(0.0, fault.magnitude)


def _memory(
    profile: ServiceProfile,
    settings: Settings,
    rps: float,
    t_seconds: float,
    step_seconds: float,
    fault: Fault | None,
) -> tuple[float, int]:
    """Working set per pod and OOM kills this step.

    A leak grows memory linearly; each time it crosses the limit the pods are killed and restart
    from their steady-state need, so the working set is a sawtooth.
    """
    replicas = max(settings.replicas, 1)
    need = profile.memory_base_bytes + profile.memory_bytes_per_rps * rps / replicas
    limit = settings.memory_limit_bytes
    leak_magnitude = _active(fault, t_seconds, "memory-leak")
    if leak_magnitude > 0.0 and fault is not None:
        rate = MEMORY_LEAK_BYTES_PER_SECOND * leak_magnitude
        since = t_seconds - fault.start_seconds
        if limit is None or need >= limit:
            need += rate * since
        else:
            cycle = (limit - need) / rate  # seconds from restart to the next OOM
            need += rate * (since % cycle)
            crossed = math.floor(since / cycle) > math.floor((since - step_seconds) / cycle)
            if crossed and since >= cycle:
                return float(limit), settings.replicas
            return need, 0
    if limit is not None and need > limit:
        return float(limit), settings.replicas
    return need, 0


def simulate_step(
    profile: ServiceProfile,
    settings: Settings,
    t_seconds: float,
    rng: np.random.Generator,
    *,
    fault: Fault | None = None,
    downstream: Sequence[ServiceState] = (),
    step_seconds: float = 1.0,
) -> ServiceState:
    """One step of length ``step_seconds`` ending at ``t_seconds``.

    ``downstream`` holds this step's states of the services in ``profile.calls``.
    Random draws, in order: load noise (1), latency noise (1).
    """
    rps = offered_load(profile, t_seconds, rng)
    latency_noise = math.exp(profile.noise * float(rng.standard_normal()))
    replicas = max(settings.replicas, 0)

    usable = usable_cpu_cores(settings)
    hog = CPU_HOG_FRACTION_PER_MAGNITUDE * _active(fault, t_seconds, "cpu-hog") * usable
    hog = min(hog, usable)
    serving_cores = usable - hog
    capacity_rps = replicas * serving_cores / profile.cpu_seconds_per_request
    rho = rps / capacity_rps if capacity_rps > 0.0 else (math.inf if rps > 0.0 else 0.0)

    # Queueing latency: zero-load service time (lognormal quantiles) plus an M/M/1-like wait whose
    # mean is base × ρ/(1−ρ), evaluated at RHO_SATURATION once overloaded.
    rho_q = min(rho, RHO_SATURATION)
    base = profile.base_latency_seconds * latency_noise
    wait_mean = base * rho_q / (1.0 - rho_q)
    p50 = base + wait_mean * WAIT_QUANTILE_P50
    p95 = base * math.exp(Z_P95 * SERVICE_TIME_SIGMA) + wait_mean * WAIT_QUANTILE_P95
    p99 = base * math.exp(Z_P99 * SERVICE_TIME_SIGMA) + wait_mean * WAIT_QUANTILE_P99

    memory, oom_kills = _memory(profile, settings, rps, t_seconds, step_seconds, fault)

    shed = 0.0 if rho <= 1.0 else 1.0 - 1.0 / rho
    failures = [BASELINE_ERROR_RATIO, shed]
    if oom_kills:
        failures.append(OOM_ERROR_RATIO)
    failures.append(min(1.0, ERROR_BURST_RATIO * _active(fault, t_seconds, "error-burst")))

    added_latency = LATENCY_FAULT_SECONDS * _active(fault, t_seconds, "latency")
    rollout = _active(fault, t_seconds, "bad-rollout")
    latency_factor = 1.0 + BAD_ROLLOUT_LATENCY_FACTOR * rollout
    failures.append(min(1.0, BAD_ROLLOUT_ERROR_RATIO * rollout))

    d50 = d95 = d99 = 0.0
    for d in downstream:
        d50 += d.latency_p50_seconds
        d95 += d.latency_p95_seconds
        d99 += d.latency_p99_seconds
        failures.append(min(1.0, DOWNSTREAM_ERROR_GAIN * d.error_ratio))

    def quantile(own: float, down: float) -> float:
        value = own * latency_factor + added_latency + DOWNSTREAM_LATENCY_GAIN * down
        return min(value, REQUEST_TIMEOUT_SECONDS)

    success = 1.0
    for f in failures:
        success *= 1.0 - min(max(f, 0.0), 1.0)

    served_rps = min(rps, capacity_rps)
    cpu = (served_rps / replicas * profile.cpu_seconds_per_request + hog) if replicas else 0.0
    return ServiceState(
        rps=rps,
        cpu_cores_per_pod=min(cpu, usable),
        memory_bytes_per_pod=memory,
        latency_p50_seconds=quantile(p50, d50),
        latency_p95_seconds=quantile(p95, d95),
        latency_p99_seconds=quantile(p99, d99),
        error_ratio=1.0 - success,
        oom_kills=oom_kills,
        utilisation=rho,
    )


def cost_per_hour(
    settings: Settings,
    *,
    cpu_price_per_core_hour: float = CPU_PRICE_PER_CORE_HOUR,
    memory_price_per_gib_hour: float = MEMORY_PRICE_PER_GIB_HOUR,
) -> float:
    """On-demand cost (USD/hour) of the requested resources of all replicas.

    Requests, not usage, are what a scheduler reserves and what node count (and so the bill)
    follows. Default prices: GCE N2 on-demand, us-central1 (see the constants above).
    """
    per_pod = (
        settings.cpu_request_cores * cpu_price_per_core_hour
        + settings.memory_request_bytes / GIB * memory_price_per_gib_hour
    )
    return settings.replicas * per_pod
