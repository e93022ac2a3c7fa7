"""The series as they come in: their types, the kind of a metric from its name, clean samples.

Owns: the input types (`ServiceSeries`, ...), `metric_kind`, `harmful_direction`, `clean_series`,
`is_counter`, `time_span`, and `MIN_REFERENCE_SAMPLES`, the reference size every later step checks.
Must never: fit, score or judge a series; it only makes raw samples usable.
"""

from __future__ import annotations

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

MIN_REFERENCE_SAMPLES: Final[int] = 8
"""Fewer reference samples than this and a series is not scored at all."""

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


_HARMFUL_DIRECTIONS: Final[Mapping[MetricKind, int]] = {"errors": 1, "memory": 1}
"""Kinds whose harm has one direction: more errors, more memory held. Their fall is what a quieter
hour, a garbage collection or a cache eviction does; it harms nothing by itself (a restart that
drops memory also stops serving, which latency, errors or load show). Latency is absent: requests
that fail fast are quicker, so a fall of latency can be the only trace of an error burst. CPU and
load are absent: their fall can be a hang, a crash or lost traffic."""


def harmful_direction(kind: MetricKind) -> int:
    """+1 when only a rise of this kind of metric can harm, -1 when only a fall, 0 when both can."""
    return _HARMFUL_DIRECTIONS.get(kind, 0)


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


def is_counter(metric: str, counters: Sequence[str] = ()) -> bool:
    """Cumulative counters (Prometheus `_total`, `_count`, `_sum`, or listed) are turned into rates."""
    return metric in counters or metric.endswith(("_total", "_count", "_sum"))


def time_span(series: ServiceSeries) -> tuple[float, float]:
    lo, hi = math.inf, -math.inf
    for metrics in series.values():
        for ts, _ in metrics.values():
            t = np.asarray(ts, dtype=float).ravel()
            t = t[np.isfinite(t)]
            if t.size:
                lo, hi = min(lo, float(t.min())), max(hi, float(t.max()))
    return (lo, hi) if math.isfinite(lo) else (0.0, 0.0)
