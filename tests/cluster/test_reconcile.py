"""The reconcile handler itself against the real apiserver, called as kopf calls it.

kopf hands a timer the object from its watch cache. After an apiserver restart that cache can be
minutes behind while the watch reconnects, and a pass computed from it would take a decision the
stored status already records as done (the soak saw one decision applied three times). Here the
handler is called twice with the same object, as kopf would with a stale cache: the second pass must
neither act nor write. Also: a standby replica writes nothing, an apiserver refusal (403 from RBAC)
becomes a status condition without a traceback, and a bug becomes one with a traceback. kopf's own
Event queue (its context variables, as the running operator sets them) collects the Events.
"""

from __future__ import annotations

import asyncio
import json
import logging
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import kopf
import pytest
from kopf._core.engines import posting

from autoloop.api.common import Decision
from autoloop.api.optimizationloop import OptimizationLoop, OptimizationLoopStatus, pack_engine_state
from autoloop.metrics.history_cache import HistoryCache
from autoloop.metrics.prometheus import PrometheusSource
from autoloop.operator import kube, optimizationloop, wiring
from autoloop.operator.leader import AlwaysLeader
from autoloop.operator.refits import BackgroundRefits
from tests.cluster import operator_process as opp

pytestmark = pytest.mark.cluster


class Standby:
    """A replica that does not hold the Lease (operator.leader's interface)."""

    def is_leader(self) -> bool:
        return False


@dataclass
class Events:
    """kopf's Event queue, set up as the running operator sets it for its handlers."""

    loop: asyncio.AbstractEventLoop
    queue: asyncio.Queue[Any]

    def drained(self) -> list[tuple[str, str]]:
        """(reason, message) of every Event queued since the last call."""
        self.loop.run_until_complete(asyncio.sleep(0))  # kopf queues through the loop's callbacks
        out = []
        while not self.queue.empty():
            e = self.queue.get_nowait()
            out.append((e.reason, e.message))
        return out


@pytest.fixture(scope="module", autouse=True)
def installed(control_plane: Any) -> None:
    """The CRDs and RBAC of manifests/ (the handler runs in this process, not as the operator)."""
    opp.install(control_plane)


@pytest.fixture
def events() -> Iterator[Events]:
    loop = asyncio.new_event_loop()
    queue: asyncio.Queue[Any] = asyncio.Queue()
    tokens = (
        posting.event_queue_loop_var.set(loop),
        posting.event_queue_var.set(queue),
        posting.settings_var.set(kopf.OperatorSettings()),
    )
    yield Events(loop, queue)
    posting.settings_var.reset(tokens[2])
    posting.event_queue_var.reset(tokens[1])
    posting.event_queue_loop_var.reset(tokens[0])
    loop.close()


def memo_for(clients: kube.Clients, prometheus: Any, leader: Any = None) -> kopf.Memo:
    return kopf.Memo(
        clients=clients,
        leader=leader or AlwaysLeader(),
        metrics=PrometheusSource(prometheus.url),
        refits=BackgroundRefits(),
        histories=HistoryCache(),
    )


def call(reconcile: Any, obj: dict[str, Any], memo: kopf.Memo) -> None:
    """As kopf calls a timer: body, spec, status and meta all from the same (cached) object."""
    meta = obj["metadata"]
    reconcile(
        body=obj,
        spec=obj.get("spec", {}),
        status=obj.get("status", {}),
        meta=meta,
        namespace=meta.get("namespace"),
        name=meta["name"],
        memo=memo,
    )


def test_a_pass_from_a_stale_cache_neither_acts_nor_writes(
    control_plane: Any, prometheus: Any, namespace: str, events: Events
) -> None:
    cp = control_plane
    cached = opp.approved_recommendation(cp, namespace)
    clients = kube.Clients.connect(str(cp.kubeconfig))
    memo = memo_for(clients, prometheus)

    call(optimizationloop.reconcile, cached, memo)  # the first pass applies the approval
    assert opp.get_json(cp, namespace, "deploy/web")["spec"]["replicas"] == 2
    after_first = opp.get_json(cp, namespace, "oloop/web")
    assert [d["id"] for d in after_first["status"]["decisions"]] == ["r1", "r1-approved"]
    assert "pendingDecision" not in after_first["status"]
    assert [r for r, _ in events.drained() if r == "Approved"] == ["Approved"]

    # A person scales the workload; then kopf's stale copy comes round again.
    cp.kubectl("-n", namespace, "scale", "deploy/web", "--replicas=5")
    generation = opp.get_json(cp, namespace, "deploy/web")["metadata"]["generation"]
    call(optimizationloop.reconcile, cached, memo)

    target = opp.get_json(cp, namespace, "deploy/web")
    assert target["spec"]["replicas"] == 5, "the stale pass re-applied a decision and undid a person's change"
    assert target["metadata"]["generation"] == generation, "the stale pass patched the target's spec"
    assert target["metadata"]["annotations"][kube.DECISION_ANNOTATION] == "r1-approved"
    now = opp.get_json(cp, namespace, "oloop/web")
    assert now["metadata"]["resourceVersion"] == after_first["metadata"]["resourceVersion"], (
        "a pass computed from a stale status wrote over the stored one"
    )
    assert events.drained() == [], "no Event from a pass that did nothing"

    # From the fresh object, the approval is seen as done: still nothing applied.
    call(optimizationloop.reconcile, now, memo)
    assert opp.get_json(cp, namespace, "deploy/web")["spec"]["replicas"] == 5
    ids = [d["id"] for d in opp.get_json(cp, namespace, "oloop/web")["status"]["decisions"]]
    assert ids.count("r1-approved") == 1


