"""Reference calibration: never alarm on what the reference itself did every few hours.

Owns: `run_levels` (how far three same-signed consecutive z-scores all reach) and `calibrated`
(z scaled down so that the reference's `rank`-th most extreme block sits at the threshold, for the
three-in-a-row rule or for the one-sample rule).
Must never: fit baselines or raise alarms; it rescales scores that `scoring` made for `alarms`.

Why: a robust scale (MAD) describes the bulk of a series, not its tails. A spiky series (cloud
CPU, bytes on a network) shows excursions of tens of MADs every few hours while healthy; judged on
the MAD alone every such excursion alarms. Cut the reference into blocks as long as the tested
part; if the tested part were exchangeable with them, it would beat the `rank`-th most extreme of
`n` blocks with probability `rank / (n + 1)` (a conformal rank test). Scaling z so that this block
sits at `z_threshold` bounds the false alarm rate by that, while a calm reference keeps the
detector's own threshold (the scale never grows: calibration only removes alarms).
"""

from __future__ import annotations

import numpy as np

from autoloop.engines.anomaly import samples


def run_levels(z: samples.FloatArray) -> samples.FloatArray:
    """Per sample, the smallest |z| of it and the two before it when all three share a sign, else
    0: the level the three-in-a-row rule sees there."""
    out = np.zeros(z.size)
    if z.size < 3:
        return out
    a, s = np.abs(z), np.sign(z)
    lowest = np.minimum(np.minimum(a[2:], a[1:-1]), a[:-2])
    same = (s[2:] == s[1:-1]) & (s[1:-1] == s[:-2]) & (s[2:] != 0)
    out[2:] = np.where(same, lowest, 0.0)
    return out


def calibrated(
    z: samples.FloatArray, first: int, *, z_threshold: float, rank: int, single: bool = False
) -> samples.FloatArray:
    """`z` scaled by min(1, z_threshold / q), q the `rank`-th largest block maximum of the run levels
    (of |z| itself when `single`: for a one-sample rule) over the reference `z[:first]` cut into
    blocks of the tested length (newest blocks kept); unchanged when the reference holds fewer
    than `rank` blocks."""
    length = z.size - first
    if length <= 0 or rank < 1:
        return z
    blocks = first // length
    if blocks < rank:
        return z
    ref = np.abs(z[:first]) if single else run_levels(z[:first])
    levels = ref[first - blocks * length :].reshape(blocks, length).max(axis=1)
    q = float(np.sort(levels)[::-1][rank - 1])
    return z * min(1.0, z_threshold / q) if q > 0 else z
