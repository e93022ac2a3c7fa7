"""Robust statistics the detector rests on: MAD, a robust regression, a running median.

Owns: `MAD_TO_SIGMA`, `MEAN_AD_TO_SIGMA`, `mad`, `mad_columns`, `mean_ad_columns`, `robust_fit` (Huber then Tukey biweight) and
`median3`.
Must never: know about services, metric kinds, baselines or alarms; these are plain statistics.
"""

from __future__ import annotations

from typing import Final

import numpy as np
import numpy.typing as npt

from autoloop.engines.anomaly import samples

MAD_TO_SIGMA: Final[float] = 1.4826
"""MAD of a normal sample times this is its standard deviation."""
MEAN_AD_TO_SIGMA: Final[float] = 1.2533
"""sqrt(pi / 2): the mean absolute deviation of Gaussian noise times this is its standard deviation."""


def mad(x: samples.FloatArray) -> float:
    return float(np.median(np.abs(x - np.median(x)))) if x.size else 0.0


def mad_columns(r: samples.FloatArray, mask: npt.NDArray[np.bool_] | None = None) -> samples.FloatArray:
    """MAD of each column of a (samples x series) matrix, over the rows `mask` keeps."""
    if mask is None or mask.all():
        return np.asarray(np.median(np.abs(r - np.median(r, axis=0)), axis=0), dtype=float)
    kept = np.where(mask, r, np.nan)
    return np.asarray(np.nanmedian(np.abs(kept - np.nanmedian(kept, axis=0)), axis=0), dtype=float)


def mean_ad_columns(r: samples.FloatArray, mask: npt.NDArray[np.bool_] | None = None) -> samples.FloatArray:
    """Mean absolute deviation from the median of each column, over the rows `mask` keeps: the
    spread that a series whose MAD is zero (mostly one value, such as bytes written by an idle
    disk, with bursts) still has."""
    kept = r if mask is None else np.where(mask, r, np.nan)
    with np.errstate(all="ignore"):
        out = np.nanmean(np.abs(kept - np.nanmedian(kept, axis=0)), axis=0)
    return np.asarray(np.nan_to_num(out), dtype=float)


def robust_fit(
    design: samples.FloatArray,
    y: samples.FloatArray,
    *,
    iterations: int = 3,
    mask: npt.NDArray[np.bool_] | None = None,
) -> tuple[samples.FloatArray, samples.FloatArray]:
    """Robust least squares of every column k of `y` (samples x series) on its own design
    `design[:, :, k]` (samples x terms x series): coefficients and standard errors (terms x series).
    Rows outside `mask` (samples x series) take no part.

    Huber steps (c = 1.345 sigma) find a start that a minority of outliers cannot drag far; then
    Tukey biweight steps (c = 4.685 sigma, both 95 % efficient on Gaussian noise; Holland & Welsch
    1977) give zero weight to a load spike or an incident inside the reference.
    """
    p = design.shape[1]
    prior = np.ones(y.shape) if mask is None else mask.astype(float)
    w = prior.copy()
    coef = np.zeros((p, y.shape[1]))
    sigma = np.ones(y.shape[1])
    # Rounding leaves residuals of ~1e-16 of the level: a constant column's scale stays above that,
    # or its exact fit would weigh every sample as an outlier.
    rounding = 1e-9 * np.max(np.abs(y), axis=0, initial=0.0) + 1e-12
    # A tiny ridge keeps an all-zero regressor (no load metric) solvable; its se then is huge.
    ridge = 1e-9 * np.eye(p)
    for step in range(2 * iterations):
        gram = np.einsum("nik,nk,njk->kij", design, w, design) + ridge
        rhs = np.einsum("nik,nk->ki", design, w * y)
        coef = np.linalg.solve(gram, rhs[..., None])[..., 0].T
        r = y - np.einsum("nik,ik->nk", design, coef)
        sigma = np.maximum(MAD_TO_SIGMA * mad_columns(r, mask), rounding)
        u = np.abs(r) / sigma
        if step < iterations:
            w = prior * np.minimum(1.0, 1.345 / np.maximum(u, 1e-300))
        else:
            w = prior * np.where(u < 4.685, (1.0 - (u / 4.685) ** 2) ** 2, 0.0)
            # A column left with almost no weight (a reference that is mostly incident) keeps Huber's.
            starved = w.sum(axis=0) < p + 1
            w[:, starved] = prior[:, starved] * np.minimum(1.0, 1.345 / np.maximum(u[:, starved], 1e-300))
    gram = np.einsum("nik,nk,njk->kij", design, w, design) + ridge
    cov_diag = np.diagonal(np.linalg.inv(gram), axis1=1, axis2=2).T
    return coef, np.sqrt(np.maximum(cov_diag, 0.0)) * sigma


def median3(z: samples.FloatArray) -> samples.FloatArray:
    """Running median of three: a lone outlier vanishes, two consecutive ones survive."""
    if z.size < 3:
        return z.copy()
    padded = np.concatenate([z[:1], z, z[-1:]])
    a, b, c = padded[:-2], padded[1:-1], padded[2:]
    return np.asarray(np.maximum(np.minimum(a, b), np.minimum(np.maximum(a, b), c)), dtype=float)
