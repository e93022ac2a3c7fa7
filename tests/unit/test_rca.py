"""Tests for `autoloop.engines.rca`: ranking, explain-away, fault types, bad data, output bounds.

A hand-built four-service system (independent of the benchmark's simulator):
frontend -> api -> {db, cache}, plus an unrelated `batch`. Latency and errors add up along calls,
so a fault in db shows, larger in z, in quiet callers api and frontend.
"""

from __future__ import annotations

import json
import math

import numpy as np
import pytest

from autoloop.engines import anomaly, rca

STEP = 15.0
N = 300
T = np.arange(N) * STEP
ONSET_INDEX = 200
ONSET = float(T[ONSET_INDEX])  # 3000 s
GRAPH = {"frontend": ["api"], "api": ["db", "cache"], "db": [], "cache": [], "batch": []}
# Relative noise: the callers are quiet (1-2 %), the root candidates noisy (3-5 %).
NOISE = {"frontend": 0.01, "api": 0.02, "db": 0.05, "cache": 0.03, "batch": 0.03}


def system(fault: str, seed: int = 0) -> dict[str, dict[str, tuple[np.ndarray, np.ndarray]]]:
    """Metric series of the five services with `fault` injected at ONSET ("none" for none)."""
    rng = np.random.default_rng(seed)
    after = (np.arange(N) >= ONSET_INDEX).astype(float)
    ramp = np.clip((np.arange(N) - ONSET_INDEX) / 100.0, 0.0, None)
    own_lat = {"db": 20.0 * np.ones(N), "cache": 5.0 * np.ones(N), "api": 30.0 * np.ones(N)}
    err = {s: np.full(N, 0.001) for s in GRAPH}
    cpu_extra = {s: np.zeros(N) for s in GRAPH}
    mem_mult = {s: np.ones(N) for s in GRAPH}
    if fault == "db_latency":
        own_lat["db"] = own_lat["db"] * (1.0 + 1.5 * after)
    elif fault == "api_cpu":
        cpu_extra["api"] = 1.0 * after
        own_lat["api"] = own_lat["api"] * (1.0 + 0.6 * after)
    elif fault == "cache_leak":
        mem_mult["cache"] = 1.0 + 0.6 * ramp
        own_lat["cache"] = own_lat["cache"] * (1.0 + 0.3 * ramp)
    elif fault == "db_error_burst":
        err["db"] = err["db"] + 0.1 * ((np.arange(N) >= ONSET_INDEX) & (np.arange(N) < ONSET_INDEX + 12))
    elif fault == "api_rollout":
        err["api"] = err["api"] + 0.05 * after
        own_lat["api"] = own_lat["api"] * (1.0 + 0.4 * after)
        mem_mult["api"] = 1.0 - 0.4 * after * np.exp(-(T - ONSET).clip(0) / 300.0)
    lat = {"db": own_lat["db"], "cache": own_lat["cache"]}
    lat["api"] = own_lat["api"] + lat["db"] + 2.0 * lat["cache"]
    lat["frontend"] = 10.0 + lat["api"]
    lat["batch"] = 100.0 * np.ones(N)
    err["api"] = err["api"] + err["db"] + err["cache"]
    err["frontend"] = err["frontend"] + err["api"]
    rps = {"frontend": 100.0, "api": 100.0, "db": 200.0, "cache": 300.0, "batch": 10.0}
    out = {}
    for s in GRAPH:

        def noisy(x: np.ndarray, s: str = s) -> np.ndarray:
            return x * (1.0 + rng.normal(0.0, NOISE[s], N))

        load = noisy(np.full(N, rps[s]))
        out[s] = {
            "latency_ms": (T, noisy(lat[s])),
            "error_ratio": (T, np.clip(err[s] + rng.normal(0.0, 0.0002, N), 0.0, 1.0)),
            "cpu_cores": (T, noisy(0.005 * rps[s] + 0.1 + cpu_extra[s])),
            "memory_mb": (T, noisy(500.0 * mem_mult[s])),
            "rps": (T, load),
        }
    return out


