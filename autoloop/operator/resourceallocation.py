"""ResourceAllocation handlers: discover workloads and capacity, forecast, allocate, apply or recommend.

One pass (every spec.interval): read the workloads and the Ready, schedulable Nodes; fetch each
workload's total CPU and memory usage (and requests/s when served) from Prometheus; forecast each
over spec.horizon at the SLA quantile; solve the allocation (`engines.allocate`) under node
capacity, budget and fairness floor; report allocation, cost, SLA score, forecast error and solver;
in `Auto` mode move each workload towards its allocation through `engines.safety.validate`.

An infeasible allocation (budget below the floor, too little capacity) sets `Feasible=False` with
the binding constraint and its shortfall and changes nothing. A workload without metrics sets
`MetricsAvailable=False` naming it and the pass acts on nothing.
The helpers above `run_pass` are pure, so they are unit-tested without a cluster.
"""

from __future__ import annotations

import math
import os
from datetime import datetime
from typing import Final

import kopf
import numpy as np

from autoloop.api.common import (
    Decision,
    Mode,
    RuleVerdict,
    TargetRef,
    format_cpu,
    format_memory,
    parse_duration,
    parse_quantity,
    rfc3339,
)
from autoloop.api.resourceallocation import (
    Capacity,
    ResourceAllocation,
    ResourceAllocationStatus,
    SolverReport,
    WorkloadAllocation,
)
from autoloop.engines import allocate, safety
from autoloop.metrics.history_cache import HistoryCache
from autoloop.metrics.source import MetricSource, MetricsUnavailable
from autoloop.operator import allocation_demand as demand
from autoloop.operator import crashpoints, kube, telemetry, wiring
from autoloop.operator.allocation_demand import Demand
from autoloop.operator.optimizationloop import patch_target, status_settings
from autoloop.operator.settings import OperatorSettings

KIND: Final = ResourceAllocation.KIND
PLURAL: Final = ResourceAllocation.PLURAL
BYTES_PER_GIB: Final = 2.0**30

DEFAULT_MAX_REPLICAS: Final[int] = 10
"""Replica ceiling unless today's count (doubled) or sla.minReplicas is higher."""
MIN_CPU_PER_POD_CORES: Final[float] = 0.01
MIN_MEMORY_PER_POD_BYTES: Final[float] = 64 * 2.0**20
MAX_STEP_PERCENT: Final[float] = 50.0
"""Largest move of any knob in one pass; larger allocations are approached over several passes."""
COOLDOWN_SLACK_SECONDS: Final[float] = 1.0
"""A pass may run up to 0.5 s early (`wiring.is_due`): the cooldown is the interval less this."""
COVERED: Final[float] = 1.0 - 1e-6
"""Coverage at or above this meets the SLA (allocations are rounded up to 1 m / 1 MiB)."""


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


# --- pure mapping helpers ------------------------------------------------------------------------


def requests_of_others(
    pods: list[kube.PodRequests], namespace: str, workloads: list[kube.Workload]
) -> dict[str, tuple[float, float]]:
    """Per node, the (cores, bytes) requested by pods this allocation does not manage: those are
    not ours to move, so their share of each node is not available to the allocation."""
    used: dict[str, tuple[float, float]] = {}
    for pod in pods:
        managed = pod.namespace == namespace and any(
            w.selector and all(pod.labels.get(k) == v for k, v in w.selector.items()) for w in workloads
        )
        if not managed:
            cpu, mem = used.get(pod.node, (0.0, 0.0))
            used[pod.node] = (cpu + pod.cpu, mem + pod.memory)
    return used


def node_capacity(
    nodes: list[kube.Node], capacity: Capacity, used: dict[str, tuple[float, float]] | None = None
) -> tuple[allocate.Node, ...]:
    """Each node's allocatable less reservePercent less what unmanaged pods on it request. A total
    override (the pool these workloads may use) is spread over the nodes in proportion to their
    allocatable (equally when they report none) and not reduced further."""
    keep = 1.0 - capacity.reserve_percent / 100.0
    used = used or {}
    cpu = np.array([n.cpu_allocatable for n in nodes], dtype=float) * keep
    mem = np.array([n.memory_allocatable for n in nodes], dtype=float) * keep
    for override, values, column in ((capacity.cpu, cpu, 0), (capacity.memory, mem, 1)):
        if override is None:
            taken = np.array([used.get(n.name, (0.0, 0.0))[column] for n in nodes], dtype=float)
            values[:] = np.maximum(values - taken, 0.0)
            continue
        total = parse_quantity(override)
        share = values / values.sum() if values.sum() > 0 else np.full(len(values), 1.0 / len(values))
        values[:] = total * share
    return tuple(
        allocate.Node(n.name, float(c), float(m) / BYTES_PER_GIB)
        for n, c, m in zip(nodes, cpu, mem, strict=True)
    )


