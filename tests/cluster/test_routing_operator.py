"""operator.routing against the real kube-apiserver: intent before patch, resourceVersion, back off,
resume after a crash, restore, Recommend.

Each test gets a namespace holding a real Gateway API HTTPRoute `web` (50/50 over Services `a` and
`b`), `a`'s pods on kwok-node-0 (zone-a) and `b`'s on kwok-node-1 (zone-b), made Ready by kwok, and
a real cluster-scoped MaintenancePlan whose status the Router writes. The Router runs in this
process with admin clients (the shipped RBAC is checked by tests/unit/test_routing_operator.py and
the slow scenarios in test_routing.py); time is passed in as `now`, so no test waits for a pace.
Order is read from the apiserver: watches on the route and the plan record every write with its
resourceVersion (one etcd counter for all objects).
"""

from __future__ import annotations

import json
import re
import subprocess
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, replace
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from kubernetes import client, watch

from autoloop.api.common import GROUP
from autoloop.api.maintenance_routing import BackendWeight, RouteState
from autoloop.api.maintenanceplan import MaintenancePlan, MaintenancePlanStatus
from autoloop.operator import kube, routing, wiring
from tests.cluster import operator_process as opp

NOW = datetime(2026, 1, 5, 3, 0, tzinfo=UTC)
N1, N2, N3 = "kwok-node-0", "kwok-node-1", "kwok-node-2"
"""zone-a, zone-b, zone-c of the dev cluster."""
GATEWAY = ("gateway.networking.k8s.io", "v1", "httproutes")
PLANS = (GROUP, "v1alpha1", "maintenanceplans")


@pytest.fixture(scope="module")
def installed(control_plane: Any) -> None:
    """Gateway API CRDs (pinned upstream) and ours (MaintenancePlan)."""
    subprocess.run(
        [str(opp.ROOT / "dev" / "crds-external.sh")], check=True, env=control_plane.env, timeout=600
    )
    opp.install(control_plane)


class Recorder:
    """Every write to the route and to the plan, in resourceVersion order: ("patch", weights) for
    the route, ("intent", pending weights of the route) for a plan status holding it. No operator
    may run against the cluster meanwhile: its status writes would be recorded too (and move the
    plan's resourceVersion under the Router's conditional writes)."""

    def __init__(self, shop: Shop) -> None:
        self.shop = shop
        self.events: list[tuple[int, str, list[int]]] = []
        self.seen: dict[str, int] = {"route": 0, "plan": 0}
        self.lock = threading.Lock()
        self.errors: list[Exception] = []
        self.stopped = False
        custom = shop.clients.custom
        route: Any = custom.get_namespaced_custom_object(*GATEWAY[:2], shop.namespace, GATEWAY[2], "web")
        plan: Any = custom.get_cluster_custom_object(*PLANS, shop.plan)
        self.watches = [watch.Watch(), watch.Watch()]
        self._run(
            self.watches[0],
            "route",
            custom.list_namespaced_custom_object,
            (*GATEWAY[:2], shop.namespace, GATEWAY[2]),
            route["metadata"]["resourceVersion"],
        )
        self._run(
            self.watches[1],
            "plan",
            custom.list_cluster_custom_object,
            PLANS,
            plan["metadata"]["resourceVersion"],
        )

    def _run(self, w: watch.Watch, what: str, fn: Any, args: tuple[Any, ...], rv: str) -> None:
        name = "web" if what == "route" else self.shop.plan

        def loop() -> None:
            try:
                for event in w.stream(
                    fn,
                    *args,
                    resource_version=rv,
                    field_selector=f"metadata.name={name}",
                    timeout_seconds=120,
                ):
                    self._on(what, event["object"])
            except Exception as exc:  # a broken watch would miss writes: the test fails on it
                if not self.stopped:
                    self.errors.append(exc)

        threading.Thread(target=loop, daemon=True).start()

    def _on(self, what: str, obj: dict[str, Any]) -> None:
        rv = int(obj["metadata"]["resourceVersion"])
        with self.lock:
            self.seen[what] = max(self.seen[what], rv)
            if what == "route":
                self.events.append((rv, "patch", weights_of(obj)))
                return
            routes = (obj.get("status") or {}).get("routes") or []
            for r in routes:
                if r["route"] == self.shop.key:
                    self.events.append((rv, "intent", [b["weight"] for b in r.get("pending") or []]))

    def log(self) -> list[tuple[str, list[int]]]:
        """The writes so far, once both watches have caught up with the objects as they are now."""
        route = self.shop.route()
        plan: Any = self.shop.clients.custom.get_cluster_custom_object(*PLANS, self.shop.plan)
        want = {
            "route": int(route["metadata"]["resourceVersion"]),
            "plan": int(plan["metadata"]["resourceVersion"]),
        }
        opp.wait_until(
            lambda: self.errors or all(self.seen[k] >= v for k, v in want.items()),
            timeout=30,
            interval=0.05,
            what=f"the watches to reach {want}",
        )
        assert not self.errors, self.errors
        with self.lock:
            return [(kind, w) for _, kind, w in sorted(self.events)]

    def stop(self) -> None:
        self.stopped = True
        for w in self.watches:
            w.stop()


