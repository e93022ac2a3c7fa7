"""The Argo CD health checks of manifests/argocd/health.yaml, run as Argo CD runs them.

Each object is shaped as the apiserver returns it: the example manifest with its CRD defaults and
server-set metadata, and the status the operator writes (its own `Pass` helpers set the conditions;
where a pass needs no Prometheus, the operator's real `run_pass` runs against a cluster that has
none of the objects the resource names).
"""

from __future__ import annotations

import copy
import json
import re
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest
import yaml
from kubernetes.client.exceptions import ApiException

from autoloop.api.common import API_VERSION, GROUP, ApiModel, StatusBase, rfc3339
from autoloop.api.maintenanceplan import MaintenancePlan, MaintenancePlanStatus, NodeProgress
from autoloop.api.optimizationloop import OptimizationLoop, OptimizationLoopStatus
from autoloop.api.resourceallocation import ResourceAllocation, ResourceAllocationStatus
from autoloop.metrics.source import MetricsUnavailable
from autoloop.operator import maintenanceplan, optimizationloop, resourceallocation, wiring
from tests.argocd_lua import HEALTH_YAML, Health, health_of, health_scripts, run_health, script_key

ROOT = Path(__file__).resolve().parents[2]
EXAMPLES = ROOT / "manifests" / "examples"
NOW = datetime(2026, 11, 25, 12, 0, tzinfo=UTC)
NAMESPACE = "shop"

KINDS: dict[str, tuple[type[ApiModel], type[StatusBase], str]] = {
    "OptimizationLoop": (OptimizationLoop, OptimizationLoopStatus, "optimizationloop.yaml"),
    "ResourceAllocation": (ResourceAllocation, ResourceAllocationStatus, "resourceallocation.yaml"),
    "MaintenancePlan": (MaintenancePlan, MaintenancePlanStatus, "maintenanceplan.yaml"),
}
RUN_PASS: dict[str, Callable[[Any, Any], None]] = {
    "OptimizationLoop": optimizationloop.run_pass,
    "ResourceAllocation": resourceallocation.run_pass,
    "MaintenancePlan": maintenanceplan.run_pass,
}
# What the operator writes when a pass of each kind succeeds (run_pass of each kind).
READY = {
    "OptimizationLoop": ("Observing", "target found and metrics available", "Recommending"),
    "ResourceAllocation": ("Allocated", "2 workloads allocated on 3 nodes", "Recommending"),
    "MaintenancePlan": ("Planning", "3 nodes under watch", "Planning"),
}
SUSPENDED = {
    "OptimizationLoop": "suspended: observing only, no actions",
    "ResourceAllocation": "suspended: no allocation",
    "MaintenancePlan": "suspended: planning only, no maintenance runs",
}


def kind_of(key: str) -> str:
    return key.rpartition("_")[2]


def scoped(model: type[ApiModel]) -> bool:
    return getattr(model, "SCOPE", "Namespaced") == "Namespaced"


def stored(
    kind: str, *, generation: int = 1, status: dict[str, Any] | None = None, **spec: Any
) -> dict[str, Any]:
    """The example resource of `kind` as a GET returns it: CRD defaults in spec, server metadata."""
    model, _, example = KINDS[kind]
    manifest = yaml.safe_load((EXAMPLES / example).read_text())
    manifest["spec"].update(spec)
    applied = json.dumps(manifest, separators=(",", ":"))
    metadata: dict[str, Any] = {
        "name": manifest["metadata"]["name"],
        "uid": "6f1c0d2e-3b4a-4c5d-8e9f-0a1b2c3d4e5f",
        "resourceVersion": "4711",
        "generation": generation,
        "creationTimestamp": "2026-11-25T11:00:00Z",
        "annotations": {"kubectl.kubernetes.io/last-applied-configuration": applied},
        "managedFields": [
            {
                "manager": "kubectl-client-side-apply",
                "operation": "Update",
                "apiVersion": API_VERSION,
                "time": "2026-11-25T11:00:00Z",
                "fieldsType": "FieldsV1",
                "fieldsV1": {"f:spec": {".": {}, "f:mode": {}}},
            }
        ],
    }
    if scoped(model):
        metadata["namespace"] = NAMESPACE
    obj: dict[str, Any] = {
        "apiVersion": API_VERSION,
        "kind": kind,
        "metadata": metadata,
        "spec": model.model_validate(manifest).spec.wire(),  # type: ignore[attr-defined]
    }
    if status is not None:
        obj["status"] = status
    return obj