@pytest.mark.parametrize(
    ("fault", "service", "fault_type", "actions"),
    [
        ("db_latency", "db", "latency", {"scale"}),
        ("api_cpu", "api", "cpu_saturation", {"scale"}),
        ("cache_leak", "cache", "memory_leak", {"restart", "schedule_maintenance"}),
        ("db_error_burst", "db", "error_burst", {"restart"}),
        ("api_rollout", "api", "bad_rollout", {"rollback"}),
    ],
)
def test_root_cause_type_and_action(fault: str, service: str, fault_type: str, actions: set[str]) -> None:
    result = rca.analyze(system(fault), GRAPH, onset=ONSET)
    top = result.top
    assert top is not None
    assert (top.service, top.fault_type) == (service, fault_type)
    assert top.action in actions
    assert result.confident
    assert service in top.explanation and top.action in top.explanation


def test_quiet_callers_are_explained_away() -> None:
    # db is five times noisier than frontend: frontend's z for the same latency change is far
    # larger, yet it is a victim whose change db explains.
    result = rca.analyze(system("db_latency"), GRAPH, onset=ONSET)
    by_service = {c.service: c for c in result.causes}
    assert result.top is not None and result.top.service == "db"
    for victim in ("api", "frontend"):
        assert victim in by_service
        assert by_service[victim].score < 0.2 * result.top.score
        assert "explained by" in by_service[victim].explanation
    assert "batch" not in result.anomalous_services


def test_late_onset_still_finds_the_root() -> None:
    # A detector that fired one minute late: the lookback still holds the change.
    result = rca.analyze(system("db_latency", seed=1), GRAPH, onset=ONSET + 60.0)
    assert result.top is not None and result.top.service == "db"
    assert abs(result.top.onset - ONSET) <= 2 * STEP


def test_missing_edge_is_learned_from_correlated_changes() -> None:
    # The declared graph forgot api -> db; the matching latency steps restore the link.
    graph = {**GRAPH, "api": ["cache"]}
    result = rca.analyze(system("db_latency", seed=2), graph, onset=ONSET)
    assert result.top is not None and result.top.service == "db"


def test_rollout_event_names_a_sustained_error_step_a_bad_rollout() -> None:
    series = system("db_error_burst", seed=3)
    # Make the db errors sustained, then tell the analyser db was rolled out a minute earlier.
    t, x = series["db"]["error_ratio"]
    x = x.copy()
    x[ONSET_INDEX:] = np.maximum(x[ONSET_INDEX:], 0.1)
    series["db"]["error_ratio"] = (t, x)
    plain = rca.analyze(series, GRAPH, onset=ONSET)
    rolled = rca.analyze(series, GRAPH, onset=ONSET, changes={"db": [ONSET - 60.0]})
    assert plain.top is not None and plain.top.fault_type == "error_burst"
    assert rolled.top is not None and (rolled.top.fault_type, rolled.top.action) == (
        "bad_rollout",
        "rollback",
    )


def test_onset_found_by_the_detector_when_not_given() -> None:
    result = rca.analyze(system("api_cpu", seed=4), GRAPH)
    assert result.top is not None and result.top.service == "api"
    # The window starts `lookback_s` (300 s) before the earliest detected change.
    assert result.window[0] == pytest.approx(ONSET - 300.0, abs=2 * STEP)


def test_window_argument() -> None:
    result = rca.analyze(system("api_cpu", seed=5), GRAPH, window=(ONSET - 600.0, ONSET + 600.0))
    assert result.top is not None and result.top.service == "api"
    assert result.window == (ONSET - 600.0, ONSET + 600.0)


def test_load_spike_alone_gives_no_confident_cause() -> None:
    series = system("none", seed=6)
    factor = np.where((T >= ONSET) & (T < ONSET + 600.0), 1.8, 1.0)
    for metrics in series.values():
        t, load = metrics["rps"]
        metrics["rps"] = (t, load * factor)
        t, cpu = metrics["cpu_cores"]
        # cpu = 0.005 rps + 0.1 follows the 80 % rise in requests with elasticity below one.
        base_rps = float(np.median(load))
        metrics["cpu_cores"] = (t, cpu + 0.005 * base_rps * (factor - 1.0))
    result = rca.analyze(series, GRAPH, onset=ONSET)
    assert not result.confident


