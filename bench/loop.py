"""bench/loop: the OptimizationLoop engine against an HPA and a static deployment, on service models
it was not written beside.

Run: `python -m bench.loop` (full: 48 h per run) or `python -m bench.loop --quick` (12 h, fewer
runs, same code path). `--data DIR` or $AUTOLOOP_DATA: where `traces/` is (bench/_data.py).

Each run is one service drawn per seed from one model family (`bench._loop_models`: the simulator
written beside the engine, and pod-level models of a different form with cold start, cache warm-up,
25 % rolling updates, OOM kills and crash loops), driven by a real CPU trace scaled to a request
rate with a 3x flash crowd (`bench._loop_load`). Three policies run on the same service and load:
static (10 pods x 1 core x 1 GiB, the start), the Kubernetes HPA at 70 % CPU with VPA-sized memory
(`bench._loop_hpa`), and the loop engine in `Auto` with a pass every 5 minutes from the same start
(`bench._loop_run`). No engine constant is chosen here; see docs/benchmarks/loop.md.

Reported per family: cost, SLO-violation minutes (15-s steps with p95 over the service's SLO or
errors over 1 %), OOM kills, rollbacks and restarting changes (pod-template changes) per day, and
bound violations. Ratios to the HPA are of sums over the family's runs; SLO-minute and OOM ratios
add 1 to both sides so that a zero stays defined.
"""

from __future__ import annotations

import argparse
import json
import multiprocessing
import time
from collections import defaultdict
from pathlib import Path
from typing import Any

from bench import _data, _loop_models, _loop_run

POLICIES = ("static", "hpa", "loop")


def jobs(root: Path, quick: bool) -> list[_loop_run.Job]:
    hours = 12.0 if quick else 48.0
    cases = [(0, "cpu-0"), (1, "cpu-1")] if quick else [(s, f"cpu-{s}") for s in range(4)]
    if quick:
        cases = cases[:1]
    return [
        _loop_run.Job(family, seed, root / "traces" / f"{trace}.csv", hours, policy)
        for family in _loop_models.FAMILIES
        for seed, trace in cases
        for policy in POLICIES
    ]


def _ratio(a: float, b: float, plus: float = 0.0) -> float:
    return round((a + plus) / (b + plus), 3) if b + plus > 0 else 0.0


def summarise(done: list[tuple[_loop_run.Job, dict[str, float]]]) -> dict[str, Any]:
    by: dict[tuple[str, str], list[dict[str, float]]] = defaultdict(list)
    for job, res in done:
        by[(job.family, job.policy)].append(res)
    print(
        f"{'family':12} {'policy':7} {'cost $':>8} {'SLO min':>8} {'OOM':>6} {'rollb/d':>7} "
        f"{'restart/d':>9} {'bound':>5} {'end>static':>10} {'state B':>7}"
    )
    head: dict[str, Any] = {
        "cost_ratio_vs_hpa_by_model": {},
        "slo_minutes_ratio_vs_hpa_by_model": {},
        "oom_ratio_vs_hpa_by_model": {},
        "rollbacks_per_day_max": 0.0,
        "restarting_changes_per_day_max": 0.0,
        "bound_violations": 0,
        "runs_ending_costlier_than_static": 0,
    }
    for family in _loop_models.FAMILIES:
        sums = {}
        for policy in POLICIES:
            rows = by[(family, policy)]
            total = {k: sum(r[k] for r in rows) for k in rows[0]}
            sums[policy] = total
            ends = 0
            if policy == "loop":
                statics = by[(family, "static")]
                ends = sum(
                    r["cost_end_per_hour"] > s["cost_end_per_hour"] + 1e-9
                    for r, s in zip(rows, statics, strict=True)
                )
                head["runs_ending_costlier_than_static"] += ends
                head["rollbacks_per_day_max"] = max(
                    head["rollbacks_per_day_max"], *(r["rollbacks_per_day"] for r in rows)
                )
                head["restarting_changes_per_day_max"] = max(
                    head["restarting_changes_per_day_max"], *(r["restarting_per_day"] for r in rows)
                )
                head["bound_violations"] += int(total["bound_violations"])
            print(
                f"{family:12} {policy:7} {total['cost']:8.2f} {total['slo_minutes']:8.0f} {total['oom']:6.0f} "
                f"{max(r['rollbacks_per_day'] for r in rows):7.1f} "
                f"{max(r['restarting_per_day'] for r in rows):9.1f} {total['bound_violations']:5.0f} "
                f"{ends:10d} {max(r['state_bytes'] for r in rows):7.0f}"
            )
        loop_, hpa = sums["loop"], sums["hpa"]
        head["cost_ratio_vs_hpa_by_model"][family] = _ratio(loop_["cost"], hpa["cost"])
        head["slo_minutes_ratio_vs_hpa_by_model"][family] = _ratio(
            loop_["slo_minutes"], hpa["slo_minutes"], 1.0
        )
        head["oom_ratio_vs_hpa_by_model"][family] = _ratio(loop_["oom"], hpa["oom"], 1.0)
    head["rollbacks_per_day_max"] = round(head["rollbacks_per_day_max"], 2)
    head["restarting_changes_per_day_max"] = round(head["restarting_changes_per_day_max"], 2)
    return head


def main() -> None:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="12 simulated hours, one case per family")
    parser.add_argument("--data", default=None, help="data root holding traces/ (default ../shared/data)")
    parser.add_argument("--workers", type=int, default=2)
    args = parser.parse_args()
    root = _data.data_root(args.data, require="traces")
    t0 = time.perf_counter()
    todo = jobs(root, args.quick)
    with multiprocessing.Pool(args.workers) as pool:
        results = pool.map(_loop_run.run, todo, chunksize=1)
    head = summarise(list(zip(todo, results, strict=True)))
    print(f"elapsed {time.perf_counter() - t0:.0f}s, {len(todo)} runs of {todo[0].hours:g} simulated hours")
    print(json.dumps(head))


if __name__ == "__main__":
    main()
