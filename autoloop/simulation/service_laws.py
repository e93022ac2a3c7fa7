"""Per-pod response laws for the pod-level service models (`service_pods`), and their parameters.

Contract: numpy only, pure functions, no I/O. These models were written apart from the loop engine
and of a different form from `service.simulate_step` (one queue for the whole service): each pod
is its own queue whose speed depends on the pod's CPU size, so at equal utilisation small pods
answer slower than large ones. Two laws:

* `erlang`: an M/M/c queue per pod. Requests are single-threaded; a pod of `x` cores runs
  `c = ceil(x)` workers, each at `min(1, x / c)` of a core, so a 0.5-core pod serves a request at
  half speed. The p95 wait comes from the Erlang-C tail `P(W > t) = C(c, a) e^{-(cμ-λ)t}`
  (Kleinrock, Queueing Systems vol. 1, §3.5).
* `ps`: a processor-sharing pod (M/G/1-PS, same reference §4.4) whose requests may use up to
  `parallelism` cores each; mean response `S / (1 - ρ)` with `S = work / min(x, parallelism)`, and
  garbage-collection pressure that slows a pod whose working set nears its memory limit.

`draw_params(family, rng)` draws one service's parameters per seed from wide ranges, so a policy
cannot be tuned to one service.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Final, Literal

import numpy as np

MIB: Final[float] = 1024.0**2
Law = Literal["erlang", "ps"]
# Latency reported for a saturated pod: a typical 5 s client/ingress timeout.
TIMEOUT_S: Final[float] = 5.0
# Lognormal spread of service time (σ = 0.3): p95/p50 = e^{1.645·0.3} ≈ 1.64.
SERVICE_P95_FACTOR: Final[float] = math.exp(1.6448536269514722 * 0.3)
# Exponential tail: the 95th percentile of an exponential is its mean times ln 20.
LN20: Final[float] = math.log(20.0)
# Above this fraction of its memory limit a garbage-collected runtime spends CPU collecting.
GC_PRESSURE_START: Final[float] = 0.85


@dataclass(frozen=True)
class PodParams:
    """One service's behaviour, drawn per seed (`draw_params`)."""

    law: Law
    work_s: float
    """CPU seconds one request needs on a full, warm core."""
    parallelism: float
    """Cores one request can use at once (`ps` law)."""
    overhead_cores: float
    """CPU every running pod burns regardless of load (runtime, sidecar, probes)."""
    ready_delay_s: float
    """From pod start to ready (image pull, init, readiness probe): 30-90 s."""
    cold_factor: float
    """Service-time multiplier right after start (JIT, connection pools); decays with `warm_tau_s`."""
    warm_tau_s: float
    memory_base: float
    """Working set of an idle, cold pod (bytes)."""
    cache_bytes: float
    """Cache that fills after start, with time constant `warm_tau_s` (bytes)."""
    cache_speedup: float
    """How much slower a request is with an empty cache (multiplier - 1)."""
    memory_per_inflight: float
    """Bytes each request in flight holds."""
    gc_slowdown: float
    """Service-time multiplier - 1 at 100 % of the memory limit (`ps` law)."""


def draw_params(law: Law, rng: np.random.Generator) -> PodParams:
    """A service of the family `law`, its parameters drawn from wide, documented ranges."""
    u = rng.uniform
    return PodParams(
        law=law,
        work_s=u(0.01, 0.03) if law == "erlang" else u(0.02, 0.06),
        parallelism=u(1.5, 3.0),
        overhead_cores=u(0.02, 0.08),
        ready_delay_s=u(30.0, 90.0),
        cold_factor=u(1.5, 3.0),
        warm_tau_s=u(120.0, 900.0),
        memory_base=u(150.0, 300.0) * MIB,
        cache_bytes=u(100.0, 400.0) * MIB,
        cache_speedup=u(0.3, 1.0),
        memory_per_inflight=u(1.0, 4.0) * MIB if law == "erlang" else u(2.0, 8.0) * MIB,
        gc_slowdown=u(0.5, 2.0),
    )


def warm_multiplier(p: PodParams, age_s: np.ndarray, *, cold_start: bool, cache: bool) -> np.ndarray:
    """Service-time multiplier of pods `age_s` seconds after start (1 once warm)."""
    decay = np.exp(-np.maximum(age_s, 0.0) / p.warm_tau_s)
    m = np.ones_like(age_s)
    if cold_start:
        m = m * (1.0 + (p.cold_factor - 1.0) * decay)
    if cache:
        m = m * (1.0 + p.cache_speedup * decay)
    return m


def _erlang_c(c: int, a: float) -> float:
    """Probability that an arrival waits in M/M/c with offered load `a` = λ/μ (< c)."""
    term, total = 1.0, 1.0
    for k in range(1, c):
        term *= a / k
        total += term
    last = term * a / c / (1.0 - a / c)
    return last / (total + last)


def pod_response(
    p: PodParams, lam: float, cpu: float, mult: float, mem_ratio: float
) -> tuple[float, float, float, float]:
    """(p95 latency s, mean latency s, error ratio, CPU cores used) of one ready pod.

    `lam` requests/s reach it, `cpu` its cores, `mult` its warm-up multiplier, `mem_ratio` its
    working set over its memory limit. Load beyond capacity times out (errors)."""
    usable = max(cpu - p.overhead_cores, 0.01)
    work = p.work_s * mult
    if p.law == "erlang":
        c = max(1, math.ceil(usable))
        s = work / min(1.0, usable / c)
        cap = c / s
    else:
        c = 1
        work *= 1.0 + p.gc_slowdown * max(0.0, mem_ratio - GC_PRESSURE_START) / (1.0 - GC_PRESSURE_START)
        s = work / min(usable, p.parallelism)
        cap = usable / work
    if lam <= 0.0:
        return s * SERVICE_P95_FACTOR, s, 0.0, min(p.overhead_cores, cpu)
    errors = 0.0 if lam < cap else 1.0 - 0.98 * cap / lam
    served = min(lam, 0.98 * cap)
    used = min(cpu, p.overhead_cores + served * work)
    if lam >= 0.98 * cap:
        return TIMEOUT_S, TIMEOUT_S, errors, used
    if p.law == "erlang":
        a = served * s
        cw = _erlang_c(c, a)
        rate = c / s - served
        wait95 = math.log(cw / 0.05) / rate if cw > 0.05 else 0.0
        mean = s + cw / rate
        p95 = s * SERVICE_P95_FACTOR + wait95
    else:
        rho = served / cap
        mean = s / (1.0 - rho)
        p95 = max(s * SERVICE_P95_FACTOR, mean * LN20)
    return min(p95, TIMEOUT_S), min(mean, TIMEOUT_S), errors, used
