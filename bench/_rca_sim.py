"""Simulator of a microservice call graph with injected faults, for `bench.rca`.

Contract: given a seed and a tier, produce one `Case`: the declared call graph (caller -> callees),
per-service metric series (latency_ms, error_ratio, cpu_cores, memory_mb, rps) sampled every 15 s,
the same series without the fault (a "normal twin" for false-alarm counting), and the ground truth
(root service, fault type, true onset, the onset the detector reported). The ranking code never
reads anything but the graph, the series and the reported onset.

Physics (all deliberately simple, each piece there to make a known RCA difficulty real):
- Load enters at the frontends with daily seasonality and load spikes that are not faults, and
  flows down the graph (calls per request per edge), so every service's rps moves with a spike.
- Latency of a caller includes its callees' latency times calls-per-request times a per-edge
  gain, with a per-edge lag: a root's latency change reaches callers larger (retries, fan-in).
- Error ratios propagate up the same edges with gain and lag; failing calls are retried, which
  adds load on the failing callee.
- Noise is multiplicative Student-t (df 6), its level differing tenfold between services, so a
  quiet caller's symptom can carry a far larger z-score than the noisy root's cause.
- Hard tier: the root is a mid-tier service whose outgoing traffic changes with the fault (its
  callees' load and CPU move at the onset), one or two of its callees shift on their own near the
  onset, the detector reports the onset 60 s late, and one declared edge in ten is missing.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from typing import Final

import numpy as np

STEP_S: Final[float] = 15.0
"""Scrape interval (s)."""
POST_S: Final[float] = 600.0
"""Data after the true onset handed to the analysis (s): 10 minutes."""
ONSET_RANGE_S: Final[tuple[float, float]] = (2700.0, 3600.0)
"""True onsets fall between 45 and 60 minutes after the series start."""
HARD_DETECTION_LAG_S: Final[float] = 60.0
"""Hard tier: the detector reports the onset one minute late."""
FAULT_TYPES: Final[tuple[str, ...]] = ("cpu_hog", "memory_leak", "latency", "error_burst", "bad_rollout")
METRICS: Final[tuple[str, ...]] = ("latency_ms", "error_ratio", "cpu_cores", "memory_mb", "rps")
NOISE_RANGE: Final[tuple[float, float]] = (0.01, 0.10)
"""Relative noise per service, log-uniform: a tenfold spread between the quietest and noisiest."""
T_DOF: Final[float] = 6.0
"""Student-t degrees of freedom of the observation noise: heavier tails than Gaussian."""

Series = dict[str, dict[str, tuple[np.ndarray, np.ndarray]]]


@dataclasses.dataclass(frozen=True)
class Case:
    """One seeded scenario: inputs for the analysers and the ground truth to score them."""

    seed: int
    tier: str
    fault_type: str
    root: str
    onset_s: float
    reported_onset_s: float
    graph: dict[str, list[str]]
    series: Series
    normal_series: Series


@dataclasses.dataclass
class _Topology:
    names: list[str]
    tier: np.ndarray
    callees: list[list[int]]
    calls: dict[tuple[int, int], float]
    lat_gain: dict[tuple[int, int], float]
    err_gain: dict[tuple[int, int], float]
    lag: dict[tuple[int, int], int]


def _topology(rng: np.random.Generator, n: int) -> _Topology:
    """A layered DAG: frontends call middle tiers, which call backends; every service has a caller."""
    n_tiers = int(rng.integers(3, 6))
    n_front = max(1, n // 8)
    tier = np.empty(n, dtype=int)
    tier[:n_front] = 0
    rest = np.sort(rng.integers(1, n_tiers, size=n - n_front))
    # Make sure every tier from 1 to n_tiers-1 is populated.
    for t in range(1, n_tiers):
        if t not in rest and len(rest) >= n_tiers - 1:
            rest[t - 1] = t
    tier[n_front:] = np.sort(rest)
    names = [f"svc-{i:02d}" for i in range(n)]
    callees: list[list[int]] = [[] for _ in range(n)]
    for i in range(n):
        deeper = np.flatnonzero(tier > tier[i])
        if deeper.size == 0:
            continue
        next_tier = np.flatnonzero(tier == tier[i] + 1)
        pool = next_tier if next_tier.size and rng.random() < 0.8 else deeper
        k = min(int(pool.size), int(rng.integers(1, 4)))
        callees[i] = sorted({int(c) for c in rng.choice(pool, size=k, replace=False)})
    has_caller = np.zeros(n, dtype=bool)
    for cs in callees:
        has_caller[cs] = True
    for j in range(n):
        if tier[j] > 0 and not has_caller[j]:
            upper = np.flatnonzero(tier == tier[j] - 1)
            i = int(rng.choice(upper))
            callees[i] = sorted({*callees[i], j})
    calls, lat_gain, err_gain, lag = {}, {}, {}, {}
    for i in range(n):
        for j in callees[i]:
            calls[(i, j)] = float(rng.choice([1.0, 1.0, 2.0, 3.0]))
            lat_gain[(i, j)] = float(rng.uniform(0.6, 1.4))
            err_gain[(i, j)] = float(rng.uniform(0.4, 1.2))
            lag[(i, j)] = int(rng.random() < 0.4)  # 0 or 1 scrape: scrapes are not aligned.
    return _Topology(names, tier, callees, calls, lat_gain, err_gain, lag)


def _shift(x: np.ndarray, lag: int) -> np.ndarray:
    """x delayed by `lag` samples (the first value repeated at the start)."""
    if lag <= 0:
        return x
    return np.concatenate([np.full(lag, x[0]), x[:-lag]])


def _smooth_pulse(t: np.ndarray, start: float, duration: float, ramp: float) -> np.ndarray:
    """0..1 trapezoid: ramps up over `ramp` s from `start`, holds, ramps down over `ramp` s."""
    up = np.clip((t - start) / ramp, 0.0, 1.0)
    down = np.clip((start + duration - t) / ramp, 0.0, 1.0)
    return np.minimum(up, down)


@dataclasses.dataclass
class _Fault:
    root: int
    kind: str
    onset: float
    size: float
    duration: float
    distractors: list[tuple[int, str, float, float]]  # (service, metric kind, onset, relative size)
    traffic: float = 1.0
    """Factor on the root's outgoing calls once the fault starts (hard tier): a new version calling
    more, or a stalled service calling less; its callees' load moves with the fault."""


