"""Fleet degradation and hazard simulator: node metrics with hidden failure processes.

Contract: `simulate_fleet(config, random_state=...)` returns a `Fleet` holding the *observed* noisy
metric series of every node (node-exporter / kube-state-metrics names, one sample per
`step_seconds`, NaN while a node is down or when a node lacks a sensor) and the ground-truth
failures (time, mode, when the precursor began). The hidden state (fill rates, leak rates, error
growth) never leaves this module, so a model trained on `Fleet.metrics` sees only what
Prometheus would show.

Why a simulator: no public node-failure dataset can be downloaded here. It is built so no model can
be perfect: some failures have short (< 6 h) or no precursor, and healthy nodes carry drifts that
look alarming to a linear extrapolation (log-rotation sawtooth disks, memory that climbs towards a
plateau, hot but stable sensors, isolated corrected errors, deploy restarts).

Failure modes (hidden), each followed by a repair during which the node reports nothing:
- ``disk_fill``: the root filesystem fills linearly until full;
- ``memory_leak``: MemAvailable falls linearly until the node is out of memory;
- ``hardware``: corrected ECC errors grow exponentially and the temperature creeps up;
- ``flapping``: NIC carrier changes and container restarts arrive faster and faster (kernel/NIC);
- ``sudden``: no precursor at all (power, kernel panic).

`trained_predictor()` trains the default `FailurePredictor` on a seeded fleet on first use and
caches it in memory (a few seconds), so the predictor works out of the box without a binary model.
"""

from __future__ import annotations

import functools
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Final

import numpy as np

from autoloop.engines import failure

HOUR: Final[float] = 3600.0
"""Seconds per hour."""
GIB: Final[float] = 1024.0**3
"""Bytes per GiB."""
MODES: Final[tuple[str, ...]] = ("disk_fill", "memory_leak", "hardware", "flapping", "sudden")
"""Hidden failure modes, in the order of `FleetConfig.mode_weights`."""
DISK_PRESSURE_AVAILABLE_FRACTION: Final[float] = 0.10
"""kubelet's default hard eviction threshold nodefs.available<10% (kubelet config defaults)."""
MEMORY_PRESSURE_AVAILABLE_BYTES: Final[float] = 100.0 * 1024**2
"""kubelet's default hard eviction threshold memory.available<100Mi (kubelet config defaults)."""
DEFAULT_TRAIN_SEED: Final[int] = 20240601
"""Seed of the fleet the default predictor is trained on (disjoint from the benchmark seeds)."""


@dataclass(frozen=True)
class FleetConfig:
    """Shape and hazard rates of a simulated fleet."""

    n_nodes: int = 200
    """Number of nodes."""
    days: float = 30.0
    """Length of the simulated history."""
    step_seconds: int = 600
    """Scrape step of the stored series."""
    start: float = 1_767_225_600.0
    """Epoch seconds of the first sample (2026-01-01T00:00Z)."""
    onset_per_node_day: float = 1.0 / 30.0
    """Rate at which a healthy node enters a failure episode (per node and day)."""
    mode_weights: tuple[float, float, float, float, float] = (0.2, 0.2, 0.2, 0.15, 0.25)
    """Probabilities of disk_fill, memory_leak, hardware, flapping, sudden."""
    fast_fraction: float = 0.2
    """Share of precursor episodes whose precursor lasts only 1-6 h."""
    sawtooth_fraction: float = 0.25
    """Healthy nodes whose disk fills towards 80-95 % and is freed by log rotation."""
    plateau_memory_fraction: float = 0.25
    """Healthy nodes whose memory climbs towards a plateau near the limit each day."""
    hot_fraction: float = 0.1
    """Healthy nodes that run hot (75-85 °C) but stable."""
    noisy_edac_fraction: float = 0.1
    """Healthy nodes with isolated corrected memory errors at a constant rate."""
    no_sensor_fraction: float = 0.2
    """Nodes (cloud VMs) that expose no hwmon temperature and no EDAC counters."""


@dataclass(frozen=True)
class Failure:
    """One ground-truth failure of the simulated fleet."""

    node: str
    time: float
    """Epoch seconds at which the node failed."""
    mode: str
    precursor_start: float
    """Epoch seconds at which the first symptom began (== time for sudden failures)."""