def operator_pass(
    kind: str, act: Callable[[wiring.Pass[Any, Any]], None], *, generation: int = 1, **spec: Any
) -> dict[str, Any]:
    """The status one reconcile pass writes (wiring.make_reconciler around `act`), at `generation`."""
    model, status_type, _ = KINDS[kind]
    obj = stored(kind, generation=generation, **spec)
    p: wiring.Pass[Any, Any] = wiring.Pass(
        resource=model.model_validate({"spec": obj["spec"]}),
        namespace=obj["metadata"].get("namespace", ""),
        name=obj["metadata"]["name"],
        generation=generation,
        now=NOW,
        status=status_type(),
    )
    p.condition("Invalid", "False", "Valid", "spec is valid")
    act(p)
    p.status.observed_generation = generation
    p.status.last_run_time = rfc3339(NOW)
    return p.status.wire()


def ready(kind: str) -> Callable[[wiring.Pass[Any, Any]], None]:
    reason, message, phase = READY[kind]

    def act(p: wiring.Pass[Any, Any]) -> None:
        p.condition("Ready", "True", reason, message)
        p.status.phase = phase
        p.status.message = f"{kind} is doing fine"

    return act


def suspended(kind: str) -> Callable[[wiring.Pass[Any, Any]], None]:
    def act(p: wiring.Pass[Any, Any]) -> None:
        p.condition("Ready", "True", "Suspended", SUSPENDED[kind])
        p.status.phase = "Suspended"
        p.status.message = "suspended"

    return act


def invalid(p: wiring.Pass[Any, Any]) -> None:
    """What make_reconciler writes for a spec that spec_problems refuses (it replaces the Valid one)."""
    message = "objectives.q.query: selector names namespace other"
    p.condition("Invalid", "True", "InvalidSpec", message, event="Warning")
    p.condition("Ready", "False", "InvalidSpec", message)
    p.status.phase = "Invalid"
    p.status.message = message


class EmptyApi:
    """A cluster without the objects a resource names: every read is a 404, every list empty."""

    def __getattr__(self, name: str) -> Callable[..., Any]:
        def call(*_: Any, **__: Any) -> Any:
            if name.startswith("read_"):
                raise ApiException(status=404, reason="Not Found")
            if name.startswith("list_"):
                return SimpleNamespace(items=[])
            raise AssertionError(f"unexpected API call {name}")

        return call


def nothing_there(kind: str) -> Callable[[wiring.Pass[Any, Any]], None]:
    """The operator's own pass of `kind` in a cluster where its target, workloads or nodes are missing."""
    api = EmptyApi()
    clients = SimpleNamespace(core=api, apps=api, autoscaling=api, policy=api, custom=api)
    memo = SimpleNamespace(clients=clients, metrics=None, refits=None, histories=None)
    return lambda p: RUN_PASS[kind](p, memo)


def degraded_reasons() -> set[str]:
    """The reasons in the script's `degraded` table."""
    script = health_scripts()[f"{GROUP}_OptimizationLoop"]
    table = re.search(r"local degraded = \{(.*?)\n\}", script, re.S)
    assert table is not None, "the script keeps its Degraded reasons in `local degraded = {...}`"
    return set(re.findall(r"(\w+) = true", table.group(1)))


# -- the ConfigMap ---------------------------------------------------------------------------------


def test_every_kind_has_a_health_check() -> None:
    assert set(health_scripts()) == {f"{GROUP}_{kind}" for kind in KINDS}


