"""Anomaly detection on the metric series a loop watches.

Contract: pure numpy (+ scikit-learn for the optional multivariate check). Entry point
`detect(series, *, test_start=None, detector=None) -> DetectionReport`, where `series` maps
service -> metric name -> (timestamps in seconds, values). Everything before `test_start` is the
reference; anomalies are searched from `test_start` on. Bad data (NaN, gaps, counter resets, a
single sample, a constant series) never raises: it yields fewer, low-confidence anomalies or none.

Method, per series, tuned for few false alarms:
1. Baseline: a median profile by time of day when the reference holds two or more seasonal
   periods, else a robust fit (Huber, then Tukey biweight) of level + linear trend + the
   service's relative load, each term kept only when significant; daily seasonality seen through
   a one-hour window is a slope rather than an alarm, and a load spike inside the reference does
   not drag the fit.
2. Robust z-score: residual / (1.4826 * MAD of reference residuals), never capped; the scale is
   at least the metric's resolution (its smallest step in the reference) and 0.1 % of its level,
   so a near-constant series gives finite scores (and is marked low-confidence).
3. Alarm (causal: never using a later sample) when three consecutive samples exceed
   `z_threshold` on the same side, or two exceed 1.5 times it (a step or burst, found within two
   scrapes), or a one-sided CUSUM of z (trailing median of three, so one wild sample cannot
   trigger it) passes `cusum_limit` (a slow ramp or small step). The start is the CUSUM change
   time: the last time the cumulative sum was at zero.
4. Load explanation: a non-load metric that moves with the service's request rate, by no more
   than `load_elasticity` times the rate's relative change (`memory_load_elasticity` for memory,
   which grows with load far less than proportionally), within a minute of the load's move, is
   demand, not a fault; such samples do not raise alarms. A jump of the metric while load stays
   put is never demand, even inside a load spike. Alarms on the request rate itself are kept
   but marked as load.
5. Optional multivariate check (IsolationForest over a service's z-vectors) for joint shifts
   that no single metric shows.

Metric names are free strings; their kind (latency, errors, cpu, memory, load, other) is inferred
from the name by `metric_kind` and only steers load explanation and root-cause typing.
"""

from __future__ import annotations

import dataclasses
import math
import re
from collections.abc import Mapping, Sequence
from typing import Any, Final, Literal

import numpy as np
import numpy.typing as npt

FloatArray = npt.NDArray[np.float64]
SeriesInput = tuple[Sequence[float] | npt.ArrayLike, Sequence[float] | npt.ArrayLike]
ServiceSeries = Mapping[str, Mapping[str, SeriesInput]]
MetricKind = Literal["latency", "errors", "cpu", "memory", "load", "other"]
Shape = Literal["step", "ramp", "burst", "spike"]

MAD_TO_SIGMA: Final[float] = 1.4826
"""MAD of a normal sample times this is its standard deviation."""
RELATIVE_SCALE_FLOOR: Final[float] = 1e-3
"""The robust scale is at least 0.1 % of the reference level: a constant series is not infinitely
sensitive."""
ABSOLUTE_SCALE_FLOOR: Final[float] = 1e-9
"""Scale floor (metric units) for a reference stuck at zero."""
SECONDS_PER_DAY: Final[float] = 86400.0
SEASONAL_BINS: Final[int] = 96
"""Time-of-day bins of the seasonal profile: 15-minute bins over a day."""
MIN_REFERENCE_SAMPLES: Final[int] = 8
"""Fewer reference samples than this and a series is not scored at all."""
END_QUIET_SAMPLES: Final[int] = 4
"""An anomaly ends after this many consecutive samples back inside `z_end` (one minute at 15 s)."""
LEVEL_SHIFT_T_STAT: Final[float] = 6.0
"""A level shift inside the reference must be this many standard errors tall (the best of many
splits of pure noise reaches about 3), and the newer level's slope this many standard errors
away from the whole reference's."""
LEVEL_SHIFT_SIGMAS: Final[float] = 6.0
"""... and this many noise widths of the newer level tall: a step the detector would itself flag
(its default threshold), not a drift."""
LEVEL_SHIFT_SLOPE_SHARE: Final[float] = 0.5
"""... and the newer level's slope at most this share of the whole reference's."""
LOAD_SHIFT_SIGMAS: Final[float] = 3.0
"""Load moved with a level shift when its medians on both sides differ by this many noise widths."""
MAX_LEVEL_SHIFTS: Final[int] = 4
"""Level shifts looked for in one reference (pods becoming ready one at a time)."""
TERM_T_STAT: Final[float] = 4.0
"""A trend or load term of the baseline is kept only beyond this many standard errors: a spurious
term would be extrapolated into the test window (at 2 SE, one series in twenty would carry one)."""
LOAD_LAG_SAMPLES: Final[int] = 4
"""Load explains a metric's move up to this many samples earlier or later (one minute at 15 s
scrapes: queues fill and drain)."""
STRONG_FACTOR: Final[float] = 1.5
"""Two consecutive samples beyond this multiple of the threshold alarm at once; at the threshold
itself it takes three (one more scrape of delay, far fewer noise alarms)."""
MAX_REPORTED_ANOMALIES: Final[int] = 20
"""`to_dict` keeps at most this many anomalies, strongest first, so a CR status stays small."""

