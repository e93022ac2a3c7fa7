"""Root-cause ranking on the real Sock Shop fault injections, for `bench.rca`.

Contract: scoring only; cases come from `bench._rca_sockshop`. Every method gets the same series
and is called two ways: with the true onset (normal period = everything before it), and as the
operator calls `rca.analyze` (`operator.optimizationloop.detect_anomalies`: a trailing window
from max(end - 300 s, the middle of the data) to the end; the baselines split there).

Methods:
- autoloop: `rca.RootCauseAnalyzer.findings` then `.rank` (the two halves of `rca.analyze`), with
  and without the Sock Shop call graph.
- N-Sigma: RCAEval's `nsigma` (github.com/phamquiluan/RCAEval, RCAEval/e2e/__init__.py): per
  column, StandardScaler fitted on the normal period, score = max z over the anomalous period.
- BARO: the root-cause step of Pham, Ha & Zhang, "BARO: Robust Root Cause Analysis for
  Microservices via Multivariate Bayesian Online Change Point Detection", FSE 2024, as in RCAEval's
  `baro` (RCAEval/e2e/baro.py): RobustScaler (median, IQR) fitted on the normal period, score =
  max robust z over the anomalous period.
Both baselines first drop the columns that are constant within either period (RCAEval's
`preprocess` with a data set named: `drop_constant`), and rank columns by score; a service's rank
is that of its first column, ties keep the column order, as there.

Constants of autoloop (`relative_floor`, `leak_growth`, `confident_at`): the shipped defaults are
chosen on the simulator's cases alone (`choose` over the `sim` rows); the Sock Shop headline is
scored with those defaults held fixed, so no Sock Shop case chose a constant. As a second view,
leave-one-case-out: each Sock Shop case is scored with constants chosen on the other 19 cases and
the simulator's. The engine's design was developed after reading Sock Shop failures, so the Sock
Shop is not unseen data for the design (docs/benchmarks/rca.md).
"""

from __future__ import annotations

import dataclasses
import itertools
import statistics
from collections.abc import Callable, Mapping, Sequence
from typing import Final

import numpy as np

from autoloop.engines import rca
from bench import _rca_sockshop as ss

OPERATOR_TEST_WINDOW_S: Final[float] = 300.0
"""`operator.optimizationloop.TEST_WINDOW_SECONDS`: the trailing window the operator analyses."""
MODES: Final[tuple[str, ...]] = ("onset+graph", "onset", "window+graph", "window")
FLOORS: Final[tuple[float, ...]] = (0.001, 0.003, 0.01, 0.03, 0.1, 0.3, 1.0)
"""Grid of `relative_floor` (share of the level worth one sigma)."""
GROWTHS: Final[tuple[float, ...]] = (1.5, 2.0, 2.5, 3.0, 4.0)
"""Grid of `leak_growth` (memory multiple typed a leak whatever cpu did)."""
THRESHOLDS: Final[tuple[float, ...]] = (0.55, 0.6, 0.65, 0.7, 0.75, 0.8)
"""Grid of `confident_at`; above 0.5 so that a tie is never confident."""
PRECISION_GOAL: Final[float] = 0.9
"""`confident_at` is the lowest threshold whose confident calls were right this often in training."""

Outcome = tuple[float, float, bool, float, bool]
"""(hit@1, hit@3, fault type right, top confidence, confident) of one analysis; hits are expected
values when the root shares its rank with others (a random order among ties)."""


@dataclasses.dataclass(frozen=True)
class Split:
    """One way of calling the methods on a case: where the normal period ends, what is tested."""

    reference_end: float
    onset: float | None
    window: tuple[float, float] | None


def operator_window(case: ss.Case) -> tuple[float, float]:
    """The window `detect_anomalies` hands to `rca.analyze` on a first pass over this data."""
    t = next(iter(next(iter(case.series.values())).values()))[0]
    first, end = float(t[0]), float(t[-1])
    return max(end - OPERATOR_TEST_WINDOW_S, first + (end - first) / 2.0), end


def splits(case: ss.Case) -> dict[str, Split]:
    window = operator_window(case)
    return {"onset": Split(case.onset_s, case.onset_s, None), "window": Split(window[0], None, window)}