def weights_of(route: dict[str, Any]) -> list[int]:
    return [b.get("weight", 1) for b in route["spec"]["rules"][0]["backendRefs"]]


@dataclass
class Shop:
    """The test's namespace as the Router sees it, and the actions of "someone else" in it."""

    cp: Any
    namespace: str
    clients: kube.Clients
    plan: str
    """The cluster-scoped MaintenancePlan's name (unique per test; deleted afterwards)."""

    @property
    def key(self) -> str:
        return f"HTTPRoute/{self.namespace}/web"

    def route(self) -> dict[str, Any]:
        obj: Any = self.clients.custom.get_namespaced_custom_object(
            *GATEWAY[:2], self.namespace, GATEWAY[2], "web"
        )
        return dict(obj)

    def weights(self) -> list[int]:
        return weights_of(self.route())

    def someone_sets(self, weights: list[int]) -> None:
        ops = [
            {"op": "replace", "path": f"/spec/rules/0/backendRefs/{i}/weight", "value": w}
            for i, w in enumerate(weights)
        ]
        self.cp.kubectl(
            "-n", self.namespace, "patch", "httproute", "web", "--type=json", "-p", json.dumps(ops)
        )

    def pods(self, app: str, nodes: list[str]) -> None:
        """`app`'s ready pods become exactly one on each of `nodes` (the old ones are deleted)."""
        core = self.clients.core
        old: Any = core.list_namespaced_pod(self.namespace, label_selector=f"app={app}")
        for gone in old.items:
            core.delete_namespaced_pod(gone.metadata.name, self.namespace, grace_period_seconds=0)
        for i, node in enumerate(nodes):
            pod = client.V1Pod(
                metadata=client.V1ObjectMeta(
                    name=f"{app}-{node}-{i}-{time.monotonic_ns() % 10**6}", labels={"app": app}
                ),
                spec=client.V1PodSpec(
                    node_name=node,
                    containers=[client.V1Container(name="main", image="registry.k8s.io/pause:3.10")],
                ),
            )
            core.create_namespaced_pod(self.namespace, pod)
        opp.wait_until(
            lambda: sorted(self.ready(app)) == sorted(nodes),
            timeout=30,
            interval=0.1,
            what=f"{app} on {nodes}",
        )

    def ready(self, app: str) -> list[str]:
        pods: Any = self.clients.core.list_namespaced_pod(self.namespace, label_selector=f"app={app}")
        return [
            p.spec.node_name
            for p in pods.items
            if p.metadata.deletion_timestamp is None
            and any(c.type == "Ready" and c.status == "True" for c in (p.status.conditions or []))
        ]

    def make_pass(self, status: MaintenancePlanStatus | None = None, **routing_spec: Any) -> routing.PlanPass:
        """Create the real plan (and its status, as a crashed operator left it); the pass is
        computed from the object the apiserver stored."""
        body = {
            "apiVersion": f"{GROUP}/v1alpha1",
            "kind": "MaintenancePlan",
            "metadata": {"name": self.plan},
            "spec": {
                "windows": [{"start": "02:00", "end": "05:00"}],
                "nodes": [N1],
                "routing": {"routes": [{"namespace": self.namespace, "name": "web"}], **routing_spec},
            },
        }
        obj: Any = self.clients.custom.create_cluster_custom_object(*PLANS, body)
        if status is not None:
            kube.patch_status(
                self.clients, plural=PLANS[2], namespace="", name=self.plan, status=status.wire()
            )
            obj = self.clients.custom.get_cluster_custom_object(*PLANS, self.plan)
        return wiring.Pass(
            resource=MaintenancePlan.model_validate({"spec": obj["spec"]}),
            namespace="",
            name=self.plan,
            generation=int(obj["metadata"]["generation"]),
            now=NOW,
            status=MaintenancePlanStatus.model_validate(obj.get("status") or {}),
            plural=PLANS[2],
            resource_version=str(obj["metadata"]["resourceVersion"]),
        )

    def router(self, p: routing.PlanPass, seconds: float) -> routing.Router:
        return routing.Router(p, self.clients, now=NOW + timedelta(seconds=seconds))