@dataclass(frozen=True)
class Fleet:
    """Observed series of a fleet plus the ground truth."""

    nodes: tuple[str, ...]
    timestamps: np.ndarray
    """Shape (T,), epoch seconds."""
    metrics: Mapping[str, np.ndarray]
    """Metric name -> array (n_nodes, T); NaN while down or without the sensor."""
    failures: tuple[Failure, ...]
    down: np.ndarray = field(repr=False)
    """Shape (n_nodes, T), True while the node is failed and being repaired."""

    def node_series(self, index: int, *, until: float | None = None) -> failure.NodeSeries:
        """The observed series of one node, optionally cut at `until` (inclusive)."""
        stop = (
            len(self.timestamps) if until is None else int(np.searchsorted(self.timestamps, until, "right"))
        )
        metrics = {name: values[index, :stop] for name, values in self.metrics.items()}
        return failure.NodeSeries(name=self.nodes[index], timestamps=self.timestamps[:stop], metrics=metrics)

    def failure_times(self) -> dict[str, list[float]]:
        """Failure epochs per node, the labels `FailurePredictor.fit` takes."""
        out: dict[str, list[float]] = {node: [] for node in self.nodes}
        for item in self.failures:
            out[item.node].append(item.time)
        return out


@dataclass
class _Node:
    """Per-node buffers filled by the generators (module private)."""

    disk_used: np.ndarray
    mem_used: np.ndarray
    temp: np.ndarray
    edac_inc: np.ndarray
    restart_inc: np.ndarray
    carrier_inc: np.ndarray
    down: np.ndarray


def simulate_fleet(config: FleetConfig | None = None, *, random_state: int = 0) -> Fleet:
    """Simulate `config.n_nodes` nodes for `config.days`; deterministic for a given random_state."""
    cfg = config or FleetConfig()
    rng = np.random.default_rng(random_state)
    n_steps = int(cfg.days * 86400 / cfg.step_seconds)
    hours = np.arange(n_steps) * cfg.step_seconds / HOUR
    names = tuple(f"node-{i:04d}" for i in range(cfg.n_nodes))
    shape = (cfg.n_nodes, n_steps)
    metrics = {
        name: np.full(shape, np.nan)
        for name in (
            failure.DISK_AVAIL,
            failure.DISK_SIZE,
            failure.MEM_AVAIL,
            failure.MEM_TOTAL,
            failure.TEMP,
            failure.EDAC,
            failure.RESTARTS,
            failure.CARRIER,
            failure.DISK_PRESSURE,
            failure.MEMORY_PRESSURE,
        )
    }
    failures: list[Failure] = []
    down = np.zeros(shape, dtype=bool)
    for i, name in enumerate(names):
        has_sensors = rng.random() >= cfg.no_sensor_fraction
        node, node_failures = _simulate_node(cfg, rng, hours, has_sensors)
        failures.extend(
            Failure(name, cfg.start + f * HOUR, mode, cfg.start + p * HOUR) for f, mode, p in node_failures
        )
        _observe(rng, hours, node, metrics, i, has_sensors)
        down[i] = node.down
    for values in metrics.values():
        values[down] = np.nan
    timestamps = cfg.start + hours * HOUR
    return Fleet(names, timestamps, metrics, tuple(failures), down)


def _simulate_node(
    cfg: FleetConfig, rng: np.random.Generator, hours: np.ndarray, has_sensors: bool
) -> tuple[_Node, list[tuple[float, str, float]]]:
    """Healthy behaviour plus a sequence of failure episodes separated by repairs."""
    n = len(hours)
    node = _Node(
        disk_used=_healthy_disk(cfg, rng, hours),
        mem_used=_healthy_memory(cfg, rng, hours),
        temp=_healthy_temperature(cfg, rng, hours),
        edac_inc=_poisson_events(rng, hours, (0.3 / 24.0) if rng.random() < cfg.noisy_edac_fraction else 0.0),
        restart_inc=_deploy_restarts(rng, hours),
        carrier_inc=_poisson_events(rng, hours, 0.2 / 24.0),
        down=np.zeros(n, dtype=bool),
    )
    dt = hours[1] - hours[0]
    out: list[tuple[float, str, float]] = []
    # Burn-in: the first episode may already be under way when the history starts.
    t = -rng.uniform(0.0, 96.0)
    while True:
        t += rng.exponential(24.0 / cfg.onset_per_node_day)
        if t >= hours[-1]:
            break
        mode = str(rng.choice(MODES, p=np.asarray(cfg.mode_weights)))
        if mode == "hardware" and not has_sensors:
            # A VM's hardware is the provider's: it degrades out of sight and fails suddenly.
            mode = "sudden"
        fast = rng.random() < cfg.fast_fraction
        duration = _precursor_hours(rng, mode, fast)
        fail_at = t + duration
        if fail_at < 0.0:
            continue
        _apply_episode(rng, hours, node, mode, t, fail_at)
        repair = rng.uniform(2.0, 8.0)
        in_repair = (hours >= fail_at) & (hours < fail_at + repair)
        node.down |= in_repair
        if fail_at < hours[-1] + dt:
            out.append((fail_at, mode, t))
        t = fail_at + repair
    return node, out