# ---- baselines ---------------------------------------------------------------------------------


def _columns(case: ss.Case) -> list[tuple[str, np.ndarray, np.ndarray]]:
    """(service, timestamps, values) per column, in the CSV's order; memory in MB (RCAEval's
    `convert_mem_mb`, which matters where a zero scale is replaced by 1)."""
    return [
        (svc, t, x / 1e6 if name == "memory" else x)
        for svc, metrics in case.series.items()
        for name, (t, x) in metrics.items()
    ]


def _rank_columns(
    case: ss.Case, cut: float, scaler: Callable[[np.ndarray], tuple[float, float]]
) -> list[str]:
    scored = []
    for i, (svc, t, x) in enumerate(_columns(case)):
        normal, anomalous = x[t < cut], x[t >= cut]
        if normal.size == 0 or anomalous.size == 0 or np.all(normal == normal[0]):
            continue
        if np.all(anomalous == anomalous[0]):
            continue
        centre, scale = scaler(normal)
        # sklearn's scalers replace a scale below 10 machine epsilons by 1.
        scale = scale if scale >= 10 * np.finfo(float).eps else 1.0
        scored.append((-float(np.max((anomalous - centre) / scale)), i, svc))
    ranking: list[str] = []
    for _, _, svc in sorted(scored):
        if svc not in ranking:
            ranking.append(svc)
    return ranking


def n_sigma(case: ss.Case, cut: float) -> list[str]:
    """RCAEval N-Sigma: StandardScaler (mean, population std) of the normal period."""
    return _rank_columns(case, cut, lambda a: (float(np.mean(a)), float(np.std(a))))


def baro(case: ss.Case, cut: float) -> list[str]:
    """BARO's root-cause step: RobustScaler (median, IQR) of the normal period."""

    def robust(a: np.ndarray) -> tuple[float, float]:
        q1, q3 = np.percentile(a, [25, 75])
        return float(np.median(a)), float(q3 - q1)

    return _rank_columns(case, cut, robust)


# ---- scoring -----------------------------------------------------------------------------------


@dataclasses.dataclass(frozen=True)
class Row:
    """One analysis to score: fixed evidence, the graph it is ranked over, and the truth."""

    fold: int
    """Sock Shop run (1 or 2); simulator seed parity + 1 (kept for reports, not used to choose)."""
    source: str
    """`sockshop` or `sim`."""
    mode: str
    findings: rca.Findings
    graph: Mapping[str, Sequence[str]]
    root: str
    fault: str
    case: str = ""
    """The Sock Shop case's name (`<service>-<cpu|mem>/<run>`); empty for simulator rows."""


def _hit(result: rca.RCAResult, root: str, k: int) -> float:
    """P(root in the top k) when ties are broken at random."""
    mine = next((c.rank for c in result.causes if c.service == root), None)
    if mine is None or mine > k:
        return 0.0
    tied = sum(c.rank == mine for c in result.causes)
    return min(1.0, (k - mine + 1) / tied)


def outcome(result: rca.RCAResult, root: str, fault: str) -> Outcome:
    """Scores of one result; `confident` is left False (set once a threshold is chosen)."""
    top = result.top
    hit1 = _hit(result, root, 1)
    typed = hit1 == 1.0 and top is not None and top.fault_type == fault
    return hit1, _hit(result, root, 3), typed, (top.confidence if top is not None else 0.0), False


def _baseline_outcome(ranking: Sequence[str], root: str) -> Outcome:
    return float(ranking[:1] == [root]), float(root in ranking[:3]), False, 0.0, False


def sockshop_rows(cases: Sequence[ss.Case]) -> list[Row]:
    """Each case called four ways: true onset or operator window, with or without the graph."""
    rows = []
    for case in cases:
        for how, split in splits(case).items():
            found = rca.RootCauseAnalyzer().findings(case.series, onset=split.onset, window=split.window)
            for graph, suffix in ((ss.GRAPH, "+graph"), ({}, "")):
                rows.append(
                    Row(case.run, "sockshop", how + suffix, found, graph, case.root, case.fault, case.name)
                )
    return rows