def workload_demand(
    w: kube.Workload, cpu_cores: float, memory_bytes: float, *, min_replicas: int
) -> allocate.WorkloadDemand:
    """The allocator's view of one workload: forecast totals and today's per-pod requests."""
    floor = max(1, min_replicas)
    return allocate.WorkloadDemand(
        name=w.name,
        cpu_cores=max(cpu_cores, 0.0),
        memory_gib=max(memory_bytes, 0.0) / BYTES_PER_GIB,
        min_replicas=floor,
        max_replicas=max(DEFAULT_MAX_REPLICAS, 2 * w.replicas, floor),
        current_replicas=w.replicas,
        current_cpu_cores=w.cpu_request,
        current_memory_gib=w.memory_request / BYTES_PER_GIB if w.memory_request is not None else None,
        min_cpu_per_pod_cores=MIN_CPU_PER_POD_CORES,
        min_memory_per_pod_gib=MIN_MEMORY_PER_POD_BYTES / BYTES_PER_GIB,
    )


def current_knobs(w: kube.Workload) -> dict[str, float]:
    """Today's settings in safety's base units; knobs without a request are left out."""
    out = {"replicas": float(w.replicas)}
    if w.cpu_request is not None:
        out["cpu_request"] = w.cpu_request
    if w.memory_request is not None:
        out["memory_request"] = w.memory_request
    return out


def target_knobs(a: allocate.WorkloadAllocation) -> dict[str, float]:
    """An allocation in safety's base units, requests on the quantity grid they are written with."""
    return {
        "replicas": float(a.replicas),
        "cpu_request": parse_quantity(format_cpu(a.cpu_cores)),
        "memory_request": parse_quantity(format_memory(a.memory_gib * BYTES_PER_GIB)),
    }


def step_toward(
    current: dict[str, float], target: dict[str, float], max_step_percent: float = MAX_STEP_PERCENT
) -> dict[str, float]:
    """The target, each knob clamped to within max_step_percent of today's value (replicas move by
    at least one). A knob with no current value goes straight to its target (safety then refuses)."""
    out: dict[str, float] = {}
    for knob, goal in target.items():
        now = current.get(knob)
        if now is None:
            out[knob] = goal
            continue
        allowed = abs(now) * max_step_percent / 100.0
        if knob == "replicas":
            allowed = max(allowed, safety.MIN_REPLICA_STEP)
            out[knob] = float(round(min(max(goal, now - allowed), now + allowed)))
            continue
        value = min(max(goal, now - allowed), now + allowed)
        if knob == "cpu_request":
            value = (
                math.floor(value * 1000 + 1e-9) / 1000
                if value < goal
                else math.ceil(value * 1000 - 1e-9) / 1000
            )
        elif knob == "memory_request":
            value = (
                math.floor(value / 2**20 + 1e-9) * 2**20
                if value < goal
                else math.ceil(value / 2**20 - 1e-9) * 2**20
            )
        out[knob] = value
    return out


def covers(knobs: dict[str, float], cpu_cores: float, memory_bytes: float, *, share: float = 1.0) -> bool:
    """Do these settings reserve at least `share` of the demand, for CPU and for memory?"""
    replicas = knobs.get("replicas", 0.0)
    cpu, mem = knobs.get("cpu_request"), knobs.get("memory_request")
    if cpu is None or mem is None:
        return False
    return replicas * cpu >= share * cpu_cores * COVERED and replicas * mem >= share * memory_bytes * COVERED


def sla_score(coverages: list[float]) -> float | None:
    """Share of workloads whose allocation covers their forecast demand at the SLA quantile."""
    if not coverages:
        return None
    return sum(1 for c in coverages if c >= COVERED) / len(coverages)


