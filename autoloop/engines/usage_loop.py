"""Usage-driven rightsizing of one workload's requests: the loop for workloads without SLO signals.

Contract: `usage_step(config, observation, now, decision_id) -> Decision` (the loop engine's
`Decision` type, so the operator reports and acts on it the same way). Pure: no I/O, no clock.

A loop whose objectives name no latency or error signal (a batch worker, a queue consumer, anything
without request metrics) cannot be judged by an SLO, so it is sized like VPA sizes pods, but with
autoloop's recommender: `RightsizingRecommender` (the code `bench/rightsizing` replays) forecasts
each declared resource knob (CPU, memory per pod) from its usage history, with a band the request may
stay in. A change is proposed only when the request has left its band, is moved at most
`max_step_percent` towards the target, and passes the same safety validator as every other change
(bounds, step, cooldown, change budget, confidence = the recommender's, PDB headroom because new
requests restart pods, anomaly freeze, ownership). An OOM kill since the last change counts as a
broken SLO: only growth may pass then (the recommender bumps memory like VPA). Replicas are not
touched here: without a latency signal there is nothing to trade them against.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Final

import numpy as np
from pydantic import BaseModel, ConfigDict, Field

from autoloop.engines import safety
from autoloop.engines.loop import Decision, Explanation, LoopConfig
from autoloop.engines.recommend import Recommendation, RightsizingParams, RightsizingRecommender

KNOB_RESOURCE: Final[dict[str, str]] = {"cpu_request": "cpu", "memory_request": "memory"}
MIN_SAMPLES: Final[int] = 30
"""Fewer usage samples than this (half an hour at one a minute): no recommendation at all."""


class UsageObservation(BaseModel):
    """Per-pod usage history and the target's state, as fetched by the operator."""

    model_config = ConfigDict(frozen=True)
    settings: dict[str, float]
    """replicas, cpu_request (cores), memory_request (bytes); optional limits."""
    timestamps: list[float]
    cpu_per_pod: list[float]
    """Cores, per pod (average over the pods), one sample per timestamp (NaN where missing)."""
    memory_per_pod: list[float]
    """Bytes, per pod (the largest pod), one sample per timestamp (NaN where missing)."""
    oom_times: list[float] = Field(default_factory=list)
    last_change_at: float | None = None
    recent_change_times: tuple[float, ...] = ()
    anomaly_active: bool = False
    pdb: safety.PdbStatus | None = None


def _clean(ts: np.ndarray, values: Sequence[float]) -> tuple[np.ndarray, np.ndarray]:
    v = np.asarray(values, dtype=float)
    keep = np.isfinite(v)
    return ts[keep], v[keep]


def _stepped(current: float, target: float, max_step_percent: float) -> float:
    """Move towards target by at most max_step_percent of the current value."""
    limit = current * max_step_percent / 100.0
    return current + float(np.clip(target - current, -limit, limit))


def _saw(obs: UsageObservation, ts: np.ndarray) -> dict[str, float]:
    saw: dict[str, float] = {"history_hours": float((ts[-1] - ts[0]) / 3600.0) if len(ts) else 0.0}
    for key, values in (("cpu_per_pod", obs.cpu_per_pod), ("memory_per_pod", obs.memory_per_pod)):
        finite = np.asarray(values, dtype=float)
        finite = finite[np.isfinite(finite)]
        if finite.size:
            saw[f"{key}_p50"] = float(np.percentile(finite, 50))
            saw[f"{key}_p95"] = float(np.percentile(finite, 95))
            saw[f"{key}_max"] = float(finite.max())
    saw["oom_kills"] = float(len(obs.oom_times))
    return saw


def usage_step(
    config: LoopConfig,
    obs: UsageObservation,
    now: float,
    decision_id: str,
    *,
    risk: float = 0.1,
) -> Decision:
    """One rightsizing decision from usage alone (see the module docstring)."""
    ts = np.asarray(obs.timestamps, dtype=float)
    saw = _saw(obs, ts)
    knobs = [k for k in KNOB_RESOURCE if k in config.bounds and k in obs.settings]
    if not knobs:
        return Decision(
            id=decision_id,
            t=now,
            action="none",
            explanation=Explanation(saw=saw, proposed="no action: no CPU or memory knob to size"),
        )
    recs: dict[str, Recommendation] = {}
    for knob in knobs:
        series = obs.cpu_per_pod if knob == "cpu_request" else obs.memory_per_pod
        t, v = _clean(ts, series)
        if len(v) < MIN_SAMPLES:
            return Decision(
                id=decision_id,
                t=now,
                action="none",
                explanation=Explanation(
                    saw=saw,
                    proposed=f"no action: {len(v)} usable {KNOB_RESOURCE[knob]} samples (< {MIN_SAMPLES})",
                ),
            )
        params = RightsizingParams(resource=KNOB_RESOURCE[knob], risk=risk)
        recs[knob] = RightsizingRecommender(params).recommend(
            t,
            v,
            current_request=obs.settings[knob],
            request_set_at=obs.last_change_at,
            # Every OOM it can see: the recommender bumps on those of the last horizon and holds
            # the bump for that long, so a bumped request does not flip back down at once.
            oom_times=obs.oom_times if knob == "memory_request" else (),
        )
    predicted = {f"{k}_need": r.need for k, r in recs.items()} | {
        f"{k}_target": r.target for k, r in recs.items()
    }
    why = "; ".join(f"{KNOB_RESOURCE[k]}: {r.reason}" for k, r in recs.items())
    current = {k: float(v) for k, v in obs.settings.items()}
    proposed = dict(current)
    for knob, rec in recs.items():
        if rec.change and math.isfinite(rec.target):
            lo, hi = config.bounds[knob]
            goal = float(np.clip(rec.target, lo, hi))
            proposed[knob] = float(np.clip(_stepped(current[knob], goal, config.max_step_percent), lo, hi))
    moved = [k for k in knobs if abs(proposed[k] - current[k]) > 1e-9 * max(1.0, current[k])]
    if not moved:
        return Decision(
            id=decision_id,
            t=now,
            action="hold",
            explanation=Explanation(
                saw=saw, proposed=f"hold: every request is inside its band ({why})", predicted=predicted
            ),
        )
    oom_since_change = any(obs.last_change_at is None or x >= obs.last_change_at for x in obs.oom_times)
    change = safety.ProposedChange(
        target=config.target,
        current={k: current[k] for k in knobs},
        proposed={k: proposed[k] for k in knobs},
    )
    context = safety.SafetyContext(
        now=now,
        last_change_at=obs.last_change_at,
        recent_change_times=obs.recent_change_times,
        slo_met_now=not oom_since_change,
        forecast_slo_met=True,  # the targets are the recommender's forecast at the risk level
        confidence=min(r.confidence for r in recs.values()),
        pdb=obs.pdb,
        anomaly_active=obs.anomaly_active,
    )
    result = safety.validate(change, config.policy(), context)
    direction = {np.sign(proposed[k] - current[k]) for k in moved}
    text = ", ".join(f"{KNOB_RESOURCE[k]} {current[k]:.4g} -> {proposed[k]:.4g}" for k in moved)
    return Decision(
        id=decision_id,
        t=now,
        action="change",
        settings=proposed,
        accepted=result.accepted,
        applied=result.accepted and config.mode == "Auto",
        verdicts=list(result.verdicts),
        explanation=Explanation(
            saw=saw,
            proposed=f"rightsize from usage: {text} ({why})",
            validator=result.reasons() or ["accepted"],
            predicted=predicted,
            direction="up" if direction == {1.0} else "down" if direction == {-1.0} else "mixed",
        ),
    )
