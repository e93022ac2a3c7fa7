"""The operator's own metrics, served on /metrics: what it did, how long each step took.

Label sets stay bounded: kind, namespace, name, objective, rule, step, plan, node and the
decision action (an enum); never a decision id or free text. The per-resource series are
created by the functions below, which remember them per resource, so that:

- counters start at 0 for a resource's label sets on its first pass (`resource_seen`): a
  dashboard shows 0 rollbacks, not "no data", until the first rollback;
- a label set a pass no longer reports (an objective removed from the spec, a node dropped from
  `status.predictions`) is removed at that pass;
- every series of a resource is removed when the resource is deleted (`forget`, called from a
  finalizer-free watch handler, `register_cleanup`). A pass still running at that moment cannot
  bring them back: updates for the deleted resource are dropped for `FORGET_GRACE_SECONDS`, and
  its Ready series (set by the reconcile shell after the pass) is removed once more after that.
  A resource re-created under the same name within that time shows its series from its first
  pass after it. Series of a resource deleted while no replica of the operator was running never
  existed in the new process; a replica that loses the leader Lease keeps serving the last
  values it set until it restarts (its passes stop).
"""

from __future__ import annotations

import contextlib
import threading
import time
from collections.abc import Iterable, Iterator, Mapping
from contextlib import contextmanager
from typing import Any, Final

import kopf
from prometheus_client import REGISTRY, CollectorRegistry, Counter, Gauge, Histogram, start_http_server
from prometheus_client.metrics import MetricWrapperBase

from autoloop.api.common import GROUP, VERSION

STEP_BUCKETS_SECONDS: Final = (0.001, 0.005, 0.01, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0)

LOOP_KIND: Final = "OptimizationLoop"
ALLOCATION_KIND: Final = "ResourceAllocation"
PLAN_KIND: Final = "MaintenancePlan"

DECISION_ACTIONS: Final[dict[str, tuple[str, ...]]] = {
    LOOP_KIND: ("Recommended", "Applied", "Blocked", "RolledBack", "Approved"),
    ALLOCATION_KIND: ("Recommended", "Applied", "Blocked"),
}
"""The actions each kind records; their counters start at 0 when a resource of the kind is seen."""
SAFETY_RULES: Final[tuple[str, ...]] = (
    "ownership",
    "nonEmpty",
    "bounds",
    "maxStep",
    "cooldown",
    "changeBudget",
    "sloGuard",
    "confidence",
    "pdbHeadroom",
    "anomalyFreeze",
)
"""The rule names `engines.safety.DEFAULT_RULES` report (a unit test keeps the two in step)."""
MAINTENANCE_STEPS: Final[tuple[str, ...]] = (
    "Scheduled",
    "Cordoned",
    "Draining",
    "Acting",
    "Uncordoning",
    "Done",
    "Skipped",
    "Failed",
)
"""`Scheduled` counts the nodes in `status.schedule` (and a progress entry still `Pending`); the
others count `status.progress` entries in that step."""

RECONCILES = Counter("autoloop_reconcile_total", "Reconcile passes by kind and result.", ["kind", "result"])
STEP_SECONDS = Histogram(
    "autoloop_step_duration_seconds",
    "Duration of each named step of a reconcile pass.",
    ["kind", "step"],
    buckets=STEP_BUCKETS_SECONDS,
)
DECISIONS = Counter(
    "autoloop_decisions_total", "Decisions by kind and action (Applied, Blocked, ...).", ["kind", "action"]
)
OBJECTIVE = Gauge(
    "autoloop_objective_value", "Latest measured objective of a loop.", ["namespace", "name", "objective"]
)
OBJECTIVE_TARGET = Gauge(
    "autoloop_objective_target",
    "Target of a loop's objective (spec.objectives[].target), for objectives that declare one.",
    ["namespace", "name", "objective"],
)
LEADER = Gauge("autoloop_leader", "1 while this replica holds the leader Lease and runs passes.")
READY = Gauge(
    "autoloop_resource_ready", "1 when a resource's Ready condition is True.", ["kind", "namespace", "name"]
)
SAFETY_REJECTIONS = Counter(
    "autoloop_safety_rejections_total",
    "Proposed changes refused by the safety validator, per failing rule (one per rule per refusal).",
    ["kind", "namespace", "name", "rule"],
)
ROLLBACKS = Counter(
    "autoloop_rollbacks_total", "Changes an OptimizationLoop rolled back.", ["namespace", "name"]
)
ALLOCATION_COST = Gauge(
    "autoloop_allocation_cost_per_hour",
    "A ResourceAllocation's cost per hour (status.costPerHour: its allocation, or today's settings "
    "when infeasible).",
    ["namespace", "name"],
)
ALLOCATION_BUDGET = Gauge(
    "autoloop_allocation_budget_per_hour",
    "A ResourceAllocation's budget per hour (spec.budget.maxCostPerHour).",
    ["namespace", "name"],
)
MAINTENANCE_NODES = Gauge(
    "autoloop_maintenance_nodes",
    "Nodes of a MaintenancePlan per step: Scheduled, Cordoned, Draining, Acting, Uncordoning, Done, "
    "Skipped, Failed.",
    ["name", "step"],
)
NODE_FAILURE_RISK = Gauge(
    "autoloop_node_failure_risk",
    "Predicted probability that a node fails within the plan's horizon (the nodes in status.predictions).",
    ["plan", "node"],
)

