"""operator.routing against an in-memory apiserver: intent before patch, resourceVersion, back off,
resume after a crash, restore, Recommend."""

from __future__ import annotations

import copy
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from types import SimpleNamespace
from typing import Any

import pytest
from kubernetes.client.exceptions import ApiException

from autoloop.api.maintenance_routing import BackendWeight, RouteState
from autoloop.api.maintenanceplan import MaintenancePlan, MaintenancePlanStatus
from autoloop.operator import routing, wiring

NOW = datetime(2026, 1, 5, 3, 0, tzinfo=UTC)
KEY = "HTTPRoute/shop/web"


@dataclass
class FakeCluster:
    """Just enough of CoreV1Api and CustomObjectsApi: one HTTPRoute, two Services, their pods."""

    route: dict[str, Any] = field(
        default_factory=lambda: {
            "metadata": {"namespace": "shop", "name": "web", "resourceVersion": "1"},
            "spec": {"rules": [{"backendRefs": [{"name": "a", "weight": 50}, {"name": "b", "weight": 50}]}]},
        }
    )
    pods: dict[str, list[str]] = field(default_factory=lambda: {"a": ["n1", "n1"], "b": ["n2", "n2"]})
    log: list[tuple[str, Any]] = field(default_factory=list)
    version: int = 1

    def __post_init__(self) -> None:
        self.core = SimpleNamespace(
            read_namespaced_service=lambda name, ns: SimpleNamespace(
                spec=SimpleNamespace(selector={"app": name})
            ),
            list_namespaced_pod=self._pods,
        )
        self.custom = SimpleNamespace(
            get_namespaced_custom_object=lambda *args: copy.deepcopy(self.route),
            patch_namespaced_custom_object=self._patch,
            patch_cluster_custom_object_status=self._status,
        )

    def _pods(self, namespace: str, label_selector: str) -> Any:
        app = label_selector.removeprefix("app=")
        ready = [SimpleNamespace(type="Ready", status="True")]
        return SimpleNamespace(
            items=[
                SimpleNamespace(
                    metadata=SimpleNamespace(deletion_timestamp=None),
                    spec=SimpleNamespace(node_name=node),
                    status=SimpleNamespace(conditions=ready),
                )
                for node in self.pods.get(app, [])
            ]
        )

    def _patch(
        self, group: str, version: str, ns: str, plural: str, name: str, ops: list[Any], **kw: Any
    ) -> None:
        assert kw["_content_type"] == "application/json-patch+json"
        assert ops[0]["path"] == "/metadata/resourceVersion"
        if ops[0]["value"] != self.route["metadata"]["resourceVersion"]:
            raise ApiException(status=409, reason="Conflict")
        for op in ops[1:]:
            _, _, _, rule, _, index, _ = op["path"].split("/")
            self.route["spec"]["rules"][int(rule)]["backendRefs"][int(index)]["weight"] = op["value"]
        self.edit_version()
        self.log.append(("patch", self.weights()))

    def _status(
        self, group: str, version: str, plural: str, name: str, body: dict[str, Any]
    ) -> dict[str, Any]:
        routes = body["status"].get("routes")
        if routes is not None:
            pending = [[b["weight"] for b in r.get("pending", [])] for r in routes if r["route"] == KEY]
            self.log.append(("intent", pending[0] if pending else []))
        return {"metadata": {"resourceVersion": "99"}}

    def edit_version(self) -> None:
        self.version += 1
        self.route["metadata"]["resourceVersion"] = str(self.version)

    def weights(self) -> list[int]:
        return [b["weight"] for b in self.route["spec"]["rules"][0]["backendRefs"]]

    def someone_sets(self, weights: list[int]) -> None:
        for b, w in zip(self.route["spec"]["rules"][0]["backendRefs"], weights, strict=True):
            b["weight"] = w
        self.edit_version()


def make_pass(status: MaintenancePlanStatus | None = None, **routing_spec: Any) -> routing.PlanPass:
    plan = MaintenancePlan.model_validate(
        {
            "spec": {
                "windows": [{"start": "02:00", "end": "05:00"}],
                "nodes": ["n1"],
                "routing": {"routes": [{"namespace": "shop", "name": "web"}], **routing_spec},
            }
        }
    )
    return wiring.Pass(
        resource=plan,
        namespace="",
        name="p",
        generation=1,
        now=NOW,
        status=status or MaintenancePlanStatus(),
        plural="maintenanceplans",
    )


def router(p: routing.PlanPass, cluster: FakeCluster, seconds: float) -> routing.Router:
    return routing.Router(p, cluster, now=NOW + timedelta(seconds=seconds))  # type: ignore[arg-type]