_KIND_PATTERNS: Final[tuple[tuple[MetricKind, re.Pattern[str]], ...]] = (
    ("errors", re.compile(r"err|fail|5xx|fault|exception", re.I)),
    ("latency", re.compile(r"lat|duration|response_time|p9\d|p50|rtt|delay", re.I)),
    ("memory", re.compile(r"mem|rss|heap|bytes_in_use|working_set", re.I)),
    ("cpu", re.compile(r"cpu|core|throttl", re.I)),
    ("load", re.compile(r"rps|qps|request|throughput|traffic|calls|load|rate", re.I)),
)


def metric_kind(name: str) -> MetricKind:
    """The kind of a metric from its name (`latency_ms` -> latency, `error_ratio` -> errors, ...)."""
    for kind, pattern in _KIND_PATTERNS:
        if pattern.search(name):
            return kind
    return "other"


def clean_series(timestamps: Any, values: Any, *, counter: bool = False) -> tuple[FloatArray, FloatArray]:
    """Finite, time-sorted samples with unique timestamps; counters become per-second rates.

    A counter that goes down was reset (a restart): the increase over that step is taken as the
    new value itself, as Prometheus' `rate()` does.
    """
    t = np.asarray(timestamps, dtype=float).ravel()
    x = np.asarray(values, dtype=float).ravel()
    n = min(t.size, x.size)
    t, x = t[:n], x[:n]
    keep = np.isfinite(t) & np.isfinite(x)
    t, x = t[keep], x[keep]
    order = np.argsort(t, kind="stable")
    t, x = t[order], x[order]
    if t.size:
        # Keep the last sample of any duplicated timestamp.
        last = np.append(t[1:] != t[:-1], True)
        t, x = t[last], x[last]
    if counter and t.size >= 2:
        inc = np.diff(x)
        inc = np.where(inc < 0, x[1:], inc)
        t, x = t[1:], inc / np.diff(t)
    return t, x


@dataclasses.dataclass(frozen=True, eq=False)
class SeriesScore:
    """A series scored against its reference: expected values, robust z, and data quality."""

    metric: str
    kind: MetricKind
    t: FloatArray
    x: FloatArray
    expected: FloatArray
    z: FloatArray
    scale: float
    reference_end: float
    n_reference: int
    degenerate: bool
    """The reference had no variation (constant): scores rest on the scale floor."""
    load_part: FloatArray | None = None
    """The part of `expected` that follows the service's load; None when the reference showed no
    significant coupling."""

    @property
    def valid(self) -> bool:
        return self.n_reference >= MIN_REFERENCE_SAMPLES


def _mad(x: FloatArray) -> float:
    return float(np.median(np.abs(x - np.median(x)))) if x.size else 0.0


def _mad_columns(r: FloatArray, mask: npt.NDArray[np.bool_] | None = None) -> FloatArray:
    """MAD of each column of a (samples x series) matrix, over the rows `mask` keeps."""
    if mask is None or mask.all():
        return np.asarray(np.median(np.abs(r - np.median(r, axis=0)), axis=0), dtype=float)
    kept = np.where(mask, r, np.nan)
    return np.asarray(np.nanmedian(np.abs(kept - np.nanmedian(kept, axis=0)), axis=0), dtype=float)


def _robust_fit(
    design: FloatArray, y: FloatArray, *, iterations: int = 3, mask: npt.NDArray[np.bool_] | None = None
) -> tuple[FloatArray, FloatArray]:
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
        sigma = np.maximum(MAD_TO_SIGMA * _mad_columns(r, mask), rounding)
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


def _slope(y: FloatArray) -> float:
    """Least-squares slope per sample."""
    x = np.arange(y.size) - (y.size - 1) / 2.0
    return float(x @ (y - y.mean()) / (x @ x))