def cost_per_hour(knobs: dict[str, float], cpu_core_hour: float, memory_gib_hour: float) -> float:
    """Requests × replicas × price (USD/h)."""
    cpu = knobs.get("cpu_request", 0.0) * cpu_core_hour
    mem = knobs.get("memory_request", 0.0) / BYTES_PER_GIB * memory_gib_hour
    return knobs.get("replicas", 0.0) * (cpu + mem)


BINDING_REASONS: Final[dict[str, str]] = {
    "budget": "BudgetTooLow",
    "cpu": "InsufficientCPU",
    "memory": "InsufficientMemory",
    "pod-size": "PodTooLarge",
    "packing": "PackingFailed",
}
BINDING_SPEC: Final[dict[str, str]] = {
    "budget": "spec.budget.maxCostPerHour",
    "cpu": "node CPU",
    "memory": "node memory",
    "pod-size": "the largest node",
    "packing": "node packing",
}


def infeasible_condition(err: allocate.AllocationInfeasibleError) -> tuple[str, str]:
    """(reason, message) of Feasible=False: the binding constraint(s) and the shortfall of each."""
    first = err.binding[0].name if err.binding else "unknown"
    parts = []
    for b in err.binding:
        who = f" for {b.workload}" if b.workload else ""
        parts.append(
            f"{b.name}{who}: the SLA fairness floor needs {b.required:.4g} {b.unit}, "
            f"{BINDING_SPEC.get(b.name, b.name)} allows {b.available:.4g} (short by {b.shortfall:.4g} {b.unit})"
        )
    return BINDING_REASONS.get(first, "Infeasible"), "infeasible: " + "; ".join(parts)


def safety_policy(
    namespace: str,
    w: kube.Workload,
    nodes: tuple[allocate.Node, ...],
    *,
    min_replicas: int,
    interval_seconds: float,
) -> safety.SafetyPolicy:
    """Bounds from sla.minReplicas and the largest node, maxStep 50 %, cooldown = the interval."""
    target = safety.Target(namespace=namespace, kind=w.kind, name=w.name)
    max_replicas = max(DEFAULT_MAX_REPLICAS, 2 * w.replicas, min_replicas)
    return safety.SafetyPolicy(
        owner_namespace=namespace,
        target=target,
        bounds={
            "replicas": safety.KnobBounds(min=max(1, min_replicas), max=max_replicas),
            "cpu_request": safety.KnobBounds(min=MIN_CPU_PER_POD_CORES, max=max(n.cpu_cores for n in nodes)),
            "memory_request": safety.KnobBounds(
                min=MIN_MEMORY_PER_POD_BYTES, max=max(n.memory_gib for n in nodes) * BYTES_PER_GIB
            ),
        },
        max_step_percent=MAX_STEP_PERCENT,
        cooldown_seconds=max(0.0, interval_seconds - COOLDOWN_SLACK_SECONDS),
        max_changes_per_hour=max(1, math.ceil(3600.0 / max(interval_seconds - COOLDOWN_SLACK_SECONDS, 1.0))),
        min_confidence=0.0,
    )


# --- the pass ------------------------------------------------------------------------------------


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
    elsewhere: list[str] = []
    scaled = kube.autoscalers(clients, p.namespace) if refs else {}
    for ref in refs:
        try:
            w = kube.read_workload(clients, p.namespace, ref)
        except kube.TargetNotFound:
            missing.append(ref.name)
            continue
        other = kube.managed_elsewhere(w, KIND, p.namespace, p.name)
        hpa = scaled.get((w.kind, w.name))
        if other is None and hpa is not None:
            other = f"HorizontalPodAutoscaler {hpa.name}"
        if other is None:
            found.append(w)
        else:
            elsewhere.append(f"{w.name} (managed by {other})")
    if missing:
        p.condition(
            "WorkloadsFound", "False", "WorkloadMissing", f"not found: {', '.join(missing)}", event="Warning"
        )
    elif elsewhere:
        p.condition(
            "WorkloadsFound",
            "True",
            "SomeManagedElsewhere",
            f"{len(found)} workloads; left alone (their requests count as used capacity): "
            + ", ".join(elsewhere),
            event="Warning",
        )
    elif not found:
        p.condition("WorkloadsFound", "False", "NoWorkloads", "no workload matches", event="Warning")
    else:
        p.condition("WorkloadsFound", "True", "Found", f"{len(found)} workloads")
    return found


