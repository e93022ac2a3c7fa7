"""A pod-level model of one Deployment: rollouts, readiness, warm-up, OOM kills and crash loops.

Contract: numpy only, no I/O, no clock; deterministic for given parameters and inputs. Written
apart from the loop engine, of a different form from `service.simulate_step`: the service is a
set of pods, each with its own size, age, queue (`service_laws.pod_response`) and working set.

What it models, and where each rule comes from:
* Rolling update of a changed pod template with the Deployment defaults `maxSurge: 25%` (rounded
  up) and `maxUnavailable: 25%` (rounded down) (kubernetes/kubernetes pkg/controller/deployment,
  rolling.go); a replica change alone adds or removes pods without touching the others, and a
  ReplicaSet removes not-ready pods first, then the youngest (controller_utils.go ActivePods).
* A new or restarted container is ready after the service's readiness delay; it then runs slow
  while cold (`cold_start`) and while its cache fills (`cache`); the cache also fills memory.
* Memory = base + cache + bytes per request in flight (Little: in flight = λ × mean latency).
  Memory limit = request (Guaranteed QoS); above it the container is OOM-killed. Restarts back
  off 10 s doubling to 300 s, reset after 10 min of running (kubelet CrashLoopBackOff,
  pkg/kubelet/kubelet.go `backOffPeriod`, `MaxContainerBackOff`).
* Load is spread evenly over ready pods (kube-proxy); with no ready pod every request fails.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Final

import numpy as np

from autoloop.simulation import service_laws as laws

MAX_SURGE: Final[float] = 0.25
MAX_UNAVAILABLE: Final[float] = 0.25
BACKOFF_START_S: Final[float] = 10.0
BACKOFF_MAX_S: Final[float] = 300.0
BACKOFF_RESET_S: Final[float] = 600.0
GIB: Final[float] = 1024.0**3
# GCE N2 on-demand, us-central1 (as in `service`): USD per core hour and per GiB hour.
CPU_PRICE: Final[float] = 0.0316
MEMORY_PRICE: Final[float] = 0.0042


@dataclass
class Pod:
    revision: int
    cpu: float
    memory: float
    started: float
    ready_at: float
    crashes: int = 0
    backoff_until: float = -math.inf
    working_set: float = 0.0

    def running(self, t: float) -> bool:
        return t >= self.backoff_until

    def ready(self, t: float) -> bool:
        return self.running(t) and t >= self.ready_at


@dataclass(frozen=True)
class PodStep:
    """One step seen from outside, plus what an HPA reads (usage and requests of ready pods)."""

    rps: float
    latency_p95: float
    error_ratio: float
    cpu_per_pod: float
    memory_per_pod: float
    oom_kills: int
    restarts: int
    ready_fraction: float
    rollout_complete: bool
    cost_per_hour: float
    ready_cpu_used: float
    ready_cpu_requested: float
    ready_pods: int


@dataclass
class Deployment:
    """The Deployment's spec (replicas, template) and its pods."""

    params: laws.PodParams
    replicas: int
    cpu: float
    memory: float
    cold_start: bool = True
    cache: bool = True
    revision: int = 0
    pods: list[Pod] = field(default_factory=list)

    def __post_init__(self) -> None:
        # The service has been running for a long time before the bench starts: warm pods.
        self.pods = [self._new_pod(-1e6) for _ in range(self.replicas)]

    def _new_pod(self, t: float) -> Pod:
        return Pod(self.revision, self.cpu, self.memory, t, t + self.params.ready_delay_s)

    def apply(self, replicas: int, cpu: float, memory: float) -> bool:
        """Set the spec; a changed template starts a rollout. Returns whether pods restart."""
        self.replicas = max(int(replicas), 0)
        if abs(cpu - self.cpu) > 1e-9 or abs(memory - self.memory) > 1e-6:
            self.cpu, self.memory, self.revision = cpu, memory, self.revision + 1
            return True
        return False

    def _reconcile(self, t: float) -> None:
        n = self.replicas
        new = [p for p in self.pods if p.revision == self.revision]
        old = [p for p in self.pods if p.revision != self.revision]
        if not old:
            self.pods += [self._new_pod(t) for _ in range(n - len(new))]
            extra = len(self.pods) - n
            if extra > 0:
                for pod in sorted(self.pods, key=lambda p: (p.ready(t), -p.started))[:extra]:
                    self.pods.remove(pod)
            return
        surge, min_ready = math.ceil(MAX_SURGE * n), n - math.floor(MAX_UNAVAILABLE * n)
        while len(new) < n and len(self.pods) < n + surge:
            pod = self._new_pod(t)
            new.append(pod)
            self.pods.append(pod)
        for pod in sorted(old, key=lambda p: (p.ready(t), p.started)):
            ready_now = sum(1 for p in self.pods if p.ready(t))
            if ready_now - int(pod.ready(t)) >= min_ready:
                self.pods.remove(pod)

    def _crash(self, pod: Pod, t: float) -> None:
        pod.crashes = pod.crashes + 1 if t - pod.started < BACKOFF_RESET_S else 1
        pod.backoff_until = t + min(BACKOFF_START_S * 2.0 ** (pod.crashes - 1), BACKOFF_MAX_S)
        pod.started = pod.backoff_until
        pod.ready_at = pod.backoff_until + self.params.ready_delay_s

    def step(self, t: float, dt: float, rps: float) -> PodStep:
        """Advance `dt` seconds to `t` under `rps` offered requests per second."""
        self._reconcile(t)
        p = self.params
        running = [q for q in self.pods if q.running(t)]
        ready = [q for q in running if q.ready(t)]
        ages = np.array([t - q.started for q in running])
        mult = laws.warm_multiplier(p, ages, cold_start=self.cold_start, cache=self.cache)
        lam = rps / len(ready) if ready else 0.0
        p95s, used, used_ready, errors, ooms = [], 0.0, 0.0, 0.0, 0
        filled = 1.0 - np.exp(-np.maximum(ages, 0.0) / p.warm_tau_s)
        cache = p.cache_bytes * filled if self.cache else 0.0 * ages
        cache_memo: dict[tuple[float, float, float], tuple[float, float, float, float]] = {}
        for i, q in enumerate(running):
            if not q.ready(t):
                used += min(q.cpu, p.overhead_cores)
                q.working_set = p.memory_base + float(cache[i])
            else:
                key = (q.cpu, round(float(mult[i]), 3), round(q.working_set / q.memory, 2))
                if key not in cache_memo:
                    cache_memo[key] = laws.pod_response(p, lam, q.cpu, float(mult[i]), key[2])
                p95, mean, err, cpu = cache_memo[key]
                p95s.append(p95)
                used += cpu
                used_ready += cpu
                errors += err / len(ready)
                q.working_set = p.memory_base + float(cache[i]) + p.memory_per_inflight * lam * mean
            if q.working_set > q.memory:
                ooms += 1
                if q.ready(t) and ready:
                    errors += 0.5 / len(ready)  # its share of the step fails while it dies
                self._crash(q, t)
        cpu_ready = sum(q.cpu for q in ready)
        return PodStep(
            rps=rps,
            latency_p95=_mixture_p95(np.array(p95s)) if ready else laws.TIMEOUT_S,
            error_ratio=min(1.0, errors) if ready else 1.0,
            cpu_per_pod=used / max(len(running), 1),
            memory_per_pod=max((q.working_set for q in running), default=0.0),
            oom_kills=ooms,
            restarts=ooms,
            ready_fraction=sum(1 for q in ready if q.revision == self.revision) / max(self.replicas, 1),
            rollout_complete=all(q.revision == self.revision for q in self.pods)
            and sum(1 for q in ready) >= self.replicas,
            cost_per_hour=sum(q.cpu * CPU_PRICE + q.memory / GIB * MEMORY_PRICE for q in self.pods),
            ready_cpu_used=used_ready,
            ready_cpu_requested=cpu_ready,
            ready_pods=len(ready),
        )


def _mixture_p95(p95s: np.ndarray) -> float:
    """p95 of requests spread evenly over pods whose own tails are exponential-like:
    solve mean_i 0.05^(t / p95_i) = 0.05 for t by bisection."""
    if p95s.size == 1 or float(p95s.max() - p95s.min()) < 1e-6:
        return float(p95s.max())
    lo, hi = float(p95s.min()), float(p95s.max())
    for _ in range(30):
        mid = 0.5 * (lo + hi)
        if float(np.mean(0.05 ** (mid / p95s))) > 0.05:
            lo = mid
        else:
            hi = mid
    return 0.5 * (lo + hi)
