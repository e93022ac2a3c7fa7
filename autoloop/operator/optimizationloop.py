"""OptimizationLoop handlers: each pass reads the target and its metrics, decides, acts, reports."""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from typing import Any, Final

import kopf
import numpy as np
from pydantic import ValidationError

from autoloop.api.common import (
    GROUP,
    Decision,
    Mode,
    RuleVerdict,
    TargetRef,
    format_cpu,
    format_memory,
    parse_duration,
    parse_quantity,
    parse_time,
    rfc3339,
)
from autoloop.api.optimizationloop import (
    BuiltinMetric,
    OptimizationLoop,
    OptimizationLoopStatus,
    Recommendation,
    Settings,
    pack_engine_state,
    unpack_engine_state,
)
from autoloop.engines import anomaly, rca, recommend, safety, usage_loop
from autoloop.engines import loop as engine
from autoloop.engines.loop.models import sig
from autoloop.metrics.history_cache import HistoryCache
from autoloop.metrics.queries import QueryRefused, builtin_query, scope_query, usage_query
from autoloop.metrics.services import fetch_service_series
from autoloop.metrics.source import MetricSource, MetricsUnavailable, Series
from autoloop.metrics.workload import SignalQueries, fetch_windows
from autoloop.operator import crashpoints, kube, telemetry, wiring
from autoloop.operator.refits import BackgroundRefits
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


APPROVE_ANNOTATION: Final = f"{GROUP}/approve"
"""Set on a loop to a recommendation's decision id to have autoloop apply exactly that decision once."""
REAPPLY_WITHIN: Final = timedelta(minutes=10)
"""A recorded-but-unconfirmed decision older than this is abandoned instead of applied late."""
LATENCY_METRICS: Final = (BuiltinMetric.LATENCY_P95, BuiltinMetric.LATENCY_P99)
ANALYSIS_WINDOW_SECONDS: Final = 1800.0
"""History the anomaly detector sees each pass: its reference plus the recent samples it tests."""
TEST_WINDOW_SECONDS: Final = 300.0
"""Only the last 5 minutes are tested, unless an ongoing anomaly started earlier."""


def current_settings(workload: kube.Workload) -> Settings:
    return Settings(
        replicas=workload.replicas,
        cpu=format_cpu(workload.cpu_request) if workload.cpu_request is not None else None,
        memory=format_memory(workload.memory_request) if workload.memory_request is not None else None,
    )


def engine_settings(workload: kube.Workload) -> dict[str, float]:
    """The target's settings in base units, as the loop engine reads them."""
    out = {"replicas": float(workload.replicas)}
    for key, value in (
        ("cpu_request", workload.cpu_request),
        ("memory_request", workload.memory_request),
        ("cpu_limit", workload.cpu_limit),
        ("memory_limit", workload.memory_limit),
    ):
        if value is not None:
            out[key] = value
    return out


def status_settings(settings: dict[str, float]) -> Settings:
    return Settings(
        replicas=round(settings["replicas"]) if "replicas" in settings else None,
        cpu=format_cpu(settings["cpu_request"]) if "cpu_request" in settings else None,
        memory=format_memory(settings["memory_request"]) if "memory_request" in settings else None,
    )