def measure(
    p: AllocPass, source: MetricSource, histories: HistoryCache, workloads: list[kube.Workload]
) -> list[Demand] | None:
    """Fetch and forecast every workload; None (with MetricsAvailable=False naming them) if any lacks data."""
    horizon = parse_duration(p.resource.spec.horizon).total_seconds()
    quantile = p.resource.spec.sla.quantile
    end = p.now.timestamp()
    start = end - demand.LOOKBACK_SECONDS
    out: list[Demand] = []
    missing: list[str] = []
    for w in workloads:
        try:
            out.append(
                demand.forecast_demand(
                    source,
                    histories,
                    p.namespace,
                    w,
                    start=start,
                    end=end,
                    horizon_seconds=horizon,
                    quantile=quantile,
                )
            )
        except MetricsUnavailable as exc:
            missing.append(f"{w.name} ({exc.reason}: {exc.message[:160]})")
        except ValueError as exc:  # too little history to forecast
            missing.append(f"{w.name} (ShortHistory: {exc})")
    if missing:
        names = ", ".join(m.split(" ", 1)[0] for m in missing)
        p.condition(
            "MetricsAvailable", "False", "NoData", "no usable metrics: " + "; ".join(missing), event="Warning"
        )
        p.waiting("MetricsUnavailable", f"no action until metrics are back for {names}")
        return None
    p.condition("MetricsAvailable", "True", "Fresh", f"CPU and memory history for {len(out)} workloads")
    for message in demand.level_shift_messages(out, {a.name: a.forecast for a in p.status.allocations}):
        p.event("Normal", "LevelShift", message)
    return out


def record_forecast_error(p: AllocPass, demands: list[Demand]) -> None:
    """Score the forecasts stored last pass against what has been measured since."""
    previous = {a.name: a.forecast for a in p.status.allocations}
    errors = [
        e
        for d in demands
        if (
            e := demand.forecast_error(
                previous.get(d.workload.name, {}), d.cpu_history, p.resource.spec.sla.quantile
            )
        )
        is not None
    ]
    if errors:
        p.status.forecast_error = round(float(np.mean(errors)), 6)


def report_current(p: AllocPass, demands: list[Demand], horizon: float) -> None:
    """Status when nothing can be allocated: today's settings stay in effect, scored on the forecast."""
    budget = p.resource.spec.budget
    previous = {a.name: a.forecast for a in p.status.allocations}
    allocations, coverages, cost = [], [], 0.0
    for d in demands:
        now = current_knobs(d.workload)
        s = status_settings(now)
        allocations.append(
            WorkloadAllocation(
                name=d.workload.name,
                replicas=d.workload.replicas,
                cpu=s.cpu or "0",
                memory=s.memory or "0",
                current_replicas=s.replicas,
                current_cpu=s.cpu,
                current_memory=s.memory,
                forecast=d.forecast_record(p.now.timestamp(), horizon, previous.get(d.workload.name, {})),
            )
        )
        coverages.append(1.0 if covers(now, d.cpu, d.memory) else 0.0)
        cost += cost_per_hour(now, budget.cpu_core_hour, budget.memory_gib_hour)
    p.status.allocations = allocations
    p.status.cost_per_hour = round(cost, 6)
    telemetry.allocation_cost(p.namespace, p.name, cost=cost, budget=budget.max_cost_per_hour)
    p.status.sla_score = sla_score(coverages)
    p.status.solver = None


