"""Scores: each series against its reference, as robust z.

Owns: `SeriesScore`, `score_many` (a batch sharing timestamps), `score_series`, `score_all`
(every metric of every service, each service's busiest load metric entering the baselines), the
scale floors (`RELATIVE_SCALE_FLOOR`, `ABSOLUTE_SCALE_FLOOR`, `resolution`) and
`SECONDS_PER_DAY`, the default seasonal period.
Must never: raise alarms or decide what is an anomaly (`alarms`, `detecting` do); a score is
never capped.

The scale floors only keep z finite; they do not say what change matters. On a near-noiseless
series a 0.7 % move is 7 sigma here, and stays so: whether a change is large enough to count is
`significance`'s test on the deviation itself (10 % of the expected value, the HPA's tolerance),
applied by `detecting` as a mask, so that z keeps meaning "robust sigma of the reference".
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence
from typing import Any, Final

import numpy as np

from autoloop.engines.anomaly import baselines, robust, samples

RELATIVE_SCALE_FLOOR: Final[float] = 1e-3
"""The robust scale is at least 0.1 % of the reference level: a constant series is not infinitely
sensitive. Not a tolerance: a change within 10 % of the level is kept from alarming by
`significance.MIN_RELATIVE_CHANGE`, not by raising this floor (which would shrink every z)."""
ABSOLUTE_SCALE_FLOOR: Final[float] = 1e-9
"""Scale floor (metric units) for a reference stuck at zero."""
SECONDS_PER_DAY: Final[float] = 86400.0

Load = tuple[samples.FloatArray, samples.FloatArray]
"""(timestamps, request rate) of a service's busiest load metric."""


@dataclasses.dataclass(frozen=True, eq=False)
class SeriesScore:
    """A series scored against its reference: expected values, robust z, and data quality."""

    metric: str
    kind: samples.MetricKind
    t: samples.FloatArray
    x: samples.FloatArray
    expected: samples.FloatArray
    z: samples.FloatArray
    scale: float
    reference_end: float
    n_reference: int
    degenerate: bool
    """The reference had no variation (constant): scores rest on the scale floor."""
    load_part: samples.FloatArray | None = None
    """The part of `expected` that follows the service's load; None when the reference showed no
    significant coupling."""
    fitted_from: int = 0
    """The first reference sample the baseline rests on (after a level shift): earlier residuals
    measure the shift, not the noise."""

    @property
    def valid(self) -> bool:
        return self.n_reference >= samples.MIN_REFERENCE_SAMPLES


def resolution(values: samples.FloatArray) -> samples.FloatArray:
    """Per column of a (samples x series) matrix, its smallest non-zero step between consecutive
    samples (0 for a constant column): what the metric can resolve, such as one request or one page."""
    steps = np.abs(np.diff(values, axis=0))
    smallest = np.min(np.where(steps > 0, steps, np.inf), axis=0, initial=np.inf)
    return np.asarray(np.where(np.isfinite(smallest), smallest, 0.0), dtype=float)


def _unscored(
    t: samples.FloatArray, values: samples.FloatArray, metrics: Sequence[str], reference_end: float
) -> list[SeriesScore]:
    """Series with no reference at all: expected = observed, z = 0, marked degenerate."""
    zeros = np.zeros(t.size)
    return [
        SeriesScore(
            m,
            samples.metric_kind(m),
            t,
            values[:, j],
            values[:, j].copy(),
            zeros,
            0.0,
            reference_end,
            0,
            True,
        )
        for j, m in enumerate(metrics)
    ]


def _load_regressors(
    t: samples.FloatArray,
    values: samples.FloatArray,
    metrics: Sequence[str],
    n_ref: int,
    loads: Sequence[Load | None] | None,
) -> samples.FloatArray:
    """Per series (column), its service's request rate relative to its reference median, minus one;
    zeros for a load metric itself and for a service without a load metric."""
    load = np.zeros(values.shape)
    for j, lx in enumerate(loads or ()):
        if (
            lx is not None
            and lx[0].size >= samples.MIN_REFERENCE_SAMPLES
            and samples.metric_kind(metrics[j]) != "load"
        ):
            rate = robust.median3(np.interp(t, lx[0], lx[1]))
            load[:, j] = rate / max(abs(float(np.median(rate[:n_ref]))), 1e-12) - 1.0
    return load


