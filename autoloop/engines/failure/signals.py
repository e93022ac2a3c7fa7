"""Input signals of failure prediction: their names, the node series type, and resampling.

Owns: the built-in metric names (node-exporter / kube-state-metrics), `NodeSeries`, and putting a
series of any sampling onto the regular grid the features read.
Must never: compute features or train anything (`featuring`, `predicting`).
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass
from typing import Final

import numpy as np

DISK_AVAIL: Final = "node_filesystem_avail_bytes"
DISK_SIZE: Final = "node_filesystem_size_bytes"
MEM_AVAIL: Final = "node_memory_MemAvailable_bytes"
MEM_TOTAL: Final = "node_memory_MemTotal_bytes"
TEMP: Final = "node_hwmon_temp_celsius"
EDAC: Final = "node_edac_correctable_errors_total"
RESTARTS: Final = "kube_pod_container_status_restarts_total"
CARRIER: Final = "node_network_carrier_changes_total"
DISK_PRESSURE: Final = "kube_node_status_condition:DiskPressure"
MEMORY_PRESSURE: Final = "kube_node_status_condition:MemoryPressure"
METRICS: Final[tuple[str, ...]] = (
    DISK_AVAIL,
    DISK_SIZE,
    MEM_AVAIL,
    MEM_TOTAL,
    TEMP,
    EDAC,
    RESTARTS,
    CARRIER,
    DISK_PRESSURE,
    MEMORY_PRESSURE,
)
"""Built-in metric names (values: bytes, °C, counter totals, 0/1 conditions), each with features of
its own; any other numeric signal gets the generic features of `featuring.signal_features`."""
COUNTER_SUFFIX: Final[str] = "_total"
"""Prometheus naming convention: a name ending in `_total` is a counter (its increases matter)."""

STEP_SECONDS: Final[float] = 600.0
"""Resampling grid step (10 min): finer than any trend we extrapolate, coarse enough to be cheap."""
LOOKBACK_HOURS: Final[float] = 72.0
"""History each prediction looks at; the longest feature window (sees a 48 h log rotation)."""
STALENESS_SECONDS: Final[float] = 900.0
"""A sample older than this at a grid point counts as missing (1.5 grid steps) ..."""
STALENESS_INTERVALS: Final[float] = 1.5
"""... or older than 1.5 of the series' own typical sampling interval, when that is longer (hourly
samples stay fresh for 90 min: a sparse series is not a down node)."""


@dataclass(frozen=True)
class NodeSeries:
    """Observed metric series of one node (or workload)."""

    name: str
    timestamps: np.ndarray
    """Epoch seconds, increasing."""
    metrics: Mapping[str, np.ndarray]
    """Signal name -> values aligned with timestamps; NaN = no sample. Missing names allowed; any
    numeric signal may be added (see METRICS)."""


def extra_signals(names: Iterable[str]) -> tuple[str, ...]:
    """The signal names that are not built in, sorted (each gets generic features)."""
    return tuple(sorted(set(names) - set(METRICS)))


def is_counter(name: str) -> bool:
    return name.endswith(COUNTER_SUFFIX)


def resample(ts: np.ndarray, values: np.ndarray, grid: np.ndarray) -> np.ndarray:
    """Last sample at or before each grid time (a Prometheus instant query), NaN once stale."""
    ok = np.isfinite(values) & np.isfinite(ts)
    ts, values = ts[ok], values[ok]
    out = np.full(len(grid), np.nan)
    if len(ts) == 0:
        return out
    spacing = float(np.median(np.diff(ts))) if len(ts) > 1 else 0.0
    stale = max(STALENESS_SECONDS, STALENESS_INTERVALS * spacing)
    pos = np.searchsorted(ts, grid, side="right") - 1
    fresh = (pos >= 0) & (grid - ts[np.clip(pos, 0, None)] <= stale)
    out[fresh] = values[pos[fresh]]
    return out


def on_grid(item: NodeSeries, names: Iterable[str], grid: np.ndarray) -> dict[str, np.ndarray]:
    """Each named signal of one node on `grid` as a (1, len(grid)) row; NaN where it has none."""
    ts = np.asarray(item.timestamps, dtype=float)
    out = {}
    for name in names:
        values = item.metrics.get(name)
        if values is None or len(ts) == 0:
            out[name] = np.full((1, len(grid)), np.nan)
        else:
            out[name] = resample(ts, np.asarray(values, dtype=float), grid)[None, :]
    return out


def gridded(
    history: Iterable[NodeSeries], names: Iterable[str]
) -> Iterator[tuple[int, NodeSeries, np.ndarray, dict[str, np.ndarray]]]:
    """Each node with samples, on its own STEP_SECONDS grid: (index in `history`, the node, the
    grid, its named signals on that grid) — how training, evaluation and remaining life read it."""
    wanted = tuple(names)
    for g, item in enumerate(history):
        ts = np.asarray(item.timestamps, dtype=float)
        if len(ts) == 0:
            continue
        grid = np.arange(ts[0], ts[-1] + 1e-6, STEP_SECONDS)
        yield g, item, grid, on_grid(item, wanted, grid)