@pytest.fixture
def shop(control_plane: Any, namespace: str, installed: None) -> Iterator[Shop]:
    clients = kube.Clients.connect(str(control_plane.kubeconfig))
    s = Shop(control_plane, namespace, clients, plan=f"{namespace}-p")
    for app in ("a", "b"):
        service = client.V1Service(
            metadata=client.V1ObjectMeta(name=app),
            spec=client.V1ServiceSpec(selector={"app": app}, ports=[client.V1ServicePort(port=80)]),
        )
        clients.core.create_namespaced_service(namespace, service)
    route = {
        "apiVersion": "gateway.networking.k8s.io/v1",
        "kind": "HTTPRoute",
        "metadata": {"name": "web"},
        "spec": {
            "rules": [
                {
                    "backendRefs": [
                        {"name": "a", "port": 80, "weight": 50},
                        {"name": "b", "port": 80, "weight": 50},
                    ]
                }
            ]
        },
    }
    clients.custom.create_namespaced_custom_object(*GATEWAY[:2], namespace, GATEWAY[2], route)
    s.pods("a", [N1, N1])
    s.pods("b", [N2, N2])
    try:
        yield s
    finally:
        control_plane.kubectl("delete", "maintenanceplan", s.plan, "--ignore-not-found", "--wait=false")


def test_shift_writes_intent_before_each_patch_and_paces_the_steps(shop: Shop) -> None:
    p = shop.make_pass(steps=2, pace="10s")
    rec = Recorder(shop)
    try:
        assert shop.router(p, 0).shift(frozenset({N1})) == 10.0  # step 1 written, next in 10 s
        assert shop.router(p, 5).shift(frozenset({N1})) == 5.0  # too early: nothing written
        assert shop.router(p, 10).shift(frozenset({N1})) is None  # step 2: done
        assert rec.log() == [
            ("intent", [25, 75]),
            ("patch", [25, 75]),
            ("intent", [0, 100]),
            ("patch", [0, 100]),
        ]
    finally:
        rec.stop()
    state = p.status.routes[0]
    assert state.phase == "Shifted" and [b.weight for b in state.original] == [50, 50]
    ns = shop.namespace
    assert [d.proposed for d in p.status.decisions] == [
        {f"0/{ns}/a": 25, f"0/{ns}/b": 75},
        {f"0/{ns}/a": 0, f"0/{ns}/b": 100},
    ]
    assert [e[1] for e in p.events] == ["RouteShifted", "RouteShifted"]
    # The node's drain timeout counts from the last step, not from entering Draining.
    assert routing.shifted_at(p.status, N1) == [NOW + timedelta(seconds=10)]
    assert routing.shifted_at(p.status, N2) == []