def engine_config(loop: OptimizationLoop, namespace: str) -> engine.LoopConfig:
    """The loop's spec in the loop engine's terms (base units, one latency and one error SLO)."""
    spec = loop.spec
    bounds: dict[str, tuple[float, float]] = {}
    if spec.knobs.replicas is not None:
        bounds["replicas"] = (float(max(spec.knobs.replicas.min, 1)), float(spec.knobs.replicas.max))
    if spec.knobs.cpu is not None:
        bounds["cpu_request"] = (parse_quantity(spec.knobs.cpu.min), parse_quantity(spec.knobs.cpu.max))
    if spec.knobs.memory is not None:
        bounds["memory_request"] = (
            parse_quantity(spec.knobs.memory.min),
            parse_quantity(spec.knobs.memory.max),
        )
    latency = next((o for o in spec.objectives if o.metric in LATENCY_METRICS or o.name == "latency"), None)
    errors = next(
        (o for o in spec.objectives if o.metric == BuiltinMetric.ERROR_RATIO or o.name == "errors"), None
    )
    cost = next((o for o in spec.objectives if o.metric == BuiltinMetric.COST), None)
    defaults = engine.LoopConfig.model_fields
    return engine.LoopConfig(
        namespace=namespace,
        target=safety.Target(
            namespace=namespace, kind=spec.target_ref.kind, name=spec.target_ref.name, api_version="apps/v1"
        ),
        mode=str(spec.mode),
        bounds=bounds,
        latency_slo_seconds=(
            latency.target if latency and latency.target else defaults["latency_slo_seconds"].default
        ),
        error_slo_ratio=errors.target if errors and errors.target else defaults["error_slo_ratio"].default,
        weight_cost=cost.weight if cost else 0.0,
        weight_latency=latency.weight if latency else 1.0,
        max_step_percent=spec.safety.max_step_percent,
        cooldown_seconds=parse_duration(spec.safety.cooldown).total_seconds(),
        max_changes_per_hour=spec.safety.max_changes_per_hour,
        max_changes_per_day=spec.safety.max_changes_per_day,
        min_confidence=spec.safety.min_confidence,
        settle_seconds=parse_duration(spec.safety.rollback.settle_window).total_seconds(),
        refit_interval_seconds=parse_duration(spec.learning.refit_interval).total_seconds(),
        cpu_price_per_core_hour=spec.pricing.cpu_core_hour,
        memory_price_per_gib_hour=spec.pricing.memory_gib_hour,
    )


def signal_queries(loop: OptimizationLoop, namespace: str) -> SignalQueries:
    """Built-in signal queries, with the latency or error query replaced by an objective's own PromQL."""
    base = SignalQueries.builtin(namespace=namespace, workload=loop.spec.target_ref.name)
    overrides: dict[str, str] = {}
    for o in loop.spec.objectives:
        if o.query is not None and o.name in ("latency", "errors"):
            key = "latency_p95" if o.name == "latency" else "error_ratio"
            overrides[key] = scope_query(o.query, namespace=namespace)
        elif o.metric == BuiltinMetric.LATENCY_P99:
            overrides["latency_p95"] = builtin_query(
                "LatencyP99", namespace=namespace, workload=loop.spec.target_ref.name, window="1m"
            )
    return replace(base, **overrides)


def workload_patch(
    workload: kube.Workload, proposed: Settings, *, decision_id: str, owner: str
) -> dict[str, Any]:
    """A patch that moves the target to `proposed`, keeping each limit's ratio to its request."""
    resources: dict[str, dict[str, str]] = {}
    for key, value, request, limit in (
        ("cpu", proposed.cpu, workload.cpu_request, workload.cpu_limit),
        ("memory", proposed.memory, workload.memory_request, workload.memory_limit),
    ):
        if value is None or (request is not None and abs(parse_quantity(value) - request) < 1e-9):
            continue
        resources.setdefault("requests", {})[key] = value
        if limit is not None and request:
            scaled = parse_quantity(value) * limit / request
            resources.setdefault("limits", {})[key] = (
                format_cpu(scaled) if key == "cpu" else format_memory(scaled)
            )
    replicas = proposed.replicas if proposed.replicas not in (None, workload.replicas) else None
    return kube.build_workload_patch(
        container=workload.container,
        decision_id=decision_id,
        owner=owner,
        replicas=replicas,
        resources=resources or None,
        resource_version=workload.resource_version,
    )


PATCH_ATTEMPTS: Final = 3


def patch_target(
    clients: kube.Clients,
    workload: kube.Workload,
    proposed: Settings,
    *,
    decision_id: str,
    owner: str,
) -> None:
    """Patch the target to `proposed`, only from the settings the decision saw. The patch carries
    the resourceVersion read; on a 409 the target is read again: if only its status or other fields
    moved (a rollout in progress), retry; if its replicas or resources changed, raise Conflict."""
    ref = TargetRef(kind=workload.kind, name=workload.name)
    seen = current_settings(workload).wire()
    for _ in range(PATCH_ATTEMPTS):
        patch = workload_patch(workload, proposed, decision_id=decision_id, owner=owner)
        try:
            kube.patch_workload(clients, workload.namespace, ref, patch)
            return
        except kube.Conflict:
            workload = kube.read_workload(clients, workload.namespace, ref, workload.container)
            if not settings_unchanged(seen, workload):
                raise kube.Conflict(
                    f"{workload.kind} {workload.name} changed to {current_settings(workload).wire()} "
                    f"since the decision saw {seen}"
                ) from None
    raise kube.Conflict(f"{workload.kind} {workload.name} kept changing: {PATCH_ATTEMPTS} attempts refused")