@pytest.mark.parametrize(
    "series",
    [
        {},
        {"db": {}},
        {"db": {"latency_ms": ([], [])}},
        {"db": {"latency_ms": ([0.0], [1.0])}},
        {"db": {"latency_ms": (T, np.full(N, math.nan))}},
        {"db": {"latency_ms": (T, np.full(N, 3.0)), "error_ratio": (T, np.zeros(N))}},
        {"db": {"requests_total": (T, np.where(T < ONSET, T, T - ONSET))}},
    ],
    ids=["no-services", "no-metrics", "empty", "single", "all-nan", "constant", "counter-reset"],
)
def test_bad_data_never_raises_nor_gives_a_confident_cause(series: dict) -> None:
    result = rca.analyze(series, {"db": []}, onset=ONSET)
    assert not result.confident
    json.dumps(result.to_dict())


def test_constant_series_that_jumps_is_low_confidence() -> None:
    x = np.zeros(N)
    x[ONSET_INDEX:] = 0.001
    result = rca.analyze({"db": {"error_ratio": (T, x)}}, {"db": []}, onset=ONSET)
    # The only evidence rests on a reference with no variation at all: never confident.
    assert result.top is not None and result.top.service == "db"
    assert result.top.confidence < rca.CONFIDENT


def test_to_dict_is_json_safe_and_bounded() -> None:
    result = rca.analyze(system("db_latency", seed=7), GRAPH, onset=ONSET)
    d = result.to_dict(max_causes=2)
    assert len(d["causes"]) <= 2
    text = json.dumps(d)
    assert len(text) < 6000
    assert all(len(c["explanation"]) <= rca.MAX_TEXT for c in d["causes"])
    assert result.summary().startswith("likely root cause db")


def test_fifty_services_in_a_chain_find_the_one_at_the_end() -> None:
    """Speed is bench/rca's (50 services x 1 h, timed side by side); here only the answer."""
    rng = np.random.default_rng(8)
    t = np.arange(240) * STEP
    series = {
        f"svc-{i}": {
            m: (t, 100.0 * (1.0 + rng.normal(0.0, 0.02, 240)))
            for m in ("latency_ms", "error_ratio", "cpu_cores", "memory_mb", "rps")
        }
        for i in range(50)
    }
    t_lat = series["svc-49"]["latency_ms"][1]
    t_lat[180:] *= 2.0
    graph = {f"svc-{i}": [f"svc-{i + 1}"] for i in range(49)}
    result = rca.analyze(series, graph, onset=float(t[180]))
    assert result.top is not None and result.top.service == "svc-49"


def test_slow_leak_below_the_detector_is_still_evidence() -> None:
    rng = np.random.default_rng(9)
    memory = 500.0 * (1.0 + rng.normal(0.0, 0.08, N))
    memory[260:] += 500.0 * 0.3 * np.arange(1, 41) / 40.0  # +30 % over the last 10 minutes
    series = {"svc": {"memory_mb": (T, memory)}}
    # The ramp ends near 30 / 8 = 3.75 sigma: no CUSUM alarm (drift 2.5, limit 20) ...
    assert anomaly.detect(series, test_start=float(T[250])).anomalies == ()
    # ... but its slope is ~14 standard errors from zero (3.75 / 40 per sample x sqrt(sum h^2) ~ 149).
    result = rca.analyze(series, {"svc": []}, onset=float(T[260]))
    assert result.top is not None and (result.top.service, result.top.fault_type) == ("svc", "memory_leak")
    assert abs(result.top.onset - T[260]) <= 10 * STEP


def test_unexplained_anomaly_for_the_safety_validator() -> None:
    series = system("db_latency", seed=10)
    report = anomaly.detect(series, test_start=ONSET - 300.0)
    assert report.unexplained_active
    # Detected but not analysed yet: freeze.
    assert rca.unexplained_anomaly(report, None)
    # Analysed with a confident cause: the anomaly is explained.
    assert not rca.unexplained_anomaly(report, rca.analyze(series, GRAPH, onset=report.anomalies[0].start))
    # Nothing active: nothing to freeze for.
    quiet = anomaly.detect(system("none", seed=10), test_start=ONSET - 300.0)
    assert not rca.unexplained_anomaly(quiet, None)


