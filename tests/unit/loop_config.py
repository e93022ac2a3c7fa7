"""The loop configuration the engine's unit tests share: one web Deployment in `ns`, Auto, a 200 ms
latency SLO; each test module states only what it changes."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from autoloop.engines import loop, safety
from autoloop.simulation import service

MIB = 2.0**20


def loop_config(**changes: Any) -> loop.LoopConfig:
    base: dict[str, Any] = {
        "namespace": "ns",
        "target": safety.Target(namespace="ns", kind="Deployment", name="web"),
        "mode": "Auto",
        "bounds": {"replicas": (1, 50), "cpu_request": (0.1, 4.0), "memory_request": (64 * MIB, 4096 * MIB)},
        "latency_slo_seconds": 0.2,
    }
    return loop.LoopConfig(**{**base, **changes})


def observed(
    settings: dict[str, float], rows: Sequence[service.ServiceState], **extra: Any
) -> loop.Observation:
    """An interval's Observation from the service simulator's samples (no PDB)."""
    return loop.Observation(
        settings=settings,
        rps=[r.rps for r in rows],
        latency_p95=[r.latency_p95_seconds for r in rows],
        error_ratio=[r.error_ratio for r in rows],
        cpu_per_pod=[r.cpu_cores_per_pod for r in rows],
        memory_per_pod=[r.memory_bytes_per_pod for r in rows],
        pdb=safety.PdbStatus(present=False),
        **extra,
    )
