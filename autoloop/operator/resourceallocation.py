"""ResourceAllocation handlers: discover workloads and capacity, allocate, apply or recommend, report."""

from __future__ import annotations

from typing import Final

import kopf

from autoloop.api.common import TargetRef, parse_quantity
from autoloop.api.resourceallocation import ResourceAllocation, ResourceAllocationStatus
from autoloop.operator import kube, telemetry, wiring
from autoloop.operator.settings import OperatorSettings

KIND: Final = ResourceAllocation.KIND
PLURAL: Final = ResourceAllocation.PLURAL


AllocPass = wiring.Pass[ResourceAllocation, ResourceAllocationStatus]


def spec_problems(alloc: ResourceAllocation, namespace: str) -> list[str]:
    """Semantic errors the schema cannot express."""
    problems: list[str] = []
    refs = alloc.spec.workloads.target_refs or []
    names = [r.name for r in refs]
    duplicates = sorted({n for n in names if names.count(n) > 1})
    if duplicates:
        problems.append(f"workloads.targetRefs lists {', '.join(duplicates)} more than once")
    for key in ("cpu", "memory"):
        value = getattr(alloc.spec.capacity, key)
        if value is not None and parse_quantity(value) <= 0:
            problems.append(f"capacity.{key} must be positive")
    return problems


def discover_workloads(p: AllocPass, clients: kube.Clients) -> list[kube.Workload]:
    """The workloads the resource names, read from its namespace; missing ones are reported."""
    spec = p.resource.spec.workloads
    refs: list[TargetRef] = list(spec.target_refs or [])
    if spec.selector is not None:
        for name in kube.list_deployments(clients, p.namespace, spec.selector.to_query()):
            if all(r.name != name for r in refs):
                refs.append(TargetRef(name=name))
    found: list[kube.Workload] = []
    missing: list[str] = []
    for ref in refs:
        try:
            found.append(kube.read_workload(clients, p.namespace, ref))
        except kube.TargetNotFound:
            missing.append(ref.name)
    if missing:
        p.condition(
            "WorkloadsFound", "False", "WorkloadMissing", f"not found: {', '.join(missing)}", event="Warning"
        )
    elif not found:
        p.condition("WorkloadsFound", "False", "NoWorkloads", "no workload matches", event="Warning")
    else:
        p.condition("WorkloadsFound", "True", "Found", f"{len(found)} workloads")
    return found


def run_pass(p: AllocPass, memo: kopf.Memo) -> None:
    clients: kube.Clients = memo.clients
    alloc = p.resource
    with telemetry.timed_step(KIND, "discover"):
        workloads = discover_workloads(p, clients)
        selector = ",".join(f"{k}={v}" for k, v in sorted(alloc.spec.capacity.node_selector.items()))
        nodes = [n for n in kube.list_nodes(clients, selector) if n.ready and not n.unschedulable]
    p.status.workload_count = len(workloads)
    if not workloads:
        p.waiting("NoWorkloads", "no workloads found: nothing to allocate")
        return
    if not nodes:
        p.condition(
            "CapacityKnown", "False", "NoNodes", "no Ready, schedulable node matches", event="Warning"
        )
        p.waiting("NoNodes", "no schedulable nodes: no capacity to allocate")
        return
    cpu = sum(n.cpu_allocatable for n in nodes)
    memory = sum(n.memory_allocatable for n in nodes)
    p.condition(
        "CapacityKnown", "True", "NodesFound", f"{len(nodes)} nodes, {cpu:g} cores, {memory / 2**30:.1f} GiB"
    )
    if alloc.spec.suspend:
        p.condition("Ready", "True", "Suspended", "suspended: no allocation")
        p.status.phase = "Suspended"
        p.status.message = "suspended"
        return
    p.condition("Ready", "True", "Observing", f"{len(workloads)} workloads on {len(nodes)} nodes")
    p.status.phase = "Observing"
    p.status.message = f"{len(workloads)} workloads, {len(nodes)} nodes"


reconcile = wiring.make_reconciler(
    kind=ResourceAllocation,
    status_type=ResourceAllocationStatus,
    spec_problems=spec_problems,
    run_pass=run_pass,
)


def register(registry: kopf.OperatorRegistry, settings: OperatorSettings) -> None:
    wiring.register_timer(registry, PLURAL, reconcile, interval=settings.tick_seconds, id="reconcile")
