"""Recurrence: what the same time of day did on every previous day is not an anomaly.

Owns: `recurring` (which tested samples stay within what every previous period of the reference
reached, on the same side, at the same time of day) and `MIN_PERIODS`.
Must never: fit baselines, score series or raise alarms; `detecting` masks the samples it returns
as it masks what load explains.

Why: a daily job (a backup at 03:30, a batch at 17:15) is an excursion of tens of robust sigma
once a day. The seasonal profile (`baselines`) is a median per time-of-day bin: it learns a daily
shape, not one or two samples that a median ignores, so such a job alarms every day. A tested
sample whose excursion was matched or beaten, on the same side, within one seasonal bin of the
same time of day on every earlier period of the reference, is that job again. Constants: the period
is the detector's seasonal period, the tolerance its seasonal bin (`baselines.SEASONAL_BINS`), and
two whole periods are needed, as for the profile: one coincidence is not a habit. Only reference
samples the baseline rests on count (`fitted_from`): before a level shift, a day's residuals
measure the shift, not the job.
"""

from __future__ import annotations

from typing import Final

import numpy as np
import numpy.typing as npt

from autoloop.engines.anomaly import baselines, samples

MIN_PERIODS: Final[int] = 2
"""Whole earlier periods of reference a recurrence needs: the seasonal profile's own minimum."""


def _side_envelope(
    t: samples.FloatArray, z: samples.FloatArray, i: int, lags: samples.FloatArray, span: tuple[int, int]
) -> tuple[float, float]:
    """(up, down): the smallest of the earlier periods' highest z near `t[i] - lag`, and the
    largest of their lowest z; (inf, -inf) when a period has no sample there."""
    up, down = np.inf, -np.inf
    tolerance = float(lags[0]) / baselines.SEASONAL_BINS
    lo_all = np.searchsorted(t, t[i] - lags - tolerance)
    hi_all = np.searchsorted(t, t[i] - lags + tolerance, side="right")
    for lo, hi in zip(lo_all, hi_all, strict=True):
        seg = z[max(int(lo), span[0]) : min(int(hi), span[1])]
        if seg.size == 0:
            return np.inf, -np.inf
        up, down = min(up, float(seg.max())), max(down, float(seg.min()))
    return up, down


def recurring(
    t: samples.FloatArray, z: samples.FloatArray, first: int, *, period_s: float, fitted_from: int = 0
) -> npt.NDArray[np.bool_]:
    """Per sample, True for a tested one (index >= `first`) whose z every earlier period of the
    reference `z[fitted_from:first]` matched or beat on its side within one seasonal bin either
    side of the same phase; all False with fewer than `MIN_PERIODS` periods."""
    out = np.zeros(z.size, dtype=bool)
    if first <= fitted_from or first >= z.size or period_s <= 0:
        return out
    periods = int((t[first - 1] - t[fitted_from]) // period_s)
    if periods < MIN_PERIODS:
        return out
    lags = period_s * np.arange(1, periods + 1, dtype=float)
    for i in range(first, z.size):
        up, down = _side_envelope(t, z, i, lags, (fitted_from, first))
        out[i] = (z[i] > 0 and z[i] <= up) or (z[i] < 0 and z[i] >= down)
    return out
