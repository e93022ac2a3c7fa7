"""Synthetic allocation instances for bench/allocation.py and the allocation tests.

Workload demand is drawn from a lognormal usage model (heavy-tailed sizes, as in cluster traces:
a few large services, many small ones); the SLA-quantile demand is the model's 95th percentile and
the VPA-style P90 comes from the same distribution, so the greedy baseline and the allocators see
the same workloads. Node types are common cloud shapes (4/8/16 vCPU with 4 GiB per vCPU).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Final

import numpy as np

from autoloop.engines import allocate

NODE_TYPES: Final[tuple[tuple[float, float], ...]] = ((4.0, 16.0), (8.0, 32.0), (16.0, 64.0))
# Allocatable is below capacity (kubelet/system reservations): GKE reserves ~6 % of CPU on a
# 4-core node and ~10 % of memory (cloud.google.com/kubernetes-engine/docs/concepts/plan-node-sizes).
ALLOCATABLE_FRACTION: Final[tuple[float, float]] = (0.94, 0.90)
Z_90: Final[float] = 1.2816  # standard normal quantiles
Z_95: Final[float] = 1.6449


@dataclass(frozen=True)
class Case:
    problem: allocate.AllocationProblem
    p90_cpu: np.ndarray
    """Per-workload P90 of total CPU usage, cores (what a VPA-style recommender targets)."""
    p90_mem: np.ndarray


def make_case(
    n_workloads: int,
    n_nodes: int,
    *,
    utilisation: float = 0.7,
    budget_fraction: float = 0.97,
    seed: int = 0,
) -> Case:
    """A problem whose SLA demand fills `utilisation` of the nodes' CPU, with a budget of
    `budget_fraction` times the cost of covering every SLA demand (so below 1 it binds)."""
    rng = np.random.default_rng(seed)
    types = rng.integers(0, len(NODE_TYPES), n_nodes)
    nodes = tuple(
        allocate.Node(
            f"node-{k}",
            NODE_TYPES[t][0] * ALLOCATABLE_FRACTION[0],
            NODE_TYPES[t][1] * ALLOCATABLE_FRACTION[1],
        )
        for k, t in enumerate(types)
    )
    total_cpu = sum(n.cpu_cores for n in nodes)
    # log-usage ~ N(mu, sigma) over time; sizes lognormal across workloads.
    size = rng.lognormal(0.0, 1.0, n_workloads)
    sigma = rng.uniform(0.1, 0.5, n_workloads)  # burstiness of each workload's usage
    mean_cpu = size / size.sum()
    q95_cpu = mean_cpu * np.exp(Z_95 * sigma)
    q95_cpu *= utilisation * total_cpu / q95_cpu.sum()
    gib_per_core = rng.uniform(1.0, 4.0, n_workloads)
    q95_mem = q95_cpu * gib_per_core
    p90_cpu = q95_cpu * np.exp((Z_90 - Z_95) * sigma)
    p90_mem = q95_mem * np.exp((Z_90 - Z_95) * sigma * 0.5)
    workloads = []
    for i in range(n_workloads):
        cur_r = int(rng.integers(1, 6))
        over = rng.uniform(0.8, 2.0)  # today's requests: typical over/under-provisioning
        workloads.append(
            allocate.WorkloadDemand(
                name=f"wl-{i}",
                cpu_cores=float(q95_cpu[i]),
                memory_gib=float(q95_mem[i]),
                min_replicas=1,
                max_replicas=max(cur_r * 2, 4),
                current_replicas=cur_r,
                current_cpu_cores=float(round(over * q95_cpu[i] / cur_r, 3)) or 0.01,
                current_memory_gib=float(round(over * q95_mem[i] / cur_r, 3)) or 0.0625,
            )
        )
    price_c, price_m = allocate.PRICE_PER_VCPU_HOUR_USD, allocate.PRICE_PER_GIB_HOUR_USD
    full_cost = float((q95_cpu * price_c + q95_mem * price_m).sum())
    problem = allocate.AllocationProblem(
        workloads=tuple(workloads), nodes=nodes, budget_usd_per_hour=budget_fraction * full_cost
    )
    return Case(problem, p90_cpu, p90_mem)