def test_shift_writes_intent_before_each_patch_and_paces_the_steps() -> None:
    cluster, p = FakeCluster(), make_pass(steps=2, pace="10s")
    assert router(p, cluster, 0).shift(frozenset({"n1"})) == 10.0  # step 1 written, next in 10 s
    assert router(p, cluster, 5).shift(frozenset({"n1"})) == 5.0  # too early: nothing written
    assert router(p, cluster, 10).shift(frozenset({"n1"})) is None  # step 2: done
    assert cluster.log == [
        ("intent", [25, 75]),
        ("patch", [25, 75]),
        ("intent", [0, 100]),
        ("patch", [0, 100]),
    ]
    state = p.status.routes[0]
    assert state.phase == "Shifted" and [b.weight for b in state.original] == [50, 50]
    assert [d.proposed for d in p.status.decisions] == [
        {"0/shop/a": 25, "0/shop/b": 75},
        {"0/shop/a": 0, "0/shop/b": 100},
    ]
    assert [e[1] for e in p.events] == ["RouteShifted", "RouteShifted"]
    # The node's drain timeout counts from the last step, not from entering Draining.
    assert routing.shifted_at(p.status, "n1") == [NOW + timedelta(seconds=10)]
    assert routing.shifted_at(p.status, "n2") == []


def test_a_route_changed_by_someone_else_is_left_alone() -> None:
    cluster, p = FakeCluster(), make_pass(steps=2, pace="10s")
    router(p, cluster, 0).shift(frozenset({"n1"}))
    cluster.someone_sets([40, 60])
    assert router(p, cluster, 10).shift(frozenset({"n1"})) is None  # the drain is not held up
    assert router(p, cluster, 20).shift(frozenset({"n1"})) is None  # nor shifted anew this turn
    router(p, cluster, 30).settle(frozenset(), ready={"n1", "n2"})  # nor restored
    assert cluster.weights() == [40, 60]
    assert p.status.routes[0].phase == "BackedOff"
    routed = p.status.condition("Routed")
    assert routed is not None and routed.reason == "RouteChangedElsewhere"


def test_a_change_between_read_and_patch_gets_a_conflict_not_an_overwrite() -> None:
    cluster, p = FakeCluster(), make_pass(steps=1)
    real_get = cluster.custom.get_namespaced_custom_object

    def read_then_someone_writes(*args: Any) -> dict[str, Any]:
        obj: dict[str, Any] = real_get(*args)
        cluster.edit_version()  # e.g. a label added: weights unchanged, resourceVersion moved
        return obj

    cluster.custom.get_namespaced_custom_object = read_then_someone_writes
    with pytest.raises(routing.kube.Conflict):
        router(p, cluster, 0).shift(frozenset({"n1"}))
    assert cluster.weights() == [50, 50]


def test_after_a_crash_a_landed_write_is_confirmed_and_the_steps_go_on() -> None:
    cluster = FakeCluster()
    cluster.someone_sets([25, 75])  # our step 1 landed, the operator died before confirming it
    w = lambda a, b: [  # noqa: E731
        BackendWeight(rule=0, index=0, service="shop/a", weight=a),
        BackendWeight(rule=0, index=1, service="shop/b", weight=b),
    ]
    saved = RouteState(
        route=KEY,
        phase="Shifting",
        nodes=["n1"],
        original=w(50, 50),
        target=w(0, 100),
        applied=w(50, 50),
        pending=w(25, 75),
        step=1,
        steps=2,
        updated_at="2026-01-05T02:59:00Z",
    )
    p = make_pass(MaintenancePlanStatus(routes=[saved]), steps=2, pace="10s")
    assert router(p, cluster, 0).shift(frozenset({"n1"})) is None
    assert cluster.weights() == [0, 100]
    assert p.status.routes[0].phase == "Shifted"


def test_restore_waits_for_the_node_and_for_ready_endpoints_then_returns_the_weights() -> None:
    cluster, p = FakeCluster(), make_pass(steps=1)
    router(p, cluster, 0).shift(frozenset({"n1"}))
    assert cluster.weights() == [0, 100]
    router(p, cluster, 1).settle(frozenset({"n1"}), ready={"n2"})  # n1 still in maintenance
    cluster.pods["a"] = []  # evicted, not back yet
    router(p, cluster, 2).settle(frozenset(), ready={"n1", "n2"})
    assert cluster.weights() == [0, 100]
    assert "waiting for ready endpoints of shop/a" in p.status.routes[0].message
    cluster.pods["a"] = ["n1", "n3"]
    router(p, cluster, 3).settle(frozenset(), ready={"n1", "n2"})
    assert cluster.weights() == [50, 50]
    assert p.status.routes[0].phase == "Restored"