# ---- defects found on the real Sock Shop injections (docs/benchmarks/rca.md) --------------------
# A recording like Sock Shop's: 1 s samples, under five minutes of normal data, then the fault.

SHORT_NORMAL = 290  # samples (s) before the fault
SHORT = np.arange(SHORT_NORMAL + 280, dtype=float)


def short_recording(
    cpu_factor: dict[str, float], memory_factor: dict[str, float] | None = None, seed: int = 0
) -> dict[str, dict[str, tuple[np.ndarray, np.ndarray]]]:
    """Services with cpu (% of a core, 5 % noise) and memory (bytes, 0.05 % noise) that change by
    the given factors at the fault; `memory_factor` services not listed keep their level."""
    rng = np.random.default_rng(seed)
    after = SHORT >= SHORT_NORMAL
    out = {}
    for name, factor in cpu_factor.items():
        cpu = 1.0 * (1.0 + rng.normal(0.0, 0.05, SHORT.size)) * np.where(after, factor, 1.0)
        mem_level = np.where(after, (memory_factor or {}).get(name, 1.0), 1.0) * 3e8
        mem = mem_level * (1.0 + rng.normal(0.0, 0.0005, SHORT.size))
        out[name] = {"cpu": (SHORT, cpu), "memory": (SHORT, mem)}
    return out


def analyze_short(
    series: dict[str, dict[str, tuple[np.ndarray, np.ndarray]]], graph: dict[str, list[str]] | None = None
) -> rca.RCAResult:
    """As the operator calls it: the window starts shortly before the fault."""
    return rca.analyze(series, graph or {}, window=(float(SHORT_NORMAL - 10), float(SHORT[-1])))


def test_a_short_normal_period_keeps_a_reference() -> None:
    # The default lookback (300 s) reaches before the first sample: the old analysis ended the
    # reference there and returned no cause at all, without a word.
    series = short_recording({"carts": 60.0, "orders": 1.0, "user": 1.0})
    result = rca.analyze(series, {}, onset=float(SHORT_NORMAL))
    assert result.top is not None and result.top.service == "carts"
    # At most half of the 290 s before the onset is lookback: the reference ends at 145 s.
    assert result.reference_end == pytest.approx(SHORT_NORMAL / 2.0)


def test_a_window_with_no_reference_says_so() -> None:
    series = short_recording({"carts": 60.0, "orders": 1.0})
    result = rca.analyze(series, {}, window=(0.0, float(SHORT[-1])))
    assert result.causes == () and not result.confident
    assert result.warnings and "samples before" in result.warnings[0]
    assert result.to_dict()["warnings"] == list(result.warnings)


def test_scores_are_not_capped_so_the_larger_change_wins() -> None:
    # Both cpu steps are hundreds of sigma; with z capped at 100 they tied and the alphabetically
    # first service (the smaller change) came first.
    series = short_recording({"alpha": 20.0, "beta": 80.0, "gamma": 1.0})
    report = anomaly.detect(series, test_start=float(SHORT_NORMAL - 10))
    assert max(abs(a.peak_z) for a in report.anomalies) > 1000.0
    result = analyze_short(series)
    assert [c.service for c in result.causes[:2]] == ["beta", "alpha"]
    assert result.causes[1].rank == 2


def test_identical_evidence_is_an_honest_tie() -> None:
    series = short_recording({"alpha": 50.0, "beta": 1.0})
    series["beta"] = series["alpha"]  # the same series: nothing can tell the two apart
    result = analyze_short(series)
    assert [c.rank for c in result.causes[:2]] == [1, 1]
    assert {c.service for c in result.tied} == {"alpha", "beta"}
    assert not result.confident
    assert "tied" in result.summary()