def test_a_route_changed_by_someone_else_is_left_alone(shop: Shop) -> None:
    p = shop.make_pass(steps=2, pace="10s")
    shop.router(p, 0).shift(frozenset({N1}))
    shop.someone_sets([40, 60])
    changed = shop.route()["metadata"]["resourceVersion"]
    assert shop.router(p, 10).shift(frozenset({N1})) is None  # the drain is not held up
    assert shop.router(p, 20).shift(frozenset({N1})) is None  # nor shifted anew this turn
    shop.router(p, 30).settle(frozenset(), ready={N1, N2})  # nor restored
    route = shop.route()
    assert weights_of(route) == [40, 60] and route["metadata"]["resourceVersion"] == changed  # not written
    assert p.status.routes[0].phase == "BackedOff"
    routed = p.status.condition("Routed")
    assert routed is not None and routed.reason == "RouteChangedElsewhere"
    # The back-off is recorded on the real plan too (so a restarted operator keeps its hands off).
    stored: Any = shop.clients.custom.get_cluster_custom_object(*PLANS, shop.plan)
    assert [r["phase"] for r in stored["status"]["routes"]] == ["BackedOff"]


class LabelledBeforePatch(client.CustomObjectsApi):
    """The real CustomObjectsApi; just before the Router's patch reaches the apiserver, someone
    else labels the route (weights unchanged, resourceVersion moved) with a real write."""

    def patch_namespaced_custom_object(  # type: ignore[override]
        self, group: str, version: str, namespace: str, plural: str, name: str, body: Any, **kw: Any
    ) -> Any:
        label = {"metadata": {"labels": {"someone": "else"}}}
        super().patch_namespaced_custom_object(group, version, namespace, plural, name, label)
        return super().patch_namespaced_custom_object(group, version, namespace, plural, name, body, **kw)


def test_a_change_between_read_and_patch_gets_a_conflict_not_an_overwrite(shop: Shop) -> None:
    p = shop.make_pass(steps=1)
    clients = replace(shop.clients, custom=LabelledBeforePatch(shop.clients.api))
    with pytest.raises(kube.Conflict, match=re.escape(shop.key)):  # the route's 409, not the plan's
        routing.Router(p, clients, now=NOW).shift(frozenset({N1}))
    route = shop.route()
    assert weights_of(route) == [50, 50]
    assert route["metadata"]["labels"] == {"someone": "else"}  # their write stands


def test_after_a_crash_a_landed_write_is_confirmed_and_the_steps_go_on(shop: Shop) -> None:
    shop.someone_sets([25, 75])  # our step 1 landed, the operator died before confirming it
    ns = shop.namespace
    w = lambda a, b: [  # noqa: E731
        BackendWeight(rule=0, index=0, service=f"{ns}/a", weight=a),
        BackendWeight(rule=0, index=1, service=f"{ns}/b", weight=b),
    ]
    saved = RouteState(
        route=shop.key,
        phase="Shifting",
        nodes=[N1],
        original=w(50, 50),
        target=w(0, 100),
        applied=w(50, 50),
        pending=w(25, 75),
        step=1,
        steps=2,
        updated_at="2026-01-05T02:59:00Z",
    )
    p = shop.make_pass(MaintenancePlanStatus(routes=[saved]), steps=2, pace="10s")
    assert p.status.routes[0].pending == saved.pending  # the intent as the apiserver stored it
    assert shop.router(p, 0).shift(frozenset({N1})) is None
    assert shop.weights() == [0, 100]
    assert p.status.routes[0].phase == "Shifted"


def test_restore_waits_for_the_node_and_for_ready_endpoints_then_returns_the_weights(shop: Shop) -> None:
    p = shop.make_pass(steps=1)
    shop.router(p, 0).shift(frozenset({N1}))
    assert shop.weights() == [0, 100]
    shop.router(p, 1).settle(frozenset({N1}), ready={N2})  # N1 still in maintenance
    shop.pods("a", [])  # evicted, not back yet
    shop.router(p, 2).settle(frozenset(), ready={N1, N2})
    assert shop.weights() == [0, 100]
    assert f"waiting for ready endpoints of {shop.namespace}/a" in p.status.routes[0].message
    shop.pods("a", [N1, N3])
    shop.router(p, 3).settle(frozenset(), ready={N1, N2})
    assert shop.weights() == [50, 50]
    assert p.status.routes[0].phase == "Restored"