# ---- cross-validation --------------------------------------------------------------------------


def _middle(best: Sequence[float]) -> float:
    """The middle of the grid values that tie for best (the lower middle of an even count): the
    farthest from the plateau's edges."""
    return statistics.median_low(best)


def _choose_ranking(
    grid: Mapping[tuple[float, float], Sequence[Outcome]], train: Sequence[int]
) -> tuple[float, float]:
    """(relative_floor, leak_growth) with the best training AC@1, then fault-type accuracy of the
    correct top-1s; among equals the middle of the plateau (floor first, then growth)."""

    def fit(key: tuple[float, float]) -> tuple[float, float]:
        rows = [grid[key][i] for i in train]
        return statistics.fmean(r[0] for r in rows), _mean([float(r[2]) for r in rows if r[0] == 1.0])

    best_ac = max(fit(k)[0] for k in grid)
    q = _middle([q for q in FLOORS if any(fit((q, g))[0] == best_ac for g in GROWTHS)])
    best_type = max(fit((q, g))[1] for g in GROWTHS)
    return q, _middle([g for g in GROWTHS if fit((q, g))[1] == best_type])


def choose_threshold(pairs: Sequence[tuple[float, bool]]) -> float:
    """The lowest `confident_at` whose training calls were right `PRECISION_GOAL` of the time."""
    for c in THRESHOLDS:
        calls = [right for confidence, right in pairs if confidence >= c]
        if calls and statistics.fmean(calls) >= PRECISION_GOAL:
            return c
    return THRESHOLDS[-1]


def _choose(
    grid: Mapping[tuple[float, float], Sequence[Outcome]], train: Sequence[int]
) -> tuple[float, float, float]:
    key = _choose_ranking(grid, train)
    return (*key, choose_threshold([(grid[key][i][3], grid[key][i][0] == 1.0) for i in train]))


@dataclasses.dataclass
class Results:
    """Outcomes of autoloop with the shipped defaults (`fixed`) and left one case out (`loco`,
    Sock Shop rows only, else the fixed outcome), the baselines' outcomes, and the choices."""

    rows: list[Row]
    fixed: list[Outcome]
    loco: list[Outcome]
    baselines: dict[tuple[str, str], list[Outcome]]
    cases: list[ss.Case]
    on_sim: tuple[float, float, float]
    loco_chosen: dict[tuple[float, float, float], int]


def _scored(outs: Outcome, threshold: float) -> Outcome:
    hit1, hit3, typed, confidence, _ = outs
    return hit1, hit3, typed, confidence, confidence >= threshold


def evaluate(cases: Sequence[ss.Case], sim_rows: Sequence[Row]) -> Results:
    """Score autoloop on every row with the engine defaults, choose constants on the simulator's
    rows alone (what the defaults must equal) and leave each Sock Shop case out in turn; score
    the baselines on the Sock Shop cases."""
    rows = [*sockshop_rows(cases), *sim_rows]
    grid: dict[tuple[float, float], list[Outcome]] = {}
    for q, g in itertools.product(FLOORS, GROWTHS):
        analyzer = rca.RootCauseAnalyzer(relative_floor=q, leak_growth=g)
        grid[(q, g)] = [outcome(analyzer.rank(r.findings, r.graph), r.root, r.fault) for r in rows]
    defaults = rca.RootCauseAnalyzer()
    fixed = [
        _scored(outcome(defaults.rank(r.findings, r.graph), r.root, r.fault), rca.CONFIDENT) for r in rows
    ]
    on_sim = _choose(grid, [i for i, r in enumerate(rows) if r.source == "sim"])
    loco = list(fixed)
    loco_chosen: dict[tuple[float, float, float], int] = {}
    for name in sorted({r.case for r in rows if r.source == "sockshop"}):
        q, g, c = _choose(grid, [i for i, r in enumerate(rows) if r.case != name])
        loco_chosen[(q, g, c)] = loco_chosen.get((q, g, c), 0) + 1
        for i, r in enumerate(rows):
            if r.case == name:
                loco[i] = _scored(grid[(q, g)][i], c)
    baselines = {
        (name, how): [_baseline_outcome(method(c, splits(c)[how].reference_end), c.root) for c in cases]
        for name, method in (("n_sigma", n_sigma), ("baro", baro))
        for how in ("onset", "window")
    }
    return Results(rows, fixed, loco, baselines, list(cases), on_sim, loco_chosen)


