"""Replay of one usage series through one recommender behind the shared actuation gate.

The gate runs every 15 minutes of series time for every recommender: VPA's updater rule (apply
when the request is outside the recommender's [lower, upper], or when it has stood >= 12 h and the
target differs by >= 10 %; after an OOM-like event apply any increase at once), then the autoloop
safety validator (cooldown 15 min, at most 4 changes an hour). Time, not sample count, drives the
gate, so 1-minute and 5-minute series and series with gaps replay alike.

Per scored day (calendar days from the series' start, the first is warm-up for everyone, days
with less than half their samples are skipped): relative slack = mean request / p95 usage - 1;
overrun = area of usage above the request / area of usage; exceed = share of samples above the
request (what `risk` promises); OOM-like events = times usage crosses above the request (memory
series); changes; cost = mean request / the series' mean usage.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Final, Protocol

import numpy as np

from autoloop.engines import recommend, safety
from bench._rs_autopilot import AutopilotRecommender
from bench._rs_series import Series
from bench._rs_vpa import VpaRecommender

GATE_INTERVAL_S: Final[float] = 900.0
# updater/priority/update_priority_calculator.go: podLifetimeUpdateThreshold, defaultUpdateThreshold.
LIFETIME_UPDATE_S: Final[float] = 12 * 3600.0
MIN_CHANGE: Final[float] = 0.10
WARMUP_DAYS: Final[int] = 1
DAY_S: Final[float] = 86_400.0


class Rec(Protocol):
    def observe(self, ts: np.ndarray, us: np.ndarray, request: float) -> None: ...
    def oom(self, t: float, used: float, request: float) -> None: ...
    def decide(self, i: int, current: float, set_at: float) -> tuple[float, float | None, float | None]: ...


class StaticRec:
    def observe(self, ts: np.ndarray, us: np.ndarray, request: float) -> None:
        pass

    def oom(self, t: float, used: float, request: float) -> None:
        pass

    def decide(self, i: int, current: float, set_at: float) -> tuple[float, float | None, float | None]:
        return current, None, None


class VpaRec:
    def __init__(self, resource: str, p: float = 0.9, margin: float = 0.15) -> None:
        self.vpa = VpaRecommender(resource, target_percentile=p, margin=margin)

    def observe(self, ts: np.ndarray, us: np.ndarray, request: float) -> None:
        self.vpa.add_samples(ts, us, request)

    def oom(self, t: float, used: float, request: float) -> None:
        self.vpa.record_oom(t, max(used, request))

    def decide(self, i: int, current: float, set_at: float) -> tuple[float, float | None, float | None]:
        return self.vpa.recommend()


class AutopilotRec:
    def __init__(self, resource: str) -> None:
        self.ap = AutopilotRecommender(resource)

    def observe(self, ts: np.ndarray, us: np.ndarray, request: float) -> None:
        self.ap.add_samples(ts, us)

    def oom(self, t: float, used: float, request: float) -> None:
        pass

    def decide(self, i: int, current: float, set_at: float) -> tuple[float, float | None, float | None]:
        return self.ap.recommend(), None, None


@dataclass
class AutoloopRec:
    """The operator's own recommender, called on the history so far at every gate."""

    series: Series
    params: recommend.RightsizingParams
    ooms: list[float] = field(default_factory=list)
    latencies: list[float] = field(default_factory=list)

    def __post_init__(self) -> None:
        self.engine = recommend.RightsizingRecommender(self.params)

    def observe(self, ts: np.ndarray, us: np.ndarray, request: float) -> None:
        pass

    def oom(self, t: float, used: float, request: float) -> None:
        self.ooms.append(t)

    def decide(self, i: int, current: float, set_at: float) -> tuple[float, float | None, float | None]:
        t0 = time.perf_counter()
        rec = self.engine.recommend(
            self.series.ts[:i],
            self.series.usage[:i],
            current_request=current,
            request_set_at=set_at,
            oom_times=self.ooms,
        )
        self.latencies.append(time.perf_counter() - t0)
        return rec.target, rec.lower, rec.upper


def _policy() -> safety.SafetyPolicy:
    target = safety.Target(namespace="bench", kind="Deployment", name="w")
    return safety.SafetyPolicy(
        owner_namespace="bench",
        target=target,
        bounds={"request": safety.KnobBounds(min=0.0, max=1e15)},
        max_step_percent=1e6,
        cooldown_seconds=GATE_INTERVAL_S,
        max_changes_per_hour=4,
        min_confidence=0.0,
        slo_guard=False,
    )