def _precursor_hours(rng: np.random.Generator, mode: str, fast: bool) -> float:
    """How long the symptoms last before the failure."""
    if mode == "sudden":
        return 0.0
    if fast:
        return float(rng.uniform(1.0, 6.0))
    low, high = {"disk_fill": (18.0, 72.0), "memory_leak": (12.0, 60.0), "hardware": (24.0, 96.0)}.get(
        mode, (12.0, 48.0)
    )
    return float(rng.uniform(low, high))


def _apply_episode(
    rng: np.random.Generator, hours: np.ndarray, node: _Node, mode: str, onset: float, fail_at: float
) -> None:
    """Overwrite the node's hidden state between onset and the failure with the mode's symptoms."""
    active = (hours >= onset) & (hours < fail_at)
    if not active.any() or mode == "sudden":
        return
    progress = (hours[active] - onset) / max(fail_at - onset, 1e-9)
    if mode == "disk_fill":
        start = node.disk_used[active][0]
        node.disk_used[active] = start + (1.0 - start) * progress
    elif mode == "memory_leak":
        start = node.mem_used[active][0]
        node.mem_used[active] = start + (1.0 - start) * progress
    elif mode == "hardware":
        # Corrected errors per hour grow exponentially from ~1/h to ~100/h (x lognormal) at failure.
        final_rate = 100.0 * rng.lognormal(0.0, 0.3)
        rate = np.exp(np.log(final_rate) * progress)
        dt = hours[1] - hours[0]
        node.edac_inc[active] += rng.poisson(rate * dt)
        node.temp[active] += rng.uniform(8.0, 20.0) * progress**2
    else:
        # Flapping: link flaps and container restarts accelerate from ~0.3/h to ~10/h at failure.
        dt = hours[1] - hours[0]
        rate = 0.3 * np.exp(np.log(10.0 * rng.lognormal(0.0, 0.3) / 0.3) * progress)
        flaps = rng.poisson(rate * dt)
        node.carrier_inc[active] += flaps * 2
        node.restart_inc[active] += flaps * rng.integers(1, 4, size=flaps.shape)
    # After the repair the node starts afresh (new disk, restarted workloads).
    after = hours >= fail_at
    if mode == "disk_fill":
        node.disk_used[after] = np.minimum(node.disk_used[after], 0.6)
    if mode == "memory_leak":
        node.mem_used[after] = np.minimum(node.mem_used[after], 0.6)


def _healthy_disk(cfg: FleetConfig, rng: np.random.Generator, hours: np.ndarray) -> np.ndarray:
    """Used fraction of the root filesystem: slow growth, or a log-rotation sawtooth."""
    base = rng.uniform(0.25, 0.6)
    if rng.random() < cfg.sawtooth_fraction:
        period = float(rng.choice([12.0, 24.0, 48.0]))
        low, high = rng.uniform(0.45, 0.7), rng.uniform(0.82, 0.95)
        phase = rng.uniform(0.0, period)
        return low + (high - low) * (((hours + phase) % period) / period)
    return base + rng.uniform(0.0, 0.002) * hours / 24.0 + np.cumsum(rng.normal(0.0, 0.0005, len(hours)))


def _healthy_memory(cfg: FleetConfig, rng: np.random.Generator, hours: np.ndarray) -> np.ndarray:
    """Used memory fraction: steady with noise, or a daily climb towards a plateau near the limit."""
    base = rng.uniform(0.3, 0.6)
    if rng.random() < cfg.plateau_memory_fraction:
        plateau = rng.uniform(0.85, 0.95)
        tau = rng.uniform(3.0, 8.0)
        since_reset = (hours + rng.uniform(0.0, 24.0)) % 24.0
        return plateau - (plateau - base) * np.exp(-since_reset / tau)
    return base + 0.05 * np.sin(2 * np.pi * hours / 24.0 + rng.uniform(0, 6.3))


