"""The baseline of a series: what its reference says each sample should be.

Owns: `baseline` (a time-of-day profile with two or more seasonal periods of reference, else a
robust level + trend + load fit, from the newest level on), `SEASONAL_BINS` and `TERM_T_STAT`.
Must never: turn residuals into scores or alarms (`scoring`, `alarms` do).
"""

from __future__ import annotations

from typing import Final

import numpy as np
import numpy.typing as npt

from autoloop.engines.anomaly import levels, robust, samples

SEASONAL_BINS: Final[int] = 96
"""Time-of-day bins of the seasonal profile: 15-minute bins over a day."""
TERM_T_STAT: Final[float] = 4.0
"""A trend or load term of the baseline is kept only beyond this many standard errors: a spurious
term would be extrapolated into the test window (at 2 SE, one series in twenty would carry one)."""


def _trend_and_load(
    t_ref: samples.FloatArray, y_ref: samples.FloatArray, t: samples.FloatArray, load: samples.FloatArray
) -> tuple[samples.FloatArray, samples.FloatArray, npt.NDArray[np.bool_]]:
    """Level + linear trend + load coupling fitted on the reference, per column of `y_ref`;
    terms within `TERM_T_STAT` standard errors of zero are noise and are dropped, and so is a trend
    measured over a shorter span than it would be extrapolated over. A reference with
    a level shift is fitted from its newest level on (see `levels.level_shift_starts`).

    `load` (samples of `t` x series) is each series' relative load deviation, zeros for none.
    Returns the expected values, separately their load part, and which reference samples the fit
    rests on (samples of `t_ref` x series).
    """
    k = y_ref.shape[1]
    centre = float(np.median(t_ref))
    hours = (t - centre) / 3600.0
    design = np.stack([np.ones((t.size, k)), np.tile(hours[:, None], (1, k)), load], axis=1)
    n_ref = t_ref.size
    design_ref = design[:n_ref]
    # Found on the raw values: a fit through a shift misjudges the load coupling too.
    starts = levels.level_shift_starts(y_ref, load[:n_ref])
    mask: npt.NDArray[np.bool_] = np.arange(n_ref)[:, None] >= starts[None, :]
    coef, se = robust.robust_fit(design_ref, y_ref, mask=mask)
    keep = np.abs(coef) >= TERM_T_STAT * se
    keep[0] = True
    # A trend is extrapolated no further than the span it was measured over: a line through the
    # few samples after a late level shift (pods becoming ready) would run far past any value the
    # series took, even below zero, over a longer test window.
    fitted_from = t_ref[np.argmax(mask, axis=0)]
    keep[1] &= t_ref[-1] - fitted_from >= t[-1] - t_ref[-1]
    if not keep.all():
        # Refit with the dropped terms zeroed in the design (same shapes, one batched call).
        coef = robust.robust_fit(design_ref * keep[None], y_ref, mask=mask)[0] * keep
    expected = np.asarray(np.einsum("nik,ik->nk", design, coef), dtype=float)
    return expected, np.asarray(load * coef[2], dtype=float), mask


def baseline(
    t: samples.FloatArray, values: samples.FloatArray, n_ref: int, period_s: float, load: samples.FloatArray
) -> tuple[samples.FloatArray, samples.FloatArray, npt.NDArray[np.bool_]]:
    """Expected values (samples x series) given the first `n_ref` samples as reference: a seasonal
    profile when the reference holds two periods, else a robust trend; either way plus the part
    that follows the service's load when that coupling is significant. Also which reference
    samples the baseline rests on (those after a level shift)."""
    t_ref, y_ref = t[:n_ref], values[:n_ref]
    if n_ref < samples.MIN_REFERENCE_SAMPLES:
        level = np.median(y_ref, axis=0) if n_ref else np.zeros(values.shape[1])
        everything = np.ones(y_ref.shape, dtype=bool)
        return np.tile(level, (t.size, 1)), np.zeros(values.shape), everything
    if t_ref[-1] - t_ref[0] < 2.0 * period_s:
        return _trend_and_load(t_ref, y_ref, t, load)
    bins = ((t % period_s) / period_s * SEASONAL_BINS).astype(int)
    profile = np.tile(np.median(y_ref, axis=0), (SEASONAL_BINS, 1))
    for b in np.unique(bins[:n_ref]):
        profile[b] = np.median(y_ref[bins[:n_ref] == b], axis=0)
    seasonal = profile[bins]
    # Only the most recent day sets the level and trend: a weekly drift is not an anomaly.
    first = int(np.searchsorted(t_ref, t_ref[-1] - period_s))
    rest, load_part, recent = _trend_and_load(
        t_ref[first:], (y_ref - seasonal[:n_ref])[first:], t[first:], load[first:]
    )
    pad = np.zeros((first, values.shape[1]))
    # Before a level shift of the last day the residuals measure the shift, not the noise.
    older = np.broadcast_to(recent.all(axis=0), (first, values.shape[1]))
    return (
        np.asarray(seasonal + np.vstack([pad, rest]), dtype=float),
        np.vstack([pad, load_part]),
        np.vstack([older, recent]),
    )
