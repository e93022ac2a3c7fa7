"""The operator's /metrics and the Grafana dashboard built on them (manifests/monitoring/).

Every PromQL target of the dashboard parses, every metric it reads is one the operator exports,
and the updates the operator makes produce the samples the panels read.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import kopf
import promql_parser
import pytest
import yaml
from prometheus_client import REGISTRY

from autoloop.api.common import RuleVerdict as StatusVerdict
from autoloop.api.maintenanceplan import MaintenancePlan, MaintenancePlanStatus, NodeProgress, ScheduledSlot
from autoloop.api.optimizationloop import OptimizationLoop, OptimizationLoopStatus
from autoloop.api.resourceallocation import ResourceAllocation, ResourceAllocationStatus
from autoloop.engines import loop as engine
from autoloop.engines import safety
from autoloop.operator import kube, maintenanceplan, optimizationloop, resourceallocation, telemetry, wiring

ROOT = Path(__file__).resolve().parents[2]
DASHBOARD = ROOT / "manifests" / "monitoring" / "autoloop-dashboard.json"
EXAMPLES = ROOT / "manifests" / "examples"
NOW = datetime(2026, 11, 25, 12, 0, tzinfo=UTC)

# What Grafana puts in place of its variables before a query reaches Prometheus.
GRAFANA_VARIABLES = {
    "__rate_interval": "1m",
    "__interval": "15s",
    "__range": "6h",
    "namespace": ".*",
    "plan": ".*",
}
VARIABLE = re.compile(r"\$\{(\w+)(?::\w+)?\}|\$(\w+)")


def substitute(expr: str, values: dict[str, str] = GRAFANA_VARIABLES) -> str:
    def one(m: re.Match[str]) -> str:
        name = m.group(1) or m.group(2)
        assert name in values, f"unknown Grafana variable ${name} in {expr!r}"
        return values[name]

    return VARIABLE.sub(one, expr)


def dashboard() -> dict[str, Any]:
    return dict(json.loads(DASHBOARD.read_text()))


def panels(d: dict[str, Any]) -> Iterator[dict[str, Any]]:
    for panel in d["panels"]:
        yield panel
        yield from panel.get("panels", [])  # a collapsed row holds its panels


def panel_queries(d: dict[str, Any]) -> list[tuple[str, str]]:
    """(panel title, PromQL) of every target of every panel that is not a row."""
    return [(p["title"], t["expr"]) for p in panels(d) if p["type"] != "row" for t in p["targets"]]


def selector_names(expr: promql_parser.Expr) -> set[str]:
    names: set[str] = set()

    def visit(node: object) -> None:
        if isinstance(node, promql_parser.VectorSelector):
            assert node.name, "every selector names its metric"
            names.add(node.name)

    promql_parser.walk(expr, pre_visit=visit)
    return names


def exported_names() -> set[str]:
    """Every series name the operator's metrics expose (counters' _total, histograms' _bucket...)."""
    suffixes = {"counter": ("_total", "_created"), "histogram": ("_bucket", "_sum", "_count", "_created")}
    names: set[str] = set()
    for metric in telemetry.METRICS:
        for family in metric.describe():
            names.update(family.name + s for s in suffixes.get(family.type, ("",)))
    return names


def sample(metric: str, /, **labels: str) -> float | None:
    return REGISTRY.get_sample_value(metric, labels)


# -- the dashboard ------------------------------------------------------------------------------


def test_dashboard_is_a_grafana_dashboard_with_a_prometheus_datasource_variable() -> None:
    d = dashboard()
    assert d["schemaVersion"] >= 36 and d["uid"] and d["title"]
    variables = {v["name"]: v for v in d["templating"]["list"]}
    assert variables["datasource"]["type"] == "datasource"
    assert variables["datasource"]["query"] == "prometheus"
    ids = [p["id"] for p in panels(d)]
    assert len(ids) == len(set(ids)), "panel ids are unique"
    for p in panels(d):
        if p["type"] == "row":
            continue
        assert p["datasource"] == {"type": "prometheus", "uid": "${datasource}"}, p["title"]
        assert p["targets"], f"{p['title']} has no query"
        assert len({t["refId"] for t in p["targets"]}) == len(p["targets"]), p["title"]
        for t in p["targets"]:
            assert t["datasource"]["uid"] == "${datasource}", p["title"]


def test_dashboard_covers_the_issue() -> None:
    """Decisions and rollbacks, rejections by rule, objectives vs targets, cost vs budget, the
    maintenance timeline and node failure risk."""
    used = {
        name
        for _, expr in panel_queries(dashboard())
        for name in selector_names(promql_parser.parse(substitute(expr)))
    }
    assert {
        "autoloop_decisions_total",
        "autoloop_rollbacks_total",
        "autoloop_safety_rejections_total",
        "autoloop_objective_value",
        "autoloop_objective_target",
        "autoloop_allocation_cost_per_hour",
        "autoloop_allocation_budget_per_hour",
        "autoloop_maintenance_nodes",
        "autoloop_node_failure_risk",
    } <= used


