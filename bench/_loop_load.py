"""Load for bench/loop: a real CPU trace scaled to a request rate, plus a 3x flash crowd.

The trace (`traces/cpu-N.csv`, one sample a minute) is cut to the run's length from an offset drawn
per seed, divided by its own mean over that window (so only its shape is used) and multiplied by
the service's mean request rate; it is held constant within each minute. The flash crowd is three
times the traced load for 30 minutes, reached in a 5-minute ramp and left in a 10-minute decay, at a
time drawn per seed in the middle half of the run (a launch or a news spike).
"""

from __future__ import annotations

from pathlib import Path
from typing import Final

import numpy as np

FLASH_FACTOR: Final[float] = 3.0
FLASH_HOLD_S: Final[float] = 1800.0
FLASH_RAMP_S: Final[float] = 300.0
FLASH_DECAY_S: Final[float] = 600.0
# The traced load never drops below this fraction of its mean: a live service keeps some traffic
# (and a zero would make utilisation undefined).
MIN_FRACTION: Final[float] = 0.02


def trace_shape(path: Path, hours: float, rng: np.random.Generator) -> np.ndarray:
    """`hours` of one-minute samples from the trace, from a random offset, with mean 1."""
    values = np.loadtxt(path, delimiter=",", skiprows=1, usecols=1)
    n = int(hours * 60)
    start = int(rng.integers(0, max(values.size - n, 1)))
    window = np.resize(values[start : start + n], n)
    mean = float(window.mean())
    shape = window / mean if mean > 0 else np.ones(n)
    return np.maximum(shape, MIN_FRACTION)


def flash_multiplier(t: np.ndarray, start: float) -> np.ndarray:
    """1 outside the flash crowd, FLASH_FACTOR while it holds, linear ramps in and out."""
    up = np.clip((t - start) / FLASH_RAMP_S, 0.0, 1.0)
    down = np.clip(1.0 - (t - start - FLASH_RAMP_S - FLASH_HOLD_S) / FLASH_DECAY_S, 0.0, 1.0)
    return 1.0 + (FLASH_FACTOR - 1.0) * np.minimum(up, down)


def request_rate(
    path: Path, hours: float, mean_rps: float, step_s: float, rng: np.random.Generator
) -> np.ndarray:
    """Requests/s at every step of `step_s` seconds over `hours`."""
    shape = trace_shape(path, hours, rng)
    t = np.arange(int(hours * 3600 / step_s)) * step_s
    flash_start = float(rng.uniform(0.25, 0.75)) * hours * 3600.0
    per_step = shape[np.minimum((t // 60).astype(int), shape.size - 1)]
    return mean_rps * per_step * flash_multiplier(t, flash_start)
