"""bench/rightsizing: replay usage series through four recommenders behind one actuation gate.

Run: `python -m bench.rightsizing` (full) or `--quick` (fewer, shorter series, a smaller grid; same
code path); `--data DIR` or $AUTOLOOP_DATA for the data root (default ../shared/data).

Series: every real CPU series in the data root, `traces/` (Crane, 1 min) and `bitbrains/` (VMs with
mean > 0.1 core over >= 20 days, 5 min), the headline, reported per set; generated CPU and memory
series (bench/_rs_series.py) as a second table. Recommenders (each sees only the past): (a)
static request, (b) the Kubernetes VPA recommender (bench/_rs_vpa.py), swept over its target
percentile, (c) Google Autopilot's moving window (bench/_rs_autopilot.py), (d) autoloop
(`autoloop.engines.recommend.RightsizingRecommender`, the operator's own code), swept over its risk
and over a grid of its hyperparameters (half-life, restart cost, calibration step, the in-horizon
surge test on or off). The gate and the day metrics: bench/_rs_replay.py.

Real series are scored leave-one-series-out (bench/_rs_matched.py): each is replayed with the
hyperparameters chosen on the other real series. Matched risk, both ways and never clipped
silently: autoloop's cost at VPA's overrun (autoloop's risk curve interpolated) and VPA's cost at
autoloop's overrun at its default risk (VPA's percentile curve interpolated), pooled per set and per
series (median and quartiles). Realised overrun against the requested risk: the share of samples
above the request at risk 0.05 and 0.1.

Clairvoyant bound (bench/_rs_oracle.py, on the 1-minute Crane series): the least cost at VPA's
overrun of any request schedule, even one that knows the future, that changes the request on at
most 25 % of the days (the issue's >= 75 % of days without a change) or on every day.
"""

from __future__ import annotations

import argparse
import itertools
import json
import time
from collections.abc import Callable
from concurrent.futures import ProcessPoolExecutor
from typing import Final

import numpy as np

from autoloop.engines import recommend
from bench import _rs_matched, _rs_oracle, _rs_replay, _rs_series
from bench._rs_matched import Days, mean
from bench._rs_replay import Replay, day_metrics  # noqa: F401  (re-exported for tests)
from bench._rs_vpa import TARGET_PERCENTILE

VPA_PERCENTILES: Final[tuple[float, ...]] = (0.5, 0.6, 0.7, 0.8, 0.85, 0.9, 0.95, 0.99)
AUTOLOOP_RISKS: Final[tuple[float, ...]] = (0.02, 0.05, 0.1, 0.2, 0.3)
QUICK_RISKS: Final[tuple[float, ...]] = (0.05, 0.1, 0.3)
# hl 3 d and rc 4.8 h were never chosen in any fold of the two earlier runs (docs/benchmarks).
HALF_LIVES_DAYS: Final[tuple[float, ...]] = (7.0,)
RESTART_COSTS_HOURS: Final[tuple[float, ...]] = (9.6, 19.2)
SURGE_TESTS: Final[tuple[bool, ...]] = (True, False)
CALIBRATION_STEPS: Final[tuple[float, ...]] = (0.0, 0.03, 0.1, 0.3)
"""0: the level calibrated by replaying the band at every level; > 0: online (adaptive conformal)."""
QUICK_HALF_LIVES_DAYS: Final[tuple[float, ...]] = (7.0,)
QUICK_RESTART_COSTS_HOURS: Final[tuple[float, ...]] = (9.6,)
QUICK_CALIBRATION_STEPS: Final[tuple[float, ...]] = (0.0, 0.03)
CALIBRATION_RISKS: Final[tuple[float, ...]] = (0.05, 0.1)
ORACLE_CHANGE_DAYS: Final[float] = 0.25
DEFAULT_RISK: Final[float] = recommend.RightsizingParams().risk
WORKERS: Final[int] = 2

Job = tuple[_rs_series.Series, str, dict[str, float | bool]]


def _make(job: Job) -> _rs_replay.Rec:
    s, kind, knobs = job
    if kind == "vpa":
        return _rs_replay.VpaRec(s.resource, knobs["p"], 0.15)
    if kind == "autopilot":
        return _rs_replay.AutopilotRec(s.resource)
    if kind == "static":
        return _rs_replay.StaticRec()
    params = recommend.RightsizingParams.model_validate({"resource": s.resource, **knobs})
    return _rs_replay.AutoloopRec(s, params)


