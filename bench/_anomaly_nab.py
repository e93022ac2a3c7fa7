"""NAB's realAWSCloudwatch series as `bench.anomaly` cases, and the hourly passes over them.

Contract: loading and per-pass scoring only; choosing constants and reporting live in
`bench.anomaly`. Each series (`timestamp,value`, 5 min) comes with its labelled anomaly windows
(`combined_windows.json`). A *pass* runs every hour on the trailing three days: the last hour is
tested, the 71 hours before it are the reference, as an operator re-checking a metric hourly
would. A pass raises (at most one alarm) when a detector alarms inside its tested hour.

Source: Numenta Anomaly Benchmark v1.1 (github.com/numenta/NAB), MIT licence (`nab/LICENSE.txt`).
"""

from __future__ import annotations

import csv
import dataclasses
import json
from collections.abc import Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import Final

import numpy as np

from autoloop.engines import anomaly

FOLDER: Final[str] = "nab"
SUBSET: Final[str] = "realAWSCloudwatch"
PASS_EVERY_S: Final[float] = 3600.0
"""One pass an hour (the issue's protocol)."""
TRAILING_S: Final[float] = 3 * 86400.0
"""Each pass reads the trailing three days (the issue's protocol)."""
METRIC: Final[str] = "value"
"""NAB series carry no metric kind: a neutral name, so nothing is read as load or errors."""
SIGMAS: Final[float] = 3.0
"""Rolling 3-sigma: a sample beyond mean +- 3 std of the reference (the textbook rule)."""


@dataclasses.dataclass(frozen=True)
class Series:
    name: str
    t: np.ndarray
    """Epoch seconds (UTC), increasing."""
    x: np.ndarray
    windows: tuple[tuple[float, float], ...]
    """Labelled anomaly windows (epoch seconds, inclusive)."""


@dataclasses.dataclass(frozen=True)
class Pass:
    """One hourly pass: when it ran and the tested part's scores."""

    end: float
    z: np.ndarray
    """Robust z of the whole trailing window (autoloop's scoring)."""
    t: np.ndarray
    first: int
    """Index of the first tested sample."""
    valid: bool
    """autoloop had a usable, non-degenerate reference (else it would raise nothing unexplained;
    `bench.anomaly` applies `AnomalyDetector.series_alarms` to the valid passes)."""
    sigma_alarm: float | None
    """Time of the rolling 3-sigma alarm in the tested hour, if any."""
    recurring: np.ndarray
    """Tested samples that every earlier day of the reference matched at that time of day
    (`AnomalyDetector.recurring_mask`): what `detect` masks when `recurrence` is on."""
    negligible: np.ndarray
    """Samples within 10 % of their expected value (`AnomalyDetector.negligible_mask`): what
    `detect` always masks (the engine's practical-significance rule, not a grid switch)."""


def _epoch(text: str) -> float:
    stamp = text.split(".")[0]
    return datetime.strptime(stamp, "%Y-%m-%d %H:%M:%S").replace(tzinfo=UTC).timestamp()


def load(root: Path) -> list[Series]:
    """Every series of the subset with its windows, sorted by name."""
    windows = json.loads((root / FOLDER / "combined_windows.json").read_text())
    out = []
    for path in sorted((root / FOLDER / SUBSET).glob("*.csv")):
        with path.open(newline="") as f:
            rows = list(csv.reader(f))[1:]
        t = np.array([_epoch(r[0]) for r in rows])
        x = np.array([float(r[1]) for r in rows])
        order = np.argsort(t, kind="stable")
        spans = tuple((_epoch(a), _epoch(b)) for a, b in windows[f"{SUBSET}/{path.name}"])
        out.append(Series(path.stem, t[order], x[order], spans))
    return out


def _sigma_alarm(t: np.ndarray, x: np.ndarray, cut: float) -> float | None:
    ref, test = x[t < cut], t >= cut
    if ref.size < 2:
        return None
    hit = np.flatnonzero(test & (np.abs(x - ref.mean()) > SIGMAS * ref.std()))
    return float(t[hit[0]]) if hit.size else None


def passes(series: Series, *, every: int = 1) -> list[Pass]:
    """The hourly passes from the first full trailing window on (`every` > 1 keeps one in
    `every`, for the quick run)."""
    detector = anomaly.AnomalyDetector()
    ends = np.arange(series.t[0] + TRAILING_S, series.t[-1] + 1.0, PASS_EVERY_S)[::every]
    out = []
    for end in ends:
        keep = (series.t > end - TRAILING_S) & (series.t <= end)
        t, x = series.t[keep], series.x[keep]
        cut = float(end - PASS_EVERY_S)
        score = detector.score_service({METRIC: (t, x)}, reference_end=cut)[METRIC]
        first = int(np.searchsorted(score.t, cut))
        ok = score.valid and not score.degenerate and first < score.t.size
        out.append(
            Pass(
                float(end),
                score.z,
                score.t,
                first,
                ok,
                _sigma_alarm(t, x, cut),
                detector.recurring_mask(score, first),
                detector.negligible_mask(score),
            )
        )
    return out


@dataclasses.dataclass(frozen=True)
class Score:
    windows: int
    """Labelled windows that end after the first pass (the earlier ones cannot be seen)."""
    caught: int
    false_alarms: int
    days: float


def new_alarms(alarms: Sequence[float | None]) -> list[float | None]:
    """Alarms that are new: the pass before did not raise (an alarm that stays raised over
    consecutive passes is one alarm, as the operator keeps an ongoing anomaly in status)."""
    out: list[float | None] = []
    before = False
    for a in alarms:
        out.append(a if a is not None and not before else None)
        before = a is not None
    return out


def score(series: Series, alarms: Sequence[float | None], ends: Sequence[float]) -> Score:
    """Windows with an alarm inside (any raising pass), and new alarms outside every window, over
    the passes' span."""
    times = [a for a in alarms if a is not None]
    fresh = [a for a in new_alarms(alarms) if a is not None]
    seen = [w for w in series.windows if w[1] >= ends[0] - PASS_EVERY_S]
    caught = sum(any(a <= t <= b for t in times) for a, b in seen)
    false = sum(not any(a <= t <= b for a, b in series.windows) for t in fresh)
    days = (ends[-1] - ends[0] + PASS_EVERY_S) / 86400.0
    return Score(len(seen), caught, false, days)