def _record(p: LoopPass, action: str, d: engine.Decision, workload: kube.Workload) -> Decision:
    explanation = d.explanation
    text = explanation.proposed
    if explanation.validator and explanation.validator != ["accepted"] and not d.verdicts:
        # Said once: the verdicts carry the reasons of the rules that refused or exempted it.
        text += " | safety: " + "; ".join(explanation.validator)
    if explanation.policy_rule:
        text += f" | learned policy: {explanation.policy_rule}"
    decision = Decision(
        id=d.id,
        time=rfc3339(p.now),
        action=action,
        target=f"{workload.kind}/{workload.name}",
        # Four significant digits: what a person reads, and a status within its budget.
        observed={k: sig(v, 4) for k, v in explanation.saw.items()},
        current=current_settings(workload).wire(),
        proposed=status_settings(d.settings).wire() if d.settings else {},
        predicted={k: sig(v, 4) for k, v in explanation.predicted.items()},
        verdicts=[RuleVerdict(rule=v.rule, passed=v.passed, reason=v.reason) for v in d.verdicts],
        explanation=text[:4000],
    )
    p.status.record(decision)
    telemetry.DECISIONS.labels(kind=KIND, action=action).inc()
    return decision


def apply_decision(p: LoopPass, clients: kube.Clients, workload: kube.Workload, decision: Decision) -> None:
    """Intent, act, confirm: record the pending id in status, patch the target with it, then clear it."""
    crashpoints.reached("loop-before-intent")
    p.status.pending_decision = decision.id
    intent = {
        "pendingDecision": decision.id,
        "decisions": [d.wire() for d in p.status.decisions],
        "engineState": p.status.engine_state,
    }
    p.write_intent(clients, intent)
    crashpoints.reached("loop-after-intent")
    proposed = Settings.model_validate(decision.proposed)
    owner = kube.manager_id(KIND, p.namespace, p.name)
    patch_target(clients, workload, proposed, decision_id=decision.id, owner=owner)
    crashpoints.reached("loop-after-patch")
    p.status.pending_decision = None
    note_change(p, p.now)


def remembered_changes(p: LoopPass) -> tuple[float, ...]:
    """Unix times of the applied changes the budgets count: the status keeps the last day's; the
    decisions hold the last hour's too (a status written before `recentChangeTimes` existed)."""
    kept = {parse_time(t).timestamp() for t in p.status.recent_change_times}
    recorded = {
        parse_time(d.time).timestamp()
        for d in p.status.decisions
        if d.action in APPLIED_ACTIONS and p.now - parse_time(d.time) <= timedelta(hours=1)
    }
    return tuple(sorted(kept | recorded))


def note_change(p: LoopPass, at: datetime) -> None:
    """Remember an applied change for the cooldown and the hourly and daily change budgets (the
    same last-day window and bound as the loop engine's own change times)."""
    p.status.last_change_time = rfc3339(at)
    times = [parse_time(t).timestamp() for t in p.status.recent_change_times]
    kept = engine.change_times_after(times, at.timestamp())
    p.status.recent_change_times = [rfc3339(datetime.fromtimestamp(t, UTC)) for t in kept]


def settings_unchanged(recorded: dict[str, Any], workload: kube.Workload) -> bool:
    """The target still has the settings a decision was made from (each recorded knob)."""
    now = current_settings(workload).wire()
    for key, value in recorded.items():
        if key not in now:
            return False
        if key == "replicas":
            if int(value) != int(now[key]):
                return False
        elif abs(parse_quantity(str(value)) - parse_quantity(str(now[key]))) > 1e-9 * max(
            1.0, parse_quantity(str(value))
        ):
            return False
    return True