def _run(job: Job) -> tuple[Days, list[float]]:
    rec = _make(job)
    days = day_metrics(job[0], _rs_replay.replay(job[0], rec))
    return days, rec.latencies if isinstance(rec, _rs_replay.AutoloopRec) else []


def _grid(quick: bool) -> dict[str, dict[str, float | bool]]:
    """The hyperparameter grid the leave-one-series-out rule chooses from (knob values by name)."""
    hls = QUICK_HALF_LIVES_DAYS if quick else HALF_LIVES_DAYS
    rcs = QUICK_RESTART_COSTS_HOURS if quick else RESTART_COSTS_HOURS
    steps = QUICK_CALIBRATION_STEPS if quick else CALIBRATION_STEPS
    return {
        f"hl{h:g} rc{c:g} cal{a:g} surge {'on' if t else 'off'}": {
            "half_life_days": h,
            "restart_cost_hours": c,
            "calibration_step": a,
            "surge_test": t,
        }
        for h, c, a, t in itertools.product(hls, rcs, steps, SURGE_TESTS)
    }


def _row(name: str, days: Days) -> str:
    no_change, p99 = _rs_matched.change_stats(days)
    return (
        f"  {name:22} {mean(days, 'slack'):7.3f} {100 * mean(days, 'overrun'):9.3f} {100 * mean(days, 'exceed'):8.3f} "
        f"{mean(days, 'ooms'):8.3f} {mean(days, 'changes'):8.2f} {no_change:11.2f} {p99:7.1f} {mean(days, 'cost'):6.3f}"
    )


HEADER: Final[str] = (
    f"  {'recommender':22} {'slack':>7} {'overrun %':>9} {'exceed %':>8} {'OOM/day':>8} {'chg/day':>8} "
    f"{'no-chg days':>11} {'p99 chg':>7} {'cost':>6}"
)


def _matched_report(
    label: str, names: list[str], al: dict[str, dict[float, Days]], vpa: dict[str, dict[float, Days]]
) -> dict[str, float]:
    """Print and return the pooled and per-series matched ratios of one set."""
    pool_al = {r: [d for s in names for d in al[s][r]] for r in next(iter(al.values()))}
    pool_vpa = {p: [d for s in names for d in vpa[s][p]] for p in VPA_PERCENTILES}
    at_vpa = _rs_matched.ratio_at_vpa(pool_al, pool_vpa[TARGET_PERCENTILE])
    at_al = _rs_matched.ratio_at_autoloop(pool_al[DEFAULT_RISK], pool_vpa)
    per_vpa = [_rs_matched.ratio_at_vpa(al[s], vpa[s][TARGET_PERCENTILE]) for s in names]
    per_al = [_rs_matched.ratio_at_autoloop(al[s][DEFAULT_RISK], vpa[s]) for s in names]
    for what, pooled, per in (
        ("at VPA's overrun", at_vpa, per_vpa),
        ("VPA at autoloop's overrun", at_al, per_al),
    ):
        q1, med, q3 = _rs_matched.quartiles([m.value for m in per])
        print(
            f"  {label:10} cost ratio {what:26} pooled {pooled.value:.3f}{' (clipped)' if pooled.clipped else ''}; "
            f"per series median {med:.3f} [q1 {q1:.3f}, q3 {q3:.3f}], {sum(m.clipped for m in per)}/{len(per)} clipped"
        )
    return {
        "at_vpa": at_vpa.value,
        "at_autoloop": at_al.value,
        "per_series_median": _rs_matched.quartiles([m.value for m in per_vpa])[1],
    }


def _collect(
    series: list[_rs_series.Series], jobs: list[tuple[str, Job]]
) -> tuple[dict[str, Days], list[float]]:
    with ProcessPoolExecutor(WORKERS) as pool:
        results = list(pool.map(_run, [j for _, j in jobs], chunksize=4))
    out = {key: days for (key, _), (days, _) in zip(jobs, results, strict=True)}
    return out, [x for _, lat in results for x in lat]