# ---- report ------------------------------------------------------------------------------------


def _autoloop(res: Results, mode: str, outs: Sequence[Outcome]) -> list[Outcome]:
    return [o for r, o in zip(res.rows, outs, strict=True) if r.source == "sockshop" and r.mode == mode]


def table(res: Results) -> list[str]:
    services = sorted({c.root for c in res.cases})
    head = (
        f"{'method':<14} {'called':<13} {'AC@1':>5} {'AC@3':>5} {'type':>5} {'confident':>10}  "
        + " ".join(f"{s:>9}" for s in services)
    )
    lines = [
        f"\n== Sock Shop (RCD, {len(res.cases)} fault injections); autoloop: shipped defaults "
        "(chosen on the simulator), and leave-one-case-out ==",
        head,
    ]
    table_rows = [(("autoloop", m), _autoloop(res, m, res.fixed)) for m in MODES]
    table_rows += [(("autoloop-loco", m), _autoloop(res, m, res.loco)) for m in MODES]
    table_rows += list(res.baselines.items())
    for (method, mode), outs in table_rows:
        per = [_mean([o[0] for o, c in zip(outs, res.cases, strict=True) if c.root == s]) for s in services]
        typed = [float(o[2]) for o in outs if o[0] == 1.0]
        calls = [o[0] == 1.0 for o in outs if o[4]]
        mine = method.startswith("autoloop")
        lines.append(
            f"{method:<14} {mode:<13} {_mean([o[0] for o in outs]):>5.2f} {_mean([o[1] for o in outs]):>5.2f} "
            f"{f'{_mean(typed):.2f}' if mine else '-':>5} {f'{sum(calls)}/{len(calls)}' if mine else '-':>10}  "
            + " ".join(f"{p:>9.2f}" for p in per)
        )
    sim = [o for r, o in zip(res.rows, res.fixed, strict=True) if r.source == "sim"]
    sim_calls = [o[0] == 1.0 for o in sim if o[4]]
    lines.append("type: fault type right among correct top-1s; confident: right / confident calls")
    lines.append(
        f"simulator cases, shipped defaults: AC@1 {_mean([o[0] for o in sim]):.3f}, confident calls right "
        f"{sum(sim_calls)}/{len(sim_calls)}"
    )
    q, g, t = res.on_sim
    same = (q, g, t) == (rca.RELATIVE_FLOOR, rca.LEAK_GROWTH, rca.CONFIDENT)
    lines.append(
        f"chosen on the simulator's cases of this run: relative_floor={q:g} leak_growth={g:g} "
        f"confident_at={t:g}; shipped defaults (chosen so in the full run) {rca.RELATIVE_FLOOR:g}, "
        f"{rca.LEAK_GROWTH:g}, {rca.CONFIDENT:g}: "
        f"{'the same' if same else 'different (fewer simulator cases than the full run?)'}"
    )
    lines += [
        f"left one case out, chosen on the rest: relative_floor={q:g} leak_growth={g:g} confident_at={c:g} "
        f"for {n} cases"
        for (q, g, c), n in sorted(res.loco_chosen.items())
    ]
    return lines


def headline(res: Results) -> dict[str, float]:
    """The weakest of autoloop's four ways of being called, with the shipped defaults (chosen on the
    simulator, so held out for every Sock Shop case)."""
    per_mode = [_autoloop(res, m, res.fixed) for m in MODES]

    def worst(stat: Callable[[list[Outcome]], float]) -> float:
        return round(min(stat(outs) for outs in per_mode), 4)

    return {
        "sockshop_ac1": worst(lambda outs: _mean([o[0] for o in outs])),
        "sockshop_ac3": worst(lambda outs: _mean([o[1] for o in outs])),
        "sockshop_type_accuracy": worst(lambda outs: _mean([float(o[2]) for o in outs if o[0] == 1.0])),
    }


def _mean(values: Sequence[float]) -> float:
    return statistics.fmean(values) if values else 0.0