def resolve_pending(p: LoopPass, clients: kube.Clients, workload: kube.Workload) -> None:
    """After a crash or a 409 between intent and confirm: the target's annotation says whether it
    happened; if not, apply it now, but only onto the settings it was decided from."""
    pending = p.status.pending_decision
    if pending is None:
        return
    decision = next((d for d in p.status.decisions if d.id == pending), None)
    if workload.annotations.get(kube.DECISION_ANNOTATION) == pending:
        p.status.pending_decision = None
        note_change(p, parse_time(decision.time) if decision else p.now)
        p.event("Normal", "Confirmed", f"decision {pending} found applied on the target after a restart")
        return
    recorded_at = parse_time(decision.time) if decision else None
    if decision is None or recorded_at is None or p.now - recorded_at > REAPPLY_WITHIN:
        p.status.pending_decision = None
        p.event(
            "Warning", "Abandoned", f"decision {pending} was recorded but never applied; too old to apply now"
        )
        return
    if not settings_unchanged(decision.current, workload):
        p.status.pending_decision = None
        p.event(
            "Warning",
            "Abandoned",
            f"decision {pending} was made from {decision.current}, but the target now has "
            f"{current_settings(workload).wire()} (changed by someone else); not applied",
        )
        return
    apply_decision(p, clients, workload, decision)
    p.event("Normal", "Applied", f"decision {pending} applied after a restart: {decision.proposed}")


def approve_recommendation(p: LoopPass, clients: kube.Clients, workload: kube.Workload) -> bool:
    """Apply the recorded recommendation named by the approve annotation, exactly once; True if it
    did. Any Recommended decision still in the history can be approved, not only the newest: a pass
    may record a newer one between the user reading an id and annotating it. Exactly once: its
    `-approved` decision is recorded first, and the recommendation leaves the bounded history
    before the approval does."""
    wanted = p.annotations.get(APPROVE_ANNOTATION)
    if not wanted or any(d.id == f"{wanted}-approved" for d in p.status.decisions):
        return False
    recorded = next((d for d in p.status.decisions if d.id == wanted and d.action == "Recommended"), None)
    if recorded is None:
        return False
    decision = Decision(
        id=f"{wanted}-approved",
        time=rfc3339(p.now),
        action="Approved",
        target=f"{workload.kind}/{workload.name}",
        current=current_settings(workload).wire(),
        proposed=recorded.proposed,
        explanation=f"approved by annotation {APPROVE_ANNOTATION}={wanted}",
    )
    p.status.record(decision)
    rec = p.status.recommendation
    if rec is not None and rec.decision_id == wanted:
        rec.approved = True
    apply_decision(p, clients, workload, decision)
    telemetry.DECISIONS.labels(kind=KIND, action="Approved").inc()
    p.event("Normal", "Approved", f"applied approved recommendation {wanted}: {decision.proposed}")
    return True


def update_improvement(p: LoopPass, observed: dict[str, float]) -> None:
    """Change of each objective against the starting point, in percent (positive is better)."""
    if not p.status.baseline_observed:
        p.status.baseline_observed = {k: sig(v, 6) for k, v in observed.items()}
    improvement: dict[str, float] = {}
    for o in p.resource.spec.objectives:
        base, now = p.status.baseline_observed.get(o.name), observed.get(o.name)
        if base is None or now is None or abs(base) < 1e-12:
            continue
        change = (base - now) / abs(base) * 100.0
        improvement[o.name] = round(change if o.direction == "Minimize" else -change, 2)
    p.status.improvement = improvement


def detect_anomalies(p: LoopPass, source: MetricSource) -> bool:
    """Detect anomalies around the target and rank root causes; True while one is unexplained."""
    loop = p.resource
    target = loop.spec.target_ref.name
    services = [target, *[d for d in loop.spec.dependencies if d != target]]
    interval = parse_duration(loop.spec.interval).total_seconds()
    end = p.now.timestamp()
    series, _missing = fetch_service_series(
        source,
        namespace=p.namespace,
        services=services,
        end=end,
        window_seconds=ANALYSIS_WINDOW_SECONDS,
        step_seconds=max(min(interval / 2, 15.0), 1.0),
    )
    if not series:
        return False
    # Keep the reference clean: while an anomaly lasts, the tested part starts before it.
    # A young workload has little history: at least half of what there is serves as reference.
    first = min(ts[0] for metrics in series.values() for ts, _ in metrics.values() if ts)
    ongoing = [float(a["start"]) for a in p.status.anomalies if a.get("end") is None and "start" in a]
    test_start = min([max(end - TEST_WINDOW_SECONDS, first + (end - first) / 2), *ongoing])
    report = anomaly.detect(series, test_start=test_start)
    found = report.to_dict()["anomalies"]  # ongoing first: their starts keep the reference clean
    p.status.anomalies = sorted(found, key=lambda a: a.get("end") is not None)[: p.status.ANOMALIES_KEPT]
    result: rca.RCAResult | None = None
    if report.active:
        result = rca.analyze(series, {target: services[1:]}, window=(test_start, end))
        previous_causes = (p.status.analysis or {}).get("causes") or [{}]
        previous_top = previous_causes[0].get("service")
        p.status.analysis = bounded_analysis(result.to_dict())
        if result.top is not None and result.top.service != previous_top:
            p.event("Warning", "RootCause", result.summary()[:1000])
        p.condition("AnomalyDetected", "True", "Active", report.summary()[:1000])
    else:
        p.condition("AnomalyDetected", "False", "None", "no active anomaly")
    return rca.unexplained_anomaly(report, result) if loop.spec.safety.freeze_on_anomaly else False


