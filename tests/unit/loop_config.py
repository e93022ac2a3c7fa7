"""The loop configuration the engine's unit tests share: one web Deployment in `ns`, Auto, a 200 ms
latency SLO; each test module states only what it changes."""

from __future__ import annotations

from typing import Any

from autoloop.engines import loop, safety

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
