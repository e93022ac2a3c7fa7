"""Rolling-origin backtest of `autoloop.engines.forecast` on the real CPU series, per set.

Real sets (the headline): `traces/` (Crane, 1 min) and `bitbrains/` (VMs with mean > 0.1 core over
>= 20 days, 5 min; bench/_rs_series.py), reported per set. The forecaster fits each series on its
own history only, so no choice is carried from one series to another within the bench.

Run: `python -m bench.forecast` (full) or `python -m bench.forecast --quick` (fewer origins and
series, same code path). `--series generated` runs the same backtest on generated series instead
(`bench._rs_series`: 14 days of the diurnal, bursty, step and growth CPU and memory kinds, seeds
1, 2, 5, 6, 9; and large level shifts, bursts and weekends, seeds 0-2): series the engine was not
tuned on, to check that the traces' figures are not an accident of those ten. Two horizons: the next hour at 5-minute resolution and the next day at
1-hour resolution. At each origin every method sees only the history before it (all of it, as the
operator's Prometheus range query would return) and forecasts the mean of each future step.

Scores: mean pinball loss over quantiles 0.05 / 0.5 / 0.95 and the coverage of the 90 % interval
[q0.05, q0.95]. The baseline, per series and horizon, is the better (lower pinball loss over all
origins) of two naive methods, each with quantiles from its own historical h-step errors:
* seasonal naive: the value one day earlier (Hyndman & Athanasopoulos, "Forecasting: Principles
  and Practice", 3rd ed., section 5.2, with m = one day);
* last-value naive (same section, "naive method");
* intervals for both: empirical quantiles of the method's past errors at the same step ahead
  (same book, section 5.5, "prediction intervals from bootstrapped residuals").
Improvement per series = 1 - loss(model) / loss(baseline); the headline is the mean over series,
the lower of the two horizons. Coverage is pooled over every forecast step of every origin.
"""

from __future__ import annotations

import argparse
import json
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Final

import numpy as np

from autoloop.engines import forecast
from bench import _data

# The real traces: cpu-<n>.csv in this folder of the data root (bench/_data.py: --data DIR,
# $AUTOLOOP_DATA, else ../shared/data beside the repository).
TRACES: Final[str] = "traces"
QUANTILES: Final[tuple[float, ...]] = (0.05, 0.5, 0.95)
# (name, horizon seconds, step seconds)
HORIZONS: Final[tuple[tuple[str, int, int], ...]] = (("1h@5m", 3600, 300), ("1d@1h", 86_400, 3600))
# Origins start after this much history: the model needs a week for daily-horizon backtests.
MIN_HISTORY_SECONDS: Final[int] = 7 * 86_400
FULL_ORIGINS: Final[int] = 8
QUICK_ORIGINS: Final[int] = 2
QUICK_SERIES: Final[int] = 4
GENERATED_DAYS: Final[int] = 14
GENERATED_SEEDS: Final[tuple[int, ...]] = (1, 2, 5, 6, 9)
SHIFT_SEEDS: Final[tuple[int, ...]] = (0, 1, 2)
QUICK_GENERATED_EVERY: Final[int] = 9  # --quick --series generated: every 9th series


@dataclass
class Scores:
    pinball: float
    covered: int
    total: int


def load(path: Path) -> tuple[np.ndarray, np.ndarray]:
    data = np.genfromtxt(path, delimiter=",", skip_header=1)
    return data[:, 0], data[:, 1]


def naive_quantiles(z: np.ndarray, n_steps: int, period: int) -> np.ndarray:
    """(Q, H) quantiles of a naive method (period 1 = last value) from its past h-step errors."""
    out = np.zeros((len(QUANTILES), n_steps))
    n = len(z)
    for h in range(1, n_steps + 1):
        lag = period * int(np.ceil(h / period))  # the value used is `lag` steps before the target
        point = z[n - 1 + h - lag]
        errors = z[lag:] - z[:-lag]
        out[:, h - 1] = point + np.quantile(errors, QUANTILES)
    return np.maximum(out, 0.0)


