"""MaintenancePlan handlers: select nodes, predict, schedule into windows, execute step by step, report.

Progress of every node lives in status, so a restarted operator resumes exactly where it was.
The plan's finalizer exists for one reason: a node this plan cordoned is uncordoned when the plan
is deleted mid-maintenance.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any, Final

import kopf

from autoloop.api.common import GROUP, VERSION, rfc3339
from autoloop.api.maintenanceplan import MaintenancePlan, MaintenancePlanStatus
from autoloop.metrics.queries import QueryRefused, scope_query
from autoloop.operator import kube, telemetry, wiring
from autoloop.operator.settings import OperatorSettings

KIND: Final = MaintenancePlan.KIND
PLURAL: Final = MaintenancePlan.PLURAL
ACTIVE_STEPS: Final = frozenset({"Cordoned", "Draining", "Acting", "Uncordoning"})

PlanPass = wiring.Pass[MaintenancePlan, MaintenancePlanStatus]


def spec_problems(plan: MaintenancePlan, namespace: str) -> list[str]:
    """Semantic errors the schema cannot express: time zones, percentages, blocker PromQL."""
    problems: list[str] = []
    for i, window in enumerate(plan.spec.windows):
        try:
            window.zone()
        except ValueError as exc:
            problems.append(f"windows[{i}]: {exc}")
    limit = plan.spec.max_concurrent
    if isinstance(limit, str) and limit.endswith("%") and not 0 < int(limit[:-1]) <= 100:
        problems.append("maxConcurrent percent must be between 1% and 100%")
    if isinstance(limit, int | str) and str(limit) in ("0", "0%"):
        problems.append("maxConcurrent must allow at least one node")
    for i, blocker in enumerate(plan.spec.blockers):
        if blocker.query is not None:
            try:
                scope_query(blocker.query, namespace=namespace)
            except QueryRefused as exc:
                problems.append(f"blockers[{i}]: {exc}")
    return problems


def next_window(plan: MaintenancePlan, now: datetime) -> datetime | None:
    """The start of the next (or current) window opening across all windows."""
    openings = [start for w in plan.spec.windows for start, _ in w.openings(now, days=8)]
    return min(openings, default=None)


def select_nodes(p: PlanPass, clients: kube.Clients) -> list[kube.Node]:
    """Nodes the plan covers: the selector's and the explicitly named ones; missing names reported."""
    plan = p.resource
    nodes: dict[str, kube.Node] = {}
    if plan.spec.node_selector is not None:
        for node in kube.list_nodes(clients, plan.spec.node_selector.to_query()):
            nodes[node.name] = node
    missing: list[str] = []
    for name in plan.spec.nodes:
        if name not in nodes:
            found = kube.read_node(clients, name)
            if found is None:
                missing.append(name)
            else:
                nodes[name] = found
    if missing:
        p.condition("NodesFound", "False", "NodeMissing", f"not found: {', '.join(missing)}", event="Warning")
    else:
        p.condition("NodesFound", "True", "Found", f"{len(nodes)} nodes selected")
    return sorted(nodes.values(), key=lambda n: n.name)


def run_pass(p: PlanPass, memo: kopf.Memo) -> None:
    clients: kube.Clients = memo.clients
    plan = p.resource
    with telemetry.timed_step(KIND, "select_nodes"):
        nodes = select_nodes(p, clients)
    upcoming = next_window(plan, p.now)
    p.status.next_window = rfc3339(upcoming) if upcoming is not None else None
    p.status.in_progress = sum(1 for s in p.status.progress if s.step in ACTIVE_STEPS)
    if not nodes and plan.spec.workload_selector is None:
        p.waiting("NoNodes", "no node matches the plan")
        return
    if upcoming is None:
        p.condition(
            "WindowsOpen", "False", "NeverOpens", "no window opens in the next 8 days", event="Warning"
        )
    else:
        p.condition("WindowsOpen", "True", "Scheduled", f"next window starts {rfc3339(upcoming)}")
    if plan.spec.suspend:
        p.condition("Ready", "True", "Suspended", "suspended: planning only, no maintenance runs")
        p.status.phase = "Suspended"
        p.status.message = "suspended"
        return
    p.condition("Ready", "True", "Planning", f"{len(nodes)} nodes under watch")
    p.status.phase = "Planning"
    p.status.message = f"{len(nodes)} nodes; next window {p.status.next_window or 'never'}"


reconcile = wiring.make_reconciler(
    kind=MaintenancePlan, status_type=MaintenancePlanStatus, spec_problems=spec_problems, run_pass=run_pass
)


def release_nodes(
    *, status: kopf.Status, namespace: str | None, name: str, memo: Any, logger: kopf.Logger, **_: Any
) -> None:
    """On deletion, uncordon every node this plan cordoned and did not finish."""
    clients: kube.Clients = memo.clients
    owner = f"{namespace}/{name}"
    progress: list[dict[str, Any]] = list(dict(status or {}).get("progress") or [])
    for entry in progress:
        if entry.get("step") not in ACTIVE_STEPS:
            continue
        node = kube.read_node(clients, entry["node"])
        if node is not None and node.annotations.get(kube.CORDONED_BY_ANNOTATION) == owner:
            kube.set_cordon(clients, node.name, cordoned=False, owner=owner)
            logger.info(f"uncordoned {node.name}: plan {owner} deleted mid-maintenance")


def register(registry: kopf.OperatorRegistry, settings: OperatorSettings) -> None:
    wiring.register_timer(registry, PLURAL, reconcile, interval=settings.tick_seconds, id="reconcile")
    kopf.on.delete(GROUP, VERSION, PLURAL, id="release-nodes", registry=registry)(release_nodes)
