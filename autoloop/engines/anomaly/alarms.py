"""Alarms on a series of robust z: when a change starts, when it is detected, when it ends.

Owns: `Alarm`, `find_alarms` (causal: runs beyond the threshold, or a one-sided CUSUM),
`cusum_start` (dating a change), `classify_shape`, `END_QUIET_SAMPLES` and `STRONG_FACTOR`.
Must never: look at a later sample to raise an alarm (dating its start may), nor know what the
series measures.
"""

from __future__ import annotations

import dataclasses
from typing import Final

import numpy as np
import numpy.typing as npt

from autoloop.engines.anomaly import persisting, robust, samples

END_QUIET_SAMPLES: Final[int] = 4
"""An anomaly ends after this many consecutive samples back inside `z_end` (one minute at 15 s)."""
STRONG_FACTOR: Final[float] = 1.5
"""Two consecutive samples beyond this multiple of the threshold alarm at once; at the threshold
itself it takes three (one more scrape of delay, far fewer noise alarms)."""


@dataclasses.dataclass(frozen=True)
class Alarm:
    """Indices (into the series) of one alarm: change start, first alarm, end (None if ongoing)."""

    direction: int
    start: int
    detected: int
    end: int | None


def cusum_start(z: samples.FloatArray, detected: int, direction: int, drift: float, floor: int = 0) -> int:
    """The CUSUM change time before index `detected`: after the last time the sum sat at zero."""
    s, start = 0.0, floor
    for i in range(floor, detected + 1):
        s = max(0.0, s + direction * float(z[i]) - drift)
        if s == 0.0:
            start = i + 1
    return min(start, detected)


def _trailing_median3(z: samples.FloatArray) -> samples.FloatArray:
    """Median of each sample and the two before it (the first two repeat the start)."""
    if z.size < 3:
        return z.copy()
    padded = np.concatenate([z[:1], z[:1], z])
    a, b, c = padded[:-2], padded[1:-1], padded[2:]
    return np.asarray(np.maximum(np.minimum(a, b), np.minimum(np.maximum(a, b), c)), dtype=float)


def _run(zz: samples.FloatArray, i: int, first: int, z_threshold: float, strong: float) -> int:
    """1 (-1) when the samples up to `i` end in a run above (below) the threshold: two beyond
    `strong` or three beyond `z_threshold`; 0 otherwise."""
    v = float(zz[i])
    pair_up = i > first and (
        (v >= strong and zz[i - 1] >= strong)
        or (i > first + 1 and min(v, zz[i - 1], zz[i - 2]) >= z_threshold)
    )
    pair_dn = i > first and (
        (v <= -strong and zz[i - 1] <= -strong)
        or (i > first + 1 and max(v, zz[i - 1], zz[i - 2]) <= -z_threshold)
    )
    return 1 if pair_up else -1 if pair_dn else 0


def _alarm_end(zz: samples.FloatArray, detected: int, direction: int, z_end: float) -> int | None:
    """The first of `END_QUIET_SAMPLES` consecutive samples after `detected` back inside `z_end`;
    None while the change lasts."""
    quiet, j = 0, detected + 1
    while j < zz.size:
        quiet = quiet + 1 if direction * float(zz[j]) < z_end else 0
        if quiet >= END_QUIET_SAMPLES:
            return j - END_QUIET_SAMPLES + 1
        j += 1
    return None