def test_every_panel_query_parses_and_reads_only_exported_metrics() -> None:
    exported = exported_names()
    queries = panel_queries(dashboard())
    assert len(queries) >= 10
    for title, expr in queries:
        parsed = promql_parser.parse(substitute(expr))
        unknown = selector_names(parsed) - exported
        assert not unknown, f"panel {title!r} reads {unknown}, which the operator does not export"


def test_variable_queries_read_exported_metrics() -> None:
    exported = exported_names()
    for variable in dashboard()["templating"]["list"]:
        if variable["type"] != "query":
            continue
        m = re.fullmatch(r"label_values\((.+), *(\w+)\)", variable["definition"])
        assert m, variable["definition"]
        assert selector_names(promql_parser.parse(m.group(1))) <= exported


def test_substitute_refuses_unknown_variables() -> None:
    assert substitute("rate(x[$__rate_interval])") == "rate(x[1m])"
    with pytest.raises(AssertionError, match="unknown Grafana variable"):
        substitute('x{a="$nope"}')


def test_metrics_list_is_complete() -> None:
    """telemetry.METRICS (what the dashboard is checked against) holds every autoloop_ metric."""
    registered = {
        family.name
        for collector in list(REGISTRY._collector_to_names)
        for family in (collector.describe() if hasattr(collector, "describe") else [])
        if family.name.startswith("autoloop_")
    }
    listed = {family.name for metric in telemetry.METRICS for family in metric.describe()}
    assert registered == listed


def test_safety_rule_names_match_the_validator() -> None:
    change = safety.ProposedChange(
        target=safety.Target(namespace="ns", kind="Deployment", name="web"),
        current={"replicas": 2.0},
        proposed={"replicas": 3.0},
    )
    policy = safety.SafetyPolicy(
        owner_namespace="ns",
        target=safety.Target(namespace="ns", kind="Deployment", name="web"),
        bounds={"replicas": safety.KnobBounds(min=1, max=5)},
    )
    result = safety.validate(change, policy, safety.SafetyContext(now=0.0))
    assert tuple(v.rule for v in result.verdicts) == telemetry.SAFETY_RULES


# -- the updates --------------------------------------------------------------------------------


@pytest.fixture
def name(request: pytest.FixtureRequest) -> Iterator[str]:
    """A resource name of this test's own, its series forgotten afterwards."""
    value = re.sub(r"[^a-z0-9]+", "-", request.node.name.lower())[:50]
    yield value
    for kind in (telemetry.LOOP_KIND, telemetry.ALLOCATION_KIND, telemetry.PLAN_KIND):
        telemetry.forget(kind, "ns", value, grace=0)
        telemetry.forget(kind, "", value, grace=0)


def test_counters_start_at_zero_when_a_resource_is_seen(name: str) -> None:
    telemetry.resource_seen(telemetry.LOOP_KIND, "ns", name)
    assert sample("autoloop_rollbacks_total", namespace="ns", name=name) == 0.0
    for rule in telemetry.SAFETY_RULES:
        assert (
            sample(
                "autoloop_safety_rejections_total",
                kind=telemetry.LOOP_KIND,
                namespace="ns",
                name=name,
                rule=rule,
            )
            == 0.0
        )
    for action in telemetry.DECISION_ACTIONS[telemetry.LOOP_KIND]:
        assert sample("autoloop_decisions_total", kind=telemetry.LOOP_KIND, action=action) is not None
    telemetry.resource_seen(telemetry.ALLOCATION_KIND, "ns", name)
    assert sample(
        "autoloop_safety_rejections_total",
        kind=telemetry.ALLOCATION_KIND,
        namespace="ns",
        name=name,
        rule="cooldown",
    ) == (0.0)
    # Seen again: nothing is reset.
    telemetry.rolled_back("ns", name)
    telemetry.resource_seen(telemetry.LOOP_KIND, "ns", name)
    assert sample("autoloop_rollbacks_total", namespace="ns", name=name) == 1.0


def test_safety_rejections_count_each_failing_rule(name: str) -> None:
    kind = telemetry.LOOP_KIND
    telemetry.safety_rejected(kind, "ns", name, ["cooldown", "confidence"])
    telemetry.safety_rejected(kind, "ns", name, ["cooldown"])
    rejections = "autoloop_safety_rejections_total"
    assert sample(rejections, kind=kind, namespace="ns", name=name, rule="cooldown") == 2.0
    assert sample(rejections, kind=kind, namespace="ns", name=name, rule="confidence") == 1.0


