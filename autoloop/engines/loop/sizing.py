"""How much to run: replicas for the load of the next interval, pod size for the long-term level.

Contract: pure functions over the state and plain numbers; no validation, no I/O.

Two time scales, as in the design: replicas (no restart) follow the short-term load every pass,
sized from the upper forecast and the planning utilisation learned for the current pod size; pod
resources (a rolling restart) follow the long-term level and change at most once per
`RESIZE_INTERVAL_S` (six a day), unless a remedy is needed (an OOM kill raises memory; an SLO
broken at low utilisation means the pods themselves are too small).

The planning utilisation ("setpoint") is learned per pod size, by additive increase while the
service is healthy at that utilisation and multiplicative decrease when it is not: latency is a
property of the pod size (a small pod serves each request slower), not only of total CPU. For a
pod size never run, the prior is the nearest known size's setpoint, scaled down in proportion for a
smaller pod (a single-threaded request's service time grows as 1/size, the worst case).
"""

from __future__ import annotations

import math
from typing import Final

import numpy as np

from autoloop.engines.loop import models

# Prior planning utilisation of a pod size never run: below the HPA's default 80 % CPU target
# (and its common 70 %) so that the first passes err on the side of capacity.
SETPOINT_PRIOR: Final[float] = 0.6
SETPOINT_MIN: Final[float] = 0.2
# Up to 1.5 x the request: a container without a CPU limit may burst above its request.
SETPOINT_MAX: Final[float] = 1.5
# AIMD: +0.02 a healthy pass (0.1 per 25 min), x0.85 on a breach (TCP-like asymmetry).
SETPOINT_STEP_UP: Final[float] = 0.02
SETPOINT_BACKOFF: Final[float] = 0.85
# A pass counts as "healthy with room" below this fraction of the planning latency target.
ROOM_FRACTION: Final[float] = 0.75
# A breach below this fraction of the setpoint is not load-driven: the pods are too small.
LOW_UTILISATION_FRACTION: Final[float] = 0.5
# A breach while running this far above the setpoint says nothing about the setpoint.
OVER_SETPOINT: Final[float] = 1.1
# Replicas move only when the need leaves [n x (1 - t), n x (1 + t)]: the HPA's tolerance
# (kube-controller-manager --horizontal-pod-autoscaler-tolerance, default 0.1).
TOLERANCE: Final[float] = 0.1
# The HPA's default scale-up behaviour (autoscaling/v2, horizontal.go): per period the larger of
# +4 pods and +100 %. The remedy for pods dying of overload takes one period's worth a pass.
HPA_SCALE_UP_PODS: Final[int] = 4
HPA_SCALE_UP_PERCENT: Final[float] = 100.0
# Pod resources change at most six times a day (the restart budget of the design).
RESIZE_INTERVAL_S: Final[float] = 86_400.0 / 6
# Pod resources move only when the plan differs by more than this factor (hysteresis).
RESIZE_HYSTERESIS: Final[float] = 1.3
# VPA's OOM bump (recommender/model: DefaultOOMBumpUpRatio 1.2, at least 100 MiB).
OOM_BUMP_RATIO: Final[float] = 1.2
OOM_MIN_BUMP: Final[float] = 100 * 2.0**20
MEMORY_FLOOR_TTL_S: Final[float] = 86_400.0
# Memory is shrunk only after this much observation (VPA's updater waits 12 h of pod lifetime
# before acting on a small change: update_priority_calculator.go podLifetimeUpdateThreshold), and
# then to the held peak plus the hysteresis again: working sets swell in rollouts and cold starts.
MEMORY_OBSERVE_S: Final[float] = 12 * 3600.0
# A rolling update removes up to this fraction of the pods at once (Deployment default
# maxUnavailable 25 %); the loop adds replicas to cover it when it changes the pod template.
ROLLOUT_UNAVAILABLE: Final[float] = 0.25
# Memory is shrunk to no less than this multiple of the steady peak working set: in a rollout a
# pod carries up to 1/(1 - 25 %) = 1.33x the load while cold (service 1.5-3x slower), and memory
# in flight grows with load x latency, so 2x covers the transient the steady peak does not show.
TRANSIENT_FACTOR: Final[float] = 2.0
# Pod sizes tried at a resize slot: halve, keep, double.
SIZE_FACTORS: Final[tuple[float, ...]] = (0.5, 1.0, 2.0)
# Upper forecast: z of a one-sided 95 % interval, over this many recent passes.
Z_UPPER: Final[float] = 1.645
FORECAST_POINTS: Final[int] = 12


def size_key(cpu: float) -> str:
    return f"{cpu:.3g}"


