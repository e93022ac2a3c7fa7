"""What keeps the loop from a storm: judging a change only once it can be judged, the last good
setting, learned floors that expire, and the circuit breaker.

Contract: pure functions that read and update a `LoopState`; no validation, no I/O.

- A change is judged after its rollout has finished and every pod is ready (the rollout itself is
  not the outcome), then only after it stayed healthy for the whole settle window; only then does
  it become the last good setting. A rollout that does not finish within the Deployment's default
  `progressDeadlineSeconds` (600 s) is judged unhealthy.
- The last good setting and the capacity floor expire (`LAST_GOOD_TTL_S`, `FLOOR_TTL_S`) and the
  last good setting is only returned to at a load near the one it was good at.
- The circuit breaker opens when rollbacks, or passes with OOM kills or restarts, exceed
  `BREAKER_BUDGET_PER_HOUR` in the trailing hour, or when the SLO has stayed broken through
  `UNHELPFUL_REMEDIES` remedies none of which made it better; it freezes the loop for `FREEZE_S`
  (no rollout, no rollback: only more replicas, memory raised after an OOM kill, and, once the
  SLO has held for a settle window without OOM kills (`calm`), fewer replicas), and the decision
  says so.
"""

from __future__ import annotations

from typing import Final

from autoloop.engines.loop import models

# Deployment spec.progressDeadlineSeconds default (apps/v1).
ROLLOUT_DEADLINE_S: Final[float] = 600.0
# A last good setting is evidence about the load and the service of the last few hours only.
LAST_GOOD_TTL_S: Final[float] = 6 * 3600.0
LAST_GOOD_LOAD_BAND: Final[float] = 1.5
FLOOR_TTL_S: Final[float] = 6 * 3600.0
# A rolled-back capacity plus this margin becomes the floor the plan must stay above.
CAPACITY_FLOOR_MARGIN: Final[float] = 0.1
# The target: no more than 3 rollbacks a day; three storm events in one hour is a storm.
BREAKER_BUDGET_PER_HOUR: Final[int] = 3
BREAKER_WINDOW_S: Final[float] = 3600.0
FREEZE_S: Final[float] = 3600.0
UNHELPFUL_REMEDIES: Final[int] = 3
# A breach that still shrinks at the end of the settle window is pods warming up: wait, up to
# this many windows from readiness.
MAX_SETTLE_WINDOWS: Final[int] = 3
# A remedy "helped" when the SLO's breach severity fell by at least this fraction.
HELPED_FRACTION: Final[float] = 0.1


def note_event(st: models.LoopState, now: float) -> None:
    st.breaker_events = [t for t in st.breaker_events if now - t < BREAKER_WINDOW_S] + [now]


def breaker(st: models.LoopState, now: float) -> str | None:
    """Why the loop is frozen now, or None; trips the breaker when the budget is exceeded."""
    st.breaker_events = [t for t in st.breaker_events if now - t < BREAKER_WINDOW_S]
    if len(st.breaker_events) > BREAKER_BUDGET_PER_HOUR and (
        st.frozen_until is None or now >= st.frozen_until
    ):
        st.frozen_until = now + FREEZE_S
        st.frozen_reason = (
            f"{len(st.breaker_events)} rollbacks or OOM/restart passes in the last hour "
            f"(budget {BREAKER_BUDGET_PER_HOUR})"
        )
        st.breaker_events = []  # a new storm must build up again after the freeze
    if st.remedies_unhelpful >= UNHELPFUL_REMEDIES and (st.frozen_until is None or now >= st.frozen_until):
        st.frozen_until = now + FREEZE_S
        st.frozen_reason = f"SLO broken through {st.remedies_unhelpful} remedies, none helped"
        st.remedies_unhelpful = 0
    if st.frozen_until is not None and now < st.frozen_until:
        return f"circuit breaker open until t={st.frozen_until:.0f}: {st.frozen_reason}"
    st.frozen_until, st.frozen_reason = None, None
    return None