def bounded_analysis(analysis: dict[str, Any], causes: int = 3, evidence: int = 3) -> dict[str, Any]:
    """The root-cause analysis as status keeps it: the top causes, each with its strongest evidence."""
    top = [
        {**c, "evidence": list(c.get("evidence", []))[:evidence]} for c in analysis.get("causes", [])[:causes]
    ]
    return {**analysis, "causes": top}


def run_strategic_refit(
    p: LoopPass,
    config: engine.LoopConfig,
    state: engine.LoopState,
    refits: BackgroundRefits[engine.StrategicRefit],
    refit: Callable[[engine.LoopConfig, engine.LoopState], engine.StrategicRefit] = engine.strategic_refit,
) -> engine.LoopState:
    """Adopt a refit the worker finished; start one when due. Never waits for the worker."""
    key = f"{p.namespace}/{p.name}"
    finished = refits.collect(key)
    if finished is not None:
        state, adopted = engine.adopt_refit(state, finished, p.now.timestamp())
        if adopted:
            p.event("Normal", "ModelRefit", f"strategic refit: {finished.message}")
        return state
    if engine.refit_due(config, state, p.now.timestamp()):
        snapshot = state.model_copy(deep=True)
        refits.submit(key, lambda: refit(config, snapshot))
    return state


USAGE_HISTORY: Final = timedelta(days=recommend.DEFAULT_HISTORY_DAYS)
APPLIED_ACTIONS: Final = frozenset({"Applied", "RolledBack", "Approved"})


def metrics_unavailable(p: LoopPass, exc: MetricsUnavailable) -> None:
    """No action until the metrics are back: say which and why."""
    p.condition("MetricsAvailable", "False", exc.reason, exc.message, event="Warning")
    p.waiting("MetricsUnavailable", f"no action until the metrics are back: {exc.message}")


def pdb_status(clients: kube.Clients, namespace: str, workload: kube.Workload) -> safety.PdbStatus:
    allowed = kube.pdb_disruptions_allowed(clients, namespace, workload.selector)
    return safety.PdbStatus(present=allowed is not None, disruptions_allowed=allowed or 0)


def is_usage_loop(loop: OptimizationLoop) -> bool:
    """A loop with no latency or error objective has no SLO to judge by: it is rightsized from usage."""
    return not any(
        o.metric in (*LATENCY_METRICS, BuiltinMetric.ERROR_RATIO) or o.name in ("latency", "errors")
        for o in loop.spec.objectives
    )


def fetch_usage(
    source: MetricSource, loop: OptimizationLoop, namespace: str, end: float, histories: HistoryCache
) -> dict[str, Series]:
    """Per-pod CPU (mean over pods) and memory (largest pod) over the recommender's history (14
    days), read like a ResourceAllocation's demand history (a young workload's short history at a
    finer step); after the first pass only the newest samples are read (`histories`)."""
    name = loop.spec.target_ref.name
    start = end - USAGE_HISTORY.total_seconds()
    return {
        "cpu": histories.fetch(
            source, usage_query("cpu", namespace=namespace, workload=name), start=start, end=end
        ),
        "memory": histories.fetch(
            source,
            usage_query("memory", namespace=namespace, workload=name, aggregate="max"),
            start=start,
            end=end,
        ),
    }


def oom_times(source: MetricSource, loop: OptimizationLoop, namespace: str, end: float) -> list[float]:
    """When OOM kills happened over the usage history (one timestamp per kill, 5-minute resolution)."""
    query = SignalQueries.builtin(
        namespace=namespace, workload=loop.spec.target_ref.name, rate_window="5m"
    ).oom_kills
    try:
        series = source.range(query, start=end - USAGE_HISTORY.total_seconds(), end=end, step=300.0)
    except MetricsUnavailable:
        return []  # no OOM counters in this cluster: none seen
    times: list[float] = []
    for t, v in zip(series.timestamps, series.values, strict=True):
        if math.isfinite(float(v)) and v >= 0.5:
            times.extend([float(t)] * round(float(v)))
    return times