def solve(
    p: AllocPass, demands: list[Demand], nodes: tuple[allocate.Node, ...]
) -> allocate.Allocation | None:
    """The allocation, or None with Feasible=False naming the binding constraint."""
    spec = p.resource.spec
    problem = allocate.AllocationProblem(
        workloads=tuple(
            workload_demand(d.workload, d.cpu, d.memory, min_replicas=spec.sla.min_replicas) for d in demands
        ),
        nodes=nodes,
        budget_usd_per_hour=spec.budget.max_cost_per_hour,
        sla_quantile=spec.sla.quantile,
        fairness_floor=spec.sla.fairness_floor_percent / 100.0,
        price_per_vcpu_hour_usd=spec.budget.cpu_core_hour,
        price_per_gib_hour_usd=spec.budget.memory_gib_hour,
    )
    allocator = allocate.Allocator(
        solver=str(spec.solver),  # type: ignore[arg-type]
        time_limit_seconds=parse_duration(spec.time_limit).total_seconds(),
        churn_weight=spec.sla.churn_weight,
        num_workers=max(1, min(allocate.DEFAULT_NUM_WORKERS, os.cpu_count() or 1)),
    )
    try:
        with telemetry.timed_step(KIND, "solve"):
            result = allocator.solve(problem)
    except allocate.AllocationInfeasibleError as err:
        reason, message = infeasible_condition(err)
        p.condition("Feasible", "False", reason, message[:1000], event="Warning")
        return None
    p.condition(
        "Feasible",
        "True",
        "Allocated",
        f"{result.solver} found an allocation at {result.cost_usd_per_hour:.4f}/h "
        f"(budget {spec.budget.max_cost_per_hour:g}/h)",
    )
    return result


def abandon_unapplied(p: AllocPass, workloads: list[kube.Workload]) -> None:
    """An Applied decision whose id never reached its workload (the operator stopped between
    recording it and patching) becomes Abandoned: it is no change for the cooldown and budgets,
    and the workload's next step is decided afresh from what it has."""
    on_target = {f"{w.kind}/{w.name}": w.annotations.get(kube.DECISION_ANNOTATION) for w in workloads}
    latest = {d.target: d for d in p.status.decisions if d.action == "Applied"}
    for target, d in latest.items():
        if target in on_target and on_target[target] != d.id:
            d.action = "Abandoned"
            d.explanation = f"{d.explanation} | never reached {target}: decided afresh"[:4000]
            p.event("Warning", "Abandoned", f"decision {d.id} was recorded but never reached {target}")


def last_change_at(p: AllocPass, target: str) -> float | None:
    for d in reversed(p.status.decisions):
        if d.target == target and d.action == "Applied":
            return datetime.fromisoformat(d.time.replace("Z", "+00:00")).timestamp()
    return None