def test_objectives_and_targets_follow_the_spec(name: str) -> None:
    telemetry.objectives("ns", name, {"latency": 0.2, "cost": 1.5}, {"latency": 0.25, "cost": None})
    labels = {"namespace": "ns", "name": name}
    assert sample("autoloop_objective_value", **labels, objective="latency") == 0.2
    assert sample("autoloop_objective_value", **labels, objective="cost") == 1.5
    assert sample("autoloop_objective_target", **labels, objective="latency") == 0.25
    assert sample("autoloop_objective_target", **labels, objective="cost") is None
    # The latency objective is removed from the spec: its series go at the next pass.
    telemetry.objectives("ns", name, {"cost": 1.4}, {"cost": None})
    assert sample("autoloop_objective_value", **labels, objective="latency") is None
    assert sample("autoloop_objective_target", **labels, objective="latency") is None
    assert sample("autoloop_objective_value", **labels, objective="cost") == 1.4


def test_maintenance_progress_counts_nodes_per_step(name: str) -> None:
    telemetry.maintenance_progress(name, scheduled=2, steps=["Draining", "Done", "Done", "Pending", "Odd"])
    got = {s: sample("autoloop_maintenance_nodes", name=name, step=s) for s in telemetry.MAINTENANCE_STEPS}
    assert got == {
        "Scheduled": 3.0,
        "Cordoned": 0.0,
        "Draining": 1.0,
        "Acting": 0.0,
        "Uncordoning": 0.0,
        "Done": 2.0,
        "Skipped": 0.0,
        "Failed": 0.0,
    }
    assert sample("autoloop_maintenance_nodes", name=name, step="Odd") is None


def test_failure_risk_follows_the_predictions(name: str) -> None:
    telemetry.failure_risk(name, {"node-a": 0.8, "node-b": 0.1})
    assert sample("autoloop_node_failure_risk", plan=name, node="node-a") == 0.8
    telemetry.failure_risk(name, {"node-b": 0.2})
    assert sample("autoloop_node_failure_risk", plan=name, node="node-a") is None
    assert sample("autoloop_node_failure_risk", plan=name, node="node-b") == 0.2


def test_forget_removes_every_series_of_a_deleted_resource(name: str) -> None:
    telemetry.resource_seen(telemetry.LOOP_KIND, "ns", name)
    telemetry.objectives("ns", name, {"latency": 0.2}, {"latency": 0.25})
    telemetry.READY.labels(kind=telemetry.LOOP_KIND, namespace="ns", name=name).set(1)
    telemetry.allocation_cost("ns", name, cost=1.0, budget=2.0)
    telemetry.forget(telemetry.LOOP_KIND, "ns", name)
    assert sample("autoloop_rollbacks_total", namespace="ns", name=name) is None
    assert sample("autoloop_objective_value", namespace="ns", name=name, objective="latency") is None
    assert sample("autoloop_resource_ready", kind=telemetry.LOOP_KIND, namespace="ns", name=name) is None
    # Another kind's resource of the same name and namespace keeps its series.
    assert sample("autoloop_allocation_cost_per_hour", namespace="ns", name=name) == 1.0
    telemetry.forget(telemetry.LOOP_KIND, "ns", name, grace=0)  # twice is harmless


