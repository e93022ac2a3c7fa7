"""Fault-free microservice metrics for `bench.anomaly`, from a generator independent of
`autoloop.simulation` (no shared code or laws), shaped after what real scrapes look like.

Contract: pure numpy, seeded; no faults at all: every alarm on these windows is a false one. Each
window is what the operator reads before a pass (`operator.optimizationloop`: 30 min at a 15 s
step, the last 5 min tested). Per service:
- `rps`: Poisson request counts per scrape around a load with daily seasonality (random phase and
  depth), a slow random walk, and benign bursts (a batch job, a crawler) that load explains;
- `cpu`: cores as a counter rate, proportional to load plus background work, quantised to the
  millicore, with occasional garbage-collection bursts of a few scrapes;
- `memory`: a heap sawtooth (grow, then collect) on a resident base, page-quantised;
- `latency_p99`: a queueing curve in utilisation times log-normal noise (heavy tailed);
- `error_ratio`: binomial errors of a small base rate over the scrape's requests (mostly zero);
- scrapes jitter by up to a second and one in a hundred is missing.
"""

from __future__ import annotations

import math
from typing import Final

import numpy as np

STEP_S: Final[float] = 15.0
WINDOW_S: Final[float] = 1800.0
"""`operator.optimizationloop.ANALYSIS_WINDOW_SECONDS`."""
TEST_S: Final[float] = 300.0
"""`operator.optimizationloop.TEST_WINDOW_SECONDS`."""
SERVICES: Final[int] = 5

Series = dict[str, dict[str, tuple[np.ndarray, np.ndarray]]]


def _service(
    rng: np.random.Generator, t: np.ndarray, day_start: float
) -> dict[str, tuple[np.ndarray, np.ndarray]]:
    n = t.size
    base = math.exp(rng.uniform(math.log(5.0), math.log(500.0)))  # requests/s
    depth, phase = rng.uniform(0.2, 0.6), rng.uniform(0, 2 * math.pi)
    daily = 1 + depth * np.sin(2 * math.pi * (day_start + t) / 86400.0 + phase)
    walk = np.exp(np.cumsum(rng.normal(0, 0.004, n)))
    burst = np.ones(n)
    if rng.random() < 0.3:  # a benign burst: load, not a fault
        at, length = rng.integers(0, n), rng.integers(4, 40)
        burst[at : at + length] *= rng.uniform(1.2, 2.0)
    load = base * daily * walk * burst
    rps = rng.poisson(load * STEP_S) / STEP_S
    cpu_per_req = rng.uniform(0.002, 0.02)
    background = rng.uniform(0.02, 0.3)
    cpu = background + cpu_per_req * rps * rng.lognormal(0, 0.05, n)
    gc = rng.random(n) < 0.01
    cpu = cpu + np.convolve(gc, np.ones(3), mode="same") * rng.uniform(0.1, 0.5)
    cpu = np.round(cpu, 3)
    resident = rng.uniform(100, 2000) * 2**20
    period = rng.integers(20, 120)  # scrapes between collections
    heap = (np.arange(n) + rng.integers(0, period)) % period / period * rng.uniform(0.05, 0.3) * resident
    memory = np.round((resident + heap) / 4096) * 4096
    capacity = load.max() * rng.uniform(1.5, 4.0)
    rho = np.clip(load / capacity, 0, 0.95)
    latency = rng.uniform(0.02, 0.3) * (1 + rho / (1 - rho)) * rng.lognormal(0, 0.25, n)
    errors = rng.binomial(np.maximum(rps * STEP_S, 0).astype(int), rng.uniform(1e-4, 2e-3))
    error_ratio = errors / np.maximum(rps * STEP_S, 1)
    ts = t + rng.uniform(0, 1.0, n)
    keep = rng.random(n) > 0.01
    return {
        name: (ts[keep], values[keep])
        for name, values in (
            ("rps", rps),
            ("cpu", cpu),
            ("memory", memory),
            ("latency_p99", latency),
            ("error_ratio", error_ratio),
        )
    }


def window(seed: int) -> Series:
    """One fault-free window of `SERVICES` services."""
    rng = np.random.default_rng([seed, 20])
    t = np.arange(0.0, WINDOW_S, STEP_S)
    day_start = rng.uniform(0, 86400.0)
    return {f"svc-{i}": _service(rng, t, day_start) for i in range(SERVICES)}