def _pick_fault(rng: np.random.Generator, topo: _Topology, tier_name: str, kind: str, onset: float) -> _Fault:
    n = len(topo.names)
    has_caller = np.zeros(n, dtype=bool)
    for cs in topo.callees:
        has_caller[cs] = True
    if tier_name == "hard":
        mid = [i for i in range(n) if topo.callees[i] and has_caller[i]]
        root = int(rng.choice(mid)) if mid else int(rng.integers(0, n))
    else:
        root = int(rng.integers(0, n))
    size = float(rng.uniform(0.0, 1.0))  # Position inside each fault kind's size range.
    duration = float(rng.uniform(60.0, 240.0))
    distractors: list[tuple[int, str, float, float]] = []
    if tier_name == "hard":
        # Dependencies also move: one or two callees of the root see a benign shift around the onset.
        cs = topo.callees[root]
        for c in rng.choice(cs, size=min(len(cs), int(rng.integers(1, 3))), replace=False):
            metric = str(rng.choice(["latency", "cpu"]))
            distractors.append(
                (int(c), metric, onset + float(rng.uniform(-60.0, 120.0)), float(rng.uniform(0.1, 0.4)))
            )
    traffic = 1.0
    if tier_name == "hard":
        traffic = float(rng.uniform(1.5, 2.5) if rng.random() < 0.5 else rng.uniform(0.5, 0.8))
    return _Fault(root, kind, onset, size, duration, distractors, traffic)