def calm(st: models.LoopState, config: models.LoopConfig, now: float) -> bool:
    """The SLO has held, and no pod was OOM-killed or restarted, for a whole settle window."""
    if st.breaker_events and now - st.breaker_events[-1] < config.settle_seconds:
        return False
    window = [h for h in st.history if now - h.t <= config.settle_seconds]
    return (
        len(window) < len(st.history)
        and bool(window)
        and all(
            h.latency_p95 <= config.latency_slo_seconds and h.error_ratio <= config.error_slo_ratio
            for h in window
        )
    )


def severity(saw: dict[str, float], config: models.LoopConfig) -> float:
    return max(saw["latency_p95"] / config.latency_slo_seconds, saw["error_ratio"] / config.error_slo_ratio)


def track_broken(
    st: models.LoopState, saw: dict[str, float], config: models.LoopConfig, slo_ok: bool, now: float
) -> None:
    """Count remedies in a row after which the SLO's breach did not shrink (from the severity
    at the pass the remedy was applied); one that helped resets the count."""
    if slo_ok:
        st.broken_since, st.broken_severity, st.remedies_unhelpful = None, None, 0
        return
    sev = severity(saw, config)
    if st.broken_since is None:
        st.broken_since, st.broken_severity = now, models.sig(sev, 4)
        return
    changed_since = bool(st.change_times) and st.change_times[-1] >= st.broken_since
    if changed_since and now - st.change_times[-1] < config.settle_seconds:
        return  # the last remedy's effect is not measurable before its settle window
    if changed_since and st.broken_severity is not None:
        # Judged against the breach when the remedy was applied, not the mildest breach since the
        # start: under a rising load a remedy that halves the breach has helped even if the breach
        # is worse than when it began.
        helped = sev <= (1.0 - HELPED_FRACTION) * st.broken_severity
        st.remedies_unhelpful = 0 if helped else st.remedies_unhelpful + 1
        st.broken_since, st.broken_severity = now, models.sig(sev, 4)


def rollout_state(st: models.LoopState, obs: models.Observation, now: float) -> str:
    """`rolling` (wait), `stuck` (judge as failed), or `ready` (settle window running)."""
    assert st.pending is not None
    ready = obs.rollout_complete and obs.ready_fraction >= 1.0
    if not ready and st.pending.ready_at is None:
        return "stuck" if now - st.pending.applied_at > ROLLOUT_DEADLINE_S else "rolling"
    if st.pending.ready_at is None:
        st.pending = st.pending.model_copy(update={"ready_at": now})
    return "ready"


def good_for(st: models.LoopState, rps: float, now: float) -> dict[str, float] | None:
    """The last good setting, if fresh and good at a load near `rps`."""
    if st.last_good is None or st.last_good_at is None or now - st.last_good_at > LAST_GOOD_TTL_S:
        return None
    seen = st.last_good_rps or rps
    if not seen / LAST_GOOD_LOAD_BAND <= rps <= seen * LAST_GOOD_LOAD_BAND:
        return None
    return st.last_good


def note_healthy(st: models.LoopState, slo_ok: bool, now: float) -> None:
    """Extend or end the run of healthy passes on unchanged settings (a change starts a new one)."""
    changed = (
        bool(st.change_times) and st.healthy_since is not None and st.change_times[-1] > st.healthy_since
    )
    if not slo_ok:
        st.healthy_since = None
    elif st.healthy_since is None or changed:
        st.healthy_since = now


def mark_good(st: models.LoopState, cur: dict[str, float], rps: float, now: float) -> None:
    st.last_good = {k: cur[k] for k in models.KNOBS}
    st.last_good_at, st.last_good_rps = now, models.sig(rps)


def raise_floor(st: models.LoopState, cur: dict[str, float], rps: float, now: float) -> None:
    """The capacity that failed (per request/s) plus a margin is a floor, for FLOOR_TTL_S."""
    failed = cur["replicas"] * cur["cpu_request"] * (1.0 + CAPACITY_FLOOR_MARGIN) / max(rps, 1e-9)
    fresh = st.floor_at is not None and now - st.floor_at < FLOOR_TTL_S
    st.capacity_floor = max(st.capacity_floor if fresh else 0.0, failed)
    st.floor_at = now
