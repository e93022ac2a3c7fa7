"""MaintenancePlan's planning half: read node metrics, predict failures, solve the schedule.

Contract: `observe(source, nodes, horizon_hours=..., now=..., model=..., signals=...) -> Observation`
(predictions per node with the given model, by default the simulator prior, or why there are none;
which model a plan uses is `failure_learning`'s choice) and `plan_schedule(p, clients, nodes, obs,
skip=...)`, which fills `status.schedule`, `status.solver` and the `Scheduled` condition. No step of the execution is here
(see `maintenanceplan`): planning never touches a node.
"""

from __future__ import annotations

import math
import threading
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, Final

import numpy as np

from autoloop.api.common import parse_duration, rfc3339
from autoloop.api.maintenance_prediction import Signal, signal_query
from autoloop.api.maintenanceplan import MaintenancePlan, MaintenancePlanStatus, NodeRisk, ScheduledSlot
from autoloop.engines import failure
from autoloop.engines import schedule as sc
from autoloop.metrics.queries import escape_label_value
from autoloop.metrics.source import MetricSource, MetricsUnavailable
from autoloop.operator import draining, kube, wiring

PlanPass = wiring.Pass[MaintenancePlan, MaintenancePlanStatus]

PREDICTIONS_LIMIT: Final = 20
"""Predictions kept in status: the riskiest nodes (the full list would not fit a large fleet)."""
RANGE_STEP_SECONDS: Final = 300.0
"""Resolution of the metric history read from Prometheus (the predictor resamples to 10 min)."""
SLOT_MINUTES: Final = 30.0
"""Scheduling grid: a node starts on a half-hour boundary relative to the pass."""
SCHEDULE_HORIZON_HOURS: Final = 168.0
"""How far ahead the schedule looks: a week, the span of the weekly windows."""
SOLVER_TIME_LIMIT_SECONDS: Final = 10.0
"""Per pass; small fleets solve in milliseconds, large ones stop at this limit with a gap."""
MIN_DURATION_MINUTES: Final = 10.0
"""Lower bound of one node's planned maintenance time (cordon, drain, act, uncordon)."""
DEFAULT_HORIZON_HOURS: Final = 24.0
"""The horizon `fleet.trained_predictor()` is fit for; other horizons train their own model."""
HEALTH_QUERY: Final = "vector(1)"
"""Answers whenever Prometheus is up: tells a down server apart from a node without data."""

SOLVERS: Final[dict[str, sc.SolverName]] = {"Auto": "Auto", "CPSAT": "CPSAT", "Annealing": "Annealing"}


def node_queries(node: str, signals: Sequence[Signal] = ()) -> dict[str, str]:
    """The predictor's inputs for one node (node-exporter `instance`, kube-state-metrics `node`),
    then the plan's own signals (`spec.prediction.signals`; one named like a built-in replaces it)."""
    n = escape_label_value(node)
    builtin = {
        failure.DISK_AVAIL: f'node_filesystem_avail_bytes{{instance="{n}",mountpoint="/"}}',
        failure.DISK_SIZE: f'node_filesystem_size_bytes{{instance="{n}",mountpoint="/"}}',
        failure.MEM_AVAIL: f'node_memory_MemAvailable_bytes{{instance="{n}"}}',
        failure.MEM_TOTAL: f'node_memory_MemTotal_bytes{{instance="{n}"}}',
        failure.TEMP: f'max(node_hwmon_temp_celsius{{instance="{n}"}})',
        failure.EDAC: f'sum(node_edac_correctable_errors_total{{instance="{n}"}})',
        failure.CARRIER: f'sum(node_network_carrier_changes_total{{instance="{n}",device!~"lo|veth.*"}})',
        failure.RESTARTS: (
            "sum(kube_pod_container_status_restarts_total * on (namespace, pod) group_left(node)"
            f' kube_pod_info{{node="{n}"}})'
        ),
        failure.DISK_PRESSURE: f'kube_node_status_condition{{node="{n}",condition="DiskPressure",status="true"}}',
        failure.MEMORY_PRESSURE: (
            f'kube_node_status_condition{{node="{n}",condition="MemoryPressure",status="true"}}'
        ),
    }
    return builtin | {s.name: signal_query(s, n) for s in signals}


def ready_query(node: str) -> str:
    """The node's Ready condition from kube-state-metrics: 1 Ready, 0 NotReady or Unknown."""
    return f'kube_node_status_condition{{node="{escape_label_value(node)}",condition="Ready",status="true"}}'


# -- observe and predict --------------------------------------------------------------------------

PREDICTORS_KEPT: Final = 4
"""Default predictors kept (one per `spec.horizon` in use), least recently used dropped first."""
_predictors: dict[float, failure.FailurePredictor] = {}
_predictor_lock = threading.Lock()