def test_the_configmap_is_argocd_cm() -> None:
    cm = yaml.safe_load(HEALTH_YAML.read_text())
    assert (cm["kind"], cm["metadata"]["name"], cm["metadata"]["namespace"]) == (
        "ConfigMap",
        "argocd-cm",
        "argocd",
    )


def test_script_key_is_the_configmap_key_of_the_object() -> None:
    assert script_key(stored("MaintenancePlan")) == f"{GROUP}_MaintenancePlan"
    assert script_key({"apiVersion": "v1", "kind": "ConfigMap"}) == "ConfigMap"


def test_every_degraded_reason_is_one_the_operator_writes() -> None:
    sources = "".join(p.read_text() for p in (ROOT / "autoloop" / "operator").glob("*.py"))
    reasons = degraded_reasons()
    assert {"TargetNotFound", "InternalError", "InvalidSpec", "Infeasible"} <= reasons
    assert {r for r in reasons if f'"{r}"' not in sources} == set()


# -- every kind, from the ConfigMap's keys -----------------------------------------------------------

KEYS = sorted(health_scripts())


@pytest.mark.parametrize("key", KEYS)
def test_no_status_yet_is_progressing(key: str) -> None:
    obj = stored(kind_of(key))
    assert run_health(health_scripts()[key], obj) == Health(
        "Progressing", "waiting for the operator's first pass"
    )


@pytest.mark.parametrize("key", KEYS)
def test_suspended(key: str) -> None:
    kind = kind_of(key)
    script = health_scripts()[key]
    observed = stored(kind, status=operator_pass(kind, suspended(kind), suspend=True), suspend=True)
    assert run_health(script, observed) == Health("Suspended", SUSPENDED[kind])
    # Set in Git, not yet seen by the operator (or the target is missing meanwhile): still Suspended.
    fresh = stored(kind, generation=2, status=operator_pass(kind, ready(kind)), suspend=True)
    assert run_health(script, fresh) == Health("Suspended", "spec.suspend is true")
    assert run_health(script, stored(kind, suspend=True)).status == "Suspended"


@pytest.mark.parametrize("key", KEYS)
def test_invalid_is_degraded_with_its_message(key: str) -> None:
    kind = kind_of(key)
    obj = stored(kind, status=operator_pass(kind, invalid))
    assert run_health(health_scripts()[key], obj) == Health(
        "Degraded", "objectives.q.query: selector names namespace other"
    )


@pytest.mark.parametrize("key", KEYS)
def test_ready_is_healthy(key: str) -> None:
    kind = kind_of(key)
    obj = stored(kind, status=operator_pass(kind, ready(kind)))
    assert run_health(health_scripts()[key], obj) == Health("Healthy", f"{kind} is doing fine")


@pytest.mark.parametrize("key", KEYS)
def test_generation_not_yet_observed_is_progressing(key: str) -> None:
    kind = kind_of(key)
    script = health_scripts()[key]
    # Healthy at generation 1, then the spec changed: the status describes the old spec.
    behind = stored(kind, generation=2, status=operator_pass(kind, ready(kind), generation=1))
    assert run_health(script, behind) == Health(
        "Progressing", "waiting for the operator to observe generation 2"
    )
    # An old Invalid=True is no verdict on the new spec either.
    fixed = stored(kind, generation=3, status=operator_pass(kind, invalid, generation=2))
    assert run_health(script, fixed) == Health(
        "Progressing", "waiting for the operator to observe generation 3"
    )


@pytest.mark.parametrize("key", KEYS)
def test_internal_error_is_degraded(key: str) -> None:
    kind = kind_of(key)

    def failed(p: wiring.Pass[Any, Any]) -> None:  # make_reconciler, when run_pass raises
        p.condition(
            "Ready", "False", "InternalError", "ApiException: (403)\nReason: Forbidden", event="Warning"
        )
        p.status.phase = "Error"

    obj = stored(kind, status=operator_pass(kind, failed))
    assert run_health(health_scripts()[key], obj) == Health(
        "Degraded", "InternalError: ApiException: (403)\nReason: Forbidden"
    )