def test_restore_goes_ahead_after_the_restore_timeout(shop: Shop) -> None:
    p = shop.make_pass(steps=1, restoreTimeout="1m")
    shop.router(p, 0).shift(frozenset({N1}))
    shop.pods("a", [])
    shop.router(p, 1).settle(frozenset(), ready={N1, N2})
    shop.router(p, 30).settle(frozenset(), ready={N1, N2})
    assert shop.weights() == [0, 100]
    shop.router(p, 62).settle(frozenset(), ready={N1, N2})
    assert shop.weights() == [50, 50]


def test_recommend_records_the_shift_and_patches_nothing(shop: Shop) -> None:
    p = shop.make_pass()
    before = (shop.route()["metadata"]["resourceVersion"], p.resource_version)
    routing.recommend(p, shop.clients, N1)
    stored: Any = shop.clients.custom.get_cluster_custom_object(*PLANS, shop.plan)
    # Neither the route nor the plan was written (a write moves its resourceVersion).
    assert (shop.route()["metadata"]["resourceVersion"], stored["metadata"]["resourceVersion"]) == before
    assert shop.weights() == [50, 50]
    state = p.status.routes[0]
    assert state.phase == "Recommended" and [b.weight for b in state.target] == [0, 100]
    assert p.status.decisions[-1].action == "Recommended"
    routing.recommend(p, shop.clients, N1)
    assert len(p.status.decisions) == 1  # the same recommendation is recorded once


def test_a_missing_route_is_reported_and_does_not_hold_the_drain(shop: Shop) -> None:
    p = shop.make_pass()
    shop.cp.kubectl("-n", shop.namespace, "delete", "httproute", "web")
    assert shop.router(p, 0).shift(frozenset({N1})) is None
    routed = p.status.condition("Routed")
    assert routed is not None and routed.reason == "RouteNotFound"


def test_explain_shows_each_route_before_and_now(shop: Shop) -> None:
    from autoloop.report import explain_plan

    p = shop.make_pass(steps=1)
    shop.router(p, 0).shift(frozenset({N1}))
    # The pass's status as the reconcile writes it at its end, read back from the apiserver.
    kube.patch_status(shop.clients, plural=PLANS[2], namespace="", name=shop.plan, status=p.status.wire())
    text = explain_plan(shop.cp.kubectl_json("get", "maintenanceplan", shop.plan))
    line = next(x for x in text.splitlines() if x.startswith(shop.key))
    assert line.split()[1:4] == ["Shifted", "a=50", "b=50"] and "a=0 b=100" in line


def test_a_firing_blocker_restores_the_routes_without_waiting_for_the_node(shop: Shop) -> None:
    from autoloop.operator import maintenanceplan as mp

    p = shop.make_pass(steps=1)
    shop.router(p, 0).shift(frozenset({N1}))
    assert shop.weights() == [0, 100]
    mp.restore_routes(p, shop.clients)  # N1 is still in maintenance: restored anyway
    assert shop.weights() == [50, 50]
    assert p.status.routes[0].phase == "Restored"


def test_deleting_the_plan_restores_in_one_write_whatever_the_steps(shop: Shop) -> None:
    p = shop.make_pass(steps=3, pace="10s")
    shop.router(p, 0).shift(frozenset({N1}))
    assert shop.weights() == [33, 67]
    rec = Recorder(shop)
    try:
        restored = routing.release(
            plan=p.resource,
            status=p.status,
            name=shop.plan,
            clients=shop.clients,
            now=NOW + timedelta(seconds=1),
        )
        assert restored == [shop.key] and shop.weights() == [50, 50]
        assert [entry for entry in rec.log() if entry[0] == "patch"] == [("patch", [50, 50])]
    finally:
        rec.stop()