def test_restore_goes_ahead_after_the_restore_timeout() -> None:
    cluster, p = FakeCluster(), make_pass(steps=1, restoreTimeout="1m")
    router(p, cluster, 0).shift(frozenset({"n1"}))
    cluster.pods["a"] = []
    router(p, cluster, 1).settle(frozenset(), ready={"n1", "n2"})
    router(p, cluster, 30).settle(frozenset(), ready={"n1", "n2"})
    assert cluster.weights() == [0, 100]
    router(p, cluster, 62).settle(frozenset(), ready={"n1", "n2"})
    assert cluster.weights() == [50, 50]


def test_recommend_records_the_shift_and_patches_nothing() -> None:
    cluster, p = FakeCluster(), make_pass()
    routing.recommend(p, cluster, "n1")  # type: ignore[arg-type]
    assert cluster.log == [] and cluster.weights() == [50, 50]
    state = p.status.routes[0]
    assert state.phase == "Recommended" and [b.weight for b in state.target] == [0, 100]
    assert p.status.decisions[-1].action == "Recommended"
    routing.recommend(p, cluster, "n1")  # type: ignore[arg-type]
    assert len(p.status.decisions) == 1  # the same recommendation is recorded once


def test_a_missing_route_is_reported_and_does_not_hold_the_drain() -> None:
    cluster, p = FakeCluster(), make_pass()

    def gone(*args: Any) -> None:
        raise ApiException(status=404, reason="Not Found")

    cluster.custom.get_namespaced_custom_object = gone
    assert router(p, cluster, 0).shift(frozenset({"n1"})) is None
    routed = p.status.condition("Routed")
    assert routed is not None and routed.reason == "RouteNotFound"


def test_explain_shows_each_route_before_and_now() -> None:
    from autoloop.report import explain_plan

    cluster, p = FakeCluster(), make_pass(steps=1)
    router(p, cluster, 0).shift(frozenset({"n1"}))
    text = explain_plan({"kind": "MaintenancePlan", "metadata": {"name": "p"}, "status": p.status.wire()})
    line = next(x for x in text.splitlines() if x.startswith(KEY))
    assert line.split()[1:4] == ["Shifted", "a=50", "b=50"] and "a=0 b=100" in line


def test_the_operator_may_patch_routes_exactly_as_the_docs_table_says() -> None:
    from pathlib import Path

    import yaml

    root = Path(__file__).resolve().parents[2]
    groups = {"gateway.networking.k8s.io", "networking.istio.io"}
    docs = yaml.safe_load_all((root / "manifests" / "base" / "rbac.yaml").read_text())
    role = next(
        d for d in docs if d and d["kind"] == "ClusterRole" and d["metadata"]["name"] == "autoloop-operator"
    )
    rules = [r for r in role["rules"] if set(r["apiGroups"]) & groups]
    granted = {
        (g, r, v)
        for rule in rules
        for g in rule["apiGroups"]
        for r in rule["resources"]
        for v in rule["verbs"]
    }
    text = (root / "docs" / "api.md").read_text()
    row = next(line for line in text.splitlines() if line.startswith("| gateway.networking.k8s.io"))
    cells = [[x.strip() for x in c.split(",")] for c in row.strip("|").split("|")[:3]]
    assert granted == {(g, r, v) for g in cells[0] for r in cells[1] for v in cells[2]}
    assert {v for _, _, v in granted} == {"get", "list", "watch", "patch"}
    # Reading the routes' backends needs pods and Services, which the role already reads.
    assert any("pods" in r["resources"] and "list" in r["verbs"] for r in role["rules"])


def test_a_firing_blocker_restores_the_routes_without_waiting_for_the_node() -> None:
    from autoloop.operator import maintenanceplan as mp

    cluster, p = FakeCluster(), make_pass(steps=1)
    router(p, cluster, 0).shift(frozenset({"n1"}))
    assert cluster.weights() == [0, 100]
    mp.restore_routes(p, cluster)  # type: ignore[arg-type]  # n1 is still cordoned: restored anyway
    assert cluster.weights() == [50, 50]
    assert p.status.routes[0].phase == "Restored"


def test_deleting_the_plan_restores_in_one_write_whatever_the_steps() -> None:
    cluster, p = FakeCluster(), make_pass(steps=3, pace="10s")
    router(p, cluster, 0).shift(frozenset({"n1"}))
    assert cluster.weights() == [33, 67]
    restored = routing.release(
        plan=p.resource,
        status=p.status,
        name="p",
        clients=cluster,  # type: ignore[arg-type]
        now=NOW + timedelta(seconds=1),
    )
    assert restored == [KEY] and cluster.weights() == [50, 50]
    assert [entry for entry in cluster.log if entry[0] == "patch"][-1] == ("patch", [50, 50])