def _simulate(
    topo: _Topology,
    t: np.ndarray,
    base: Mapping[str, np.ndarray],
    load: np.ndarray,
    fault: _Fault | None,
) -> dict[str, np.ndarray]:
    """Noise-free metric arrays (services x samples) under the given load and fault."""
    n, m = len(topo.names), t.size
    hog = np.zeros((n, m))
    tot_mult = np.ones((n, m))
    err_add = np.zeros((n, m))
    mem_mult = np.ones((n, m))
    cpu_mult = np.ones((n, m))
    lat_mult = np.ones((n, m))
    if fault is not None:
        r, s, after = fault.root, fault.size, (t >= fault.onset).astype(float)
        since = np.clip(t - fault.onset, 0.0, None)
        if fault.kind == "cpu_hog":
            hog[r] = (0.25 + 0.35 * s) * base["capacity"][r] * after
        elif fault.kind == "memory_leak":
            ramp = (0.3 + 0.7 * s) * since / POST_S
            mem_mult[r] += ramp
            lat_mult[r] += 0.6 * ramp  # Garbage-collection pressure slows the service as it grows.
        elif fault.kind == "latency":
            tot_mult[r] += (0.3 + 0.7 * s) * after
        elif fault.kind == "error_burst":
            err_add[r] = (0.03 + 0.2 * s) * _smooth_pulse(t, fault.onset, fault.duration, STEP_S)
        elif fault.kind == "bad_rollout":
            err_add[r] = (0.02 + 0.1 * s) * after
            tot_mult[r] += (0.1 + 0.4 * s) * after
            # New pods start cold: memory drops and warms back over five minutes; start-up burns CPU.
            mem_mult[r] = 1.0 - 0.4 * after * np.exp(-since / 300.0)
            cpu_mult[r] = 1.0 + 0.5 * after * np.exp(-since / 60.0)
        for c, kind, on, rel in fault.distractors:
            step = (t >= on).astype(float)
            if kind == "latency":
                lat_mult[c] += rel * step
            else:
                cpu_mult[c] += rel * step
    out_mult = np.ones((n, m))
    if fault is not None:
        out_mult[fault.root] = np.where(t >= fault.onset, fault.traffic, 1.0)
    order_down = sorted(range(n), key=lambda i: topo.tier[i])
    order_up = order_down[::-1]
    err = np.zeros((n, m))
    lat = np.zeros((n, m))
    rps = np.zeros((n, m))
    # Two passes: errors found in the first feed retries (extra load on the failing callee) in the second.
    for _ in range(2):
        new_rps = np.zeros((n, m))
        for i in order_down:
            if topo.tier[i] == 0:
                new_rps[i] = load * base["front_share"][i]
            for j in topo.callees[i]:
                retry = 1.0 + 2.0 * err[j]
                new_rps[j] += new_rps[i] * topo.calls[(i, j)] * base["fanout"][j] * retry * out_mult[i]
        rps = new_rps
        cpu = (base["cpu_per_req"][:, None] * rps + base["cpu_idle"][:, None]) * cpu_mult + hog
        util = np.minimum(cpu / base["capacity"][:, None], 0.95)
        for i in order_up:
            own = base["own_lat"][i] * (1.0 + 2.0 * util[i] ** 2) * lat_mult[i]
            down = np.zeros(m)
            e_down = np.zeros(m)
            for j in topo.callees[i]:
                lg = topo.lag[(i, j)]
                calls = topo.calls[(i, j)]
                lat_j, err_j = _shift(lat[j], lg), _shift(err[j], lg)
                # Failed calls are retried once: the caller waits for the callee again.
                down += calls * topo.lat_gain[(i, j)] * lat_j * (1.0 + err_j)
                # Fan-in: a request that makes several calls fails if any of them fails.
                e_down += calls * topo.err_gain[(i, j)] * err_j
            # A slow handler holds the whole request, including its downstream calls.
            lat[i] = (own + down) * tot_mult[i]
            err[i] = np.clip(base["err"][i] + err_add[i] + e_down, 0.0, 1.0)
    mem = base["mem"][:, None] * (1.0 + 0.1 * util) * mem_mult
    return {"latency_ms": lat, "error_ratio": err, "cpu_cores": cpu, "memory_mb": mem, "rps": rps}


