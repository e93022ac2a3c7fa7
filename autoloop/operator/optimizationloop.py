"""OptimizationLoop handlers: each pass reads the target and its metrics, decides, acts, reports."""

from __future__ import annotations

from typing import Final

import kopf

from autoloop.api.common import Mode, format_cpu, format_memory
from autoloop.api.optimizationloop import (
    BuiltinMetric,
    OptimizationLoop,
    OptimizationLoopStatus,
    Settings,
)
from autoloop.metrics.queries import QueryRefused, builtin_query, scope_query
from autoloop.metrics.source import MetricSource, MetricsUnavailable
from autoloop.operator import kube, telemetry, wiring
from autoloop.operator.settings import OperatorSettings

KIND: Final = OptimizationLoop.KIND
PLURAL: Final = OptimizationLoop.PLURAL
BYTES_PER_GIB: Final = 2.0**30


LoopPass = wiring.Pass[OptimizationLoop, OptimizationLoopStatus]


def spec_problems(loop: OptimizationLoop, namespace: str) -> list[str]:
    """Semantic errors the schema cannot express; empty when the spec is usable."""
    problems: list[str] = []
    for objective in loop.spec.objectives:
        if objective.query is not None:
            try:
                scope_query(objective.query, namespace=namespace)
            except QueryRefused as exc:
                problems.append(f"objective {objective.name}: {exc}")
        if objective.metric == BuiltinMetric.COST and objective.target is not None and objective.target <= 0:
            problems.append(f"objective {objective.name}: a cost target must be positive")
    knobs = loop.spec.knobs
    if knobs.replicas is not None and knobs.replicas.max < 1:
        problems.append("knobs.replicas.max must be at least 1")
    return problems


def objective_query(loop: OptimizationLoop, objective_name: str, namespace: str) -> str | None:
    """The PromQL for one objective (None for Cost, which autoloop computes from requests)."""
    objective = next(o for o in loop.spec.objectives if o.name == objective_name)
    if objective.query is not None:
        return scope_query(objective.query, namespace=namespace)
    if objective.metric == BuiltinMetric.COST:
        return None
    return builtin_query(str(objective.metric), namespace=namespace, workload=loop.spec.target_ref.name)


def cost_per_hour(loop: OptimizationLoop, workload: kube.Workload) -> float:
    """Requests × replicas × price: what the workload reserves, whatever it uses."""
    price = loop.spec.pricing
    cpu = (workload.cpu_request or 0.0) * price.cpu_core_hour
    memory = (workload.memory_request or 0.0) / BYTES_PER_GIB * price.memory_gib_hour
    return workload.replicas * (cpu + memory)


def observe(
    loop: OptimizationLoop, workload: kube.Workload, source: MetricSource, namespace: str
) -> dict[str, float]:
    """The current value of every objective; MetricsUnavailable names the first that has none."""
    values: dict[str, float] = {}
    for objective in loop.spec.objectives:
        query = objective_query(loop, objective.name, namespace)
        if query is None:
            values[objective.name] = cost_per_hour(loop, workload)
            continue
        try:
            values[objective.name] = source.instant(query)
        except MetricsUnavailable as exc:
            raise MetricsUnavailable(exc.reason, f"objective {objective.name}: {exc.message}") from exc
    return values


def current_settings(workload: kube.Workload) -> Settings:
    return Settings(
        replicas=workload.replicas,
        cpu=format_cpu(workload.cpu_request) if workload.cpu_request is not None else None,
        memory=format_memory(workload.memory_request) if workload.memory_request is not None else None,
    )


def run_pass(p: LoopPass, memo: kopf.Memo) -> None:
    """One iteration: read target → observe → (decide → validate → act) → report."""
    clients: kube.Clients = memo.clients
    source: MetricSource = memo.metrics
    loop = p.resource
    spec = loop.spec
    with telemetry.timed_step(KIND, "read_target"):
        try:
            workload = kube.read_workload(clients, p.namespace, spec.target_ref, spec.knobs.container)
        except kube.TargetNotFound as exc:
            p.condition("TargetFound", "False", "TargetNotFound", str(exc), event="Warning")
            p.waiting("TargetNotFound", str(exc))
            return
    p.condition("TargetFound", "True", "Found", f"{workload.kind} {workload.name} found")
    p.status.current = current_settings(workload)
    if p.status.baseline is None:
        p.status.baseline = p.status.current

    with telemetry.timed_step(KIND, "observe"):
        try:
            observed = observe(loop, workload, source, p.namespace)
        except MetricsUnavailable as exc:
            p.condition("MetricsAvailable", "False", exc.reason, exc.message, event="Warning")
            p.waiting("MetricsUnavailable", f"no action until the metrics are back: {exc.message}")
            return
    p.condition("MetricsAvailable", "True", "Fresh", f"{len(observed)} objectives measured")
    p.status.observed = {k: round(v, 6) for k, v in observed.items()}
    for objective, value in observed.items():
        telemetry.OBJECTIVE.labels(namespace=p.namespace, name=p.name, objective=objective).set(value)

    if spec.suspend:
        p.condition("Ready", "True", "Suspended", "suspended: observing only, no actions")
        p.status.phase = "Suspended"
        p.status.message = "suspended"
        return
    p.condition("Ready", "True", "Observing", "target found and metrics available")
    p.status.phase = "Recommending" if spec.mode == Mode.RECOMMEND else "Optimizing"
    p.status.message = ", ".join(f"{k}={v:.4g}" for k, v in observed.items())


reconcile = wiring.make_reconciler(
    kind=OptimizationLoop, status_type=OptimizationLoopStatus, spec_problems=spec_problems, run_pass=run_pass
)


def register(registry: kopf.OperatorRegistry, settings: OperatorSettings) -> None:
    wiring.register_timer(registry, PLURAL, reconcile, interval=settings.tick_seconds, id="reconcile")
