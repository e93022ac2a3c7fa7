"""Operator-wide settings: one dataclass, validated once at startup."""

from __future__ import annotations

import os
from dataclasses import dataclass, field, fields
from typing import Final

ENV_PREFIX: Final = "AUTOLOOP_"


@dataclass
class OperatorSettings:
    prometheus_url: str = "http://127.0.0.1:9090"
    """Where PromQL goes. Every metric read uses this server."""

    namespaces: list[str] = field(default_factory=list)
    """Namespaces to watch; empty means the whole cluster."""

    tick_seconds: float = 5.0
    """How often each resource's timer wakes up to see whether its interval has elapsed."""

    metrics_port: int = 8080
    """Port of the operator's own /metrics (Prometheus exposition)."""

    liveness_port: int = 8081
    """Port of the liveness endpoint (/healthz)."""

    history_limit: int = 20
    """Decisions kept in each resource's status."""

    prometheus_timeout_seconds: float = 10.0
    """Timeout of one PromQL request."""

    stale_after_seconds: float = 300.0
    """A newest sample older than this makes a metric stale (no action on stale data)."""

    workers: int = 24
    """Passes run at once (kopf's handler threads; its default is min(32, CPUs + 4)). A pass mostly
    waits on the apiserver and Prometheus, so a few hundred resources want more than the CPUs."""

    leader_election: bool = True
    """Run passes only while holding the Lease (two or more replicas: one acts, the others wait)."""

    leader_election_namespace: str = ""
    """Namespace of the Lease; empty: the pod's own (POD_NAMESPACE), else autoloop-system."""

    malloc_arenas: int = 2
    """glibc malloc arenas (mallopt M_ARENA_MAX, set at start; 0: glibc's default of 8 per CPU, or
    MALLOC_ARENA_MAX when that is set, which wins). Passes run in `workers` threads; each thread
    that allocates under contention gets an arena of its own, which keeps the high-water mark of
    every pass that ever ran in it: with the default the process grows by hundreds of MiB to a
    plateau (docs/benchmarks.md, soak). Python's own allocator serialises on the GIL anyway."""

    tracemalloc_file: str = ""
    """Debugging memory only (slows every allocation): when set, the operator traces Python
    allocations and appends the top growth sites since its first snapshot to this file every
    `tracemalloc_every_seconds` (see docs/dev.md). Empty: off."""

    tracemalloc_every_seconds: float = 120.0
    """Between two tracemalloc reports (the first snapshot, the baseline, is taken this long after
    start)."""

    tracemalloc_frames: int = 8
    """Frames per traced allocation; 0: no tracing, only the RSS, allocated blocks and objects."""

    def lease_namespace(self) -> str:
        return self.leader_election_namespace or os.environ.get("POD_NAMESPACE") or "autoloop-system"

    def validate(self) -> None:
        """Refuse settings that would make the operator misbehave silently."""
        if not self.prometheus_url.startswith(("http://", "https://")):
            raise ValueError(f"prometheus_url must be an http(s) URL, got {self.prometheus_url!r}")
        if self.tick_seconds <= 0:
            raise ValueError("tick_seconds must be positive")
        if not 1 <= self.workers <= 256:
            raise ValueError("workers must be between 1 and 256")
        if self.malloc_arenas < 0:
            raise ValueError("malloc_arenas must be 0 or more")
        if self.tracemalloc_frames < 0:
            raise ValueError("tracemalloc_frames must be 0 or more")
        if self.tracemalloc_every_seconds <= 0:
            raise ValueError("tracemalloc_every_seconds must be positive")
        if not 1 <= self.history_limit <= 50:
            raise ValueError("history_limit must be between 1 and 50")
        for port in (self.metrics_port, self.liveness_port):
            if not 0 <= port < 65536:
                raise ValueError(f"invalid port {port}")

    @classmethod
    def from_env(cls, environ: dict[str, str] | None = None) -> OperatorSettings:
        """Settings from AUTOLOOP_* variables (e.g. AUTOLOOP_PROMETHEUS_URL), defaults elsewhere."""
        env = os.environ if environ is None else environ
        settings = cls()
        for f in fields(cls):
            raw = env.get(ENV_PREFIX + f.name.upper())
            if raw is None:
                continue
            current = getattr(settings, f.name)
            if isinstance(current, list):
                setattr(settings, f.name, [p.strip() for p in raw.split(",") if p.strip()])
            elif isinstance(current, bool):
                setattr(settings, f.name, raw.lower() in ("1", "true", "yes"))
            else:
                setattr(settings, f.name, type(current)(raw))
        return settings