def setpoint(st: models.LoopState, cpu: float) -> float:
    """Planning utilisation for pods of `cpu` cores (learned, else the prior)."""
    if size_key(cpu) in st.setpoints:
        return st.setpoints[size_key(cpu)]
    if not st.setpoints:
        return SETPOINT_PRIOR
    known = min(st.setpoints, key=lambda k: abs(math.log(float(k) / cpu)))
    return max(SETPOINT_MIN, st.setpoints[known] * min(1.0, cpu / float(known)))


def learn_setpoint(
    st: models.LoopState, cpu: float, utilisation: float, latency_ratio: float, healthy: bool, headroom: float
) -> str:
    """Update the setpoint of the current pod size from one steady pass; say what was learned."""
    sp = setpoint(st, cpu)
    key = size_key(cpu)
    if not healthy or latency_ratio > headroom:
        if utilisation < LOW_UTILISATION_FRACTION * sp:
            return "breach at low utilisation: pods too small"
        if utilisation > OVER_SETPOINT * sp:
            return "breach above the setpoint: too few pods, the setpoint is not in question"
        new = max(SETPOINT_MIN, min(sp, utilisation) * SETPOINT_BACKOFF)
    elif latency_ratio < ROOM_FRACTION * headroom and utilisation >= sp - 0.1:
        new = min(SETPOINT_MAX, sp + SETPOINT_STEP_UP)
    else:
        new = sp
    points = {k: v for k, v in st.setpoints.items() if k != key}
    st.setpoints = {**dict(list(points.items())[-(models.MAX_SETPOINTS - 1) :]), key: models.sig(new, 4)}
    return f"setpoint {sp:.2f}->{new:.2f}"


def forecast(st: models.LoopState, recent: float | None = None) -> tuple[float, float]:
    """Upper (95 %) forecast of requests/s for the next interval, and the last load.

    A random walk in log-load: the next pass is the last level (the mean of the last three passes,
    which averages out their noise) times exp(drift + z x sigma), with
    drift (only upward) and sigma of the pass-to-pass log changes in the kept history. It follows
    a trend or a daily cycle without the lag of a window mean. `recent` (the last part of the
    window) is the last load when it is higher than the pass's mean: a rise within the window."""
    rps = np.maximum(np.array([h.rps for h in st.history[-FORECAST_POINTS:]]), 1e-9)
    last = max(float(rps[-3:].mean()), recent or 0.0)
    if rps.size < 3:
        return last * (1.0 + Z_UPPER * 0.1), last
    steps = np.diff(np.log(rps))
    drift = max(float(np.mean(steps)), 0.0)
    upper = last * math.exp(drift + Z_UPPER * float(np.std(steps, ddof=1)))
    # A bursty load's spread would plan for several times any load seen: within one pass the
    # load is not planned above the highest pass of the kept hour (grown by the drift), unless
    # it is already there (then `last` is the new high).
    seen = float(rps.max()) * math.exp(drift)
    return max(last, min(upper, seen)), last


def cpu_seconds_per_request(st: models.LoopState, error_slo: float) -> float:
    """CPU seconds per request, median over the kept passes that served their load (not
    saturated, errors within the SLO: crashing or shedding pods use less CPU than the load needs)."""
    rows = [h for h in st.history if h.rps > 0]
    ok = [
        h.cpu_per_pod * h.replicas / h.rps
        for h in rows
        if h.utilisation < 0.9 * SETPOINT_MAX and h.error_ratio <= error_slo
    ]
    every = [h.cpu_per_pod * h.replicas / h.rps for h in rows]
    return float(np.median(ok or every)) if rows else 0.0


def pods_needed(
    st: models.LoopState, cpu: float, rps: float, cpu_s: float, now: float, floor_ttl: float
) -> float:
    """Pods (fractional) of `cpu` cores that keep `rps` within the setpoint and above a fresh
    capacity floor."""
    cores = rps * cpu_s / setpoint(st, cpu)
    if st.floor_at is not None and now - st.floor_at < floor_ttl:
        cores = max(cores, st.capacity_floor * rps)
    return cores / max(cpu, 1e-9)


def replicas_needed(
    st: models.LoopState, cpu: float, rps: float, cpu_s: float, now: float, floor_ttl: float
) -> int:
    return max(1, math.ceil(pods_needed(st, cpu, rps, cpu_s, now, floor_ttl) - 1e-9))


def pods_for_use(
    replicas: float, utilisation: float, cur_cpu: float, cpu: float, st: models.LoopState
) -> int:
    """The HPA's formula, desired = ceil(current x utilisation / target), in pods of `cpu` cores
    at their planning utilisation. Pods still starting count at the little CPU they use, as the
    HPA counts unready pods at 0 % on a scale-up: capacity already on its way is not asked for
    twice. While pods saturate, their use understates the need (the demand forecast does not)."""
    return math.ceil(replicas * utilisation * cur_cpu / (cpu * setpoint(st, cpu)) - 1e-9)


