"""The family of service models bench/loop runs, behind one small interface.

Every family draws its parameters per seed (`build`), so no policy can be tuned to one service:
- `present`: the simulator written beside the loop engine (`autoloop.simulation.service`); new
  settings take effect at once (no rollout).
- `pods-erlang`: pod-level M/M/c pods (`service_pods` + `service_laws`, law `erlang`) with cold
  start, cache warm-up, 25 % rolling updates, memory growing with requests in flight, OOM kills and
  CrashLoopBackOff.
- `pods-ps`: the same lifecycle with processor-sharing pods and garbage-collection pressure.
- `pods-plain`: `pods-erlang` without cold start and cache warm-up (its rollouts still surge).

The latency SLO of each drawn service is derived, not chosen: the p95 that a warm 1-core pod of that
service gives at 80 % utilisation, so the usual way of running it (1-core pods kept below 80 %
busy) meets the SLO and a policy must earn any saving from there.
"""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass
from typing import Final, Protocol

import numpy as np

from autoloop.simulation import service, service_laws, service_pods

MIB: Final[float] = 2.0**20
FAMILIES: Final[tuple[str, ...]] = ("present", "pods-erlang", "pods-ps", "pods-plain")
# Utilisation of a warm 1-core pod at which the SLO's p95 is read off (see the module docstring).
SLO_UTILISATION: Final[float] = 0.8
# Mean CPU demand of a drawn service (cores): the 10 x 1-core start is over-provisioned on average.
DEMAND_CORES: Final[tuple[float, float]] = (1.5, 3.0)


class Model(Protocol):
    def apply(self, replicas: int, cpu: float, memory: float) -> bool: ...

    def step(self, t: float, dt: float, rps: float) -> service_pods.PodStep: ...


@dataclass
class Present:
    """`service.simulate_step` behind the `Model` interface; the memory limit equals the request."""

    profile: service.ServiceProfile
    settings: service.Settings
    rng: np.random.Generator

    def apply(self, replicas: int, cpu: float, memory: float) -> bool:
        restart = cpu != self.settings.cpu_request_cores or memory != self.settings.memory_request_bytes
        self.settings = service.Settings(int(replicas), cpu, None, memory, memory)
        return restart

    def step(self, t: float, dt: float, rps: float) -> service_pods.PodStep:
        prof = dataclasses.replace(self.profile, base_rps=rps, diurnal_amplitude=0.0)
        s = service.simulate_step(prof, self.settings, t, self.rng, step_seconds=dt)
        n = self.settings.replicas
        return service_pods.PodStep(
            rps=s.rps,
            latency_p95=s.latency_p95_seconds,
            error_ratio=s.error_ratio,
            cpu_per_pod=s.cpu_cores_per_pod,
            memory_per_pod=s.memory_bytes_per_pod,
            oom_kills=s.oom_kills,
            restarts=s.oom_kills,
            ready_fraction=1.0,
            rollout_complete=True,
            cost_per_hour=service.cost_per_hour(self.settings),
            ready_cpu_used=s.cpu_cores_per_pod * n,
            ready_cpu_requested=self.settings.cpu_request_cores * n,
            ready_pods=n,
        )


@dataclass(frozen=True)
class Built:
    model: Model
    slo_seconds: float
    mean_rps: float


def _present(rng: np.random.Generator, start: tuple[int, float, float]) -> Built:
    base = float(rng.uniform(0.02, 0.05))
    prof = service.ServiceProfile(
        base_rps=1.0,
        cpu_seconds_per_request=float(rng.uniform(0.005, 0.02)),
        memory_base_bytes=float(rng.uniform(100, 200)) * MIB,
        memory_bytes_per_rps=float(rng.uniform(0.5, 2.0)) * MIB,
        base_latency_seconds=base,
    )
    rho = SLO_UTILISATION
    slo = base * math.exp(service.Z_P95 * service.SERVICE_TIME_SIGMA) + base * rho / (1 - rho) * (
        service.WAIT_QUANTILE_P95
    )
    demand = float(rng.uniform(*DEMAND_CORES))
    settings = service.Settings(start[0], start[1], None, start[2], start[2])
    model = Present(prof, settings, np.random.default_rng(rng.integers(2**32)))
    return Built(model, slo, demand / prof.cpu_seconds_per_request)


def _pods(family: str, rng: np.random.Generator, start: tuple[int, float, float]) -> Built:
    params = service_laws.draw_params("ps" if family == "pods-ps" else "erlang", rng)
    warm = family != "pods-plain"
    cap = (1.0 - params.overhead_cores) / params.work_s
    slo = service_laws.pod_response(params, SLO_UTILISATION * cap, 1.0, 1.0, 0.5)[0]
    demand = float(rng.uniform(*DEMAND_CORES))
    dep = service_pods.Deployment(params, start[0], start[1], start[2], cold_start=warm, cache=warm)
    return Built(dep, slo, demand / params.work_s)


def build(family: str, seed: int, start: tuple[int, float, float]) -> Built:
    """One service of `family`, its parameters drawn from `seed`; `start` = (replicas, cores, bytes)."""
    rng = np.random.default_rng([seed, FAMILIES.index(family)])
    return _present(rng, start) if family == "present" else _pods(family, rng, start)
