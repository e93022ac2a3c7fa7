"""Total demand of a workload over time: what a ResourceAllocation forecasts.

Contract: `demand_query(resource, namespace=, workload=)` is the PromQL of a workload's total usage
(summed over its pods, not averaged: the allocator sizes replicas × per-pod requests against the
total); `fetch_history(source, query, start=, end=)` reads a range with a step that fits the
history there is. Resources: `cpu` (cores), `memory` (bytes), `rps` (requests/s). Names are
escaped with the helpers of `queries`; nothing here writes anything.
"""

from __future__ import annotations

import math
from typing import Final

import numpy as np

from autoloop.metrics import queries
from autoloop.metrics.source import MetricSource, MetricsUnavailable, Series

RESOURCES: Final[tuple[str, ...]] = ("cpu", "memory", "rps")
MAX_POINTS: Final[int] = 10_000
"""Samples asked per range query; Prometheus refuses more than 11,000."""
MIN_STEP_SECONDS: Final[float] = 5.0
"""Finest query step: a few scrapes (1 s in the dev tier, 15-60 s in production) per sample."""
MIN_SAMPLES: Final[int] = 60
"""Below this many samples at the coarse step, the history is read again at a finer step."""


def demand_query(resource: str, *, namespace: str, workload: str, window: str = "2m") -> str:
    """Total usage of a workload's pods: cores (`cpu`), bytes (`memory`) or requests/s (`rps`)."""
    ns = queries.escape_label_value(namespace)
    pods = f'namespace="{ns}",pod=~"{queries.pod_regex(workload)}",container!="",container!="POD"'
    if resource == "cpu":
        return f"sum(rate(container_cpu_usage_seconds_total{{{pods}}}[{window}]))"
    if resource == "memory":
        return f"sum(container_memory_working_set_bytes{{{pods}}})"
    if resource == "rps":
        svc = queries.escape_label_value(workload)
        return f'sum(rate(http_requests_total{{namespace="{ns}",service="{svc}"}}[{window}]))'
    raise ValueError(f"unknown resource {resource!r}; want one of {', '.join(RESOURCES)}")


def finite(series: Series) -> Series:
    """The series without its NaN samples."""
    keep = np.isfinite(series.values)
    return Series(timestamps=series.timestamps[keep], values=series.values[keep])


def coarse_step(start: float, end: float) -> float:
    """The step that reads [start, end] in at most MAX_POINTS samples (never below MIN_STEP_SECONDS)."""
    return max(MIN_STEP_SECONDS, math.ceil((end - start) / MAX_POINTS))


def fetch_history(source: MetricSource, query: str, *, start: float, end: float) -> Series:
    """The query over [start, end], at most MAX_POINTS samples, finite values only.

    A young series (minutes of data in a days-long window) comes back with few samples at the
    coarse step; it is then read again over the span it covers at a step that gives it
    MIN_SAMPLES, so a forecaster sees its shape. Raises MetricsUnavailable when there is nothing.
    """
    coarse = coarse_step(start, end)
    try:
        series = finite(source.range(query, start=start, end=end, step=coarse))
    except MetricsUnavailable as exc:
        if exc.reason != "NoData":
            raise
        series = Series(timestamps=np.empty(0), values=np.empty(0))
    if len(series) < MIN_SAMPLES:
        # Younger than two coarse steps when the coarse grid saw nothing at all.
        first = float(series.timestamps[0]) - coarse if len(series) else end - 2 * coarse
        first = max(start, first)
        fine = max(MIN_STEP_SECONDS, (end - first) / MIN_SAMPLES)
        if fine < coarse:
            series = finite(source.range(query, start=first, end=end, step=fine))
    if len(series) == 0:
        raise MetricsUnavailable("NaN", f"every sample is NaN: {query}")
    return series