# -- target, workloads or nodes missing: the operator's own pass ----------------------------------------

MISSING = {
    "OptimizationLoop": Health("Degraded", f"TargetNotFound: Deployment {NAMESPACE}/web not found"),
    "ResourceAllocation": Health("Degraded", "NoWorkloads: no workloads found: nothing to allocate"),
    "MaintenancePlan": Health("Degraded", "NoNodes: no node matches the plan"),
}


@pytest.mark.parametrize("kind", sorted(MISSING))
def test_target_missing_is_degraded(kind: str) -> None:
    obj = stored(kind, status=operator_pass(kind, nothing_there(kind)))
    assert obj["status"]["phase"] == "Waiting"
    assert health_of(obj) == MISSING[kind]


@pytest.mark.parametrize("kind", sorted(MISSING))
def test_suspended_wins_over_a_missing_target(kind: str) -> None:
    # As Argo CD's own checks do for a paused Deployment: the spec says paused, so Suspended.
    obj = stored(kind, status=operator_pass(kind, nothing_there(kind), suspend=True), suspend=True)
    assert health_of(obj) == Health("Suspended", "spec.suspend is true")


# -- one case per kind -------------------------------------------------------------------------------


def test_loop_waiting_for_metrics_is_progressing() -> None:
    def no_metrics(p: wiring.Pass[Any, Any]) -> None:
        p.condition("TargetFound", "True", "Found", "Deployment web found")
        optimizationloop.metrics_unavailable(p, MetricsUnavailable("NoData", "query returned no series: up"))

    obj = stored("OptimizationLoop", status=operator_pass("OptimizationLoop", no_metrics))
    assert health_of(obj) == Health(
        "Progressing",
        "MetricsUnavailable: no action until the metrics are back: query returned no series: up",
    )


def test_loop_retrying_a_conflicting_apply_is_progressing() -> None:
    def conflict(p: wiring.Pass[Any, Any]) -> None:
        p.waiting("ApplyFailed", "the target changed while applying; retrying next pass: 409")

    obj = stored("OptimizationLoop", status=operator_pass("OptimizationLoop", conflict))
    assert health_of(obj).status == "Progressing"


def test_loop_on_a_workload_managed_elsewhere_is_degraded() -> None:
    def elsewhere(p: wiring.Pass[Any, Any]) -> None:
        message = "Deployment web is managed by ResourceAllocation/shop/frontend"
        p.condition("Ready", "False", "ManagedElsewhere", message, event="Warning")
        p.waiting("ManagedElsewhere", message)

    obj = stored("OptimizationLoop", status=operator_pass("OptimizationLoop", elsewhere))
    assert health_of(obj) == Health(
        "Degraded", "ManagedElsewhere: Deployment web is managed by ResourceAllocation/shop/frontend"
    )


def test_allocation_waiting_for_metrics_is_progressing() -> None:
    def no_metrics(p: wiring.Pass[Any, Any]) -> None:  # resourceallocation.measure
        p.condition("MetricsAvailable", "False", "NoData", "no usable metrics: web (NoData: ...)")
        p.waiting("MetricsUnavailable", "no action until metrics are back for web")

    obj = stored("ResourceAllocation", status=operator_pass("ResourceAllocation", no_metrics))
    assert health_of(obj) == Health(
        "Progressing", "MetricsUnavailable: no action until metrics are back for web"
    )


def test_infeasible_allocation_is_degraded() -> None:
    def infeasible(p: wiring.Pass[Any, Any]) -> None:
        p.condition("Feasible", "False", "BudgetTooLow", "infeasible: budget: ...")
        p.condition("Ready", "False", "Infeasible", "allocation infeasible: current settings kept")
        p.status.phase = "Infeasible"

    obj = stored("ResourceAllocation", status=operator_pass("ResourceAllocation", infeasible))
    assert health_of(obj) == Health("Degraded", "Infeasible: allocation infeasible: current settings kept")