def _observe(
    rng: np.random.Generator, clean: Mapping[str, np.ndarray], sigma: np.ndarray
) -> dict[str, np.ndarray]:
    """Add per-service Student-t noise; error ratios get additive noise scaled to a 2 % reference."""
    out = {}
    for name, x in clean.items():
        eps = rng.standard_t(T_DOF, size=x.shape) / np.sqrt(T_DOF / (T_DOF - 2.0))
        if name == "error_ratio":
            out[name] = np.clip(x + sigma[:, None] * 0.02 * eps, 0.0, 1.0)
        else:
            out[name] = np.maximum(x * (1.0 + sigma[:, None] * eps), 0.0)
    return out


def make_case(seed: int, tier: str, fault_type: str | None = None, n_services: int | None = None) -> Case:
    """Build one reproducible case; `fault_type` and `n_services` are drawn from the seed when None."""
    rng = np.random.default_rng([seed, 0 if tier == "easy" else 1])
    n = int(n_services if n_services is not None else rng.integers(10, 61))
    topo = _topology(rng, n)
    kind = fault_type if fault_type is not None else str(rng.choice(FAULT_TYPES))
    onset = float(np.round(rng.uniform(*ONSET_RANGE_S) / STEP_S) * STEP_S)
    t = np.arange(0.0, onset + POST_S + STEP_S / 2, STEP_S)
    n_front = int((topo.tier == 0).sum())
    base = {
        "front_share": rng.dirichlet(np.ones(n_front)) if n_front else np.ones(0),
        "fanout": rng.uniform(0.5, 1.0, n),
        "cpu_per_req": rng.uniform(0.001, 0.01, n),
        "cpu_idle": rng.uniform(0.05, 0.2, n),
        "own_lat": rng.uniform(5.0, 50.0, n),
        "err": rng.uniform(0.0005, 0.005, n),
        "mem": rng.uniform(200.0, 2000.0, n),
    }
    base["front_share"] = np.concatenate([base["front_share"], np.zeros(n - n_front)])
    # Daily seasonality plus non-fault load spikes at the frontends.
    phase = rng.uniform(0.0, 86400.0)
    load = rng.uniform(100.0, 800.0) * (
        1.0 + rng.uniform(0.2, 0.5) * np.sin(2 * np.pi * (t + phase) / 86400.0)
    )
    for _ in range(int(rng.integers(0, 3))):
        start = rng.uniform(t[0] + 600.0, t[-1])
        load = load * (1.0 + rng.uniform(0.2, 0.7) * _smooth_pulse(t, start, rng.uniform(120.0, 600.0), 60.0))
    # Capacity sized so the busiest moment of a spike stays below 75 % utilisation.
    steady = _simulate(topo, t, {**base, "capacity": np.full(n, 1e9)}, load, None)
    peak_cpu = steady["cpu_cores"].max(axis=1)
    base["capacity"] = peak_cpu / rng.uniform(0.35, 0.75, n)
    fault = _pick_fault(rng, topo, tier, kind, onset)
    sigma = np.exp(rng.uniform(np.log(NOISE_RANGE[0]), np.log(NOISE_RANGE[1]), n))
    noise_seed = int(rng.integers(0, 2**31))
    faulty = _observe(np.random.default_rng(noise_seed), _simulate(topo, t, base, load, fault), sigma)
    normal = _observe(np.random.default_rng(noise_seed), _simulate(topo, t, base, load, None), sigma)
    graph = {topo.names[i]: [topo.names[j] for j in topo.callees[i]] for i in range(n)}
    if tier == "hard":
        # The declared graph misses about one edge in ten; correlations must fill the gap.
        graph = {k: [c for c in v if rng.random() >= 0.1] for k, v in graph.items()}

    def pack(obs: Mapping[str, np.ndarray]) -> Series:
        return {
            topo.names[i]: {mname: (t.copy(), obs[mname][i].copy()) for mname in METRICS} for i in range(n)
        }

    reported = onset + (HARD_DETECTION_LAG_S if tier == "hard" else 0.0)
    return Case(seed, tier, kind, topo.names[fault.root], onset, reported, graph, pack(faulty), pack(normal))
