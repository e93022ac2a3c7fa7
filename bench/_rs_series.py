"""Workload series for bench/rightsizing: the real CPU series and generated CPU and memory series.

Real sets: `traces/` (Crane, 1 min, scaled so the first day's mean is 1 core) and `bitbrains/`
(GWA-T-12 Rnd VMs, cores, 5 min); each series carries its step, read from the data.

Generated kinds (1 sample/minute): diurnal, bursty, step and growth for CPU (cores) and memory
(bytes: a leak that resets on restarts, a step at a deploy, growth, diurnal working set).
"""

from __future__ import annotations

import csv
from dataclasses import dataclass
from pathlib import Path
from typing import Final

import numpy as np

from bench import _data

# The real traces: cpu-<n>.csv in this folder of the data root (bench/_data.py: $AUTOLOOP_DATA,
# else ../shared/data beside the repository).
TRACES: Final[str] = "traces"
BITBRAINS: Final[str] = "bitbrains"
# Bitbrains VMs used: mean usage above 0.1 core and at least 20 days recorded (issue 21; the rest
# are near idle or too short for two weeks of history plus a scored week).
BITBRAINS_MIN_MEAN_CORES: Final[float] = 0.1
BITBRAINS_MIN_DAYS: Final[float] = 20.0
MINUTES_PER_DAY: Final[int] = 1440
GIB: Final[float] = 2.0**30


@dataclass(frozen=True)
class Series:
    name: str
    resource: str  # "cpu" | "memory"
    ts: np.ndarray  # Unix seconds
    usage: np.ndarray  # cores or bytes
    step: float = 60.0  # seconds between samples
    group: str = "generated"  # "crane" | "bitbrains" | "generated"

    @property
    def per_day(self) -> int:
        return round(86_400.0 / self.step)


def load_traces(max_days: int | None = None, data_dir: str | Path | None = None) -> list[Series]:
    """Real traces scaled so the first day's mean is 1 core (units are the app's own; VPA's
    histogram has absolute bucket sizes in cores, so the scale must be sensible). `data_dir`: the
    data root (default: bench/_data.py's resolution)."""
    out = []
    traces = _data.data_root(data_dir, require=TRACES) / TRACES
    for path in sorted(traces.glob("cpu-*.csv")):
        with path.open() as fh:
            rows = list(csv.reader(fh))[1:]
        data = np.array(rows, dtype=np.float64)
        ts, usage = data[:, 0], np.maximum(data[:, 1], 0.0)
        if max_days is not None:
            keep = max_days * MINUTES_PER_DAY
            ts, usage = ts[:keep], usage[:keep]
        first_mean = float(np.mean(usage[:MINUTES_PER_DAY])) or float(np.mean(usage)) or 1.0
        out.append(Series(path.stem, "cpu", ts, usage / first_mean, 60.0, "crane"))
    return out


def _read(path: Path) -> tuple[np.ndarray, np.ndarray]:
    with path.open() as fh:
        rows = list(csv.reader(fh))[1:]
    data = np.array(rows, dtype=np.float64)
    return data[:, 0], np.maximum(data[:, 1], 0.0)


def load_bitbrains(max_days: int | None = None, data_dir: str | Path | None = None) -> list[Series]:
    """The Bitbrains VMs of `index.csv` with mean usage > 0.1 core over >= 20 days, in cores, at
    their recorded step (gaps are kept as they are: the replay sees what was recorded)."""
    root = _data.data_root(data_dir, require=BITBRAINS) / BITBRAINS
    out = []
    with (root / "index.csv").open() as fh:
        index = list(csv.DictReader(fh))
    for row in index:
        if not row.get("mean_cores") or row.get("included") != "1":
            continue
        if (
            float(row["mean_cores"]) <= BITBRAINS_MIN_MEAN_CORES
            or float(row["span_days"]) < BITBRAINS_MIN_DAYS
        ):
            continue
        path = root / f"vm{int(row['vm']):03d}.csv"
        if not path.exists():
            continue
        ts, usage = _read(path)
        step = float(np.median(np.diff(ts)))
        if max_days is not None:
            keep = int(max_days * 86_400 / step)
            ts, usage = ts[:keep], usage[:keep]
        out.append(Series(path.stem, "cpu", ts, usage, step, "bitbrains"))
    return out