def _real(
    quick: bool, data: str | None, risks: tuple[float, ...]
) -> tuple[dict[str, object], list[float], float]:
    max_days = 8 if quick else None
    series = _rs_series.load_traces(max_days, data) + _rs_series.load_bitbrains(max_days, data)
    if quick:
        series = [s for k, s in enumerate(series) if k % 5 == 0]
    grid = _grid(quick)
    jobs: list[tuple[str, Job]] = []
    for s in series:
        jobs += [(f"{s.name}|vpa|{p}", (s, "vpa", {"p": p})) for p in VPA_PERCENTILES]
        jobs += [(f"{s.name}|static", (s, "static", {})), (f"{s.name}|autopilot", (s, "autopilot", {}))]
        jobs += [
            (f"{s.name}|{g}|{r}", (s, "autoloop", {**k, "risk": r})) for g, k in grid.items() for r in risks
        ]
    runs, latencies = _collect(series, jobs)
    names = [s.name for s in series]
    al = {g: {s: {r: runs[f"{s}|{g}|{r}"] for r in risks} for s in names} for g in grid}
    vpa = {s: {p: runs[f"{s}|vpa|{p}"] for p in VPA_PERCENTILES} for s in names}
    vpa_default = {s: vpa[s][TARGET_PERCENTILE] for s in names}
    chosen = {
        s: _rs_matched.choose(list(grid), al, vpa_default, [t for t in names if t != s], DEFAULT_RISK)
        for s in names
    }
    held = {s: al[chosen[s]][s] for s in names}
    print("leave-one-series-out choices:", {g: sum(c == g for c in chosen.values()) for g in grid})
    out: dict[str, dict[str, float]] = {
        k: {} for k in ("ratio", "no_change", "p99", "ratio_vpa_at_al", "median")
    }
    overrun_vs_risk: dict[str, dict[str, float]] = {f"{r:g}": {} for r in CALIBRATION_RISKS}
    for group in ("crane", "bitbrains"):
        members = [s.name for s in series if s.group == group]
        if not members:
            continue
        print(f"real series, {group}: {len(members)} series, held-out scores")
        print(HEADER)
        for label, key in (("static", "static"), ("autopilot", "autopilot")):
            print(_row(label, [d for s in members for d in runs[f"{s}|{key}"]]))
        for p in (0.8, TARGET_PERCENTILE, 0.95):
            print(_row(f"vpa p{p:g}", [d for s in members for d in vpa[s][p]]))
        for r in risks:
            print(_row(f"autoloop r{r:g} (LOSO)", [d for s in members for d in held[s][r]]))
        m = _matched_report(group, members, held, vpa)
        no_change, p99 = _rs_matched.change_stats([d for s in members for d in held[s][DEFAULT_RISK]])
        out["ratio"][group], out["ratio_vpa_at_al"][group], out["median"][group] = (
            m["at_vpa"],
            m["at_autoloop"],
            m["per_series_median"],
        )
        out["no_change"][group], out["p99"][group] = no_change, p99
        for r in CALIBRATION_RISKS:
            if r in risks:
                realised = mean([d for s in members for d in held[s][r]], "exceed")
                overrun_vs_risk[f"{r:g}"][group] = realised
                print(
                    f"  {group:10} risk {r:g}: realised share of time above the request {realised:.4f} ({realised / r:.2f}x)"
                )
    crane = [s for s in series if s.group == "crane"]
    vpa_over = mean([d for s in crane for d in vpa[s.name][TARGET_PERCENTILE]], "overrun")
    vpa_cost = mean([d for s in crane for d in vpa[s.name][TARGET_PERCENTILE]], "cost")
    print(
        "clairvoyant cost ratio to VPA at VPA's overrun, Crane series: lower bound / achieved by a DP schedule"
    )
    for max_changes, sweep in _rs_oracle.sweep(crane, _rs_replay.WARMUP_DAYS, (1, None)).items():
        for share in (ORACLE_CHANGE_DAYS, 1.0):
            low, achieved = _rs_oracle.bounds(sweep, vpa_over, share)
            per_day = "1 change" if max_changes == 1 else "any changes"
            print(
                f"  {per_day:11} on <= {100 * share:3.0f} % of days: {low / vpa_cost:.3f} / {achieved / vpa_cost:.3f}"
            )
    all_held = [d for s in names for d in held[s][DEFAULT_RISK]]
    all_vpa = [d for s in names for d in vpa_default[s]]
    pooled = _rs_matched.ratio_at_vpa({r: [d for s in names for d in held[s][r]] for r in risks}, all_vpa)
    no_change, p99 = _rs_matched.change_stats(all_held)
    head: dict[str, object] = {
        "cost_ratio_at_vpa_overrun": round(pooled.value, 4),
        "overrun_ratio_vs_vpa": round(mean(all_held, "overrun") / mean(all_vpa, "overrun"), 4),
        "mean_slack": round(mean(all_held, "slack"), 4),
        "days_without_change": round(no_change, 4),
        "p99_changes_per_day": round(p99, 2),
        "cost_ratio_at_vpa_overrun_by_set": {k: round(v, 4) for k, v in out["ratio"].items()},
        "vpa_cost_ratio_at_autoloop_overrun_by_set": {
            k: round(v, 4) for k, v in out["ratio_vpa_at_al"].items()
        },
        "per_series_median_cost_ratio_by_set": {k: round(v, 4) for k, v in out["median"].items()},
        "days_without_change_by_set": {k: round(v, 4) for k, v in out["no_change"].items()},
        "p99_changes_per_day_by_set": {k: round(v, 2) for k, v in out["p99"].items()},
    }
    head["overrun_vs_risk"] = {r: {k: round(v, 4) for k, v in d.items()} for r, d in overrun_vs_risk.items()}
    return head, latencies, vpa_cost