def usage_decision(
    p: LoopPass,
    clients: kube.Clients,
    source: MetricSource,
    workload: kube.Workload,
    config: engine.LoopConfig,
    anomaly_active: bool,
    histories: HistoryCache,
) -> engine.Decision | None:
    """The usage loop's decision for this pass; None (and a waiting condition) without metrics."""
    end = p.now.timestamp()
    try:
        usage = fetch_usage(source, p.resource, p.namespace, end, histories)
    except MetricsUnavailable as exc:
        metrics_unavailable(p, exc)
        return None
    cpu, memory = usage["cpu"], usage["memory"]
    times = np.union1d(cpu.timestamps, memory.timestamps)
    last = parse_time(p.status.last_change_time).timestamp() if p.status.last_change_time else None
    observation = usage_loop.UsageObservation(
        settings=engine_settings(workload),
        timestamps=[float(t) for t in times],
        cpu_per_pod=[
            float(x) for x in np.interp(times, cpu.timestamps, cpu.values, left=np.nan, right=np.nan)
        ],
        memory_per_pod=[
            float(x) for x in np.interp(times, memory.timestamps, memory.values, left=np.nan, right=np.nan)
        ],
        oom_times=oom_times(source, p.resource, p.namespace, end),
        last_change_at=last,
        recent_change_times=remembered_changes(p),
        anomaly_active=anomaly_active,
        pdb=pdb_status(clients, p.namespace, workload),
    )
    decision_id = f"{p.resource.spec.target_ref.name}-u{int(end)}"
    return usage_loop.usage_step(config, observation, end, decision_id)


def leave_to_autoscaler(
    p: LoopPass, clients: kube.Clients, workload: kube.Workload, config: engine.LoopConfig
) -> engine.LoopConfig:
    """An HPA on the target owns its replicas, and the requests its utilisation targets are
    relative to (as VPA's docs warn): those knobs are pinned at their current values."""
    hpa = kube.autoscalers(clients, p.namespace).get((workload.kind, workload.name))
    if hpa is None:
        p.condition("AutoscalerPresent", "False", "None", "no HorizontalPodAutoscaler scales the target")
        return config
    pinned = ["replicas", *(f"{r}_request" for r in sorted(hpa.resources))]
    current = engine_settings(workload)
    bounds = dict(config.bounds)
    held = [k for k in pinned if k in bounds and k in current]
    for knob in held:
        bounds[knob] = (current[knob], current[knob])
    message = (
        f"HorizontalPodAutoscaler {hpa.name} scales {workload.name}"
        + (f" on {', '.join(sorted(hpa.resources))}" if hpa.resources else "")
        + f": {', '.join(held) or 'nothing declared'} left to it"
    )
    p.condition("AutoscalerPresent", "True", "KnobsPinned", message, event="Warning")
    return config.model_copy(update={"bounds": bounds})