def predictor(horizon_hours: float) -> failure.FailurePredictor:
    """The default predictor for a horizon, trained once per process on the simulated fleet."""
    from autoloop.simulation import fleet  # trains a model: imported only when a plan needs one

    with _predictor_lock:
        if horizon_hours not in _predictors:
            if horizon_hours == DEFAULT_HORIZON_HOURS:
                _predictors[horizon_hours] = fleet.trained_predictor()
            else:
                data = fleet.simulate_fleet(
                    fleet.FleetConfig(n_nodes=120, days=21.0), random_state=fleet.DEFAULT_TRAIN_SEED
                )
                _predictors[horizon_hours] = failure.FailurePredictor(
                    horizon_hours=horizon_hours, random_state=0
                ).fit_arrays(
                    timestamps=data.timestamps,
                    metrics=data.metrics,
                    failure_times=[[f.time for f in data.failures if f.node == node] for node in data.nodes],
                )
        _predictors[horizon_hours] = _predictors.pop(horizon_hours)  # most recently used last
        while len(_predictors) > PREDICTORS_KEPT:
            del _predictors[next(iter(_predictors))]
        return _predictors[horizon_hours]


def fetch_series(
    source: MetricSource,
    node: str,
    *,
    now: float,
    signals: Sequence[Signal] = (),
    hours: float = failure.LOOKBACK_HOURS,
) -> failure.NodeSeries | None:
    """A node's metric history over the last `hours`, or None when Prometheus has none of it;
    MetricsUnavailable when down. A signal without data (or with several series) is missing."""
    start = now - hours * 3600.0
    timestamps = None
    metrics: dict[str, Any] = {}
    for name, query in node_queries(node, signals).items():
        try:
            series = source.range(query, start=start, end=now, step=RANGE_STEP_SECONDS)
        except MetricsUnavailable as exc:
            if exc.reason in ("NoData", "AmbiguousResult"):
                continue
            raise
        if timestamps is None:
            timestamps = series.timestamps
        metrics[name] = (series.timestamps, series.values)
    if timestamps is None:
        return None
    # Align every metric on the union grid; a step missing from one series is NaN there.
    grid = np.unique(np.concatenate([ts for ts, _ in metrics.values()]))
    aligned = {}
    for name, (ts, values) in metrics.items():
        row = np.full(len(grid), np.nan)
        row[np.searchsorted(grid, ts)] = values
        aligned[name] = row
    return failure.NodeSeries(node, grid, aligned)


@dataclass(frozen=True)
class Observation:
    predictions: dict[str, failure.FailurePrediction]
    unknown: list[str]
    down: str | None
    """Why metrics could not be read at all (Prometheus down), or None."""


def observe(
    source: MetricSource,
    nodes: list[kube.Node],
    *,
    horizon_hours: float,
    now: float,
    model: failure.FailurePredictor | None = None,
    signals: Sequence[Signal] = (),
) -> Observation:
    """Predict every node with `model` (default: the prior, `predictor(horizon_hours)`)."""
    try:
        source.instant(HEALTH_QUERY)
        series = [
            s
            for s in (fetch_series(source, n.name, now=now, signals=signals) for n in nodes)
            if s is not None
        ]
    except MetricsUnavailable as exc:
        return Observation({}, [n.name for n in nodes], f"{exc.reason}: {exc.message}")
    found = {s.name for s in series}
    model = model if model is not None else predictor(horizon_hours)
    predictions = {p.node: p for p in model.predict(series, now=now)} if series else {}
    unknown = sorted(n.name for n in nodes if n.name not in found or not predictions[n.name].available)
    return Observation({k: v for k, v in predictions.items() if v.available}, unknown, None)


def risk_entries(predictions: dict[str, failure.FailurePrediction]) -> list[NodeRisk]:
    ranked = sorted(predictions.values(), key=lambda p: (-p.probability, p.node))[:PREDICTIONS_LIMIT]
    return [
        NodeRisk(
            node=p.node,
            probability=round(float(p.probability), 4),
            expected_hours_to_failure=(
                round(float(p.expected_hours_to_failure), 1)
                if math.isfinite(p.expected_hours_to_failure)
                else None
            ),
            reasons=list(p.reasons),
        )
        for p in ranked
    ]


# -- schedule ---------------------------------------------------------------------------------------


def duration_minutes(plan: MaintenancePlan) -> float:
    """Planned time per node: the drain timeout plus the readiness wait when there is one."""
    minutes = parse_duration(plan.spec.drain.timeout).total_seconds() / 60.0
    if plan.spec.actions.ready_annotation:
        minutes += parse_duration(plan.spec.actions.ready_timeout).total_seconds() / 60.0
    return max(MIN_DURATION_MINUTES, minutes)