def test_allocation_with_a_missing_named_workload_is_degraded_though_ready() -> None:
    def some_missing(p: wiring.Pass[Any, Any]) -> None:
        p.condition("WorkloadsFound", "False", "WorkloadMissing", "not found: api", event="Warning")
        ready("ResourceAllocation")(p)

    obj = stored("ResourceAllocation", status=operator_pass("ResourceAllocation", some_missing))
    assert health_of(obj) == Health("Degraded", "WorkloadMissing: not found: api")


def test_plan_with_a_failed_node_is_degraded() -> None:
    message = "node annotation maintenance.example.com/done not set within 30m"

    def failed(p: wiring.Pass[Any, Any]) -> None:
        ready("MaintenancePlan")(p)
        p.status.progress = [
            NodeProgress(node="kwok-node-1", step="Done", message="maintenance done"),
            NodeProgress(node="kwok-node-3", step="Failed", message=message),
        ]

    obj = stored("MaintenancePlan", status=operator_pass("MaintenancePlan", failed))
    assert health_of(obj) == Health("Degraded", f"maintenance of node kwok-node-3 failed: {message}")


def test_plan_with_done_and_skipped_nodes_is_healthy() -> None:
    def finished(p: wiring.Pass[Any, Any]) -> None:
        ready("MaintenancePlan")(p)
        p.status.progress = [
            NodeProgress(node="kwok-node-1", step="Done", message="maintenance done"),
            NodeProgress(node="kwok-node-2", step="Skipped", message="drain timed out after 10m"),
        ]

    obj = stored("MaintenancePlan", status=operator_pass("MaintenancePlan", finished))
    assert health_of(obj).status == "Healthy"


def test_plan_naming_a_missing_node_is_degraded() -> None:
    def missing(p: wiring.Pass[Any, Any]) -> None:
        p.condition("NodesFound", "False", "NodeMissing", "not found: kwok-node-9", event="Warning")
        ready("MaintenancePlan")(p)

    obj = stored("MaintenancePlan", status=operator_pass("MaintenancePlan", missing))
    assert health_of(obj) == Health("Degraded", "NodeMissing: not found: kwok-node-9")


def test_plan_held_by_a_blocker_is_healthy() -> None:
    def blocked(p: wiring.Pass[Any, Any]) -> None:  # run_pass: Ready stays True, phase Blocked
        ready("MaintenancePlan")(p)
        p.condition("Blocked", "True", "BlockerFiring", "ALERTS{...} returns a series", event="Warning")
        p.status.phase = "Blocked"
        p.status.message = "blocked: no step starts while a blocker fires"

    obj = stored("MaintenancePlan", status=operator_pass("MaintenancePlan", blocked))
    assert health_of(obj) == Health("Healthy", "blocked: no step starts while a blocker fires")


# -- the runner is faithful to Argo CD ---------------------------------------------------------------


def test_objects_arrive_as_argo_cd_decodes_them() -> None:
    script = """
    local c = obj.status.conditions
    return {status = "Healthy", message = #c .. " " .. c[1].type .. " " .. tostring(obj.status.x) .. " " ..
      type(obj.metadata.generation) .. " " .. tostring(#obj.status.list)}
    """
    obj = {
        "metadata": {"generation": 3},
        "status": {"conditions": [{"type": "Invalid"}, {}], "x": None, "list": [1, None, 2]},
    }
    assert run_health(script, obj) == Health("Healthy", "2 Invalid nil number 2")


def test_no_string_library_and_invalid_statuses_become_unknown() -> None:
    assert run_health('return {status = string == nil and "Healthy" or "Degraded"}', {}).status == "Healthy"
    assert run_health('return {status = "Fine"}', {}) == Health(
        "Unknown", "Lua returned an invalid health status"
    )


def test_the_object_is_not_changed_by_the_conversion() -> None:
    obj = stored("OptimizationLoop", status=operator_pass("OptimizationLoop", ready("OptimizationLoop")))
    before = copy.deepcopy(obj)
    health_of(obj)
    assert obj == before
