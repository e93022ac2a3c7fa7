"""bench/loop: the OptimizationLoop engine driving the simulated service from bad starting points.

Run: `python -m bench.loop` (full) or `python -m bench.loop --quick`.

Each case is a service profile (autoloop.simulation.service) and a starting deployment, over- or
under-provisioned. The engine (`autoloop.engines.loop.LoopEngine`, the operator's own code) runs in
`Auto` mode every 5 minutes on windows of 10-second samples; its applied settings take effect at
once (a rolling update is not modelled). Baseline: the same start held static. Reported: iterations
until the last applied change, cost reduction versus the static start at equal SLO (over-provisioned
starts, last quarter of the run, only counted when the SLO-violation rate there is no worse than
static's), SLO-violation minutes, rollbacks and bound violations.
"""

from __future__ import annotations

import argparse
import json
import time
from dataclasses import dataclass
from typing import Final

import numpy as np

from autoloop.engines import loop, safety
from autoloop.simulation import service

INTERVAL_S: Final[float] = 300.0
SAMPLE_S: Final[float] = 10.0
GIB: Final[float] = 2.0**30
MIB: Final[float] = 2.0**20
LATENCY_SLO_S: Final[float] = 0.2
ERROR_SLO: Final[float] = 0.01


@dataclass(frozen=True)
class Case:
    name: str
    profile: service.ServiceProfile
    start: service.Settings


def cases() -> list[Case]:
    steady = service.ServiceProfile(base_rps=200.0, diurnal_amplitude=0.0, cpu_seconds_per_request=0.01)
    diurnal = service.ServiceProfile(base_rps=200.0, diurnal_amplitude=0.5, cpu_seconds_per_request=0.01)
    heavy = service.ServiceProfile(
        base_rps=80.0,
        diurnal_amplitude=0.3,
        cpu_seconds_per_request=0.03,
        memory_bytes_per_rps=4 * MIB,
        base_latency_seconds=0.04,
    )
    over = service.Settings(
        replicas=10,
        cpu_request_cores=1.0,
        cpu_limit_cores=None,
        memory_request_bytes=1 * GIB,
        memory_limit_bytes=1 * GIB,
    )
    under = service.Settings(
        replicas=2,
        cpu_request_cores=0.5,
        cpu_limit_cores=None,
        memory_request_bytes=256 * MIB,
        memory_limit_bytes=256 * MIB,
    )
    return [
        Case("steady-over", steady, over),
        Case("steady-under", steady, under),
        Case("diurnal-over", diurnal, over),
        Case("diurnal-under", diurnal, under),
        Case("heavy-over", heavy, over),
        Case("heavy-under", heavy, under),
    ]


def config() -> loop.LoopConfig:
    return loop.LoopConfig(
        namespace="bench",
        target=safety.Target(namespace="bench", kind="Deployment", name="svc"),
        mode="Auto",
        bounds={"replicas": (1, 20), "cpu_request": (0.1, 4.0), "memory_request": (64 * MIB, 4 * GIB)},
        latency_slo_seconds=LATENCY_SLO_S,
        error_slo_ratio=ERROR_SLO,
        seed=0,
    )


def _settings_dict(s: service.Settings) -> dict[str, float]:
    out = {
        "replicas": float(s.replicas),
        "cpu_request": s.cpu_request_cores,
        "memory_request": s.memory_request_bytes,
    }
    if s.cpu_limit_cores:
        out["cpu_limit"] = s.cpu_limit_cores
    if s.memory_limit_bytes:
        out["memory_limit"] = s.memory_limit_bytes
    return out


def _to_settings(d: dict[str, float]) -> service.Settings:
    return service.Settings(
        replicas=round(d["replicas"]),
        cpu_request_cores=d["cpu_request"],
        cpu_limit_cores=d.get("cpu_limit"),
        memory_request_bytes=d["memory_request"],
        memory_limit_bytes=d.get("memory_limit"),
    )