def score(y: np.ndarray, q: np.ndarray) -> Scores:
    loss = float(np.mean([forecast.pinball_loss(y, q[i], tau) for i, tau in enumerate(QUANTILES)]))
    covered = int(((y >= q[0]) & (y <= q[-1])).sum())
    return Scores(loss, covered, len(y))


def origins(t: np.ndarray, horizon: int, step: int, k: int) -> np.ndarray:
    lo = t[0] + MIN_HISTORY_SECONDS
    hi = t[-1] - horizon - step
    if hi < lo:
        return np.zeros(0)
    cand = np.linspace(lo, hi, k)
    return np.floor(cand / step) * step


def real_series(data_dir: str | Path | None = None) -> list[tuple[str, np.ndarray, np.ndarray, str]]:
    """Both real sets, each series tagged with its set."""
    from bench._rs_series import load_bitbrains

    crane = [(n, t, v, "crane") for n, t, v in trace_series(data_dir)]
    return crane + [(s.name, s.ts, s.usage, "bitbrains") for s in load_bitbrains(data_dir=data_dir)]


def trace_series(data_dir: str | Path | None = None) -> list[tuple[str, np.ndarray, np.ndarray]]:
    traces = _data.data_root(data_dir, require=TRACES) / TRACES
    paths = sorted(traces.glob("cpu-*.csv"), key=lambda p: int(p.stem.split("-")[1]))
    return [(p.stem, *load(p)) for p in paths]


def generated_series() -> list[tuple[str, np.ndarray, np.ndarray, str]]:
    from bench._rs_series import generate, generate_level_shifts

    out = [s for seed in GENERATED_SEEDS for s in generate(GENERATED_DAYS, seed)]
    out += [s for seed in SHIFT_SEEDS for s in generate_level_shifts(GENERATED_DAYS, seed)]
    return [(s.name, s.ts, s.usage, "generated") for s in out]


