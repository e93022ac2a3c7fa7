"""The operator's own metrics, served on /metrics: what it did, how long each step took."""

from __future__ import annotations

import time
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Final

from prometheus_client import REGISTRY, CollectorRegistry, Counter, Gauge, Histogram, start_http_server

STEP_BUCKETS_SECONDS: Final = (0.001, 0.005, 0.01, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0)

RECONCILES = Counter("autoloop_reconcile_total", "Reconcile passes by kind and result.", ["kind", "result"])
STEP_SECONDS = Histogram(
    "autoloop_step_duration_seconds",
    "Duration of each named step of a reconcile pass.",
    ["kind", "step"],
    buckets=STEP_BUCKETS_SECONDS,
)
DECISIONS = Counter(
    "autoloop_decisions_total", "Decisions by kind and action (Applied, Blocked, ...).", ["kind", "action"]
)
OBJECTIVE = Gauge(
    "autoloop_objective_value", "Latest measured objective of a loop.", ["namespace", "name", "objective"]
)
LEADER = Gauge("autoloop_leader", "1 while this replica holds the leader Lease and runs passes.")
READY = Gauge(
    "autoloop_resource_ready", "1 when a resource's Ready condition is True.", ["kind", "namespace", "name"]
)


@contextmanager
def timed_step(kind: str, step: str) -> Iterator[None]:
    """Time one named step of a pass into autoloop_step_duration_seconds."""
    started = time.perf_counter()
    try:
        yield
    finally:
        STEP_SECONDS.labels(kind=kind, step=step).observe(time.perf_counter() - started)


def serve(port: int, registry: CollectorRegistry = REGISTRY) -> None:
    """Start the /metrics endpoint in a daemon thread."""
    start_http_server(port, addr="0.0.0.0", registry=registry)
