"""Per-service signal series for anomaly detection and root-cause analysis."""

from __future__ import annotations

from collections.abc import Sequence

from autoloop.metrics.source import MetricSource, MetricsUnavailable
from autoloop.metrics.workload import SignalQueries

SIGNALS = ("rps", "latency_p95", "error_ratio", "cpu_per_pod", "memory_per_pod")
"""Metric names as the anomaly engine reads them (its kind is inferred from the name)."""


def fetch_service_series(
    source: MetricSource,
    *,
    namespace: str,
    services: Sequence[str],
    end: float,
    window_seconds: float,
    step_seconds: float,
) -> tuple[dict[str, dict[str, tuple[list[float], list[float]]]], list[str]]:
    """service → metric → (timestamps, values) over the window, and the series that had no data.

    A missing series of a dependency is not an error: the analysis works with what exists.
    """
    series: dict[str, dict[str, tuple[list[float], list[float]]]] = {}
    missing: list[str] = []
    for service in services:
        q = SignalQueries.builtin(namespace=namespace, workload=service)
        for name in SIGNALS:
            try:
                s = source.range(getattr(q, name), start=end - window_seconds, end=end, step=step_seconds)
            except MetricsUnavailable:
                missing.append(f"{service}/{name}")
                continue
            series.setdefault(service, {})[name] = (s.timestamps.tolist(), s.values.tolist())
    return series, missing
