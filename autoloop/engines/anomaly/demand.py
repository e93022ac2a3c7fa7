"""Load explanation: which samples of a metric moved with the service's request rate (demand).

Owns: `load_explained` and `LOAD_LAG_SAMPLES` (how far load's effect may lag or lead).
Must never: raise or suppress alarms itself (`detecting` passes the mask to `alarms`), nor judge
a load metric or an error metric as demand.
"""

from __future__ import annotations

from typing import Final

import numpy as np
import numpy.typing as npt

from autoloop.engines.anomaly import robust, samples, scoring

LOAD_LAG_SAMPLES: Final[int] = 4
"""Load explains a metric's move up to this many samples earlier or later (one minute at 15 s
scrapes: queues fill and drain)."""


def _dilate(v: samples.FloatArray, half_width: int = LOAD_LAG_SAMPLES) -> samples.FloatArray:
    """The value of largest magnitude within +-half_width samples: effects of load lag a little."""
    if v.size == 0:
        return v
    padded = np.concatenate([np.full(half_width, v[0]), v, np.full(half_width, v[-1])])
    windows = np.stack([padded[k : k + v.size] for k in range(2 * half_width + 1)])
    return np.asarray(windows[np.argmax(np.abs(windows), axis=0), np.arange(v.size)], dtype=float)


def _delayed(v: samples.FloatArray, lag: int) -> samples.FloatArray:
    """v shifted `lag` samples later (the first value repeated)."""
    if v.size == 0 or lag <= 0:
        return v
    return (
        np.concatenate([np.full(min(lag, v.size), v[0]), v[:-lag]]) if v.size > lag else np.full(v.size, v[0])
    )


def load_explained(
    score: scoring.SeriesScore, load: scoring.SeriesScore | None, *, elasticity: float, z_load: float
) -> npt.NDArray[np.bool_]:
    """Samples where `score` moves with demand: load up (or down) significantly nearby, and the
    metric's relative deviation no larger than `elasticity` times the load's relative change."""
    explained = np.zeros(score.t.size, dtype=bool)
    if load is None or not load.valid or load.t.size < 2 or score.kind in ("load", "errors"):
        return explained
    lz = _dilate(np.interp(score.t, load.t, robust.median3(load.z)))
    l_rel = (
        np.interp(score.t, load.t, robust.median3(load.x))
        / np.maximum(np.abs(np.interp(score.t, load.t, load.expected)), 1e-12)
        - 1.0
    )
    # Relative to what the metric would be at reference load (the baseline minus its load part):
    # the metric may move up to `elasticity` times as much as load, plus three of its own relative
    # noise sigmas. Queues make latency convex in load, so the learned linear coupling alone would
    # under-explain a large spike.
    base = score.expected - (score.load_part if score.load_part is not None else 0.0)
    base = np.maximum(np.abs(base), 1e-12)
    residual = robust.median3(score.x) / base - 1.0
    effect = elasticity * l_rel
    slack = 3.0 * score.scale / base
    # No sign test: the response may lag, leaving a residual of the other sign while load moves.
    within = np.abs(residual) <= np.abs(_dilate(effect)) + slack
    # A jump of the metric while load stays put is not demand, even inside a load spike.
    lag = LOAD_LAG_SAMPLES
    jump = np.abs(residual - _delayed(residual, lag))
    load_jump = np.abs(_dilate(effect - _delayed(effect, lag)))
    synchronous = jump <= load_jump + 1.5 * slack
    return np.asarray((np.abs(lz) >= z_load) & within & synchronous, dtype=bool)