POLICY: Final = _policy()


def gate_wants(
    current: float, rec: tuple[float, float | None, float | None], since: float, oom: bool
) -> bool:
    target, lower, upper = rec
    if oom and target > current:
        return True
    if lower is not None and upper is not None and not lower <= current <= upper:
        return True
    return since >= LIFETIME_UPDATE_S and abs(target / current - 1.0) >= MIN_CHANGE


@dataclass
class Replay:
    request: np.ndarray
    change_times: list[float]
    oom_times: list[float]


def _accepted(now: float, current: float, proposed: float, changes: list[float]) -> bool:
    ctx = safety.SafetyContext(
        now=now,
        last_change_at=changes[-1] if changes else None,
        recent_change_times=tuple(changes[-4:]),
        slo_met_now=True,
        forecast_slo_met=True,
        confidence=1.0,
        pdb=safety.PdbStatus(present=False),
    )
    change = safety.ProposedChange(
        target=POLICY.target, current={"request": current}, proposed={"request": proposed}
    )
    return safety.validate(change, POLICY, ctx).accepted


def replay(series: Series, rec: Rec) -> Replay:
    ts, us = series.ts, series.usage
    n = ts.size
    first_day = int(np.searchsorted(ts, ts[0] + DAY_S))
    current, set_at = float(np.max(us[: max(first_day, 1)])), float(ts[0])
    request = np.empty(n)
    changes: list[float] = []
    ooms: list[float] = []
    oom_since_change = False
    gates = np.searchsorted(ts, np.arange(ts[0] + GATE_INTERVAL_S, ts[-1] + GATE_INTERVAL_S, GATE_INTERVAL_S))
    prev = 0
    for i in [*np.unique(gates).tolist(), n]:
        i = min(int(i), n)
        if i <= prev:
            continue
        request[prev:i] = current
        chunk_ts, chunk_us = ts[prev:i], us[prev:i]
        rec.observe(chunk_ts, chunk_us, current)
        if series.resource == "memory":
            over = chunk_us > current
            before = np.concatenate([[prev > 0 and us[prev - 1] > request[prev - 1]], over[:-1]])
            for j in np.flatnonzero(over & ~before):
                ooms.append(float(chunk_ts[j]))
                rec.oom(float(chunk_ts[j]), float(chunk_us[j]), current)
                oom_since_change = True
        prev = i
        if i >= n:
            break
        now = float(ts[i - 1])
        proposal = rec.decide(i, current, set_at)
        if proposal[0] <= 0 or not gate_wants(current, proposal, now - set_at, oom_since_change):
            continue
        if _accepted(now, current, proposal[0], changes):
            current, set_at = proposal[0], now
            changes.append(now)
            oom_since_change = False
    return Replay(request, changes, ooms)


def day_metrics(series: Series, rp: Replay) -> list[dict[str, float]]:
    us, ts = series.usage, series.ts
    norm = float(np.mean(us)) or 1.0
    day = np.floor((ts - ts[0]) / DAY_S).astype(int)
    bounds = np.searchsorted(day, np.arange(day[-1] + 2))
    changes, ooms = np.asarray(rp.change_times), np.asarray(rp.oom_times)
    out = []
    for d in range(WARMUP_DAYS, int(day[-1]) + 1):
        lo, hi = int(bounds[d]), int(bounds[d + 1])
        if hi - lo < 0.5 * series.per_day:
            continue
        u, r = us[lo:hi], rp.request[lo:hi]
        t0, t1 = ts[0] + d * DAY_S, ts[0] + (d + 1) * DAY_S
        p95 = float(np.percentile(u, 95))
        out.append(
            {
                "slack": float(np.mean(r) / p95 - 1.0) if p95 > 0 else 0.0,
                "overrun": float(np.sum(np.maximum(u - r, 0)) / max(np.sum(u), 1e-12)),
                "exceed": float(np.mean(u > r)),
                "ooms": float(np.sum((ooms >= t0) & (ooms < t1))),
                "changes": float(np.sum((changes >= t0) & (changes < t1))),
                "cost": float(np.mean(r)) / norm,
            }
        )
    return out