def run_case(case: Case, hours: float, *, static: bool, seed: int) -> dict[str, float]:
    rng = np.random.default_rng(seed)
    cfg, engine, state = config(), loop.LoopEngine(), loop.LoopState()
    settings = case.start
    n_int = int(hours * 3600 / INTERVAL_S)
    per = int(INTERVAL_S / SAMPLE_S)
    costs, bad_minutes, last_change, bound_viol = [], [], 0, 0
    t = 0.0
    for it in range(n_int):
        rows = []
        for _ in range(per):
            t += SAMPLE_S
            rows.append(service.simulate_step(case.profile, settings, t, rng, step_seconds=SAMPLE_S))
        bad = sum(1 for r in rows if r.latency_p95_seconds > LATENCY_SLO_S or r.error_ratio > ERROR_SLO)
        bad_minutes.append(bad * SAMPLE_S / 60.0)
        costs.append(service.cost_per_hour(settings))
        if static:
            continue
        obs = loop.Observation(
            settings=_settings_dict(settings),
            rps=[r.rps for r in rows],
            latency_p95=[r.latency_p95_seconds for r in rows],
            error_ratio=[r.error_ratio for r in rows],
            cpu_per_pod=[r.cpu_cores_per_pod for r in rows],
            memory_per_pod=[r.memory_bytes_per_pod for r in rows],
            oom_kills=sum(r.oom_kills for r in rows),
            pdb=safety.PdbStatus(present=False),
        )
        decision, state = engine.step(cfg, state, obs, t)
        state = loop.LoopState.model_validate_json(state.model_dump_json())  # as the operator would
        if decision.applied and decision.settings:
            for k, (lo, hi) in cfg.bounds.items():
                if not lo - 1e-9 <= decision.settings[k] <= hi + 1e-9:
                    bound_viol += 1
            settings = _to_settings(decision.settings)
            last_change = it + 1
    q = n_int // 4
    return {
        "cost_start": costs[0],
        "cost_final": float(np.mean(costs[-q:])),
        "bad_final": float(np.sum(bad_minutes[-q:])),
        "slo_minutes": float(np.sum(bad_minutes)),
        "converge_iter": float(last_change),
        "rollbacks": float(state.rollbacks),
        "bound_violations": float(bound_viol),
    }


def run(quick: bool) -> dict[str, float]:
    hours = 8.0 if quick else 48.0
    t0 = time.perf_counter()
    rows = []
    print(
        f"{'case':15} {'cost start':>10} {'cost end':>9} {'static end':>10} {'SLO min':>8} {'static SLO':>10} "
        f"{'conv it':>7} {'rollb':>5} {'bound viol':>10}"
    )
    for i, case in enumerate(cases()):
        auto = run_case(case, hours, static=False, seed=i)
        base = run_case(case, hours, static=True, seed=i)
        rows.append((case, auto, base))
        print(
            f"{case.name:15} {auto['cost_start']:10.3f} {auto['cost_final']:9.3f} {base['cost_final']:10.3f} "
            f"{auto['slo_minutes']:8.1f} {base['slo_minutes']:10.1f} {auto['converge_iter']:7.0f} "
            f"{auto['rollbacks']:5.0f} {auto['bound_violations']:10.0f}"
        )
    reductions = []
    for case, auto, base in rows:
        if case.name.endswith("-over"):
            equal_slo = auto["bad_final"] <= base["bad_final"] + 1e-9
            reductions.append(1.0 - auto["cost_final"] / base["cost_final"] if equal_slo else 0.0)
    print(f"elapsed {time.perf_counter() - t0:.0f}s over {hours:g} simulated hours per case")
    return {
        "cost_reduction_at_equal_slo": round(float(np.mean(reductions)), 4),
        "slo_violation_minutes": round(float(sum(a["slo_minutes"] for _, a, _ in rows)), 1),
        "bound_violations": int(sum(a["bound_violations"] for _, a, _ in rows)),
        "rollbacks": int(sum(a["rollbacks"] for _, a, _ in rows)),
        "iterations_to_converge_median": float(np.median([a["converge_iter"] for _, a, _ in rows])),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="8 simulated hours per case instead of 48")
    args = parser.parse_args()
    print(json.dumps(run(args.quick)))


if __name__ == "__main__":
    main()