def test_a_pass_running_when_its_resource_is_deleted_brings_nothing_back(
    name: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    clock = [1000.0]
    monkeypatch.setattr(telemetry.time, "monotonic", lambda: clock[0])
    sweeps: list[tuple[float, Any, tuple[Any, ...]]] = []

    class Timer:
        def __init__(self, interval: float, fn: Any, args: tuple[Any, ...]) -> None:
            sweeps.append((interval, fn, args))
            self.daemon = False

        def start(self) -> None:
            pass

    monkeypatch.setattr(telemetry.threading, "Timer", Timer)
    telemetry.resource_seen(telemetry.LOOP_KIND, "ns", name)
    telemetry.forget(telemetry.LOOP_KIND, "ns", name)
    # The late pass: its updates are dropped, its Ready series set by the reconcile shell.
    telemetry.rolled_back("ns", name)
    telemetry.objectives("ns", name, {"latency": 0.2}, {"latency": 0.25})
    telemetry.READY.labels(kind=telemetry.LOOP_KIND, namespace="ns", name=name).set(1)
    assert sample("autoloop_rollbacks_total", namespace="ns", name=name) is None
    assert sample("autoloop_objective_value", namespace="ns", name=name, objective="latency") is None
    [(interval, fn, args)] = sweeps
    assert interval == telemetry.FORGET_GRACE_SECONDS
    fn(*args)
    assert sample("autoloop_resource_ready", kind=telemetry.LOOP_KIND, namespace="ns", name=name) is None
    # A resource of that name after the grace period is reported again.
    clock[0] += telemetry.FORGET_GRACE_SECONDS
    telemetry.resource_seen(telemetry.LOOP_KIND, "ns", name)
    assert sample("autoloop_rollbacks_total", namespace="ns", name=name) == 0.0


def test_cleanup_handler_runs_on_deleted_events_only() -> None:
    registry = kopf.OperatorRegistry()
    telemetry.register_cleanup(registry, "optimizationloops", telemetry.LOOP_KIND)
    handlers = [h for h in registry._watching.get_all_handlers() if h.id == "forget-metrics"]
    assert len(handlers) == 1 and handlers[0].when is not None
    assert handlers[0].when(type="DELETED", event={}) is True
    assert handlers[0].when(type="MODIFIED", event={}) is False
    assert handlers[0].when(type=None, event={}) is False


# -- the call sites in the operator -------------------------------------------------------------


def example(model: Any, file: str) -> Any:
    return model.model_validate(yaml.safe_load((EXAMPLES / file).read_text()))


def web() -> kube.Workload:
    return kube.Workload(
        kind="Deployment",
        name="web",
        namespace="ns",
        replicas=4,
        ready_replicas=4,
        container="web",
        cpu_request=1.0,
        memory_request=512 * 2.0**20,
        cpu_limit=None,
        memory_limit=None,
        selector={"app": "web"},
    )


def test_a_refused_loop_proposal_counts_its_failing_rules(name: str) -> None:
    loop = example(OptimizationLoop, "optimizationloop.yaml")
    p = optimizationloop.LoopPass(loop, "ns", name, 1, NOW, OptimizationLoopStatus())
    refused = engine.Decision(
        id="d1",
        t=NOW.timestamp(),
        action="change",
        settings={"replicas": 6.0},
        accepted=False,
        verdicts=[
            safety.RuleVerdict(rule="bounds", passed=True, reason="ok"),
            safety.RuleVerdict(rule="cooldown", passed=False, reason="too soon"),
            safety.RuleVerdict(rule="confidence", passed=False, reason="too low"),
        ],
        explanation=engine.Explanation(saw={}, proposed="replicas 4 -> 6", validator=["cooldown: too soon"]),
    )
    optimizationloop.act_on(p, None, web(), refused)  # type: ignore[arg-type]  # refusals touch no cluster
    optimizationloop.act_on(p, None, web(), refused)  # type: ignore[arg-type]
    labels = {"kind": telemetry.LOOP_KIND, "namespace": "ns", "name": name}
    assert sample("autoloop_safety_rejections_total", **labels, rule="cooldown") == 2.0
    assert sample("autoloop_safety_rejections_total", **labels, rule="confidence") == 2.0
    assert sample("autoloop_safety_rejections_total", **labels, rule="bounds") is None
    # The status records the refusal once; the verdicts it keeps are the same rules.
    assert [d.action for d in p.status.decisions] == ["Blocked"]
    assert StatusVerdict(rule="cooldown", passed=False, reason="too soon") in p.status.decisions[0].verdicts


def test_allocation_cost_and_budget_are_set_with_the_status(name: str) -> None:
    alloc = example(ResourceAllocation, "resourceallocation.yaml")
    p: wiring.Pass[Any, Any] = wiring.Pass(alloc, "ns", name, 1, NOW, ResourceAllocationStatus())
    resourceallocation.report_current(p, [], 3600.0)
    assert sample("autoloop_allocation_cost_per_hour", namespace="ns", name=name) == p.status.cost_per_hour
    assert sample("autoloop_allocation_budget_per_hour", namespace="ns", name=name) == 2.0


def test_maintenance_report_sets_the_timeline(name: str) -> None:
    plan = example(MaintenancePlan, "maintenanceplan.yaml")
    status = MaintenancePlanStatus(
        schedule=[ScheduledSlot(node="n3", start="2026-11-26T01:00:00Z", end="2026-11-26T01:30:00Z")],
        progress=[NodeProgress(node="n1", step="Draining"), NodeProgress(node="n2", step="Failed")],
    )
    p: wiring.Pass[Any, Any] = wiring.Pass(plan, "", name, 1, NOW, status)
    maintenanceplan.report(p)
    assert sample("autoloop_maintenance_nodes", name=name, step="Scheduled") == 1.0
    assert sample("autoloop_maintenance_nodes", name=name, step="Draining") == 1.0
    assert sample("autoloop_maintenance_nodes", name=name, step="Failed") == 1.0
    assert sample("autoloop_maintenance_nodes", name=name, step="Done") == 0.0