def run(
    quick: bool, n_origins: int | None = None, series: str = "traces", data_dir: str | Path | None = None
) -> dict[str, object]:
    paths = real_series(data_dir) if series == "traces" else generated_series()
    if quick:
        sets = sorted({p[3] for p in paths})
        per_set = max(1, QUICK_SERIES // len(sets))
        paths = (
            [p for g in sets for p in [q for q in paths if q[3] == g][:per_set]]
            if series == "traces"
            else paths[::QUICK_GENERATED_EVERY]
        )
    k = n_origins or (QUICK_ORIGINS if quick else FULL_ORIGINS)
    results: dict[str, object] = {}
    print(
        f"{'series':8} {'horizon':7} {'model':>10} {'seas.naive':>10} {'last':>10} {'impr':>7} {'cov90':>6} {'fit s':>6}  chosen"
    )
    all_cov = [0, 0]
    improvements_by_h: dict[str, list[float]] = {}
    by_set: dict[str, dict[str, dict[str, list[float]]]] = {}
    for name, horizon, step in HORIZONS:
        impr: list[float] = []
        cov = [0, 0]
        base_cov = {"snaive": [0, 0], "last": [0, 0]}
        fit_times: list[float] = []
        cpu_times: list[float] = []
        for series_name, t, v, group in paths:
            acc = {m: Scores(0.0, 0, 0) for m in ("model", "snaive", "last")}
            chosen: list[str] = []
            orig = origins(t, horizon, step, k)
            for origin in orig:
                hist = t < origin
                started = time.perf_counter()
                cpu_started = time.process_time()
                fc = forecast.forecast(
                    t[hist], v[hist], horizon_seconds=horizon, step_seconds=step, quantiles=QUANTILES
                )
                fit_times.append(time.perf_counter() - started)
                cpu_times.append(time.process_time() - cpu_started)
                chosen.append(fc.model)
                times, z = forecast.resample(t, v, step)
                at = np.searchsorted(times, fc.timestamps)
                y = z[at]
                hz = z[: np.searchsorted(times, origin)]
                n_steps = len(y)
                for m, q in (
                    ("model", fc.values),
                    ("snaive", naive_quantiles(hz, n_steps, round(86_400 / step))),
                    ("last", naive_quantiles(hz, n_steps, 1)),
                ):
                    sc = score(y, q)
                    acc[m].pinball += sc.pinball / len(orig)
                    acc[m].covered += sc.covered
                    acc[m].total += sc.total
            if not len(orig):
                continue
            base = min(acc["snaive"].pinball, acc["last"].pinball)
            improvement = 1.0 - acc["model"].pinball / base if base > 0 else 0.0
            impr.append(improvement)
            per = by_set.setdefault(group, {}).setdefault(name, {"gain": [], "covered": [], "total": []})
            per["gain"].append(improvement)
            per["covered"].append(acc["model"].covered)
            per["total"].append(acc["model"].total)
            cov[0] += acc["model"].covered
            cov[1] += acc["model"].total
            for m, c in base_cov.items():
                c[0] += acc[m].covered
                c[1] += acc[m].total
            c90 = acc["model"].covered / acc["model"].total
            picks = ",".join(sorted(set(chosen)))
            print(
                f"{series_name:8} {name:7} {acc['model'].pinball:10.4g} {acc['snaive'].pinball:10.4g} "
                f"{acc['last'].pinball:10.4g} {improvement:7.1%} {c90:6.1%} {np.mean(fit_times[-len(orig) :]):6.2f}  {picks}"
            )
        improvements_by_h[name] = impr
        results[f"pinball_improvement_vs_naive_{name}"] = float(np.mean(impr))
        results[f"interval_coverage_90_{name}"] = cov[0] / cov[1]
        for m, c in base_cov.items():
            results[f"baseline_{m}_coverage_90_{name}"] = c[0] / c[1]
        results[f"fit_seconds_mean_{name}"] = float(np.mean(fit_times))
        results[f"fit_seconds_max_{name}"] = float(np.max(fit_times))
        results[f"fit_cpu_seconds_mean_{name}"] = float(np.mean(cpu_times))
        all_cov[0] += cov[0]
        all_cov[1] += cov[1]
        print(
            f"{'mean':8} {name:7} improvement {np.mean(impr):.1%} (median {np.median(impr):.1%}), "
            f"coverage {cov[0] / cov[1]:.1%}, fit {np.mean(fit_times):.2f} s mean / {np.max(fit_times):.2f} s max "
            f"wall, {np.mean(cpu_times):.2f} s mean CPU"
        )
        print(
            f"{'':8} {name:7} baseline 90 % coverage: seasonal naive "
            f"{base_cov['snaive'][0] / base_cov['snaive'][1]:.1%}, last value {base_cov['last'][0] / base_cov['last'][1]:.1%}"
        )
    gain_by_set = {
        g: {h: round(float(np.mean(st["gain"])), 4) for h, st in hs.items()} for g, hs in by_set.items()
    }
    coverage_by_set = {
        g: {h: round(sum(st["covered"]) / sum(st["total"]), 4) for h, st in hs.items()}
        for g, hs in by_set.items()
    }
    for g, hs in by_set.items():
        for h, st in hs.items():
            q1, med, q3 = np.percentile(st["gain"], (25, 50, 75))
            print(
                f"{g:10} {h:7} pinball gain vs the better naive: mean {np.mean(st['gain']):.1%}, median {med:.1%} "
                f"[q1 {q1:.1%}, q3 {q3:.1%}] over {len(st['gain'])} series; 90 % coverage {coverage_by_set[g][h]:.1%}"
            )
    headline = {
        "pinball_improvement_vs_naive": min(float(np.mean(i)) for i in improvements_by_h.values()),
        "interval_coverage_90": all_cov[0] / all_cov[1],
        "pinball_gain_by_set": gain_by_set,
        "coverage_by_set": coverage_by_set,
    }
    return {**headline, **results}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="fewer series and origins (< 1 minute)")
    parser.add_argument("--origins", type=int, default=None, help="origins per series and horizon")
    parser.add_argument(
        "--series",
        choices=("traces", "generated"),
        default="traces",
        help="the shared traces or generated ones",
    )
    parser.add_argument(
        "--data",
        metavar="DIR",
        default=None,
        help=f"data root holding {TRACES}/ (default: ${_data.ENV_VAR}, else ../shared/data beside the repository)",
    )
    args = parser.parse_args()
    print(json.dumps(run(args.quick, args.origins, args.series, args.data)))


if __name__ == "__main__":
    main()