def act(
    p: AllocPass,
    clients: kube.Clients,
    demands: list[Demand],
    result: allocate.Allocation,
    nodes: tuple[allocate.Node, ...],
) -> None:
    """Per workload: the step towards its allocation, validated; applied (Auto) or recommended."""
    spec = p.resource.spec
    interval = parse_duration(spec.interval).total_seconds()
    by_name = {a.name: a for a in result.workloads}
    stamp = p.now.strftime("%Y%m%dT%H%M%SZ")
    blocked: list[str] = []
    changed = 0
    for d in demands:
        w = d.workload
        target = f"{w.kind}/{w.name}"
        now = current_knobs(w)
        goal = target_knobs(by_name[w.name])
        step = step_toward(now, goal)
        if status_settings(step).wire() == status_settings(now).wire():
            continue  # already at its allocation
        allowed = kube.pdb_disruptions_allowed(clients, p.namespace, w.selector)
        change = safety.ProposedChange(
            target=safety.Target(namespace=p.namespace, kind=w.kind, name=w.name),
            current=now,
            proposed=step,
        )
        context = safety.SafetyContext(
            now=p.now.timestamp(),
            last_change_at=last_change_at(p, target),
            recent_change_times=tuple(
                datetime.fromisoformat(x.time.replace("Z", "+00:00")).timestamp()
                for x in p.status.decisions
                if x.target == target and x.action == "Applied"
            ),
            slo_met_now=covers(now, float(d.cpu_history.values[-1]), 0.0),
            forecast_slo_met=covers(step, d.cpu, d.memory, share=spec.sla.fairness_floor_percent / 100.0),
            confidence=1.0,
            pdb=safety.PdbStatus(present=allowed is not None, disruptions_allowed=allowed or 0),
            anomaly_active=False,
        )
        verdict = safety.validate(
            change,
            safety_policy(
                p.namespace, w, nodes, min_replicas=spec.sla.min_replicas, interval_seconds=interval
            ),
            context,
        )
        proposed = status_settings(step)
        if not verdict.accepted:
            telemetry.safety_rejected(
                KIND, p.namespace, p.name, (v.rule for v in verdict.verdicts if not v.passed)
            )
            action = "Blocked"
            blocked.append(f"{w.name}: {'; '.join(verdict.reasons())}")
        else:
            action = "Recommended" if spec.mode == Mode.RECOMMEND else "Applied"
        last = next((x for x in reversed(p.status.decisions) if x.target == target), None)
        if (
            action != "Applied"
            and last is not None
            and last.action == action
            and last.proposed == proposed.wire()
        ):
            continue  # the same recommendation or refusal as last pass: no new entry
        decision = Decision(
            id=f"{p.name}-{stamp}-{w.name}"[:253],
            time=rfc3339(p.now),
            action=action,
            target=target,
            observed={"cpuCores": round(float(d.cpu_history.values[-1]), 6)},
            current=status_settings(now).wire(),
            proposed=proposed.wire(),
            predicted={
                "cpuCores": round(d.cpu, 6),
                "memoryBytes": round(d.memory, 1),
                "coverage": round(by_name[w.name].coverage, 4),
            },
            verdicts=[RuleVerdict(rule=v.rule, passed=v.passed, reason=v.reason) for v in verdict.verdicts],
            explanation=(
                f"allocation {status_settings(goal).wire()} by {result.solver}; "
                f"step {proposed.wire()} (max {MAX_STEP_PERCENT:g}% per pass)"
                + (f" | safety: {'; '.join(verdict.reasons())}" if not verdict.accepted else "")
            )[:4000],
        )
        p.status.record(decision)
        telemetry.DECISIONS.labels(kind=KIND, action=action).inc()
        if action == "Applied":
            # Intent before act: the decision is in status before the workload changes; the
            # annotation on the workload confirms it (a restart re-derives the allocation anyway).
            p.write_intent(clients, {"decisions": [x.wire() for x in p.status.decisions]})
            crashpoints.reached("allocation-after-intent")
            owner = kube.manager_id(KIND, p.namespace, p.name)
            patch_target(clients, w, proposed, decision_id=decision.id, owner=owner)
            crashpoints.reached("allocation-after-patch")
            changed += 1
            p.event(
                "Normal",
                "Applied",
                f"{decision.id}: {proposed.wire()} towards {status_settings(goal).wire()}",
            )
        elif action == "Recommended":
            p.event("Normal", "Recommended", f"{w.name}: {status_settings(goal).wire()}")
        else:
            p.event("Warning", "Blocked", f"{w.name}: {'; '.join(verdict.reasons())}"[:1000])
    if blocked:
        p.condition("SafetyBlocked", "True", "Rejected", " | ".join(blocked)[:1000])
    else:
        p.condition("SafetyBlocked", "False", "NothingBlocked", "no proposed change was refused")
    if spec.mode == Mode.AUTO:
        p.status.message = f"cost {result.cost_usd_per_hour:.4f}/h; {changed} workloads changed this pass"


def report_allocation(
    p: AllocPass, demands: list[Demand], result: allocate.Allocation, horizon: float
) -> None:
    by_name = {a.name: a for a in result.workloads}
    previous = {a.name: a.forecast for a in p.status.allocations}
    allocations = []
    for d in demands:
        a = by_name[d.workload.name]
        now = status_settings(current_knobs(d.workload))
        allocations.append(
            WorkloadAllocation(
                name=a.name,
                replicas=a.replicas,
                cpu=format_cpu(a.cpu_cores),
                memory=format_memory(a.memory_gib * BYTES_PER_GIB),
                current_replicas=now.replicas,
                current_cpu=now.cpu,
                current_memory=now.memory,
                forecast=d.forecast_record(p.now.timestamp(), horizon, previous.get(d.workload.name, {})),
            )
        )
    p.status.allocations = allocations
    p.status.cost_per_hour = round(result.cost_usd_per_hour, 6)
    telemetry.allocation_cost(
        p.namespace, p.name, cost=result.cost_usd_per_hour, budget=p.resource.spec.budget.max_cost_per_hour
    )
    p.status.sla_score = sla_score([a.coverage for a in result.workloads])
    p.status.solver = SolverReport(
        name=result.solver if result.mode != "Portfolio" else f"Portfolio/{result.solver}",
        objective=round(result.objective, 6),
        bound=round(result.bound, 6) if result.bound is not None else None,
        gap=round(result.gap, 6) if result.gap is not None else None,
        seconds=round(result.solve_seconds, 3),
        annealing_contribution=round(result.annealing_contribution, 4),
    )


