"""bench/rightsizing: replay usage series through four recommenders behind one actuation gate.

Run: `python -m bench.rightsizing` (full) or `python -m bench.rightsizing --quick`;
`--seeds 3,4,5,6` replays only generated series of those seeds (12 days each), series that no
choice in the engine was made on.

Recommenders (each sees only the past): (a) static request, (b) the Kubernetes VPA recommender
(bench/_rs_vpa.py), (c) Google Autopilot's moving window (bench/_rs_autopilot.py), (d) autoloop
(`autoloop.engines.recommend.RightsizingRecommender`, the operator's own code).

The shared gate runs every 15 minutes for every recommender: VPA's updater rule (apply when the
request is outside the recommender's [lower, upper], or when it has stood >= 12 h and the target
differs by >= 10 %; after an OOM-like event apply any increase at once), then the autoloop safety
validator (cooldown 15 min, at most 4 changes an hour). The first day of every series is warm-up
for everyone and is not scored.

Per workload-day: relative slack = mean request / p95 usage - 1; overrun = area of usage above the
request / area of usage; OOM-like events = times usage crosses above the request (memory series);
changes. Matched risk: each recommender's main knob is swept (VPA: target percentile and margin;
autoloop: risk) and autoloop's requested core-hours are interpolated along its curve at the
overrun that VPA's defaults reach, on the CPU series.

Clairvoyant bound (bench/_rs_oracle.py): the least cost at VPA's overrun of any request schedule,
even one that knows the future, that changes the request on at most 30 % of the days (the
issue's >= 70 % of days without a change) or on every day; with one change on such a day or any
number. Printed as a lower bound (Lagrangian duality over an exact DP) and as the cost of a real
schedule the DP found.
"""

from __future__ import annotations

import argparse
import json
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Final, Protocol

import numpy as np

from autoloop.engines import recommend, safety
from bench import _rs_oracle, _rs_series
from bench._rs_autopilot import AutopilotRecommender
from bench._rs_vpa import VpaRecommender

GATE_INTERVAL_S: Final[float] = 900.0
# updater/priority/update_priority_calculator.go: podLifetimeUpdateThreshold, defaultUpdateThreshold.
LIFETIME_UPDATE_S: Final[float] = 12 * 3600.0
MIN_CHANGE: Final[float] = 0.10
WARMUP_DAYS: Final[int] = 1
MIN_PER_DAY: Final[int] = _rs_series.MINUTES_PER_DAY
BOOTSTRAP_REPS: Final[int] = 1000
VPA_PERCENTILES: Final[tuple[float, ...]] = (0.8, 0.85, 0.9, 0.95, 0.99)
VPA_MARGINS: Final[tuple[float, ...]] = (0.0, 0.3)
AUTOLOOP_RISKS: Final[tuple[float, ...]] = (0.003, 0.01, 0.03, 0.1, 0.15, 0.2, 0.3)
# --quick sweeps fewer risks (the ones around VPA's overrun) to stay under a minute.
QUICK_AUTOLOOP_RISKS: Final[tuple[float, ...]] = (0.01, 0.1, 0.15, 0.2, 0.3)
# The ">= 70 % of workload-days with no change", as the clairvoyant's change-day budget.
ORACLE_CHANGE_DAYS: Final[float] = 0.30
AUTOLOOP_DEFAULT_RISK: Final[float] = recommend.RightsizingParams().risk


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
    series: _rs_series.Series
    risk: float
    ooms: list[float] = field(default_factory=list)
    latencies: list[float] = field(default_factory=list)

    def __post_init__(self) -> None:
        params = recommend.RightsizingParams(resource=self.series.resource, risk=self.risk)
        self.engine = recommend.RightsizingRecommender(params)

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