def _healthy_temperature(cfg: FleetConfig, rng: np.random.Generator, hours: np.ndarray) -> np.ndarray:
    """Degrees Celsius with a diurnal load cycle."""
    base = rng.uniform(75.0, 85.0) if rng.random() < cfg.hot_fraction else rng.uniform(45.0, 65.0)
    return base + rng.uniform(1.0, 5.0) * np.sin(2 * np.pi * hours / 24.0 + rng.uniform(0, 6.3))


def _poisson_events(rng: np.random.Generator, hours: np.ndarray, per_hour: float) -> np.ndarray:
    dt = hours[1] - hours[0]
    return rng.poisson(per_hour * dt, len(hours)).astype(float)


def _deploy_restarts(rng: np.random.Generator, hours: np.ndarray) -> np.ndarray:
    """Healthy restarts: rollouts about once a day restart 2-12 containers at once."""
    dt = hours[1] - hours[0]
    bursts = rng.poisson(dt / rng.uniform(12.0, 72.0), len(hours))
    return bursts * rng.integers(2, 13, len(hours)).astype(float)


def _observe(
    rng: np.random.Generator,
    hours: np.ndarray,
    node: _Node,
    metrics: Mapping[str, np.ndarray],
    i: int,
    has_sensors: bool,
) -> None:
    """Turn hidden state into noisy Prometheus samples; counters reset when the node reboots."""
    n = len(hours)
    disk_size = float(rng.choice([100.0, 200.0, 500.0])) * 1e9
    mem_total = float(rng.choice([16.0, 32.0, 64.0, 128.0])) * GIB
    disk_used = np.clip(node.disk_used + rng.normal(0.0, 0.003, n), 0.0, 1.0)
    mem_used = np.clip(node.mem_used + rng.normal(0.0, 0.02, n), 0.0, 1.0)
    metrics[failure.DISK_SIZE][i] = disk_size
    metrics[failure.DISK_AVAIL][i] = disk_size * (1.0 - disk_used)
    metrics[failure.MEM_TOTAL][i] = mem_total
    metrics[failure.MEM_AVAIL][i] = mem_total * (1.0 - mem_used)
    metrics[failure.DISK_PRESSURE][i] = (1.0 - disk_used) < DISK_PRESSURE_AVAILABLE_FRACTION
    metrics[failure.MEMORY_PRESSURE][i] = mem_total * (1.0 - mem_used) < MEMORY_PRESSURE_AVAILABLE_BYTES
    metrics[failure.RESTARTS][i] = _counter(node.restart_inc, node.down)
    metrics[failure.CARRIER][i] = _counter(node.carrier_inc, node.down)
    if has_sensors:
        metrics[failure.TEMP][i] = node.temp + rng.normal(0.0, 1.5, n)
        metrics[failure.EDAC][i] = _counter(node.edac_inc, node.down)


def _counter(increments: np.ndarray, down: np.ndarray) -> np.ndarray:
    """A Prometheus counter that restarts from zero after each down period (reboot)."""
    inc = np.where(down, 0.0, increments)
    total = np.cumsum(inc)
    restart = np.zeros(len(inc), dtype=bool)
    restart[1:] = down[:-1] & ~down[1:]
    # At each restart subtract everything counted before it; carry that offset forward.
    offset = np.where(restart, total - inc, 0.0)
    last_restart = np.maximum.accumulate(np.where(restart, np.arange(len(inc)), 0))
    return total - offset[last_restart]


@functools.lru_cache(maxsize=4)
def trained_predictor(random_state: int = DEFAULT_TRAIN_SEED) -> failure.FailurePredictor:
    """The default predictor, trained on first use on a seeded simulated fleet and cached in memory."""
    fleet = simulate_fleet(FleetConfig(n_nodes=120, days=21.0), random_state=random_state)
    model = failure.FailurePredictor(random_state=0)
    return model.fit_arrays(
        timestamps=fleet.timestamps,
        metrics=fleet.metrics,
        failure_times=[[f.time for f in fleet.failures if f.node == node] for node in fleet.nodes],
    )