def _level_shift(y: FloatArray, min_after: int) -> int:
    """The first sample of the newer level if the series holds a level shift, else 0.

    A shift is the best single split of `y` into two constant levels (least squares), kept only
    when the levels' medians differ by `LEVEL_SHIFT_T_STAT` standard errors and by
    `LEVEL_SHIFT_SIGMAS` noise widths of the newer level, and the newer level is flat next to the
    whole: a ramp is a trend, not a shift. When the newer part is not flat, the newest level is
    looked for inside it (a staircase).
    """
    n = y.size
    min_before = MIN_REFERENCE_SAMPLES // 2
    if n < min_before + min_after:
        return 0
    # A lone wild sample is not a level; centring keeps the sums of squares exact.
    yc = median3(y) - float(np.median(y))
    c1 = np.concatenate([[0.0], np.cumsum(yc)])
    c2 = np.concatenate([[0.0], np.cumsum(yc * yc)])
    split = np.arange(min_before, n - min_after + 1)
    n1, n2 = split.astype(float), (n - split).astype(float)
    s1, s2 = c1[split], c1[n] - c1[split]
    sse = (c2[split] - s1 * s1 / n1) + (c2[n] - c2[split] - s2 * s2 / n2)
    best = int(np.argmin(sse))
    after = int(split[best])
    # Medians and MADs: a load surge inside the older part is not an older level.
    older, newer = yc[:after], yc[after:]
    height = abs(float(np.median(newer) - np.median(older)))
    residuals = np.concatenate([older - np.median(older), newer - np.median(newer)])
    se = MAD_TO_SIGMA * float(np.median(np.abs(residuals))) * math.sqrt(1.0 / older.size + 1.0 / newer.size)
    # The newer part's noise from its successive differences: a further step or a trend in it
    # must not count as noise.
    noise = MAD_TO_SIGMA * _mad(np.diff(y[after:])) / math.sqrt(2.0)
    if height == 0.0 or height < LEVEL_SHIFT_T_STAT * se or height < LEVEL_SHIFT_SIGMAS * noise:
        return 0
    # Flat: the newer level's slope is well below the whole's, beyond its own sampling error (a
    # noisy stretch of a ramp can look flat).
    whole, recent = _slope(yc), _slope(newer)
    x = np.arange(newer.size) - (newer.size - 1) / 2.0
    scatter = MAD_TO_SIGMA * _mad(newer - recent * x)
    if abs(recent) <= LEVEL_SHIFT_SLOPE_SHARE * abs(whole) and abs(whole - recent) >= LEVEL_SHIFT_T_STAT * (
        scatter / math.sqrt(float(x @ x))
    ):
        return after
    # A staircase: the newer part holds the next step.
    inner = _level_shift(y[after:], min_after)
    return after + inner if inner else 0