APISERVER_REQUESTS = Counter(
    "autoloop_apiserver_requests_total",
    "Requests the reconcile passes sent to the kube-apiserver (kopf's own watches and Events aside).",
    ["verb"],
)
APISERVER_REQUEST_BYTES = Counter(
    "autoloop_apiserver_request_bytes_total", "Bytes of request bodies sent to the kube-apiserver.", ["verb"]
)
PROMETHEUS_QUERIES = Counter("autoloop_prometheus_queries_total", "PromQL queries sent to Prometheus.")
PASS_LAG = Histogram(
    "autoloop_pass_lag_seconds",
    "How late a periodic pass started after it was due (last run + interval).",
    ["kind"],
    buckets=(0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 120.0),
)

METRICS: Final[tuple[MetricWrapperBase, ...]] = (
    RECONCILES,
    STEP_SECONDS,
    DECISIONS,
    OBJECTIVE,
    OBJECTIVE_TARGET,
    LEADER,
    READY,
    SAFETY_REJECTIONS,
    ROLLBACKS,
    ALLOCATION_COST,
    ALLOCATION_BUDGET,
    MAINTENANCE_NODES,
    NODE_FAILURE_RISK,
    APISERVER_REQUESTS,
    APISERVER_REQUEST_BYTES,
    PROMETHEUS_QUERIES,
    PASS_LAG,
)
"""Every metric the operator exports (the dashboard may use only these)."""

FORGET_GRACE_SECONDS: Final = 60.0
"""Longer than a pass (a MaintenancePlan's drain yields after 20 s, its solver stops at 10 s)."""

ResourceKey = tuple[str, str, str]
"""(kind, namespace, name); namespace "" for a cluster-scoped kind."""

_lock = threading.Lock()
_owned: dict[ResourceKey, set[tuple[MetricWrapperBase, tuple[str, ...]]]] = {}
"""The label sets each resource's passes created, so they can be removed with it."""
_forgotten: dict[ResourceKey, float] = {}
"""Deleted resources: until this time.monotonic(), their updates are dropped (expired entries are
dropped at the next `forget`: bounded by the deletions of one grace period)."""


class _Discard:
    """Stands in for a child of a deleted resource: the update of a late pass goes nowhere."""

    def inc(self, amount: float = 1.0) -> None:
        pass

    def set(self, value: float) -> None:
        pass


def _child(key: ResourceKey, metric: MetricWrapperBase, *values: str) -> Any:
    """The child of `metric` for these label values, remembered as belonging to `key`."""
    with _lock:
        until = _forgotten.get(key)
        if until is not None:
            if time.monotonic() < until:
                return _Discard()
            del _forgotten[key]
        _owned.setdefault(key, set()).add((metric, values))
    return metric.labels(*values)


def _drop(key: ResourceKey, metric: MetricWrapperBase, keep: Iterable[tuple[str, ...]]) -> None:
    """Remove the label sets of `metric` that `key` created and that are not in `keep`."""
    wanted = set(keep)
    with _lock:
        owned = _owned.get(key, set())
        gone = {(m, v) for m, v in owned if m is metric and v not in wanted}
        owned -= gone
    for _, values in gone:
        _remove(metric, values)


def _remove(metric: MetricWrapperBase, values: tuple[str, ...]) -> None:
    with contextlib.suppress(KeyError):  # never created, or already removed
        metric.remove(*values)


@contextmanager
def timed_step(kind: str, step: str) -> Iterator[None]:
    """Time one named step of a pass into autoloop_step_duration_seconds."""
    started = time.perf_counter()
    try:
        yield
    finally:
        STEP_SECONDS.labels(kind=kind, step=step).observe(time.perf_counter() - started)


def resource_seen(kind: str, namespace: str, name: str) -> None:
    """At each pass: create the resource's counters at 0 if they do not exist yet."""
    key = (kind, namespace, name)
    for action in DECISION_ACTIONS.get(kind, ()):
        DECISIONS.labels(kind=kind, action=action)
    if kind in (LOOP_KIND, ALLOCATION_KIND):
        for rule in SAFETY_RULES:
            _child(key, SAFETY_REJECTIONS, kind, namespace, name, rule)
    if kind == LOOP_KIND:
        _child(key, ROLLBACKS, namespace, name)