def test_a_constant_reference_does_not_make_a_small_change_huge() -> None:
    # A database's memory sits exactly still, then moves 3 % (a different recording, a cache
    # warming): with the scale at 0.1 % of the level that was a 30-sigma change on every sample.
    # The real fault is api's cpu, up 40 % against 5 % noise (~8 sigma).
    series = short_recording({"api": 1.4, "web": 1.0})
    db = np.where(SHORT >= SHORT_NORMAL, 1.03, 1.0) * 4e8
    series["db"] = {"memory": (SHORT, db), "cpu": series["web"]["cpu"]}
    result = analyze_short(series)
    assert result.top is not None and result.top.service == "api"
    db_cause = next(c for c in result.causes if c.service == "db")
    assert db_cause.confidence <= 0.5  # rests only on a reference without variation


def test_a_sick_callees_traffic_change_is_not_credited_to_its_caller() -> None:
    # carts' cpu is hogged and its clients back off (its request rate falls); the front end's own
    # cpu moves a little. Crediting the front end with carts' traffic change put it first.
    series = short_recording({"carts": 60.0, "front-end": 1.3, "catalogue": 1.0})
    rps = 20.0 * (1.0 + np.random.default_rng(5).normal(0.0, 0.03, SHORT.size))
    series["carts"]["rps"] = (SHORT, np.where(SHORT >= SHORT_NORMAL, 0.5, 1.0) * rps)
    graph = {"front-end": ["carts", "catalogue"]}
    result = analyze_short(series, graph)
    assert result.top is not None and result.top.service == "carts"
    carts = next(c for c in result.causes if c.service == "carts")
    assert not any("explained by front-end" in e for e in carts.evidence)


def test_a_clear_single_fault_among_many_services_is_confident() -> None:
    # Thirteen services, one with its cpu pinned: the old confidence (the top's share of every
    # anomalous service's score) was never above one half here.
    services = {f"svc-{i:02d}": 1.0 for i in range(12)}
    series = short_recording({**services, "payment": 90.0}, seed=3)
    for i in range(0, 12, 3):  # a few services' memory differs a little between recordings
        t, mem = series[f"svc-{i:02d}"]["memory"]
        series[f"svc-{i:02d}"]["memory"] = (t, mem * np.where(t >= SHORT_NORMAL, 0.9, 1.0))
    result = analyze_short(series)
    assert result.top is not None and result.top.service == "payment"
    assert result.confident and result.top.confidence >= rca.CONFIDENT


@pytest.mark.parametrize(
    ("memory_factor", "fault_type"),
    [
        # A cpu hog whose process also takes some memory (+30 %): cpu carries the evidence.
        (1.3, "cpu_saturation"),
        # Memory tripled while cpu also pinned (a process filling memory spins too): a leak.
        (3.0, "memory_leak"),
    ],
)
def test_fault_type_follows_the_family_that_carries_the_evidence(
    memory_factor: float, fault_type: str
) -> None:
    series = short_recording({"user": 70.0, "orders": 1.0}, {"user": memory_factor})
    result = analyze_short(series)
    assert result.top is not None and (result.top.service, result.top.fault_type) == ("user", fault_type)


def test_callees_changing_at_the_same_time_the_stronger_explains_the_caller() -> None:
    # The operator knows only the loop's target and its dependencies (a star: web -> api, db),
    # not that api calls db. db's latency fault shows in api and web at the same scrape. web's
    # change is credited to the callee whose change is the stronger (db), not to the one whose
    # name sorts first (api), which used to give api the breadth and the first rank.
    t = np.arange(120) * 5.0
    after = (np.arange(120) >= 80).astype(float)
    rng = np.random.default_rng(3)

    def lat(base: float, factor: float) -> tuple[np.ndarray, np.ndarray]:
        return t, base * (1.0 + factor * after) * (1.0 + rng.normal(0.0, 0.01, t.size))

    series = {
        "db": {"latency_ms": lat(75.0, 11.5)},
        "api": {"latency_ms": lat(150.0, 5.5)},
        "web": {"latency_ms": lat(225.0, 3.7)},
    }
    result = rca.analyze(series, {"web": ["api", "db"]}, onset=float(t[80]))
    assert result.top is not None and result.top.service == "db", [
        (c.service, c.score) for c in result.causes
    ]