def score_many(
    t: samples.FloatArray,
    values: samples.FloatArray,
    metrics: Sequence[str],
    *,
    reference_end: float,
    period_s: float = SECONDS_PER_DAY,
    loads: Sequence[Load | None] | None = None,
) -> list[SeriesScore]:
    """Score several clean series sharing the sorted timestamps `t` (values: samples x series).

    `loads[j]` (timestamps, request rate) of series j's service, when given, enters its baseline as
    a regressor: a metric that follows demand is expected to move with it.
    """
    n_ref = int(np.searchsorted(t, reference_end))
    if n_ref == 0 or t.size == 0:
        return _unscored(t, values, metrics, reference_end)
    load = _load_regressors(t, values, metrics, n_ref, loads)
    expected, load_part, fitted_on = baselines.baseline(t, values, n_ref, period_s, load)
    y_ref = values[:n_ref]
    residual = y_ref - expected[:n_ref]
    mad = robust.mad_columns(residual, fitted_on)
    # More than half the reference on one value (MAD zero) still has a spread: the mean absolute
    # deviation, as the modified z-score does then (IBM SPSS Modeler; Iglewicz & Hoaglin 1993).
    sigma = np.where(
        mad > 0,
        robust.MAD_TO_SIGMA * mad,
        robust.MEAN_AD_TO_SIGMA * robust.mean_ad_columns(residual, fitted_on),
    )
    level = np.abs(np.median(y_ref, axis=0))
    floor = np.maximum(np.maximum(RELATIVE_SCALE_FLOOR * level, resolution(y_ref)), ABSOLUTE_SCALE_FLOOR)
    degenerate = sigma < floor
    scale = np.maximum(sigma, floor)
    z = (values - expected) / scale
    return [
        SeriesScore(
            m,
            samples.metric_kind(m),
            t,
            values[:, j],
            expected[:, j],
            z[:, j],
            float(scale[j]),
            reference_end,
            n_ref,
            bool(degenerate[j]),
            load_part[:, j] if np.any(load_part[:, j]) else None,
            int(np.argmax(fitted_on[:, j])) if fitted_on[:, j].any() else n_ref,
        )
        for j, m in enumerate(metrics)
    ]


def score_series(
    timestamps: Any,
    values: Any,
    *,
    reference_end: float,
    metric: str = "",
    counter: bool = False,
    period_s: float = SECONDS_PER_DAY,
    load: Load | None = None,
) -> SeriesScore:
    """Robust z-scores of one series against the samples before `reference_end` (s)."""
    t, x = samples.clean_series(timestamps, values, counter=counter)
    return score_many(t, x[:, None], [metric], reference_end=reference_end, period_s=period_s, loads=[load])[
        0
    ]


def _clean_all(
    series: samples.ServiceSeries, counters: Sequence[str]
) -> tuple[dict[tuple[str, str], Load], dict[str, Load | None]]:
    """Every series cleaned, keyed (service, metric); and each service's busiest load metric."""
    cleaned: dict[tuple[str, str], Load] = {}
    load_of: dict[str, Load | None] = {}
    for service, metrics in series.items():
        best: Load | None = None
        for name, (ts, vals) in metrics.items():
            tx = samples.clean_series(ts, vals, counter=samples.is_counter(name, counters))
            cleaned[(service, name)] = tx
            if (
                samples.metric_kind(name) == "load"
                and tx[1].size
                and (best is None or np.median(tx[1]) > np.median(best[1]))
            ):
                best = tx
        load_of[service] = best
    return cleaned, load_of


def score_all(
    series: samples.ServiceSeries,
    *,
    reference_end: float,
    period_s: float = SECONDS_PER_DAY,
    counters: Sequence[str] = (),
) -> dict[str, dict[str, SeriesScore]]:
    """Score every metric of every service against one reference end.

    Each service's busiest load metric (request rate) enters its other metrics' baselines as a
    regressor. Series sharing timestamps (the usual case: one scrape) are fitted in one batch.
    """
    cleaned, load_of = _clean_all(series, counters)
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