def hpa_scale_up(replicas: float) -> int:
    """One period of the HPA's default scale-up policy: the larger of +4 pods and +100 %."""
    return math.ceil(max(replicas + HPA_SCALE_UP_PODS, replicas * (1.0 + HPA_SCALE_UP_PERCENT / 100.0)))


def remedy_pods(
    st: models.LoopState, replicas: float, utilisation: float, cur_cpu: float, cpu: float, overload: bool
) -> int:
    """What a remedy asks for besides the demand forecast: the HPA's formula on the CPU in use and,
    when pods die of overload, at least one period of the HPA's scale-up policy (what dying and
    cold pods use understates the need)."""
    used = pods_for_use(replicas, utilisation, cur_cpu, cpu, st)
    return max(used, hpa_scale_up(replicas)) if overload else used


def memory_floor(st: models.LoopState, now: float) -> float:
    if st.memory_floor_at is None or now - st.memory_floor_at >= MEMORY_FLOOR_TTL_S:
        return 0.0
    return st.memory_floor


def note_memory(
    st: models.LoopState, working_set: float, request: float, oom: bool, headroom: float, now: float
) -> None:
    """Memory is never planned below the peak working set plus margin; an OOM kill bumps it like
    the VPA does. The floor holds for a day from its last rise, then follows newer peaks."""
    need = working_set * (1.0 + headroom)
    if oom:
        need = max(need, request * OOM_BUMP_RATIO, request + OOM_MIN_BUMP)
    if need > memory_floor(st, now):
        st.memory_floor, st.memory_floor_at = models.sig(need), now


def healthy_peak(st: models.LoopState, config: models.LoopConfig, now: float) -> float:
    """The largest working set of the kept passes that met the SLO (an overloaded pod's queue
    is not a need to plan for); when none of them did (a breach longer than the kept hour), the
    last such peak seen within a day (`MEMORY_FLOOR_TTL_S`, as the memory floor), else 0."""
    ok = [
        h.memory_per_pod
        for h in st.history
        if h.latency_p95 <= config.latency_slo_seconds and h.error_ratio <= config.error_slo_ratio
    ]
    if ok:
        return max(ok)
    fresh = st.healthy_peak_at is not None and now - st.healthy_peak_at < MEMORY_FLOOR_TTL_S
    return st.healthy_peak if fresh else 0.0


def remember_peak(st: models.LoopState, config: models.LoopConfig, now: float) -> float:
    """Keep the kept hour's healthy peak in the state (for breaches longer than the hour); return
    the healthy peak to plan by."""
    peak = healthy_peak(st, config, now)
    if peak > 0 and any(h.memory_per_pod == peak for h in st.history):
        st.healthy_peak, st.healthy_peak_at = models.sig(peak), now
    return peak


def memory_plan(st: models.LoopState, current: float, now: float, resize_ok: bool, peak: float) -> float:
    """The memory request to run: raise at once to the floor, shrink only at a resize slot by more
    than the hysteresis, and never below twice the steady peak `peak`."""
    floor = max(memory_floor(st, now), peak)
    if floor > current:
        return max(floor, current * OOM_BUMP_RATIO)  # one restart buys room, not a creep of small ones
    seen = st.since is not None and now - st.since >= MEMORY_OBSERVE_S
    target = max(floor, peak * TRANSIENT_FACTOR)
    if resize_ok and seen and peak > 0 and target * RESIZE_HYSTERESIS < current:
        return target
    return current


def cheapest_size(
    st: models.LoopState,
    cpu: float,
    rps: float,
    cpu_s: float,
    bounds: tuple[float, float],
    pod_memory_cores: float,
) -> float:
    """Among halving, keeping and doubling the pod CPU, the size whose replicas for `rps` cost
    least; `pod_memory_cores` is a pod's memory priced in cores (its cost at the CPU price)."""

    def cost(size: float) -> float:
        n = max(1, math.ceil(rps * cpu_s / setpoint(st, size) / size))
        return n * (size + pod_memory_cores)

    sizes = [min(max(cpu * f, bounds[0]), bounds[1]) for f in SIZE_FACTORS]
    best = min(sizes, key=lambda s: (cost(s), abs(math.log(s / cpu))))
    return best if cost(best) * RESIZE_HYSTERESIS < cost(cpu) else cpu


def resize_allowed(st: models.LoopState, now: float) -> bool:
    return st.last_resize_at is None or now - st.last_resize_at >= RESIZE_INTERVAL_S


def steady(st: models.LoopState, now: float, settle: float) -> bool:
    """No change in flight and none within the settle window: a pass that can teach the setpoint."""
    return st.pending is None and (not st.change_times or now - st.change_times[-1] >= settle)
