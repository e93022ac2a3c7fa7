"""The windows of one workload's signals that a loop iteration looks at."""

from __future__ import annotations

import math
from dataclasses import dataclass

from autoloop.metrics import queries
from autoloop.metrics.source import MetricSource, MetricsUnavailable


@dataclass(frozen=True)
class WorkloadWindows:
    """Samples over the last window, in base units (requests/s, seconds, ratio, cores, bytes)."""

    rps: list[float]
    latency_p95: list[float]
    error_ratio: list[float]
    cpu_per_pod: list[float]
    memory_per_pod: list[float]
    oom_kills: int


@dataclass(frozen=True)
class SignalQueries:
    """The PromQL behind each signal; objectives may replace the built-in latency or error query."""

    rps: str
    latency_p95: str
    error_ratio: str
    cpu_per_pod: str
    memory_per_pod: str
    oom_kills: str

    @classmethod
    def builtin(cls, *, namespace: str, workload: str, rate_window: str = "1m") -> SignalQueries:
        ns = queries.escape_label_value(namespace)
        pods = f'namespace="{ns}",pod=~"{queries.pod_regex(workload)}",container!="",container!="POD"'
        return cls(
            rps=queries.builtin_query(
                "Throughput", namespace=namespace, workload=workload, window=rate_window
            ),
            latency_p95=queries.builtin_query(
                "LatencyP95", namespace=namespace, workload=workload, window=rate_window
            ),
            error_ratio=queries.builtin_query(
                "ErrorRatio", namespace=namespace, workload=workload, window=rate_window
            ),
            cpu_per_pod=queries.usage_query(
                "cpu", namespace=namespace, workload=workload, window=rate_window
            ),
            memory_per_pod=queries.usage_query("memory", namespace=namespace, workload=workload),
            oom_kills=f"sum(increase(container_oom_events_total{{{pods}}}[{rate_window}])) or vector(0)",
        )


def fetch_windows(
    source: MetricSource, q: SignalQueries, *, end: float, window_seconds: float, step_seconds: float
) -> WorkloadWindows:
    """Every signal over [end - window, end]; MetricsUnavailable names the first that is missing or NaN."""
    start = end - window_seconds
    out: dict[str, list[float]] = {}
    for name in ("rps", "latency_p95", "error_ratio", "cpu_per_pod", "memory_per_pod"):
        try:
            series = source.range(getattr(q, name), start=start, end=end, step=step_seconds)
        except MetricsUnavailable as exc:
            raise MetricsUnavailable(exc.reason, f"{name}: {exc.message}") from exc
        values = [float(v) for v in series.values if math.isfinite(float(v))]
        if not values:
            raise MetricsUnavailable("NaN", f"{name}: every sample in the window is NaN")
        out[name] = values
    try:
        oom = source.instant(q.oom_kills, at=end)
    except MetricsUnavailable:
        oom = 0.0  # a cluster without OOM counters reports none; memory safety still uses usage
    return WorkloadWindows(oom_kills=round(oom), **out)
