"""What the soak creates: nodes, workloads, loops, allocations, plans (pure manifest builders).

Every object carries the label `SOAK_LABEL=<run>`, which the soak's watches select on and its
clean-up deletes by. Workloads run on the soak's own kwok nodes (tainted, so nothing else lands
there); only the small Deployments a MaintenancePlan drains run on the shared `kwok-node-<i>`
(and, while it is cordoned, on the other shared ones).
"""

from __future__ import annotations

import random
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any, Final

from autoloop.api.common import GROUP

VERSION: Final = "v1alpha1"
SOAK_LABEL: Final = "bench.autoloop.x0tta6bl4.io/soak"
EDIT_ANNOTATION: Final = "bench.autoloop.x0tta6bl4.io/soak-edit"
"""Bumped by every edit the soak makes as "a person", so the watch can tell whose change it saw."""
DRAIN_LABEL: Final = "bench.autoloop.x0tta6bl4.io/soak-drain"
ALLOC_GROUP_LABEL: Final = "bench.autoloop.x0tta6bl4.io/soak-allocation"
SIM: Final = "sim.autoloop.x0tta6bl4.io"
DECISION_ANNOTATION: Final = f"{GROUP}/decision"
CORDONED_BY_ANNOTATION: Final = f"{GROUP}/cordoned-by"
MAINTENANCE_ANNOTATION: Final = f"{GROUP}/maintenance"
IMAGE: Final = "registry.k8s.io/pause:3.10"

REPLICAS_MAX_CHOICES: Final[tuple[int, ...]] = (4, 6, 8)
"""A loop's knobs.replicas.max starts at 8 and a person moves it among these."""
CPU_MAX_CHOICES: Final[tuple[str, ...]] = ("1", "1500m", "2")
BUDGET_CHOICES: Final[tuple[float, ...]] = (0.05, 0.3, 1.0, 3.0)
"""USD/h for 3 workloads: 0.05 is below the fairness floor of most (infeasible: nothing changes)."""
WORKLOADS_PER_ALLOCATION: Final = 3
NODE_PODS: Final = 1000
MAX_POD_REPLICAS: Final = 10
"""Upper bound used to size the soak's nodes (loops stop at 8, allocations at max(10, 2 x today))."""
PLAN_HORIZON: Final = "1h"
PLAN_HORIZON_SECONDS: Final = 3600.0
DRAIN_TIMEOUT: Final = "180s"
"""Six evictions one at a time, each waiting for a replacement to be Ready: seconds on an idle
machine, over a minute on a loaded one with the apiserver restarting (60 s skipped all three
nodes of the first full run)."""
NODE_CPU: Final = 1000.0
NODE_MEMORY_GIB: Final = 4096
"""Soak nodes are large (kwok's own default is 1k cores / 1 TiB): the pods of 300 services at up
to 8 replicas x 2 cores must all schedule; pods are what the node count is sized by."""


@dataclass(frozen=True)
class Profile:
    """A synthetic service: its starting settings and its load."""

    replicas: int
    cpu: str
    memory: str
    rps: int
    cpu_per_request: float


def profile(rng: random.Random) -> Profile:
    """Half the services start over-provisioned, half under: loops have work either way."""
    return Profile(
        replicas=rng.choice((2, 3, 4, 5)),
        cpu=rng.choice(("250m", "500m", "1")),
        memory=rng.choice(("256Mi", "384Mi")),
        rps=rng.randrange(20, 121, 5),
        cpu_per_request=0.01,
    )


def _meta(name: str, run: str, **extra: Any) -> dict[str, Any]:
    meta: dict[str, Any] = {"name": name, "labels": {SOAK_LABEL: run}}
    for key, value in extra.items():
        meta.setdefault(key, {}).update(value)
    return meta


def node(name: str, run: str) -> dict[str, Any]:
    """A kwok node for the soak's workloads (kwok manages nodes with its annotation), tainted so
    that only the soak's pods land on it."""
    capacity = {"cpu": f"{NODE_CPU:g}", "memory": f"{NODE_MEMORY_GIB}Gi", "pods": str(NODE_PODS)}
    return {
        "apiVersion": "v1",
        "kind": "Node",
        "metadata": _meta(
            name,
            run,
            labels={"kubernetes.io/hostname": name, "type": "kwok-soak"},
            annotations={"kwok.x-k8s.io/node": "fake", "node.alpha.kubernetes.io/ttl": "0"},
        ),
        "spec": {"taints": [{"key": SOAK_LABEL, "value": run, "effect": "NoSchedule"}]},
        "status": {"capacity": capacity, "allocatable": capacity},
    }