def safety_rejected(kind: str, namespace: str, name: str, rules: Iterable[str]) -> None:
    """A proposal refused: one increment per rule that failed."""
    key = (kind, namespace, name)
    for rule in rules:
        _child(key, SAFETY_REJECTIONS, kind, namespace, name, rule).inc()


def rolled_back(namespace: str, name: str) -> None:
    _child((LOOP_KIND, namespace, name), ROLLBACKS, namespace, name).inc()


def objectives(
    namespace: str, name: str, values: Mapping[str, float], targets: Mapping[str, float | None]
) -> None:
    """A loop's measured objectives and their declared targets; objectives no longer measured (or
    no longer with a target) lose their series."""
    key = (LOOP_KIND, namespace, name)
    for objective, value in values.items():
        _child(key, OBJECTIVE, namespace, name, objective).set(value)
    declared = {k: v for k, v in targets.items() if v is not None}
    for objective, target in declared.items():
        _child(key, OBJECTIVE_TARGET, namespace, name, objective).set(target)
    _drop(key, OBJECTIVE, [(namespace, name, o) for o in values])
    _drop(key, OBJECTIVE_TARGET, [(namespace, name, o) for o in declared])


def allocation_cost(namespace: str, name: str, *, cost: float, budget: float) -> None:
    key = (ALLOCATION_KIND, namespace, name)
    _child(key, ALLOCATION_COST, namespace, name).set(cost)
    _child(key, ALLOCATION_BUDGET, namespace, name).set(budget)


def maintenance_progress(name: str, *, scheduled: int, steps: Iterable[str]) -> None:
    """A plan's nodes per step: `scheduled` waiting in the schedule, `steps` one per progress entry."""
    key = (PLAN_KIND, "", name)
    counts = dict.fromkeys(MAINTENANCE_STEPS, 0)
    counts["Scheduled"] = scheduled
    for step in steps:
        bucket = "Scheduled" if step == "Pending" else step
        if bucket in counts:  # a step name we do not know is not a new series
            counts[bucket] += 1
    for step, count in counts.items():
        _child(key, MAINTENANCE_NODES, name, step).set(count)
    _drop(key, MAINTENANCE_NODES, [(name, s) for s in counts])


def failure_risk(plan: str, risks: Mapping[str, float]) -> None:
    """The predicted failure probability of each node in the plan's status.predictions; nodes
    no longer there lose their series."""
    key = (PLAN_KIND, "", plan)
    for node, probability in risks.items():
        _child(key, NODE_FAILURE_RISK, plan, node).set(probability)
    _drop(key, NODE_FAILURE_RISK, [(plan, n) for n in risks])


def forget(kind: str, namespace: str, name: str, *, grace: float = FORGET_GRACE_SECONDS) -> None:
    """Remove every series of a deleted resource (its decisions stay in the per-kind counter);
    drop its updates for `grace` seconds, then remove its Ready series once more."""
    key = (kind, namespace, name)
    with _lock:
        owned = _owned.pop(key, set())
        now = time.monotonic()
        # Names deleted for good are never looked up again: drop their expired marks here, or
        # they pile up for the life of the process (one per resource ever deleted).
        for done in [k for k, until in _forgotten.items() if until <= now]:
            del _forgotten[done]
        if grace > 0:
            _forgotten[key] = now + grace
    for metric, values in owned:
        _remove(metric, values)
    _remove(READY, key)
    if grace > 0:
        sweep = threading.Timer(grace, _remove, args=(READY, key))
        sweep.daemon = True
        sweep.start()


def _deleted(type: str | None = None, **_: Any) -> bool:
    return type == "DELETED"


def register_cleanup(registry: kopf.OperatorRegistry, plural: str, kind: str) -> None:
    """Forget a resource's series when the watch reports it deleted (no finalizer needed)."""

    def forget_metrics(namespace: str | None, name: str, **_: Any) -> None:
        forget(kind, namespace or "", name)

    kopf.on.event(GROUP, VERSION, plural, id="forget-metrics", when=_deleted, registry=registry)(
        forget_metrics
    )


def serve(port: int, registry: CollectorRegistry = REGISTRY) -> None:
    """Start the /metrics endpoint in a daemon thread."""
    start_http_server(port, addr="0.0.0.0", registry=registry)


def api_request(verb: str, body_bytes: int) -> None:
    """kube.Clients' request hook."""
    APISERVER_REQUESTS.labels(verb=verb).inc()
    APISERVER_REQUEST_BYTES.labels(verb=verb).inc(body_bytes)
