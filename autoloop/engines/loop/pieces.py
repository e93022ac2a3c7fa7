"""The small pure pieces of a loop pass: summarising an observation, the explanation's prediction,
keeping a plan within the step, the bounds and the deadband.

Contract: pure functions over plain dicts and the loop's models; no state is changed here.
"""

from __future__ import annotations

import math
from typing import Final

import numpy as np

from autoloop.engines import learning, safety
from autoloop.engines.loop import models, sizing

# A pod-resource move smaller than this fraction is not worth a rolling restart.
MIN_RELATIVE_CHANGE: Final[float] = 0.05


def finite(values: list[float]) -> bool:
    return bool(values) and all(math.isfinite(v) for v in values)


def with_limits(current: dict[str, float], knobs: dict[str, float]) -> dict[str, float]:
    """New settings with limits kept at the current limit/request ratio."""
    out = dict(knobs)
    for lim, req in (("cpu_limit", "cpu_request"), ("memory_limit", "memory_request")):
        if current.get(lim):
            out[lim] = current[lim] / current[req] * knobs[req]
    return out


def summarise(obs: models.Observation, cur: dict[str, float]) -> dict[str, float]:
    cpu = float(np.mean(obs.cpu_per_pod))
    return {
        "rps": float(np.mean(obs.rps)),
        # The window's last quarter: where the load is going, not where it was on average.
        "rps_recent": float(np.mean(obs.rps[-max(len(obs.rps) // 4, 1) :])),
        "latency_p95": float(np.mean(obs.latency_p95)),
        "error_ratio": float(np.mean(obs.error_ratio)),
        "cpu_per_pod": cpu,
        "memory_per_pod": float(np.max(obs.memory_per_pod)),
        "utilisation": cpu / max(cur["cpu_request"], 1e-9),
        "oom_kills": float(obs.oom_kills),
        "restarts": float(obs.restarts),
        "ready_fraction": float(obs.ready_fraction),
    }


def experience(now: float, cur: dict[str, float], saw: dict[str, float]) -> learning.Experience:
    return learning.Experience(
        t=now,
        **{k: cur[k] for k in models.KNOBS},
        **{
            k: saw[k]
            for k in ("rps", "cpu_per_pod", "memory_per_pod", "latency_p95", "error_ratio", "utilisation")
        },
    )


def within_limits(
    plan: dict[str, float],
    cur: dict[str, float],
    step: float,
    lo: dict[str, float],
    hi: dict[str, float],
    slo_ok: bool,
) -> dict[str, float]:
    """The plan moved at most one max step, within the bounds, in whole pods, and without
    pod-resource moves below the deadband. While the SLO is broken nothing shrinks and what grows
    is not held to the step: a capacity-only remedy is exempt from it (`safety.remedy_now`)."""
    out = {}
    for k in models.KNOBS:
        # Whole pods within the step; other knobs a hair inside it, so rounding stays inside.
        room = math.floor(max(cur[k] * step, 1.0) + 1e-9) if k == "replicas" else cur[k] * step * 0.99
        v = min(max(plan[k], cur[k] - room), cur[k] + room) if slo_ok else max(plan[k], cur[k])
        v = min(max(v, lo[k]), hi[k])
        if k == "replicas":
            out[k] = float(round(v))
        elif abs(v - cur[k]) >= MIN_RELATIVE_CHANGE * cur[k]:
            out[k] = models.sig(v, 4)
        else:
            out[k] = cur[k]  # below the deadband: not worth a rollout
    return out


def frozen(plan: dict[str, float], cur: dict[str, float], oom: bool, calm: bool) -> dict[str, float]:
    """What the plan may still do while the circuit breaker is open: no rollout, no rollback; more
    replicas (they restart nothing), memory after an OOM kill (those pods restart anyway), and
    fewer replicas only once the storm is over (`calm`: the SLO held a whole settle window without
    OOM kills): the breaker stops a storm, it does not keep the storm's capacity for an hour."""
    return {
        "replicas": plan["replicas"] if calm else max(plan["replicas"], cur["replicas"]),
        "cpu_request": cur["cpu_request"],
        "memory_request": max(plan["memory_request"], cur["memory_request"])
        if oom
        else cur["memory_request"],
    }


def replicas_only(plan: dict[str, float], cur: dict[str, float]) -> dict[str, float]:
    """The plan's replicas with the current pod template: one rollout at a time."""
    return {**plan, "cpu_request": cur["cpu_request"], "memory_request": cur["memory_request"]}


def validator_text(result: safety.SafetyResult) -> list[str]:
    """The validator's part of the explanation: the reasons of the rules that refused, else
    "accepted" and, for a remedy, which rules it was exempt from and why."""
    if not result.accepted:
        return result.reasons()
    exempt = result.remedy_exemptions()
    return [f"accepted: {safety.REMEDY_REASON}; exempt from {', '.join(exempt)}"] if exempt else ["accepted"]


def direction(moved: dict[str, float]) -> str:
    """up / down / mixed: the label of a change (what the distilled policy learns)."""
    if all(v > 0 for v in moved.values()):
        return "up"
    return "down" if all(v < 0 for v in moved.values()) else "mixed"


def predicted(
    config: models.LoopConfig,
    st: models.LoopState,
    saw: dict[str, float],
    cur: dict[str, float],
    proposal: dict[str, float],
    now: float,
) -> dict[str, float]:
    """What the plan expects of `proposal` over the next interval (the explanation's `predicted`).

    Only what the decision is made from: the load forecast, the utilisation it gives the proposal
    and the learned setpoint it is held under. The response model's latency curve is not among
    them: sizing does not use it, and a latency it did not plan by would contradict the decision."""
    upper, mean = sizing.forecast(st, saw["rps_recent"])
    cpu_s = sizing.cpu_seconds_per_request(st, config.error_slo_ratio)
    rho = upper * cpu_s / max(proposal["replicas"] * proposal["cpu_request"], 1e-9)
    sp = sizing.setpoint(st, proposal["cpu_request"])
    return {
        "rps_upper": upper,
        "rps_mean": mean,
        "utilisation": rho,
        "setpoint": sp,
        "memory_floor": sizing.memory_floor(st, now),
        # The proposal's cost relative to holding (what `status.recommendation.score` shows).
        "score": config.cost(proposal) / max(config.cost(cur), 1e-12),
    }