def replay(series: _rs_series.Series, rec: Rec) -> Replay:
    ts, us = series.ts, series.usage
    n = ts.size
    static = float(np.max(us[:MIN_PER_DAY]))
    current, set_at = static, float(ts[0])
    request = np.empty(n)
    changes: list[float] = []
    ooms: list[float] = []
    oom_since_change = False
    step = max(1, int(GATE_INTERVAL_S // 60))
    prev = 0
    for i in range(step, n + step, step):
        i = min(i, n)
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
            target=POLICY.target, current={"request": current}, proposed={"request": proposal[0]}
        )
        if safety.validate(change, POLICY, ctx).accepted:
            current, set_at = proposal[0], now
            changes.append(now)
            oom_since_change = False
    return Replay(request, changes, ooms)


def day_metrics(series: _rs_series.Series, rp: Replay) -> list[dict[str, float]]:
    us, ts = series.usage, series.ts
    norm = float(np.mean(us)) or 1.0
    days = us.size // MIN_PER_DAY
    out = []
    changes = np.asarray(rp.change_times)
    ooms = np.asarray(rp.oom_times)
    for d in range(WARMUP_DAYS, days):
        sl = slice(d * MIN_PER_DAY, (d + 1) * MIN_PER_DAY)
        u, r = us[sl], rp.request[sl]
        t0, t1 = ts[sl][0], ts[sl][-1] + 60
        p95 = float(np.percentile(u, 95))
        out.append(
            {
                "slack": float(np.mean(r) / p95 - 1.0) if p95 > 0 else 0.0,
                "overrun": float(np.sum(np.maximum(u - r, 0)) / max(np.sum(u), 1e-12)),
                "ooms": float(np.sum((ooms >= t0) & (ooms < t1))),
                "changes": float(np.sum((changes >= t0) & (changes < t1))),
                "cost": float(np.mean(r)) / norm,
            }
        )
    return out


def bootstrap(
    values: np.ndarray, stat: Callable[[np.ndarray], float], rng: np.random.Generator
) -> tuple[float, float, float]:
    if values.size == 0:
        return float("nan"), float("nan"), float("nan")
    idx = rng.integers(0, values.size, size=(BOOTSTRAP_REPS, values.size))
    reps = np.array([stat(values[row]) for row in idx])
    return stat(values), float(np.percentile(reps, 2.5)), float(np.percentile(reps, 97.5))


def run(quick: bool, seeds: tuple[int, ...] = ()) -> dict[str, float]:
    t_start = time.perf_counter()
    if seeds:
        # Series no choice was made on: generated with other seeds, replayed the same way
        # (--quick: 6 days each, like the quick run's generated series).
        series = [s for k in seeds for s in _rs_series.generate(days=6 if quick else 12, seed=k)]
    elif quick:
        series = _rs_series.load_traces(max_days=6)[::2] + _rs_series.generate(days=6, seed=1)
    else:
        series = (
            _rs_series.load_traces()
            + _rs_series.generate(days=12, seed=1)
            + _rs_series.generate(days=12, seed=2)
        )
    configs: dict[str, Callable[[_rs_series.Series], Rec]] = {"static": lambda s: StaticRec()}
    for p in VPA_PERCENTILES:
        configs[f"vpa p{p:g} m0.15"] = lambda s, p=p: VpaRec(s.resource, p, 0.15)  # type: ignore[misc]
    for m in VPA_MARGINS:
        configs[f"vpa p0.9 m{m:g}"] = lambda s, m=m: VpaRec(s.resource, 0.9, m)  # type: ignore[misc]
    configs["autopilot"] = lambda s: AutopilotRec(s.resource)
    risks = QUICK_AUTOLOOP_RISKS if quick else AUTOLOOP_RISKS
    for r in risks:
        configs[f"autoloop r{r:g}"] = lambda s, r=r: AutoloopRec(s, r)  # type: ignore[misc]
    rows: dict[str, dict[str, list[dict[str, float]]]] = {c: {"cpu": [], "memory": []} for c in configs}
    latencies: list[float] = []
    for s in series:
        for name, make in configs.items():
            rec = make(s)
            rows[name][s.resource].extend(day_metrics(s, replay(s, rec)))
            if isinstance(rec, AutoloopRec):
                latencies.extend(rec.latencies)
    rng = np.random.default_rng(0)

    def agg(name: str, res: str, key: str) -> float:
        return float(np.mean([d[key] for d in rows[name][res]]))

    print(
        f"{len(series)} series, {sum(len(v['cpu']) + len(v['memory']) for v in [rows['static']])} workload-days"
    )
    header = (
        f"{'recommender':18} {'res':6} {'slack mean [95% CI]':26} {'slack med':>9} {'overrun %':>9} "
        f"{'OOM/day':>8} {'chg/day':>8} {'no-chg days':>11} {'p99 chg':>7} {'cost':>6}"
    )
    print(header)
    for name in configs:
        for res in ("cpu", "memory"):
            days = rows[name][res]
            if not days:
                continue
            sl = np.array([d["slack"] for d in days])
            ch = np.array([d["changes"] for d in days])
            m, lo, hi = bootstrap(sl, np.mean, rng)
            print(
                f"{name:18} {res:6} {m:7.3f} [{lo:6.3f},{hi:6.3f}]      {np.median(sl):9.3f} "
                f"{100 * agg(name, res, 'overrun'):9.3f} {agg(name, res, 'ooms'):8.3f} {ch.mean():8.2f} "
                f"{np.mean(ch == 0):11.2f} {np.percentile(ch, 99):7.1f} {agg(name, res, 'cost'):6.3f}"
            )

    vpa, al = "vpa p0.9 m0.15", f"autoloop r{AUTOLOOP_DEFAULT_RISK:g}"
    vpa_over, vpa_cost = agg(vpa, "cpu", "overrun"), agg(vpa, "cpu", "cost")
    curve = sorted(
        (agg(f"autoloop r{r:g}", "cpu", "overrun"), agg(f"autoloop r{r:g}", "cpu", "cost")) for r in risks
    )
    xs, ys = np.array([c[0] for c in curve]), np.array([c[1] for c in curve])
    in_range = bool(xs[0] <= vpa_over <= xs[-1])
    cost_at = float(np.interp(vpa_over, xs, ys))
    print(
        f"VPA default CPU overrun {100 * vpa_over:.3f} %, cost {vpa_cost:.3f}; autoloop curve "
        f"{[(round(100 * x, 3), round(y, 3)) for x, y in curve]}; interpolated cost {cost_at:.3f}"
        f"{'' if in_range else ' (VPA overrun outside autoloop curve: clipped)'}"
    )
    cpu_series = [s for s in series if s.resource == "cpu"]
    print("clairvoyant cost ratio to VPA at VPA's CPU overrun: lower bound / achieved by a DP schedule")
    for max_changes, sweep in _rs_oracle.sweep(cpu_series, WARMUP_DAYS, (1, None)).items():
        for share in (ORACLE_CHANGE_DAYS, 1.0):
            low, achieved = _rs_oracle.bounds(sweep, vpa_over, share)
            per_day = "1 change" if max_changes == 1 else "any changes"
            print(
                f"  {per_day:11} on <= {100 * share:3.0f} % of days: {low / vpa_cost:.3f} / {achieved / vpa_cost:.3f}"
            )
    all_al = rows[al]["cpu"] + rows[al]["memory"]
    ch = np.array([d["changes"] for d in all_al])
    vpa_mem_ooms = sum(d["ooms"] for d in rows[vpa]["memory"])
    al_mem_ooms = sum(d["ooms"] for d in rows[al]["memory"])
    print(
        f"memory OOM-like events: VPA {vpa_mem_ooms:.0f}, autoloop {al_mem_ooms:.0f}; elapsed {time.perf_counter() - t_start:.0f}s"
    )
    vpa_all_over = np.mean([d["overrun"] for d in rows[vpa]["cpu"] + rows[vpa]["memory"]])
    al_all_over = np.mean([d["overrun"] for d in all_al])
    return {
        "cost_ratio_at_vpa_overrun": round(cost_at / vpa_cost, 4),
        "overrun_ratio_vs_vpa": round(float(al_all_over / vpa_all_over), 4),
        # Add-one ratio: defined (and honest) when VPA has no event at all.
        "oom_events_ratio_vs_vpa": round((al_mem_ooms + 1) / (vpa_mem_ooms + 1), 4),
        "mean_slack": round(float(np.mean([d["slack"] for d in all_al])), 4),
        "days_without_change": round(float(np.mean(ch == 0)), 4),
        "p99_changes_per_day": round(float(np.percentile(ch, 99)), 2),
        "decision_latency_p99_ms": round(1000 * float(np.percentile(latencies, 99)), 3),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="fewer, shorter series (< 1 min)")
    parser.add_argument(
        "--seeds",
        type=lambda text: tuple(int(k) for k in text.split(",")),
        default=(),
        help="replay only generated series of these seeds, e.g. 3,4,5,6 (unseen series)",
    )
    args = parser.parse_args()
    print(json.dumps(run(args.quick, args.seeds)))


if __name__ == "__main__":
    main()
