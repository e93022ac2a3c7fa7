"""Benchmark: root-cause ranking on real Sock Shop fault injections, then anomaly detection and
root-cause ranking on simulated microservice incidents.

Run `python -m bench.rca` (200 seeded cases per simulator tier) or `python -m bench.rca --quick`
(20 per tier, same code; the real cases are always all run). `--data DIR` (else $AUTOLOOP_DATA,
else ../shared/data beside the repository; bench/_data.py) is the data root holding `sockshop/`.

Real cases (bench/_rca_real.py): autoloop against RCAEval's N-Sigma and BARO's root-cause step
(implemented there as their reference code does), with the true onset and as the operator calls
`rca.analyze`; autoloop's shipped constants are chosen on the simulator's cases only (the bench
checks that they equal the engine defaults) and held fixed on Sock Shop; leave-one-case-out is
reported beside them.

Simulated cases come from `bench._rca_sim` (10-60 services, call graphs that propagate latency and
errors with lag and gain, tenfold noise spread, daily seasonality, non-fault load spikes, five
fault types). Tiers: easy (onset reported exactly) and hard (reported 60 s late; faults in
mid-tier services whose callees also move; one declared edge in ten missing). Every method ranks
services from the same series, graph and reported onset:
- autoloop: `autoloop.engines.rca` (`RootCauseAnalyzer.findings` then `.rank`, the two halves of
  `rca.analyze`), engine defaults.
- random: a seeded random permutation of the services.
- N-sigma: per service, the max over metrics and post-onset samples of |x - mean(pre)| / std(pre).
- robust scorer (BARO-style): |max(post) - median(pre)| / IQR(pre), max over metrics.
  These two are the issue's formulas, kept for comparison with earlier runs; the faithful N-Sigma
  and BARO are in bench/_rca_real.py. Neither has a tuned constant.
Detection: `autoloop.engines.anomaly.detect` on each case's fault window and on its no-fault
twin (same graph, load and noise), against a 3-sigma detector (any sample beyond mean +- 3 std
of the reference).
The last line printed is one JSON object with the headline numbers.
"""

from __future__ import annotations

import argparse
import json
import time
from collections.abc import Callable, Mapping, Sequence
from typing import Final

import numpy as np

from autoloop.engines import anomaly, rca
from bench import _data, _rca_real, _rca_sockshop
from bench import _rca_sim as sim

CASES_FULL: Final[int] = 200
CASES_QUICK: Final[int] = 20
BOOTSTRAP: Final[int] = 1000
"""Bootstrap resamples for the 95 % intervals (percentile method)."""
DETECT_START_S: Final[float] = sim.ONSET_RANGE_S[0]
"""Detection evaluates from 45 min on; the 45 minutes before are its reference."""
THREE_SIGMA: Final[float] = 3.0
"""The classic 3-sigma rule: the comparison detector flags any sample beyond mean +- 3 std."""
FAULT_NAMES: Final[dict[str, str]] = {
    "cpu_hog": "cpu_saturation",
    "memory_leak": "memory_leak",
    "latency": "latency",
    "error_burst": "error_burst",
    "bad_rollout": "bad_rollout",
}
METHODS: Final[tuple[str, ...]] = ("autoloop", "robust_scorer", "n_sigma", "random")

Ranker = Callable[[sim.Case], list[str]]