def test_a_change_elsewhere_in_the_object_does_not_cost_the_pass(
    control_plane: Any, prometheus: Any, namespace: str, events: Events
) -> None:
    # Between kopf's copy and the pass's writes someone labels the loop (kopf adding a finalizer
    # does the same): the resourceVersion moved, the status and spec did not. The pass still acts
    # and records, once, on the new version.
    cp = control_plane
    cached = opp.approved_recommendation(cp, namespace)
    cp.kubectl("-n", namespace, "label", "oloop", "web", "team=payments")
    memo = memo_for(kube.Clients.connect(str(cp.kubeconfig)), prometheus)
    call(optimizationloop.reconcile, cached, memo)
    assert opp.get_json(cp, namespace, "deploy/web")["spec"]["replicas"] == 2
    stored = opp.get_json(cp, namespace, "oloop/web")
    assert [d["id"] for d in stored["status"]["decisions"]] == ["r1", "r1-approved"]
    assert stored["status"].get("lastRunTime") and "pendingDecision" not in stored["status"]
    assert stored["metadata"]["labels"] == {"team": "payments"}
    assert [r for r, _ in events.drained() if r == "Approved"] == ["Approved"]


def test_a_standby_replica_runs_no_pass_and_writes_nothing(
    control_plane: Any, prometheus: Any, namespace: str, events: Events
) -> None:
    cp = control_plane
    cached = opp.approved_recommendation(cp, namespace)
    memo = memo_for(kube.Clients.connect(str(cp.kubeconfig)), prometheus, leader=Standby())
    call(optimizationloop.reconcile, cached, memo)
    assert (
        opp.get_json(cp, namespace, "oloop/web")["metadata"]["resourceVersion"]
        == (cached["metadata"]["resourceVersion"])
    )
    assert opp.get_json(cp, namespace, "deploy/web")["spec"]["replicas"] == 4
    assert events.drained() == []


def test_a_resource_being_deleted_gets_no_pass(
    control_plane: Any, prometheus: Any, namespace: str, events: Events
) -> None:
    cp = control_plane
    opp.approved_recommendation(cp, namespace)
    # A finalizer holds the loop while it is deleted, as kopf's or another controller's would.
    cp.kubectl(
        "-n",
        namespace,
        "patch",
        "oloop",
        "web",
        "--type=merge",
        "-p",
        '{"metadata":{"finalizers":["test/hold"]}}',
    )
    cp.kubectl("-n", namespace, "delete", "oloop", "web", "--wait=false")
    deleting = opp.get_json(cp, namespace, "oloop/web")
    assert deleting["metadata"].get("deletionTimestamp")
    try:
        call(
            optimizationloop.reconcile,
            deleting,
            memo_for(kube.Clients.connect(str(cp.kubeconfig)), prometheus),
        )
        stored = opp.get_json(cp, namespace, "oloop/web")
        assert stored["metadata"]["resourceVersion"] == deleting["metadata"]["resourceVersion"]
        assert opp.get_json(cp, namespace, "deploy/web")["spec"]["replicas"] == 4, (
            "the approved change not applied"
        )
        assert events.drained() == []
    finally:
        cp.kubectl(
            "-n", namespace, "patch", "oloop", "web", "--type=merge", "-p", '{"metadata":{"finalizers":null}}'
        )


def loop_reconciler(run_pass: Any) -> Any:
    """The loop kind's reconcile handler around another pass (a valid spec, the real wiring)."""
    return wiring.make_reconciler(
        kind=OptimizationLoop,
        status_type=OptimizationLoopStatus,
        spec_problems=lambda resource, namespace: [],
        run_pass=run_pass,
    )