def nodes_needed(loops: int, allocations: int) -> int:
    pods = (loops + allocations * WORKLOADS_PER_ALLOCATION) * MAX_POD_REPLICAS
    return max(1, -(-pods // NODE_PODS))


def namespace(name: str, run: str) -> dict[str, Any]:
    return {"apiVersion": "v1", "kind": "Namespace", "metadata": _meta(name, run)}


def workload(name: str, run: str, p: Profile, *, labels: dict[str, str] | None = None) -> dict[str, Any]:
    """A Deployment the synthetic exporter serves metrics for, on the soak's nodes."""
    pod_labels = {"app": name, SOAK_LABEL: run}
    return {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": _meta(
            name,
            run,
            labels={"app": name, f"{SIM}/enabled": "true", **(labels or {})},
            annotations={
                f"{SIM}/rps": str(p.rps),
                f"{SIM}/cpu-per-request": str(p.cpu_per_request),
                f"{SIM}/memory-base": "96Mi",
                f"{SIM}/latency-base": "0.04",
                f"{SIM}/noise": "0.03",
            },
        ),
        "spec": {
            "replicas": p.replicas,
            "selector": {"matchLabels": {"app": name}},
            "template": {
                "metadata": {"labels": pod_labels},
                "spec": {
                    "nodeSelector": {SOAK_LABEL: run},
                    "tolerations": [
                        {"key": SOAK_LABEL, "operator": "Equal", "value": run, "effect": "NoSchedule"}
                    ],
                    "containers": [
                        {
                            "name": "main",
                            "image": IMAGE,
                            "resources": {"requests": {"cpu": p.cpu, "memory": p.memory}},
                        }
                    ],
                },
            },
        },
    }


def loop(name: str, run: str, *, interval_s: int) -> dict[str, Any]:
    """An Auto loop with every knob bounded and a tight safety policy the soak then checks."""
    return {
        "apiVersion": f"{GROUP}/{VERSION}",
        "kind": "OptimizationLoop",
        "metadata": _meta(name, run),
        "spec": {
            "targetRef": {"kind": "Deployment", "name": name},
            "mode": "Auto",
            "interval": f"{interval_s}s",
            "objectives": [
                {"name": "latency", "metric": "LatencyP95", "target": 0.25, "weight": 2},
                {"name": "errors", "metric": "ErrorRatio", "target": 0.01, "weight": 4},
                {"name": "cost", "metric": "Cost", "weight": 1},
            ],
            "knobs": {
                "replicas": {"min": 1, "max": max(REPLICAS_MAX_CHOICES)},
                "cpu": {"min": "100m", "max": "2"},
                "memory": {"min": "128Mi", "max": "1Gi"},
            },
            "safety": {
                "maxStepPercent": 40,
                "cooldown": f"{2 * interval_s}s",
                "maxChangesPerHour": 8,
                "minConfidence": 0.3,
                "rollback": {"enabled": True, "settleWindow": f"{2 * interval_s}s"},
            },
        },
    }


def allocation(name: str, run: str, *, interval_s: int, budget: float) -> dict[str, Any]:
    """An Auto allocation over the three workloads labelled with its name, on the soak's nodes."""
    return {
        "apiVersion": f"{GROUP}/{VERSION}",
        "kind": "ResourceAllocation",
        "metadata": _meta(name, run),
        "spec": {
            "workloads": {"selector": {"matchLabels": {ALLOC_GROUP_LABEL: name}}},
            "capacity": {"nodeSelector": {SOAK_LABEL: run}, "reservePercent": 10},
            "budget": {"maxCostPerHour": budget},
            "sla": {"quantile": 0.95, "minReplicas": 1, "fairnessFloorPercent": 50},
            "horizon": "5m",
            "interval": f"{interval_s}s",
            "solver": "Auto",
            "timeLimit": "2s",
            "mode": "Auto",
        },
    }


def always_open(now: datetime | None = None) -> dict[str, str]:
    """An overnight window from an hour ago to two hours ago tomorrow: open for the next 22 h."""
    now = now or datetime.now(UTC)
    return {
        "start": (now - timedelta(hours=1)).strftime("%H:%M"),
        "end": (now - timedelta(hours=2)).strftime("%H:%M"),
    }


def plan(name: str, run: str, node_name: str) -> dict[str, Any]:
    """Maintain one shared kwok node now, evicting only the soak's drain pods."""
    return {
        "apiVersion": f"{GROUP}/{VERSION}",
        "kind": "MaintenancePlan",
        "metadata": _meta(name, run),
        "spec": {
            "nodes": [node_name],
            "horizon": PLAN_HORIZON,
            "windows": [always_open()],
            "interval": "10s",
            "maxConcurrent": 1,
            "drain": {
                "timeout": DRAIN_TIMEOUT,
                "retryInterval": "1s",
                "podSelector": {"matchLabels": {DRAIN_LABEL: run}},
            },
            "solver": "Auto",
            "mode": "Auto",
        },
    }


DRAIN_REPLICAS: Final = 6


def drain_workload(name: str, run: str, node_name: str) -> dict[str, Any]:
    """Pods that prefer the node a plan maintains: what its drain evicts. Their replacements land
    on the other shared nodes while it is cordoned."""
    affinity = {
        "nodeAffinity": {
            "preferredDuringSchedulingIgnoredDuringExecution": [
                {
                    "weight": 100,
                    "preference": {
                        "matchExpressions": [
                            {"key": "kubernetes.io/hostname", "operator": "In", "values": [node_name]}
                        ]
                    },
                }
            ]
        }
    }
    return {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": _meta(name, run, labels={"app": name}),
        "spec": {
            "replicas": DRAIN_REPLICAS,
            "selector": {"matchLabels": {"app": name}},
            "template": {
                "metadata": {"labels": {"app": name, SOAK_LABEL: run, DRAIN_LABEL: run}},
                "spec": {"affinity": affinity, "containers": [{"name": "main", "image": IMAGE}]},
            },
        },
    }


def drain_budget(name: str, run: str) -> dict[str, Any]:
    """One eviction at a time: the drain waits for each replacement to be Ready (seconds, not
    one), so the faults have a drain in progress to hit."""
    return {
        "apiVersion": "policy/v1",
        "kind": "PodDisruptionBudget",
        "metadata": _meta(name, run),
        "spec": {"maxUnavailable": 1, "selector": {"matchLabels": {"app": name}}},
    }