def build_problem(
    plan: MaintenancePlan,
    *,
    nodes: list[kube.Node],
    obs: Observation,
    skip: set[str],
    pdb_pods: dict[str, dict[str, int]],
    pdb_allowed: dict[str, int],
    start: datetime,
) -> sc.Problem:
    spec = plan.spec
    horizon = parse_duration(spec.horizon).total_seconds() / 3600.0
    requested = set(spec.nodes)
    items = []
    for node in nodes:
        if node.name in skip:
            continue
        pred = obs.predictions.get(node.name)
        risk = float(pred.probability) if pred is not None else 0.0
        hours = pred.expected_hours_to_failure if pred is not None and risk >= spec.risk_threshold else None
        items.append(
            sc.MaintenanceNode(
                node.name,
                risk=risk,
                risk_horizon_hours=horizon,
                hours_to_failure=float(hours) if hours is not None and math.isfinite(hours) else None,
                requested=node.name in requested,
                duration_minutes=duration_minutes(plan),
                labels=node.labels,
                pdb_pods=pdb_pods.get(node.name, {}),
            )
        )
    return sc.Problem(
        nodes=items,
        windows=[
            sc.Window(w.start, w.end, days=tuple(str(d) for d in w.days), time_zone=w.time_zone)
            for w in spec.windows
        ],
        limits=sc.Limits(
            max_concurrent=spec.max_concurrent,
            group_limits={g.label_key: g.max_concurrent for g in spec.groups},
            min_spacing_minutes=parse_duration(spec.min_spacing).total_seconds() / 60.0,
            pdb_allowed=pdb_allowed,
            # With routes grouped by a label, each group (zone) is maintained in one turn, so its
            # shift covers whole backends (see engines.schedule_together).
            together=spec.routing.group_by if spec.routing.routes else None,
        ),
        start=start.timestamp(),
        horizon_hours=SCHEDULE_HORIZON_HOURS,
        slot_minutes=SLOT_MINUTES,
        risk_threshold=spec.risk_threshold,
        total_nodes=len(nodes),
    )


def slots(result: sc.ScheduleResult, obs: Observation, requested: set[str]) -> list[ScheduledSlot]:
    out = []
    for a in sorted(result.assignments, key=lambda a: (a.start, a.node)):
        pred = obs.predictions.get(a.node)
        if pred is not None and (a.node not in requested or pred.reasons):
            why = f"risk {pred.probability:.0%}" + (f": {'; '.join(pred.reasons)}" if pred.reasons else "")
        else:
            why = "requested in spec.nodes"
        out.append(
            ScheduledSlot(
                node=a.node,
                start=rfc3339(datetime.fromtimestamp(a.start, UTC)),
                end=rfc3339(datetime.fromtimestamp(a.end, UTC)),
                reason=why[:500],
            )
        )
    return out


def plan_schedule(
    p: PlanPass, clients: kube.Clients, nodes: list[kube.Node], obs: Observation, *, skip: set[str]
) -> None:
    """Solve the schedule for nodes that need maintenance and are not in `skip` (in maintenance or
    resting after it); report infeasibility."""
    plan = p.resource
    budgets = draining.budgets(clients)
    pdb_pods: dict[str, dict[str, int]] = {}
    for node in nodes:
        if node.name not in skip:
            pods = draining.to_evict(draining.node_pods(clients, node.name), plan.spec.drain.pod_selector)
            pdb_pods[node.name] = draining.budget_pods(pods, budgets)
    start = p.now.replace(second=0, microsecond=0)
    problem = build_problem(
        plan,
        nodes=nodes,
        obs=obs,
        skip=skip,
        pdb_pods=pdb_pods,
        # With spec.force a PDB that allows nothing does not keep the node out of the plan: the
        # drain still asks the Eviction API first and deletes only after drain.timeout.
        pdb_allowed={
            b.key: max(b.disruptions_allowed, 1) if plan.spec.force else b.disruptions_allowed
            for b in budgets
        },
        start=start,
    )
    result = sc.Scheduler(
        solver=SOLVERS[str(plan.spec.solver)], time_limit_seconds=SOLVER_TIME_LIMIT_SECONDS
    ).solve(problem)
    p.status.schedule = slots(result, obs, set(plan.spec.nodes))
    p.status.solver = f"{result.solver}: {result.solver_reason}"[:300]
    if result.infeasible:
        text = "; ".join(f"{i.node}: {i.constraint}: {i.message}" for i in result.infeasible)
        p.condition("Scheduled", "False", "Infeasible", text[:4000], event="Warning")
    elif result.split:
        text = f"{len(result.assignments)} nodes scheduled; " + "; ".join(result.split)
        p.condition("Scheduled", "True", "GroupSplit", text[:4000], event="Warning")
    else:
        p.condition("Scheduled", "True", "Scheduled", f"{len(result.assignments)} nodes scheduled")