def _diurnal(minutes: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    phase = rng.uniform(0, 2 * np.pi)
    day = minutes / MINUTES_PER_DAY
    weekly = 1.0 - 0.25 * ((np.floor(day) % 7) >= 5)
    return weekly * (1.0 + 0.6 * np.sin(2 * np.pi * day + phase))


def generate(days: int, seed: int) -> list[Series]:
    rng = np.random.default_rng(seed)
    n = days * MINUTES_PER_DAY
    m = np.arange(n, dtype=np.float64)
    ts = 1_700_000_000.0 + 60.0 * m
    out: list[Series] = []
    noise = lambda s: np.exp(rng.normal(0, s, n))  # noqa: E731
    # CPU
    out.append(Series(f"gen-cpu-diurnal-{seed}", "cpu", ts, 1.0 * _diurnal(m, rng) * noise(0.1)))
    bursts = (rng.random(n) < 0.01) * rng.exponential(1.5, n)
    bursts = np.convolve(bursts, np.ones(10), mode="same")
    out.append(Series(f"gen-cpu-bursty-{seed}", "cpu", ts, (0.8 + bursts) * noise(0.15)))
    step_at = rng.integers(3, days - 2) * MINUTES_PER_DAY + rng.integers(0, MINUTES_PER_DAY)
    level = np.where(m < step_at, 1.0, rng.choice([0.5, 1.8]))
    out.append(Series(f"gen-cpu-step-{seed}", "cpu", ts, level * _diurnal(m, rng) * noise(0.1)))
    growth = np.exp(np.log(rng.uniform(1.5, 3.0)) * m / n)
    out.append(Series(f"gen-cpu-growth-{seed}", "cpu", ts, growth * _diurnal(m, rng) * noise(0.1)))
    # Memory (bytes)
    base = rng.uniform(0.5, 2.0) * GIB
    ws = 1.0 + 0.15 * (_diurnal(m, rng) - 1.0)
    out.append(Series(f"gen-mem-diurnal-{seed}", "memory", ts, base * ws * noise(0.02)))
    restarts = np.sort(rng.choice(n, size=max(1, days // 3), replace=False))
    since = m - np.concatenate([[0.0], restarts])[np.searchsorted(restarts, m, side="right")]
    leak = 1.0 + 0.3 * since / (3 * MINUTES_PER_DAY)
    out.append(Series(f"gen-mem-leak-{seed}", "memory", ts, base * leak * noise(0.02)))
    mstep = np.where(m < step_at, 1.0, rng.choice([0.7, 1.5]))
    out.append(Series(f"gen-mem-step-{seed}", "memory", ts, base * mstep * ws * noise(0.02)))
    out.append(Series(f"gen-mem-growth-{seed}", "memory", ts, base * growth * ws * noise(0.02)))
    return out


def generate_level_shifts(days: int, seed: int) -> list[Series]:
    """CPU series (cores) around large level shifts, for the forecaster's regime handling: the
    diurnal shape with, at a random minute of days 4-9, a x5 step, a x0.2 step and a start from
    1 % of the level (new load); and two that must not count as a shift: weekends at a quarter
    of the weekday level, and a 20x burst of 10-23 h on days 6-11."""
    rng = np.random.default_rng(seed)
    n = days * MINUTES_PER_DAY
    m = np.arange(n, dtype=np.float64)
    ts = 1_700_000_000.0 + 60.0 * m
    noise = lambda s: np.exp(rng.normal(0, s, n))  # noqa: E731
    at = rng.integers(4, min(10, days - 2)) * MINUTES_PER_DAY + rng.integers(0, MINUTES_PER_DAY)
    out = [
        Series(f"shift-x5-{seed}", "cpu", ts, np.where(m < at, 1.0, 5.0) * _diurnal(m, rng) * noise(0.1)),
        Series(f"shift-x0.2-{seed}", "cpu", ts, np.where(m < at, 1.0, 0.2) * _diurnal(m, rng) * noise(0.1)),
        Series(f"new-load-{seed}", "cpu", ts, np.where(m < at, 0.01, 1.0) * _diurnal(m, rng) * noise(0.1)),
    ]
    weekend = np.where((np.floor(m / MINUTES_PER_DAY) % 7) >= 5, 0.25, 1.0)
    out.append(Series(f"weekend-4x-{seed}", "cpu", ts, weekend * _diurnal(m, rng) * noise(0.1)))
    burst = np.ones(n)
    start = rng.integers(6, min(12, days - 1)) * MINUTES_PER_DAY
    burst[start : start + rng.integers(600, 1400)] = 20.0
    out.append(Series(f"long-burst-{seed}", "cpu", ts, burst * _diurnal(m, rng) * noise(0.1)))
    return out