def decide(
    p: LoopPass,
    clients: kube.Clients,
    source: MetricSource,
    workload: kube.Workload,
    refits: BackgroundRefits[engine.StrategicRefit],
    histories: HistoryCache,
) -> None:
    """Run one engine step over the interval's windows and act on its decision."""
    loop = p.resource
    config = engine_config(loop, p.namespace).model_copy(update={"inline_refit": False})
    config = leave_to_autoscaler(p, clients, workload, config)
    with telemetry.timed_step(KIND, "detect_anomalies"):
        anomaly_active = detect_anomalies(p, source)
    if is_usage_loop(loop):
        with telemetry.timed_step(KIND, "decide"):
            found = usage_decision(p, clients, source, workload, config, anomaly_active, histories)
        if found is not None:
            act_on(p, clients, workload, found)
        return
    interval = parse_duration(loop.spec.interval).total_seconds()
    with telemetry.timed_step(KIND, "fetch_windows"):
        try:
            windows = fetch_windows(
                source,
                signal_queries(loop, p.namespace),
                end=p.now.timestamp(),
                window_seconds=max(interval, 60.0),
                step_seconds=max(min(interval / 4, 15.0), 1.0),
            )
        except MetricsUnavailable as exc:
            metrics_unavailable(p, exc)
            return
    ended = kube.recent_restarts(clients, p.namespace, workload.selector, since=p.now.timestamp() - interval)
    observation = engine.Observation(
        settings=engine_settings(workload),
        rps=windows.rps,
        latency_p95=windows.latency_p95,
        error_ratio=windows.error_ratio,
        cpu_per_pod=windows.cpu_per_pod,
        memory_per_pod=windows.memory_per_pod,
        oom_kills=max(windows.oom_kills, ended.oom_kills),
        restarts=ended.restarts,
        rollout_complete=kube.rollout_complete(workload),
        ready_fraction=min(workload.updated_replicas, workload.ready_replicas) / max(workload.replicas, 1),
        anomaly_active=anomaly_active,
        pdb=pdb_status(clients, p.namespace, workload),
    )
    try:
        state = engine.LoopState.model_validate(unpack_engine_state(p.status.engine_state))
    except (ValidationError, ValueError):
        state = engine.LoopState()  # an unreadable state (older version) restarts learning, safely
    state = run_strategic_refit(p, config, state, refits)
    with telemetry.timed_step(KIND, "decide"):
        d, state = engine.LoopEngine().step(config, state, observation, p.now.timestamp())
    # Fields at their defaults are left out (a sixth of it): reading back restores them.
    p.status.engine_state = pack_engine_state(state.model_dump(mode="json", exclude_defaults=True))
    p.status.model_version = f"response-model-v{state.model.version}"
    for recorded in p.status.decisions:  # measured outcomes arrive on later passes
        measured = next((e.explanation.measured for e in state.decisions if e.id == recorded.id), None)
        if measured:
            recorded.measured = {k: v if k == "at" else sig(v, 4) for k, v in measured.items()}
    report_breaker(p, d.breaker)
    act_on(p, clients, workload, d)


def report_breaker(p: LoopPass, reason: str | None) -> None:
    """The engine's circuit breaker (too many rollbacks or OOM kills in an hour, or remedies that
    did not help) as a condition, with a Warning Event when it opens."""
    if reason is not None:
        p.condition("CircuitOpen", "True", "CircuitBreakerOpen", reason[:1000], event="Warning")
    elif (c := p.status.condition("CircuitOpen")) is not None and c.status == "True":
        p.condition("CircuitOpen", "False", "Closed", "the loop acts again", event="Normal")


def act_on(p: LoopPass, clients: kube.Clients, workload: kube.Workload, d: engine.Decision) -> None:
    """Report, record, apply or recommend one decision, the same way for every kind of loop."""
    loop = p.resource
    if d.action in ("none", "hold"):
        p.condition("SafetyBlocked", "False", "NothingBlocked", "no proposal was refused")
        p.status.message = d.explanation.proposed[:300]
        return
    if not d.accepted:
        last = p.status.decisions[-1] if p.status.decisions else None
        if (
            last is None
            or last.action != "Blocked"
            or last.proposed != status_settings(d.settings or {}).wire()
        ):
            _record(p, "Blocked", d, workload)
            p.event(
                "Warning",
                "Blocked",
                f"{d.explanation.proposed} | {'; '.join(d.explanation.validator)}"[:1000],
            )
        p.condition("SafetyBlocked", "True", "Rejected", "; ".join(d.explanation.validator)[:1000])
        telemetry.safety_rejected(KIND, p.namespace, p.name, (v.rule for v in d.verdicts if not v.passed))
        p.status.message = "blocked: " + "; ".join(d.explanation.validator)[:280]
        return
    p.condition("SafetyBlocked", "False", "Accepted", "the last proposal passed every safety rule")
    if loop.spec.mode == Mode.RECOMMEND:
        rec = p.status.recommendation
        proposed = status_settings(d.settings or {}).wire()
        if rec is not None and not rec.approved and rec.settings.wire() == proposed:
            # The same advice as last pass: keep its id (the one a person may be approving) and
            # the history free for what changes.
            p.status.message = f"recommends {proposed}; approve with {APPROVE_ANNOTATION}={rec.decision_id}"
            return
        decision = _record(p, "Recommended", d, workload)
        p.status.recommendation = Recommendation(
            decision_id=d.id,
            settings=Settings.model_validate(decision.proposed),
            score=d.explanation.predicted.get("score"),
            confidence=None,
        )
        p.event("Normal", "Recommended", f"{d.id}: {decision.proposed} ({d.explanation.proposed})"[:1000])
        p.status.message = f"recommends {decision.proposed}; approve with {APPROVE_ANNOTATION}={d.id}"
        return
    action = "RolledBack" if d.action == "rollback" else "Applied"
    decision = _record(p, action, d, workload)
    with telemetry.timed_step(KIND, "apply"):
        apply_decision(p, clients, workload, decision)
    if action == "RolledBack":
        telemetry.rolled_back(p.namespace, p.name)
        p.condition("RolledBack", "True", "SLOViolated", d.explanation.proposed[:1000])
        p.event("Warning", "RolledBack", d.explanation.proposed[:1000])
    else:
        p.condition("RolledBack", "False", "NoRollback", "the last change was kept")
        p.event("Normal", "Applied", f"{d.id}: {decision.proposed} ({d.explanation.proposed})"[:1000])
    p.status.message = f"{action.lower()} {decision.proposed}"