def limited_clients(cp: Any, namespace: str) -> kube.Clients:
    """Clients acting as a user who may write loops and their status but not read Deployments."""
    rules = [
        {
            "apiGroups": ["autoloop.x0tta6bl4.io"],
            "resources": ["optimizationloops", "optimizationloops/status"],
            "verbs": ["get", "list", "watch", "patch"],
        }
    ]
    role = {"apiVersion": "rbac.authorization.k8s.io/v1", "kind": "Role", "metadata": {"name": "loops-only"}}
    cp.kubectl("-n", namespace, "apply", "-f", "-", input=json.dumps({**role, "rules": rules}))
    cp.kubectl("-n", namespace, "create", "rolebinding", "loops-only", "--role=loops-only", "--user=carol")
    clients = kube.Clients.connect(str(cp.kubeconfig))
    clients.api.set_default_header("Impersonate-User", "carol")
    return clients


def ready(cp: Any, namespace: str) -> dict[str, Any]:
    cond = opp.condition(opp.get_json(cp, namespace, "oloop/web"), "Ready")
    assert cond is not None
    return cond


def test_an_apiserver_refusal_is_reported_not_traced(
    control_plane: Any, prometheus: Any, namespace: str, events: Events, caplog: Any
) -> None:
    cp = control_plane
    cached = opp.approved_recommendation(cp, namespace)
    memo = memo_for(limited_clients(cp, namespace), prometheus)
    with caplog.at_level(logging.WARNING):
        call(optimizationloop.reconcile, cached, memo)
    cond = ready(cp, namespace)
    assert (cond["status"], cond["reason"]) == ("False", "ApiError")
    assert cond["message"].startswith("the apiserver answered 403 Forbidden")
    assert "deployments" in cond["message"]
    assert not any(r.exc_info for r in caplog.records), "a refusal is not a bug: no traceback"
    assert ("ApiError", cond["message"]) in events.drained()


def test_a_bug_is_still_traced(
    control_plane: Any, prometheus: Any, namespace: str, events: Events, caplog: Any
) -> None:
    cp = control_plane
    cached = opp.approved_recommendation(cp, namespace)

    def broken(p: Any, memo: Any) -> None:
        raise KeyError("oops")

    reconcile = loop_reconciler(broken)
    call(reconcile, cached, memo_for(kube.Clients.connect(str(cp.kubeconfig)), prometheus))
    cond = ready(cp, namespace)
    assert (cond["reason"], cond["message"]) == ("InternalError", "KeyError: 'oops'")
    assert any(r.exc_info for r in caplog.records)
    assert "InternalError" in {r for r, _ in events.drained()}


def test_a_loop_status_is_written_within_its_budget(
    control_plane: Any, prometheus: Any, namespace: str, events: Events
) -> None:
    # A pass that leaves a long history, a long anomaly condition and a big root-cause analysis:
    # what reaches the apiserver is cut to the loop's budget, and what the next pass reads is kept.
    cp = control_plane
    cached = opp.approved_recommendation(cp, namespace)
    packed = pack_engine_state({"history": [[i, (i * 7919) % 104729] for i in range(200)]})

    def chatty(p: Any, memo: Any) -> None:
        for i in range(30):
            p.status.record(
                Decision(id=f"d{i}", time="2026-12-07T10:00:00Z", action="Applied", explanation="x" * 400)
            )
        p.status.engine_state = packed
        p.status.analysis = {"causes": [{"service": s, "evidence": ["v" * 300] * 3} for s in ("db", "web")]}
        p.condition("AnomalyDetected", "True", "Active", "a" * 1000)

    reconcile = loop_reconciler(chatty)
    call(reconcile, cached, memo_for(kube.Clients.connect(str(cp.kubeconfig)), prometheus))
    stored = opp.get_json(cp, namespace, "oloop/web")["status"]
    budget = OptimizationLoopStatus.STATUS_BUDGET_BYTES
    assert budget is not None and len(json.dumps(stored, separators=(",", ":"))) <= budget
    assert stored["decisions"][-1]["id"] == "d29" and len(stored["decisions"][-1]["explanation"]) == 400
    assert stored["engineState"] == packed
    causes = stored["analysis"]["causes"]
    assert causes[0]["service"] == "db" and all(len(c["evidence"]) == 1 for c in causes)
    assert len(stored["decisions"]) < 30, "older decisions went first"
    anomaly = opp.condition({"status": stored}, "AnomalyDetected")
    assert anomaly is not None and anomaly["reason"] == "Active"