def _split(case: sim.Case, t: np.ndarray, x: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    pre = x[t < case.reported_onset_s]
    post = x[t >= case.reported_onset_s]
    return pre, post


def rank_n_sigma(case: sim.Case) -> list[str]:
    """RCAEval N-Sigma: max z of post samples against the pre window's mean and std."""
    scores = {}
    for svc, metrics in case.series.items():
        best = 0.0
        for t, x in metrics.values():
            pre, post = _split(case, t, x)
            sd = float(np.std(pre))
            if post.size and sd > 0:
                best = max(best, float(np.max(np.abs(post - np.mean(pre))) / sd))
        scores[svc] = best
    return sorted(scores, key=lambda s: (-scores[s], s))


def rank_robust(case: sim.Case) -> list[str]:
    """BARO-style robust scorer: |max(post) - median(pre)| / IQR(pre)."""
    scores = {}
    for svc, metrics in case.series.items():
        best = 0.0
        for t, x in metrics.values():
            pre, post = _split(case, t, x)
            q1, q3 = np.percentile(pre, [25, 75]) if pre.size else (0.0, 0.0)
            iqr = float(q3 - q1)
            if post.size and iqr > 0:
                best = max(best, abs(float(np.max(post)) - float(np.median(pre))) / iqr)
        scores[svc] = best
    return sorted(scores, key=lambda s: (-scores[s], s))


def rank_random(case: sim.Case) -> list[str]:
    rng = np.random.default_rng([case.seed, 7])
    return [str(s) for s in rng.permutation(sorted(case.series))]


def run_autoloop(case: sim.Case) -> tuple[rca.RCAResult, _rca_real.Row]:
    """autoloop's result (`rca.analyze` in its two halves) and the row to cross-validate with."""
    analyzer = rca.RootCauseAnalyzer()
    found = analyzer.findings(case.series, onset=case.reported_onset_s)
    row = _rca_real.Row(
        1 + case.seed % 2, "sim", case.tier, found, case.graph, case.root, FAULT_NAMES[case.fault_type]
    )
    return analyzer.rank(found, case.graph), row


def _rank_of(root: str, ranking: Sequence[str]) -> int:
    return ranking.index(root) + 1 if root in ranking else 10**6


def _ac(ranks: np.ndarray, k: int) -> float:
    return float(np.mean(ranks <= k)) if ranks.size else float("nan")


def _avg5(ranks: np.ndarray) -> float:
    return float(np.mean([_ac(ranks, k) for k in range(1, 6)]))


def _ci(
    ranks: np.ndarray, stat: Callable[[np.ndarray], float], rng: np.random.Generator
) -> tuple[float, float]:
    if ranks.size == 0:
        return (float("nan"), float("nan"))
    draws = [stat(ranks[rng.integers(0, ranks.size, ranks.size)]) for _ in range(BOOTSTRAP)]
    lo, hi = np.percentile(draws, [2.5, 97.5])
    return float(lo), float(hi)


def _three_sigma_alarms(series: sim.Series, start: float) -> list[float]:
    """Times of the first 3-sigma exceedance of every series from `start` on."""
    times = []
    for metrics in series.values():
        for t, x in metrics.values():
            ref = x[t < start]
            sd = float(np.std(ref))
            hit = np.flatnonzero((t >= start) & (np.abs(x - np.mean(ref)) > THREE_SIGMA * sd))
            if hit.size:
                times.append(float(t[hit[0]]))
    return times


def _detection(case: sim.Case) -> dict[str, float]:
    """One fault window and its no-fault twin through autoloop's detector and the 3-sigma one."""
    out: dict[str, float] = {}
    fault = [a for a in anomaly.detect(case.series, test_start=DETECT_START_S).anomalies if a.unexplained]
    normal = [
        a for a in anomaly.detect(case.normal_series, test_start=DETECT_START_S).anomalies if a.unexplained
    ]
    after = [a.detected_at for a in fault if a.detected_at >= case.onset_s]
    out["tp"] = float(bool(after))
    out["fp_pre"] = float(not after and any(a.detected_at < case.onset_s for a in fault))
    out["fp_normal"] = float(bool(normal))
    out["delay"] = (min(after) - case.onset_s) / sim.STEP_S if after else float("nan")
    s_fault = _three_sigma_alarms(case.series, DETECT_START_S)
    s_after = [t for t in s_fault if t >= case.onset_s]
    out["s_tp"] = float(bool(s_after))
    out["s_fp_normal"] = float(bool(_three_sigma_alarms(case.normal_series, DETECT_START_S)))
    out["s_delay"] = (min(s_after) - case.onset_s) / sim.STEP_S if s_after else float("nan")
    return out


def _timing() -> float:
    """Seconds for one analysis of 50 services x 1 h of 15 s samples (best of three)."""
    case = sim.make_case(10_000, "easy", n_services=50)
    t_end = case.onset_s + sim.POST_S
    cut = {
        svc: {m: (t[t > t_end - 3600.0], x[t > t_end - 3600.0]) for m, (t, x) in metrics.items()}
        for svc, metrics in case.series.items()
    }
    best = float("inf")
    for _ in range(3):
        t0 = time.perf_counter()
        rca.analyze(cut, case.graph, onset=case.reported_onset_s)
        best = min(best, time.perf_counter() - t0)
    return best


def _table(title: str, rows: Mapping[str, Mapping[str, np.ndarray]], rng: np.random.Generator) -> list[str]:
    lines = [
        title,
        f"{'method':<14} {'n':>4}  {'AC@1 [95% CI]':<22} {'AC@3 [95% CI]':<22} {'Avg@5 [95% CI]':<22}",
    ]
    for method, by in rows.items():
        ranks = by["ranks"]
        cells = []
        for stat in (lambda r: _ac(r, 1), lambda r: _ac(r, 3), _avg5):
            lo, hi = _ci(ranks, stat, rng)
            cells.append(f"{stat(ranks):.3f} [{lo:.2f},{hi:.2f}]")
        lines.append(f"{method:<14} {ranks.size:>4}  {cells[0]:<22} {cells[1]:<22} {cells[2]:<22}")
    return lines


def main(argv: Sequence[str] | None = None) -> dict[str, float]:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--quick", action="store_true", help=f"{CASES_QUICK} cases per tier instead of {CASES_FULL}"
    )
    parser.add_argument("--cases", type=int, default=None, help="cases per tier (overrides --quick)")
    parser.add_argument(
        "--data",
        default=None,
        help=f"data root holding {_rca_sockshop.FOLDER}/ (default: ${_data.ENV_VAR}, else ../shared/data beside the repository)",
    )
    args = parser.parse_args(argv)
    real_cases = _rca_sockshop.load_cases(_data.data_root(args.data, require=_rca_sockshop.FOLDER))
    n_cases = args.cases or (CASES_QUICK if args.quick else CASES_FULL)
    rng = np.random.default_rng(20260101)
    rankers: dict[str, Ranker] = {
        "robust_scorer": rank_robust,
        "n_sigma": rank_n_sigma,
        "random": rank_random,
    }
    results: dict[str, dict[str, dict[str, list[float]]]] = {}
    detections: list[dict[str, float]] = []
    fault_hits: dict[str, list[float]] = {}
    sim_rows: list[_rca_real.Row] = []
    sim_confident: list[bool] = []
    analysis_seconds: list[float] = []
    t_start = time.perf_counter()
    for tier in ("easy", "hard"):
        per: dict[str, dict[str, list[float]]] = {m: {} for m in METHODS}
        for seed in range(n_cases):
            case = sim.make_case(seed, tier)
            t0 = time.perf_counter()
            result, row = run_autoloop(case)
            analysis_seconds.append(time.perf_counter() - t0)
            sim_rows.append(row)
            fault = result.top.fault_type if result.top else "none"
            ranks = {"autoloop": _rank_of(case.root, [c.service for c in result.causes])}
            if result.confident:
                sim_confident.append(ranks["autoloop"] == 1)
            for name, ranker in rankers.items():
                ranks[name] = _rank_of(case.root, ranker(case))
            for method, r in ranks.items():
                per[method].setdefault("all", []).append(r)
                per[method].setdefault(case.fault_type, []).append(r)
            if ranks["autoloop"] == 1:
                fault_hits.setdefault(tier, []).append(float(fault == FAULT_NAMES[case.fault_type]))
            detections.append(_detection(case))
        results[tier] = per
    real = _rca_real.evaluate(real_cases, sim_rows)
    lines = _rca_real.table(real)
    lines.append(
        f"\n== simulator, engine defaults: {n_cases} cases per tier; confident calls right "
        f"{sum(sim_confident)}/{len(sim_confident)} =="
    )
    for tier in ("easy", "hard"):
        rows = {m: {"ranks": np.array(results[tier][m]["all"])} for m in METHODS}
        lines += _table(f"\n== {tier} tier: {n_cases} cases ==", rows, rng)
        lines.append(f"{'by fault type (AC@1 / AC@3)':<30} " + "  ".join(f"{m:>16}" for m in METHODS))
        for ft in sim.FAULT_TYPES:
            cells = []
            for m in METHODS:
                got = np.array(results[tier][m].get(ft, []))
                cells.append(f"{_ac(got, 1):.2f}/{_ac(got, 3):.2f} (n={got.size})" if got.size else "-")
            lines.append(f"  {ft:<28} " + "  ".join(f"{c:>16}" for c in cells))
        ft_acc = fault_hits.get(tier, [])
        lines.append(
            f"fault-type accuracy when the root is ranked first: {np.mean(ft_acc) if ft_acc else float('nan'):.3f}"
        )
    det = {k: np.array([d[k] for d in detections]) for k in detections[0]}
    tp, fp = det["tp"].sum(), det["fp_normal"].sum() + det["fp_pre"].sum()
    precision = float(tp / (tp + fp)) if tp + fp else 0.0
    recall = float(det["tp"].mean())
    fpr = float(det["fp_normal"].mean())
    delay = float(np.nanmedian(det["delay"])) if np.isfinite(det["delay"]).any() else float("nan")
    s_tp, s_fp = det["s_tp"].sum(), det["s_fp_normal"].sum()
    s_delay = float(np.nanmedian(det["s_delay"])) if np.isfinite(det["s_delay"]).any() else float("nan")
    lines.append(f"\n== detection: {len(detections)} fault windows + {len(detections)} normal windows ==")
    lines.append(
        f"{'detector':<12} {'precision':>9} {'recall':>7} {'FP/normal window':>17} {'median delay (scrapes)':>23} {'p90 delay':>9}"
    )
    p90 = float(np.nanpercentile(det["delay"], 90)) if np.isfinite(det["delay"]).any() else float("nan")
    s_p90 = float(np.nanpercentile(det["s_delay"], 90)) if np.isfinite(det["s_delay"]).any() else float("nan")
    lines.append(f"{'autoloop':<12} {precision:>9.3f} {recall:>7.3f} {fpr:>17.3f} {delay:>23.1f} {p90:>9.1f}")
    s_prec = float(s_tp / (s_tp + s_fp)) if s_tp + s_fp else 0.0
    lines.append(
        f"{'3-sigma':<12} {s_prec:>9.3f} {det['s_tp'].mean():>7.3f} {det['s_fp_normal'].mean():>17.3f} {s_delay:>23.1f} {s_p90:>9.1f}"
    )
    timing = _timing()
    lines.append(
        f"\nanalysis time: 50 services x 1 h of 15 s samples: {timing:.3f} s; per case median "
        f"{np.median(analysis_seconds):.3f} s; total run {time.perf_counter() - t_start:.0f} s"
    )
    print("\n".join(lines))
    easy = np.array(results["easy"]["autoloop"]["all"])
    hard = np.array(results["hard"]["autoloop"]["all"])
    hard_robust = np.array(results["hard"]["robust_scorer"]["all"])
    headline = {
        "easy_ac1": round(_ac(easy, 1), 4),
        "easy_ac3": round(_ac(easy, 3), 4),
        "hard_ac1": round(_ac(hard, 1), 4),
        "hard_ac1_minus_robust_scorer": round(_ac(hard, 1) - _ac(hard_robust, 1), 4),
        "detection_precision": round(precision, 4),
        "detection_recall": round(recall, 4),
        "false_positive_rate": round(fpr, 4),
        "analysis_seconds_50_services": round(timing, 4),
        "easy_avg5": round(_avg5(easy), 4),
        "hard_ac3": round(_ac(hard, 3), 4),
        "detection_delay_scrapes": round(delay, 2),
        "detection_delay_scrapes_3sigma": round(s_delay, 2),
        "cases_per_tier": n_cases,
        **_rca_real.headline(real),
    }
    print(json.dumps(headline))
    return headline


if __name__ == "__main__":
    main()