def _generated(quick: bool, risks: tuple[float, ...]) -> tuple[float, list[float]]:
    """The second table: generated series, default hyperparameters; returns the OOM ratio."""
    series = (
        _rs_series.generate(days=6, seed=1)
        if quick
        else _rs_series.generate(12, 1) + _rs_series.generate(12, 2)
    )
    jobs: list[tuple[str, Job]] = []
    for s in series:
        jobs += [
            (f"{s.name}|vpa", (s, "vpa", {"p": TARGET_PERCENTILE})),
            (f"{s.name}|autopilot", (s, "autopilot", {})),
        ]
        jobs += [(f"{s.name}|static", (s, "static", {}))]
        jobs += [(f"{s.name}|{r}", (s, "autoloop", {"risk": r})) for r in risks]
    runs, latencies = _collect(series, jobs)
    print(f"generated series: {len(series)} (default hyperparameters)")
    print(HEADER)
    pick: Callable[[str, str], Days] = lambda res, key: [  # noqa: E731
        d for s in series if s.resource == res for d in runs[f"{s.name}|{key}"]
    ]
    for res in ("cpu", "memory"):
        for key in ("static", "autopilot", "vpa", f"{DEFAULT_RISK}"):
            print(_row(f"{key if key != str(DEFAULT_RISK) else 'autoloop r' + key} {res}", pick(res, key)))
    cpu_al = {r: pick("cpu", f"{r}") for r in risks}
    m = _rs_matched.ratio_at_vpa(cpu_al, pick("cpu", "vpa"))
    print(
        f"  generated CPU: autoloop cost at VPA's overrun {m.value:.3f}x VPA's{' (clipped)' if m.clipped else ''}"
    )
    vpa_ooms = sum(d["ooms"] for d in pick("memory", "vpa"))
    al_ooms = sum(d["ooms"] for d in pick("memory", f"{DEFAULT_RISK}"))
    print(f"  memory OOM-like events: VPA {vpa_ooms:.0f}, autoloop {al_ooms:.0f}")
    return (al_ooms + 1) / (vpa_ooms + 1), latencies


def run(quick: bool, data: str | None = None) -> dict[str, object]:
    t0 = time.perf_counter()
    risks = QUICK_RISKS if quick else AUTOLOOP_RISKS
    head, latencies, _ = _real(quick, data, risks)
    oom_ratio, gen_latencies = _generated(quick, risks)
    print(f"elapsed {time.perf_counter() - t0:.0f}s")
    return {
        **head,
        # Add-one ratio: defined (and honest) when VPA has no event at all.
        "oom_events_ratio_vs_vpa": round(oom_ratio, 4),
        "decision_latency_p99_ms": round(1000 * float(np.percentile(latencies + gen_latencies, 99)), 3),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--quick", action="store_true", help="fewer, shorter series, a smaller grid (< 1 min)"
    )
    parser.add_argument("--data", default=None, help="data root (default: $AUTOLOOP_DATA or ../shared/data)")
    args = parser.parse_args()
    print(json.dumps(run(args.quick, args.data)))


if __name__ == "__main__":
    main()