def run_pass(p: LoopPass, memo: kopf.Memo) -> None:
    """One iteration: read target → confirm pending → observe → decide → validate → act → report."""
    clients: kube.Clients = memo.clients
    source: MetricSource = memo.metrics
    loop = p.resource
    spec = loop.spec
    telemetry.resource_seen(KIND, p.namespace, p.name)
    with telemetry.timed_step(KIND, "read_target"):
        try:
            workload = kube.read_workload(clients, p.namespace, spec.target_ref, spec.knobs.container)
        except kube.TargetNotFound as exc:
            p.condition("TargetFound", "False", "TargetNotFound", str(exc), event="Warning")
            p.waiting("TargetNotFound", str(exc))
            return
    p.condition("TargetFound", "True", "Found", f"{workload.kind} {workload.name} found")
    other = kube.managed_elsewhere(workload, KIND, p.namespace, p.name)
    if other is not None:
        message = (
            f"{workload.kind} {workload.name} is managed by {other} (annotation "
            f"{kube.MANAGED_BY_ANNOTATION}); this loop leaves it alone until that annotation is removed"
        )
        p.condition("Ready", "False", "ManagedElsewhere", message, event="Warning")
        p.waiting("ManagedElsewhere", message)
        return
    try:
        resolve_pending(p, clients, workload)
        if approve_recommendation(p, clients, workload):
            workload = kube.read_workload(clients, p.namespace, spec.target_ref, spec.knobs.container)
    except (kube.Conflict, kube.TargetNotFound) as exc:
        p.waiting("ApplyFailed", f"could not apply the pending decision, retrying: {exc}")
        return
    p.status.current = current_settings(workload)
    if p.status.baseline is None:
        p.status.baseline = p.status.current

    with telemetry.timed_step(KIND, "observe"):
        try:
            observed = observe(loop, workload, source, p.namespace)
        except MetricsUnavailable as exc:
            metrics_unavailable(p, exc)
            return
    p.condition("MetricsAvailable", "True", "Fresh", f"{len(observed)} objectives measured")
    p.status.observed = {k: round(v, 6) for k, v in observed.items()}
    update_improvement(p, observed)
    telemetry.objectives(p.namespace, p.name, observed, {o.name: o.target for o in spec.objectives})

    if spec.suspend:
        p.condition("Ready", "True", "Suspended", "suspended: observing only, no actions")
        p.status.phase = "Suspended"
        p.status.message = "suspended"
        return
    p.condition("Ready", "True", "Observing", "target found and metrics available")
    p.status.phase = "Recommending" if spec.mode == Mode.RECOMMEND else "Optimizing"
    try:
        decide(p, clients, source, workload, memo.refits, memo.histories)
    except (kube.Conflict, kube.TargetNotFound) as exc:
        p.waiting("ApplyFailed", f"the target changed while applying; retrying next pass: {exc}")


reconcile = wiring.make_reconciler(
    kind=OptimizationLoop, status_type=OptimizationLoopStatus, spec_problems=spec_problems, run_pass=run_pass
)


def register(registry: kopf.OperatorRegistry, settings: OperatorSettings) -> None:
    wiring.register_timer(registry, PLURAL, reconcile, interval=settings.tick_seconds, id="reconcile")
    telemetry.register_cleanup(registry, PLURAL, KIND)