def find_alarms(
    z: samples.FloatArray,
    *,
    first: int,
    z_threshold: float,
    cusum_drift: float,
    cusum_limit: float,
    z_end: float,
    blocked: npt.NDArray[np.bool_] | None = None,
    alpha: float | None = None,
    negligible: npt.NDArray[np.bool_] | None = None,
) -> list[Alarm]:
    """Alarms in `z[first:]`, causal: three consecutive samples beyond `z_threshold` on one side,
    or two beyond `STRONG_FACTOR * z_threshold`, or a one-sided CUSUM >= `cusum_limit`.

    Two samples at the threshold are what heavy-tailed noise produces now and then; three, or two
    far beyond it, are not. `blocked` samples (explained by load) count as zero. After an alarm the
    series must spend `END_QUIET_SAMPLES` samples inside `z_end` before the anomaly ends and a new
    one can start.

    With `alpha` set, a change must also persist (`persisting`): a rule fires only once the tested
    samples beyond `cusum_drift` on its side (since the test start or the last alarm's end) reach
    the count that the reference's own exceedance rate there makes rarer than `alpha / 2` (each
    side gets half). A three-scrape burst then raises nothing unless the reference makes three
    exceedances rare, and a step keeps exceeding until it does.

    `negligible` samples (within the practical tolerance of their expected value,
    `significance`) count as zero too, for raising, persistence and ending an alarm, but not for
    dating its start: a ramp began before it left the tolerance.
    """
    zb = np.where(blocked, 0.0, z) if blocked is not None else z
    zz = np.where(negligible, 0.0, zb) if negligible is not None else zb
    need = _required_counts(zz, first, level=cusum_drift, alpha=alpha)
    # The cumulative sums run on the trailing median of three so that one wild sample cannot
    # raise an alarm (trailing: an alarm never depends on a later sample).
    zm = _trailing_median3(zz)
    centred = robust.median3(zb)
    strong = STRONG_FACTOR * z_threshold
    alarms: list[Alarm] = []
    s_up = s_dn = 0.0
    i, n = first, zz.size
    counts = np.zeros(2, dtype=int)
    while i < n:
        # Winsorised at the threshold (a robust CUSUM): one wild sample is no more evidence of a
        # lasting shift than one at the threshold, so a short burst cannot fill the sum alone.
        vm = float(np.clip(zm[i], -z_threshold, z_threshold))
        counts[0] += int(zz[i] >= cusum_drift)
        counts[1] += int(zz[i] <= -cusum_drift)
        s_up = max(0.0, s_up + vm - cusum_drift)
        s_dn = max(0.0, s_dn - vm - cusum_drift)
        run = _run(zz, i, first, z_threshold, strong)
        direction = (
            1
            if (run == 1 or s_up >= cusum_limit) and counts[0] >= need[0]
            else -1
            if (run == -1 or s_dn >= cusum_limit) and counts[1] >= need[1]
            else 0
        )
        if direction == 0:
            i += 1
            continue
        # Dating the start may look at the samples around it (the alarm itself did not).
        start = cusum_start(centred, i, direction, cusum_drift, floor=max(first - END_QUIET_SAMPLES * 4, 0))
        end = _alarm_end(zz, i, direction, z_end)
        alarms.append(Alarm(direction, start, i, end))
        if end is None:
            break
        # The next alarm is looked for after the quiet samples that ended this one.
        i, s_up, s_dn = end + END_QUIET_SAMPLES, 0.0, 0.0
        counts[:] = 0
    return alarms


def _required_counts(
    zz: samples.FloatArray, first: int, *, level: float, alpha: float | None
) -> tuple[int, int]:
    """(up, down): how many tested samples beyond `level` on each side an alarm needs; (0, 0)
    when `alpha` is None (no persistence asked)."""
    if alpha is None or first <= 0:
        return 0, 0
    ref = zz[:first]
    tested = zz.size - first
    return (
        persisting.required_count(
            tested=tested, exceeded=int(np.sum(ref >= level)), reference=first, alpha=alpha / 2
        ),
        persisting.required_count(
            tested=tested, exceeded=int(np.sum(ref <= -level)), reference=first, alpha=alpha / 2
        ),
    )


def find_single(
    z: samples.FloatArray,
    *,
    first: int,
    level: float,
    z_end: float,
    blocked: npt.NDArray[np.bool_] | None = None,
) -> Alarm | None:
    """The first sample of `z[first:]` beyond `level` on either side, as an alarm of one sample
    (ending once `END_QUIET_SAMPLES` are back inside `z_end`); None when there is none."""
    zz = np.where(blocked, 0.0, z) if blocked is not None else z
    hits = np.flatnonzero(np.abs(zz[first:]) >= level)
    if hits.size == 0:
        return None
    i = first + int(hits[0])
    direction = 1 if zz[i] > 0 else -1
    return Alarm(direction, i, i, _alarm_end(zz, i, direction, z_end))


def classify_shape(z: samples.FloatArray, alarm: Alarm) -> samples.Shape:
    """Burst if it ended, spike if it ended within three samples, ramp if growing, else step."""
    stop = alarm.end if alarm.end is not None else z.size
    seg = alarm.direction * z[alarm.start : stop]
    if alarm.end is not None:
        return "spike" if stop - alarm.start <= 3 else "burst"
    if seg.size >= 8:
        q = seg.size // 4
        early, late = float(np.median(seg[:q])), float(np.median(seg[-q:]))
        if late > 0 and early < 0.5 * late:
            return "ramp"
    return "step"