def run_pass(p: AllocPass, memo: kopf.Memo) -> None:
    """Discover → measure and forecast → allocate → validate → apply or recommend → report."""
    clients: kube.Clients = memo.clients
    source: MetricSource = memo.metrics
    alloc = p.resource
    telemetry.resource_seen(KIND, p.namespace, p.name)
    with telemetry.timed_step(KIND, "discover"):
        workloads = discover_workloads(p, clients)
        selector = ",".join(f"{k}={v}" for k, v in sorted(alloc.spec.capacity.node_selector.items()))
        nodes = [n for n in kube.list_nodes(clients, selector) if n.ready and not n.unschedulable]
    p.status.workload_count = len(workloads)
    abandon_unapplied(p, workloads)
    if not workloads:
        p.waiting("NoWorkloads", "no workloads found: nothing to allocate")
        return
    if not nodes:
        p.condition(
            "CapacityKnown", "False", "NoNodes", "no Ready, schedulable node matches", event="Warning"
        )
        p.waiting("NoNodes", "no schedulable nodes: no capacity to allocate")
        return
    names = {n.name for n in nodes}
    used = {
        node: use
        for node, use in requests_of_others(
            kube.scheduled_pod_requests(clients), p.namespace, workloads
        ).items()
        if node in names
    }
    capacity = node_capacity(nodes, alloc.spec.capacity, used)
    cpu = sum(n.cpu_cores for n in capacity)
    memory = sum(n.memory_gib for n in capacity)
    others_cpu = sum(c for c, _ in used.values())
    others_mem = sum(m for _, m in used.values()) / BYTES_PER_GIB
    p.condition(
        "CapacityKnown",
        "True",
        "NodesFound",
        f"{len(nodes)} nodes, {cpu:.2f} cores, {memory:.1f} GiB available after "
        f"{alloc.spec.capacity.reserve_percent:g}% reserve and {others_cpu:.2f} cores / "
        f"{others_mem:.1f} GiB requested by other pods",
    )
    if alloc.spec.suspend:
        p.condition("Ready", "True", "Suspended", "suspended: no allocation")
        p.status.phase = "Suspended"
        p.status.message = "suspended"
        return
    with telemetry.timed_step(KIND, "forecast"):
        demands = measure(p, source, memo.histories, workloads)
    if demands is None:
        return
    horizon = parse_duration(alloc.spec.horizon).total_seconds()
    record_forecast_error(p, demands)
    result = solve(p, demands, capacity)
    if result is None:
        report_current(p, demands, horizon)
        feasible = p.status.condition("Feasible")
        p.condition("SafetyBlocked", "False", "NothingProposed", "infeasible: no change proposed")
        p.condition("Ready", "False", "Infeasible", "allocation infeasible: current settings kept")
        p.status.phase = "Infeasible"
        p.status.message = (feasible.message if feasible else "infeasible")[:300]
        return
    report_allocation(p, demands, result, horizon)
    p.condition("Ready", "True", "Allocated", f"{len(demands)} workloads allocated on {len(nodes)} nodes")
    p.status.phase = "Recommending" if alloc.spec.mode == Mode.RECOMMEND else "Allocating"
    p.status.message = f"cost {result.cost_usd_per_hour:.4f}/h, SLA score {p.status.sla_score}"
    try:
        with telemetry.timed_step(KIND, "apply"):
            act(p, clients, demands, result, capacity)
    except (kube.Conflict, kube.TargetNotFound) as exc:
        p.waiting("ApplyFailed", f"a workload changed while applying; retrying next pass: {exc}")


reconcile = wiring.make_reconciler(
    kind=ResourceAllocation,
    status_type=ResourceAllocationStatus,
    spec_problems=spec_problems,
    run_pass=run_pass,
)


def register(registry: kopf.OperatorRegistry, settings: OperatorSettings) -> None:
    wiring.register_timer(registry, PLURAL, reconcile, interval=settings.tick_seconds, id="reconcile")
    telemetry.register_cleanup(registry, PLURAL, KIND)
