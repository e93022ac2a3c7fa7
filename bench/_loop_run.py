"""One 48-hour run of one policy (static, HPA+VPA, or the loop engine) on one drawn service."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Final

import numpy as np

from autoloop.engines import loop, safety
from autoloop.simulation import service_pods
from bench import _loop_hpa, _loop_load, _loop_models

STEP_S: Final[float] = 15.0
PASS_S: Final[float] = 300.0
GIB: Final[float] = 2.0**30
MIB: Final[float] = 2.0**20
ERROR_SLO: Final[float] = 0.01
START: Final[tuple[int, float, float]] = (10, 1.0, 1 * GIB)
BOUNDS: Final[dict[str, tuple[float, float]]] = {
    "replicas": (1, 50),
    "cpu_request": (0.1, 4.0),
    "memory_request": (64 * MIB, 4 * GIB),
}
# The last part of the run whose cost is compared with static's ("ends costing more than static").
END_FRACTION: Final[float] = 0.25


@dataclass(frozen=True)
class Job:
    family: str
    seed: int
    trace: Path
    hours: float
    policy: str


def config(slo_seconds: float) -> loop.LoopConfig:
    """The loop as a user would set it up: Auto, the bounds above, every other field its default."""
    return loop.LoopConfig(
        namespace="bench",
        target=safety.Target(namespace="bench", kind="Deployment", name="svc"),
        mode="Auto",
        bounds=dict(BOUNDS),
        latency_slo_seconds=slo_seconds,
        error_slo_ratio=ERROR_SLO,
        seed=0,
    )


def _observation(settings: dict[str, float], window: list[service_pods.PodStep]) -> loop.Observation:
    last = window[-1]
    return loop.Observation(
        settings=settings,
        rps=[s.rps for s in window],
        latency_p95=[s.latency_p95 for s in window],
        error_ratio=[s.error_ratio for s in window],
        cpu_per_pod=[s.cpu_per_pod for s in window],
        memory_per_pod=[s.memory_per_pod for s in window],
        oom_kills=sum(s.oom_kills for s in window),
        restarts=sum(s.restarts for s in window),
        rollout_complete=last.rollout_complete,
        ready_fraction=last.ready_fraction,
        pdb=safety.PdbStatus(present=False),
    )


def run(job: Job) -> dict[str, float]:
    built = _loop_models.build(job.family, job.seed, START)
    rng = np.random.default_rng(job.seed)
    rps = _loop_load.request_rate(job.trace, job.hours, built.mean_rps, STEP_S, rng)
    model, cfg = built.model, config(built.slo_seconds)
    replicas, cpu, memory = START
    hpa = _loop_hpa.Hpa(int(BOUNDS["replicas"][0]), int(BOUNDS["replicas"][1]))
    vpa = _loop_hpa.VpaMemory()
    engine, state = loop.LoopEngine(), loop.LoopState()
    per_pass = int(PASS_S / STEP_S)
    window: list[service_pods.PodStep] = []
    costs = np.zeros(rps.size)
    out = {"slo_minutes": 0.0, "oom": 0.0, "rollbacks": 0.0, "restarting": 0.0, "bound_violations": 0.0}
    out["breaker_passes"] = 0.0
    for k, r in enumerate(rps):
        t = (k + 1) * STEP_S
        s = model.step(t, STEP_S, float(r))
        costs[k] = s.cost_per_hour * STEP_S / 3600.0
        if s.latency_p95 > built.slo_seconds or s.error_ratio > ERROR_SLO:
            out["slo_minutes"] += STEP_S / 60.0
        out["oom"] += s.oom_kills
        window.append(s)
        if job.policy == "hpa":
            replicas = hpa.desired(t, replicas, s)
            if k % int(_loop_hpa.VPA_UPDATER_S / STEP_S) == 0 or s.oom_kills:
                vpa.observe(t, s.memory_per_pod, s.oom_kills > 0, memory)
            new_memory = vpa.update(t, memory)
            memory = new_memory if new_memory is not None else memory
            out["restarting"] += model.apply(replicas, cpu, memory)
        elif job.policy == "loop" and (k + 1) % per_pass == 0:
            settings = {"replicas": float(replicas), "cpu_request": cpu, "memory_request": memory}
            d, state = engine.step(cfg, state, _observation(settings, window), t)
            state = loop.LoopState.model_validate_json(state.model_dump_json())  # as the operator
            out["breaker_passes"] += float(getattr(d, "breaker_open", False))
            if d.applied and d.settings:
                out["bound_violations"] += sum(
                    not lo - 1e-9 <= d.settings[kn] <= hi + 1e-9 for kn, (lo, hi) in BOUNDS.items()
                )
                out["rollbacks"] += d.action == "rollback"
                replicas = round(d.settings["replicas"])
                cpu, memory = d.settings["cpu_request"], d.settings["memory_request"]
                out["restarting"] += model.apply(replicas, cpu, memory)
        if len(window) >= per_pass:
            window = []
    tail = max(int(END_FRACTION * rps.size), 1)
    days = job.hours / 24.0
    return {
        **out,
        "cost": float(costs.sum()),
        "cost_end_per_hour": float(costs[-tail:].sum() / (tail * STEP_S / 3600.0)),
        "rollbacks_per_day": out["rollbacks"] / days,
        "restarting_per_day": out["restarting"] / days,
        "state_bytes": float(len(state.model_dump_json())),
    }