def _level_shift_starts(y: FloatArray, load: FloatArray) -> npt.NDArray[np.int_]:
    """Per column of a reference (samples x series): the first sample of its newest level, 0 when
    it holds no level shift.

    Pods becoming ready one by one move memory per pod in steps; so do a rollout and a config
    change. A line fitted through such steps would extrapolate them into the tested samples and
    raise alarms on a metric that has long been steady: the newest level is the baseline. A step
    taken with the service's load (`load`: relative deviation per column, zeros for none) is
    demand, which the load term of the baseline follows: it is not cut off.
    """
    starts = np.zeros(y.shape[1], dtype=int)
    # The newest level must hold a quarter of the reference: a load surge that has just ended is
    # not a new level.
    min_after = max(MIN_REFERENCE_SAMPLES, y.shape[0] // 4)
    for j in range(y.shape[1]):
        # A staircase is found step by step, newest last.
        for _ in range(MAX_LEVEL_SHIFTS):
            found = _level_shift(y[starts[j] :, j], min_after)
            if found == 0:
                break
            split = starts[j] + found
            before, after = load[starts[j] : split, j], load[split:, j]
            moved = abs(float(np.median(after) - np.median(before)))
            if moved > LOAD_SHIFT_SIGMAS * MAD_TO_SIGMA * max(_mad(after), _mad(before)):
                break
            starts[j] = split
    return starts


def _trend_and_load(
    t_ref: FloatArray, y_ref: FloatArray, t: FloatArray, load: FloatArray
) -> tuple[FloatArray, FloatArray, npt.NDArray[np.bool_]]:
    """Level + linear trend + load coupling fitted on the reference, per column of `y_ref`;
    terms within `TERM_T_STAT` standard errors of zero are noise and are dropped. A reference with
    a level shift is fitted from its newest level on (see `_level_shift_starts`).

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
    starts = _level_shift_starts(y_ref, load[:n_ref])
    mask: npt.NDArray[np.bool_] = np.arange(n_ref)[:, None] >= starts[None, :]
    coef, se = _robust_fit(design_ref, y_ref, mask=mask)
    keep = np.abs(coef) >= TERM_T_STAT * se
    keep[0] = True
    if not keep.all():
        # Refit with the dropped terms zeroed in the design (same shapes, one batched call).
        coef = _robust_fit(design_ref * keep[None], y_ref, mask=mask)[0] * keep
    expected = np.asarray(np.einsum("nik,ik->nk", design, coef), dtype=float)
    return expected, np.asarray(load * coef[2], dtype=float), mask


def _baseline(
    t: FloatArray, values: FloatArray, n_ref: int, period_s: float, load: FloatArray
) -> tuple[FloatArray, FloatArray, npt.NDArray[np.bool_]]:
    """Expected values (samples x series) given the first `n_ref` samples as reference: a seasonal
    profile when the reference holds two periods, else a robust trend; either way plus the part
    that follows the service's load when that coupling is significant. Also which reference
    samples the baseline rests on (those after a level shift)."""
    t_ref, y_ref = t[:n_ref], values[:n_ref]
    if n_ref < MIN_REFERENCE_SAMPLES:
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


def score_many(
    t: FloatArray,
    values: FloatArray,
    metrics: Sequence[str],
    *,
    reference_end: float,
    period_s: float = SECONDS_PER_DAY,
    loads: Sequence[tuple[FloatArray, FloatArray] | None] | None = None,
) -> list[SeriesScore]:
    """Score several clean series sharing the sorted timestamps `t` (values: samples x series).

    `loads[j]` (timestamps, request rate) of series j's service, when given, enters its baseline as
    a regressor: a metric that follows demand is expected to move with it.
    """
    n_ref = int(np.searchsorted(t, reference_end))
    if n_ref == 0 or t.size == 0:
        zeros = np.zeros(t.size)
        return [
            SeriesScore(
                m, metric_kind(m), t, values[:, j], values[:, j].copy(), zeros, 0.0, reference_end, 0, True
            )
            for j, m in enumerate(metrics)
        ]
    load = np.zeros(values.shape)
    for j, lx in enumerate(loads or ()):
        if lx is not None and lx[0].size >= MIN_REFERENCE_SAMPLES and metric_kind(metrics[j]) != "load":
            series = median3(np.interp(t, lx[0], lx[1]))
            load[:, j] = series / max(abs(float(np.median(series[:n_ref]))), 1e-12) - 1.0
    expected, load_part, fitted_on = _baseline(t, values, n_ref, period_s, load)
    y_ref = values[:n_ref]
    mad = _mad_columns(y_ref - expected[:n_ref], fitted_on)
    level = np.abs(np.median(y_ref, axis=0))
    floor = np.maximum(np.maximum(RELATIVE_SCALE_FLOOR * level, resolution(y_ref)), ABSOLUTE_SCALE_FLOOR)
    degenerate = MAD_TO_SIGMA * mad < floor
    scale = np.maximum(MAD_TO_SIGMA * mad, floor)
    z = (values - expected) / scale
    return [
        SeriesScore(
            m,
            metric_kind(m),
            t,
            values[:, j],
            expected[:, j],
            z[:, j],
            float(scale[j]),
            reference_end,
            n_ref,
            bool(degenerate[j]),
            load_part[:, j] if np.any(load_part[:, j]) else None,
        )
        for j, m in enumerate(metrics)
    ]


def resolution(values: FloatArray) -> FloatArray:
    """Per column of a (samples x series) matrix, its smallest non-zero step between consecutive
    samples (0 for a constant column): what the metric can resolve, such as one request or one page."""
    steps = np.abs(np.diff(values, axis=0))
    smallest = np.min(np.where(steps > 0, steps, np.inf), axis=0, initial=np.inf)
    return np.asarray(np.where(np.isfinite(smallest), smallest, 0.0), dtype=float)


def score_series(
    timestamps: Any,
    values: Any,
    *,
    reference_end: float,
    metric: str = "",
    counter: bool = False,
    period_s: float = SECONDS_PER_DAY,
    load: tuple[FloatArray, FloatArray] | None = None,
) -> SeriesScore:
    """Robust z-scores of one series against the samples before `reference_end` (s)."""
    t, x = clean_series(timestamps, values, counter=counter)
    return score_many(t, x[:, None], [metric], reference_end=reference_end, period_s=period_s, loads=[load])[
        0
    ]


def score_all(
    series: ServiceSeries,
    *,
    reference_end: float,
    period_s: float = SECONDS_PER_DAY,
    counters: Sequence[str] = (),
) -> dict[str, dict[str, SeriesScore]]:
    """Score every metric of every service against one reference end.

    Each service's busiest load metric (request rate) enters its other metrics' baselines as a
    regressor. Series sharing timestamps (the usual case: one scrape) are fitted in one batch.
    """
    cleaned: dict[tuple[str, str], tuple[FloatArray, FloatArray]] = {}
    load_of: dict[str, tuple[FloatArray, FloatArray] | None] = {}
    for service, metrics in series.items():
        best: tuple[FloatArray, FloatArray] | None = None
        for name, (ts, vals) in metrics.items():
            tx = clean_series(ts, vals, counter=is_counter(name, counters))
            cleaned[(service, name)] = tx
            if (
                metric_kind(name) == "load"
                and tx[1].size
                and (best is None or np.median(tx[1]) > np.median(best[1]))
            ):
                best = tx
        load_of[service] = best
    groups: dict[bytes, list[tuple[str, str]]] = {}
    for key, (t, _) in cleaned.items():
        groups.setdefault(t.tobytes(), []).append(key)
    out: dict[str, dict[str, SeriesScore]] = {service: {} for service in series}
    for keys in groups.values():
        t = cleaned[keys[0]][0]
        stacked = np.column_stack([cleaned[k][1] for k in keys])
        scored = score_many(
            t,
            stacked,
            [m for _, m in keys],
            reference_end=reference_end,
            period_s=period_s,
            loads=[load_of[s] for s, _ in keys],
        )
        for (service, name), sc in zip(keys, scored, strict=True):
            out[service][name] = sc
    return {service: {name: out[service][name] for name in metrics} for service, metrics in series.items()}


def is_counter(metric: str, counters: Sequence[str] = ()) -> bool:
    """Cumulative counters (Prometheus `_total`, `_count`, `_sum`, or listed) are turned into rates."""
    return metric in counters or metric.endswith(("_total", "_count", "_sum"))


def median3(z: FloatArray) -> FloatArray:
    """Running median of three: a lone outlier vanishes, two consecutive ones survive."""
    if z.size < 3:
        return z.copy()
    padded = np.concatenate([z[:1], z, z[-1:]])
    a, b, c = padded[:-2], padded[1:-1], padded[2:]
    return np.asarray(np.maximum(np.minimum(a, b), np.minimum(np.maximum(a, b), c)), dtype=float)


def _dilate(v: FloatArray, half_width: int = LOAD_LAG_SAMPLES) -> FloatArray:
    """The value of largest magnitude within +-half_width samples: effects of load lag a little."""
    if v.size == 0:
        return v
    padded = np.concatenate([np.full(half_width, v[0]), v, np.full(half_width, v[-1])])
    windows = np.stack([padded[k : k + v.size] for k in range(2 * half_width + 1)])
    return np.asarray(windows[np.argmax(np.abs(windows), axis=0), np.arange(v.size)], dtype=float)


def load_explained(
    score: SeriesScore, load: SeriesScore | None, *, elasticity: float, z_load: float
) -> npt.NDArray[np.bool_]:
    """Samples where `score` moves with demand: load up (or down) significantly nearby, and the
    metric's relative deviation no larger than `elasticity` times the load's relative change."""
    explained = np.zeros(score.t.size, dtype=bool)
    if load is None or not load.valid or load.t.size < 2 or score.kind in ("load", "errors"):
        return explained
    lz = _dilate(np.interp(score.t, load.t, median3(load.z)))
    l_rel = (
        np.interp(score.t, load.t, median3(load.x))
        / np.maximum(np.abs(np.interp(score.t, load.t, load.expected)), 1e-12)
        - 1.0
    )
    # Relative to what the metric would be at reference load (the baseline minus its load part):
    # the metric may move up to `elasticity` times as much as load, plus three of its own relative
    # noise sigmas. Queues make latency convex in load, so the learned linear coupling alone would
    # under-explain a large spike.
    base = score.expected - (score.load_part if score.load_part is not None else 0.0)
    base = np.maximum(np.abs(base), 1e-12)
    residual = median3(score.x) / base - 1.0
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


def _delayed(v: FloatArray, lag: int) -> FloatArray:
    """v shifted `lag` samples later (the first value repeated)."""
    if v.size == 0 or lag <= 0:
        return v
    return (
        np.concatenate([np.full(min(lag, v.size), v[0]), v[:-lag]]) if v.size > lag else np.full(v.size, v[0])
    )


@dataclasses.dataclass(frozen=True)
class Anomaly:
    """One anomaly of one metric of one service."""

    service: str
    metric: str
    kind: MetricKind
    direction: Literal["up", "down"]
    start: float
    """Estimated change time (s, same clock as the input timestamps)."""
    detected_at: float
    """When the alarm rule first held (s): `detected_at - start` is the detection delay."""
    end: float | None
    """When the metric returned to its baseline (s); None while the anomaly is active."""
    peak_z: float
    expected: float
    peak_value: float
    relative_change: float
    shape: Shape
    severity: Literal["warning", "critical"]
    explained_by_load: bool
    low_confidence: bool
    explanation: str

    @property
    def active(self) -> bool:
        return self.end is None

    @property
    def unexplained(self) -> bool:
        """Not demand, not a degenerate reference: the kind that should pause optimisation."""
        return not self.explained_by_load and not self.low_confidence

    def summary(self) -> str:
        where = f"{self.service}/{self.metric}" if self.service else self.metric
        return f"{self.severity} {where} {self.direction} {self.shape} z={self.peak_z:+.1f} since t={self.start:.0f}s"

    def to_dict(self) -> dict[str, Any]:
        return json_safe(dataclasses.asdict(self))


def json_safe(obj: Any) -> Any:
    """Floats rounded and made finite, tuples to lists: safe to put in a CR status."""
    if isinstance(obj, dict):
        return {str(k): json_safe(v) for k, v in obj.items()}
    if isinstance(obj, list | tuple):
        return [json_safe(v) for v in obj]
    if isinstance(obj, bool | int | str) or obj is None:
        return obj
    if isinstance(obj, float | np.floating):
        f = float(obj)
        return round(f, 4) if math.isfinite(f) else None
    return str(obj)


@dataclasses.dataclass(frozen=True)
class DetectionReport:
    """All anomalies found in one call, strongest first."""

    anomalies: tuple[Anomaly, ...]
    test_start: float
    end: float
    explanation: str

    @property
    def active(self) -> tuple[Anomaly, ...]:
        return tuple(a for a in self.anomalies if a.active)

    @property
    def unexplained_active(self) -> bool:
        """True while an anomaly that demand does not explain is ongoing: optimisation should pause."""
        return any(a.active and a.unexplained for a in self.anomalies)

    def summary(self) -> str:
        if not self.anomalies:
            return "no anomalies"
        head = "; ".join(a.summary() for a in self.anomalies[:3])
        more = len(self.anomalies) - 3
        return head + (f" (+{more} more)" if more > 0 else "")

    def to_dict(self, max_items: int = MAX_REPORTED_ANOMALIES) -> dict[str, Any]:
        return {
            "testStart": json_safe(self.test_start),
            "end": json_safe(self.end),
            "unexplainedActive": self.unexplained_active,
            "count": len(self.anomalies),
            "anomalies": [a.to_dict() for a in self.anomalies[:max_items]],
            "explanation": self.explanation[:1000],
        }


@dataclasses.dataclass(frozen=True)
class Alarm:
    """Indices (into the series) of one alarm: change start, first alarm, end (None if ongoing)."""

    direction: int
    start: int
    detected: int
    end: int | None


def cusum_start(z: FloatArray, detected: int, direction: int, drift: float, floor: int = 0) -> int:
    """The CUSUM change time before index `detected`: after the last time the sum sat at zero."""
    s, start = 0.0, floor
    for i in range(floor, detected + 1):
        s = max(0.0, s + direction * float(z[i]) - drift)
        if s == 0.0:
            start = i + 1
    return min(start, detected)


def _trailing_median3(z: FloatArray) -> FloatArray:
    """Median of each sample and the two before it (the first two repeat the start)."""
    if z.size < 3:
        return z.copy()
    padded = np.concatenate([z[:1], z[:1], z])
    a, b, c = padded[:-2], padded[1:-1], padded[2:]
    return np.asarray(np.maximum(np.minimum(a, b), np.minimum(np.maximum(a, b), c)), dtype=float)


def find_alarms(
    z: FloatArray,
    *,
    first: int,
    z_threshold: float,
    cusum_drift: float,
    cusum_limit: float,
    z_end: float,
    blocked: npt.NDArray[np.bool_] | None = None,
) -> list[Alarm]:
    """Alarms in `z[first:]`, causal: three consecutive samples beyond `z_threshold` on one side,
    or two beyond `STRONG_FACTOR * z_threshold`, or a one-sided CUSUM >= `cusum_limit`.

    Two samples at the threshold are what heavy-tailed noise produces now and then; three, or two
    far beyond it, are not. `blocked` samples (explained by load) count as zero. After an alarm the
    series must spend `END_QUIET_SAMPLES` samples inside `z_end` before the anomaly ends and a new
    one can start.
    """
    zz = np.where(blocked, 0.0, z) if blocked is not None else z
    # The cumulative sums run on the trailing median of three so that one wild sample cannot
    # raise an alarm (trailing: an alarm never depends on a later sample).
    zm = _trailing_median3(zz)
    centred = median3(zz)
    strong = STRONG_FACTOR * z_threshold
    alarms: list[Alarm] = []
    s_up = s_dn = 0.0
    i, n = first, zz.size
    while i < n:
        v, vm = float(zz[i]), float(zm[i])
        s_up = max(0.0, s_up + vm - cusum_drift)
        s_dn = max(0.0, s_dn - vm - cusum_drift)
        pair_up = i > first and (
            (v >= strong and zz[i - 1] >= strong)
            or (i > first + 1 and min(v, zz[i - 1], zz[i - 2]) >= z_threshold)
        )
        pair_dn = i > first and (
            (v <= -strong and zz[i - 1] <= -strong)
            or (i > first + 1 and max(v, zz[i - 1], zz[i - 2]) <= -z_threshold)
        )
        direction = 1 if (pair_up or s_up >= cusum_limit) else -1 if (pair_dn or s_dn >= cusum_limit) else 0
        if direction == 0:
            i += 1
            continue
        # Dating the start may look at the samples around it (the alarm itself did not).
        start = cusum_start(centred, i, direction, cusum_drift, floor=max(first - END_QUIET_SAMPLES * 4, 0))
        quiet, j, end = 0, i + 1, None
        while j < n:
            quiet = quiet + 1 if direction * float(zz[j]) < z_end else 0
            if quiet >= END_QUIET_SAMPLES:
                end = j - END_QUIET_SAMPLES + 1
                break
            j += 1
        alarms.append(Alarm(direction, start, i, end))
        if end is None:
            break
        i, s_up, s_dn = j + 1, 0.0, 0.0
    return alarms


def classify_shape(z: FloatArray, alarm: Alarm) -> Shape:
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


class AnomalyDetector:
    """Per-series robust detector; parameters are chosen for few false alarms (see module doc)."""

    def __init__(
        self,
        *,
        z_threshold: float = 6.0,
        cusum_drift: float = 2.5,
        cusum_limit: float = 20.0,
        z_end: float = 2.0,
        load_elasticity: float = 1.5,
        memory_load_elasticity: float = 0.5,
        z_load: float = 3.0,
        seasonal_period_s: float = SECONDS_PER_DAY,
        counters: Sequence[str] = (),
        test_fraction: float = 0.25,
        multivariate: bool = False,
        random_state: int | None = 0,
    ) -> None:
        self.z_threshold = z_threshold
        self.cusum_drift = cusum_drift
        self.cusum_limit = cusum_limit
        self.z_end = z_end
        self.load_elasticity = load_elasticity
        self.memory_load_elasticity = memory_load_elasticity
        self.z_load = z_load
        self.seasonal_period_s = seasonal_period_s
        self.counters = counters
        self.test_fraction = test_fraction
        self.multivariate = multivariate
        self.random_state = random_state

    def score_service(
        self, metrics: Mapping[str, SeriesInput], *, reference_end: float
    ) -> dict[str, SeriesScore]:
        """Score every metric of one service against the same reference end."""
        return self.score_all({"": metrics}, reference_end=reference_end)[""]

    def score_all(self, series: ServiceSeries, *, reference_end: float) -> dict[str, dict[str, SeriesScore]]:
        """Score every metric of every service (see `score_all`)."""
        return score_all(
            series, reference_end=reference_end, period_s=self.seasonal_period_s, counters=self.counters
        )

    def load_masks(self, scores: Mapping[str, SeriesScore]) -> dict[str, npt.NDArray[np.bool_]]:
        """Per metric, the samples explained by the service's own load metric (if it has one)."""
        loads = [s for s in scores.values() if s.kind == "load" and s.valid]
        load = max(loads, key=lambda s: float(np.median(np.abs(s.x))) if s.x.size else 0.0, default=None)
        return {
            name: load_explained(
                s,
                load,
                elasticity=self.memory_load_elasticity if s.kind == "memory" else self.load_elasticity,
                z_load=self.z_load,
            )
            for name, s in scores.items()
        }

    def detect(self, series: ServiceSeries, *, test_start: float | None = None) -> DetectionReport:
        """Anomalies from `test_start` (s) on, every earlier sample being the reference."""
        t_min, t_max = time_span(series)
        if test_start is None:
            test_start = t_max - self.test_fraction * (t_max - t_min)
        found: list[Anomaly] = []
        all_scores = self.score_all(series, reference_end=test_start)
        for service, scores in all_scores.items():
            masks = self.load_masks(scores)
            for name, s in scores.items():
                if not s.valid or s.t.size < 2:
                    continue
                first = int(np.searchsorted(s.t, test_start))
                for alarm in find_alarms(
                    s.z,
                    first=first,
                    z_threshold=self.z_threshold,
                    cusum_drift=self.cusum_drift,
                    cusum_limit=self.cusum_limit,
                    z_end=self.z_end,
                    blocked=masks[name],
                ):
                    found.append(self._anomaly(service, s, alarm, load_alarm=s.kind == "load"))
            if self.multivariate:
                found.extend(self._multivariate(service, scores, test_start))
        found.sort(key=lambda a: (not a.unexplained, -abs(a.peak_z)))
        n_unexp = sum(a.unexplained for a in found)
        text = (
            f"{len(found)} anomalies since t={test_start:.0f}s ({n_unexp} not explained by load)"
            if found
            else f"no anomalies since t={test_start:.0f}s"
        )
        return DetectionReport(tuple(found), float(test_start), float(t_max), text)

    def _anomaly(self, service: str, s: SeriesScore, alarm: Alarm, *, load_alarm: bool) -> Anomaly:
        stop = alarm.end if alarm.end is not None else s.z.size
        seg = alarm.direction * s.z[alarm.start : stop]
        k = alarm.start + int(np.argmax(seg))
        peak_z = float(s.z[k])
        expected = float(s.expected[k])
        rel = (float(s.x[k]) - expected) / abs(expected) if abs(expected) > 1e-12 else 0.0
        shape = classify_shape(s.z, alarm)
        severity: Literal["warning", "critical"] = (
            "critical" if abs(peak_z) >= 2 * self.z_threshold else "warning"
        )
        direction: Literal["up", "down"] = "up" if alarm.direction > 0 else "down"
        why = [
            f"{s.metric} went {direction} from ~{expected:.4g} to {float(s.x[k]):.4g}",
            f"({peak_z:+.1f} robust sigma, {shape})",
        ]
        if load_alarm:
            why.append("; this is demand, not a fault")
        if s.degenerate:
            why.append("; the reference was constant, so the score is uncertain")
            severity = "warning"
        return Anomaly(
            service=service,
            metric=s.metric,
            kind=s.kind,
            direction=direction,
            start=float(s.t[alarm.start]),
            detected_at=float(s.t[alarm.detected]),
            end=None if alarm.end is None else float(s.t[alarm.end]),
            peak_z=peak_z,
            expected=expected,
            peak_value=float(s.x[k]),
            relative_change=rel,
            shape=shape,
            severity=severity,
            explained_by_load=load_alarm,
            low_confidence=s.degenerate,
            explanation=" ".join(why),
        )

    def _multivariate(
        self, service: str, scores: Mapping[str, SeriesScore], test_start: float
    ) -> list[Anomaly]:
        """IsolationForest over the joint z-vector of a service's metrics (needs three or more)."""
        from sklearn.ensemble import IsolationForest

        usable = [s for s in scores.values() if s.valid and s.t.size >= 2 * MIN_REFERENCE_SAMPLES]
        if len(usable) < 3:
            return []
        grid = usable[0].t
        matrix = np.column_stack([np.interp(grid, s.t, median3(s.z)) for s in usable])
        ref = grid < test_start
        if ref.sum() < 2 * MIN_REFERENCE_SAMPLES or (~ref).sum() < 2:
            return []
        forest = IsolationForest(n_estimators=100, random_state=self.random_state).fit(matrix[ref])
        ref_scores = forest.score_samples(matrix[ref])
        # Rarer than every reference sample, three scrapes running: under the null each test point
        # has odds 1/(n+1) of beating the reference minimum, so three in a row ~ 1/n^3.
        low = forest.score_samples(matrix[~ref]) < float(ref_scores.min())
        hits = np.flatnonzero(low[2:] & low[1:-1] & low[:-2])
        if hits.size == 0:
            return []
        offset = int(ref.sum())
        i = offset + int(hits[0]) + 2
        worst = int(np.argmax(np.abs(matrix[i])))
        return [
            Anomaly(
                service=service,
                metric="*",
                kind="other",
                direction="up" if matrix[i, worst] > 0 else "down",
                start=float(grid[i - 2]),
                detected_at=float(grid[i]),
                end=None,
                peak_z=float(matrix[i, worst]),
                expected=0.0,
                peak_value=0.0,
                relative_change=0.0,
                shape="step",
                severity="warning",
                explained_by_load=False,
                low_confidence=False,
                explanation=f"joint shift of {len(usable)} metrics rarer than any reference sample; "
                f"largest in {usable[worst].metric}",
            )
        ]


def time_span(series: ServiceSeries) -> tuple[float, float]:
    lo, hi = math.inf, -math.inf
    for metrics in series.values():
        for ts, _ in metrics.values():
            t = np.asarray(ts, dtype=float).ravel()
            t = t[np.isfinite(t)]
            if t.size:
                lo, hi = min(lo, float(t.min())), max(hi, float(t.max()))
    return (lo, hi) if math.isfinite(lo) else (0.0, 0.0)


def detect(
    series: ServiceSeries, *, test_start: float | None = None, detector: AnomalyDetector | None = None
) -> DetectionReport:
    """Detect anomalies per service and metric (see module doc); `detector` sets the parameters."""
    return (detector or AnomalyDetector()).detect(series, test_start=test_start)
