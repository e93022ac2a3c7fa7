"""Maintenance-aware routing end to end: a plan moves route weights off a zone before its drain.

Gateway API and Istio VirtualService CRDs from the pinned upstream modules (dev/crds-external.sh);
two backends, `a` with its pods in zone-a (kwok-node-0) and `b` in zone-b (kwok-node-1), behind an
HTTPRoute and a VirtualService at 50/50. The plan maintains kwok-node-0 (all of zone-a in the dev
cluster). Watches on the route and the pods record every change with its resourceVersion (one etcd
counter for all objects), so "the weights moved before the first eviction" is checked in the order
the apiserver wrote them. The operator runs as a real process with the shipped RBAC.
"""

from __future__ import annotations

import json
import subprocess
import sys
import threading
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from functools import partial
from pathlib import Path
from typing import Any

import pytest
from kubernetes import watch

from autoloop.api.common import GROUP
from autoloop.operator import kube
from tests.cluster import operator_process as opp

pytestmark = pytest.mark.slow  # minutes of a scenario: `make test-slow`

ZONE_A_NODE = "kwok-node-0"
ZONE_B_NODE = "kwok-node-1"
TEST_LABEL = "autoloop-routing-test"
STEP_TIMEOUT = 120.0
"""Generous: on a loaded 2-CPU machine an operator's first pass can take a minute (its predictor
trains at startup); on an idle one each wait below takes seconds."""
GATEWAY = ("gateway.networking.k8s.io", "v1", "httproutes")
ISTIO = ("networking.istio.io", "v1", "virtualservices")


@pytest.fixture(scope="module")
def routing_crds(control_plane: Any) -> None:
    subprocess.run(
        [str(opp.ROOT / "dev" / "crds-external.sh")], check=True, env=control_plane.env, timeout=600
    )


@pytest.fixture(scope="module")
def installed(control_plane: Any, routing_crds: None) -> None:
    opp.install(control_plane)


@pytest.fixture
def operator(
    control_plane: Any, prometheus: Any, installed: None, tmp_path: Path
) -> Iterator[list[opp.OperatorProcess]]:
    """A list holding the running operator (a test may kill it and append its successor)."""
    ops = [opp.start(control_plane, prometheus.url, tmp_path)]
    try:
        yield ops
    finally:
        for op in ops:
            op.stop()
        sys.stderr.write("---- operator log (tail) ----\n" + ops[-1].log()[-6000:] + "\n")
        control_plane.kubectl("uncordon", ZONE_A_NODE, check=False)


def backend(cp: Any, namespace: str, name: str, node: str) -> None:
    labels = {"app": name, TEST_LABEL: namespace}
    objs = [
        {
            "apiVersion": "apps/v1",
            "kind": "Deployment",
            "metadata": {"name": name, "namespace": namespace},
            "spec": {
                "replicas": 2,
                "selector": {"matchLabels": {"app": name}},
                "template": {
                    "metadata": {"labels": labels},
                    "spec": {
                        "nodeSelector": {"kubernetes.io/hostname": node},
                        "containers": [{"name": "main", "image": "registry.k8s.io/pause:3.10"}],
                    },
                },
            },
        },
        {
            "apiVersion": "v1",
            "kind": "Service",
            "metadata": {"name": name, "namespace": namespace},
            "spec": {"selector": {"app": name}, "ports": [{"port": 80}]},
        },
    ]
    for obj in objs:
        cp.kubectl("apply", "-f", "-", input=json.dumps(obj))


def routes(cp: Any, namespace: str) -> None:
    http_route = {
        "apiVersion": "gateway.networking.k8s.io/v1",
        "kind": "HTTPRoute",
        "metadata": {"name": "web", "namespace": namespace},
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
    virtual_service = {
        "apiVersion": "networking.istio.io/v1",
        "kind": "VirtualService",
        "metadata": {"name": "web-mesh", "namespace": namespace},
        "spec": {
            "hosts": ["web"],
            "http": [
                {
                    "route": [
                        {"destination": {"host": "a"}, "weight": 50},
                        {"destination": {"host": "b"}, "weight": 50},
                    ]
                }
            ],
        },
    }
    for obj in (http_route, virtual_service):
        cp.kubectl("apply", "-f", "-", input=json.dumps(obj))


def apply_plan(cp: Any, namespace: str, *, steps: int, pace: str) -> str:
    now = datetime.now(UTC)
    name = f"{namespace}-routed"
    body = {
        "apiVersion": f"{GROUP}/v1alpha1",
        "kind": "MaintenancePlan",
        "metadata": {"name": name},
        "spec": {
            "nodes": [ZONE_A_NODE],
            "mode": "Auto",
            "interval": "2s",
            # Overnight from an hour ago to two hours ago tomorrow: open for the next 22 h.
            "windows": [
                {
                    "start": (now - timedelta(hours=1)).strftime("%H:%M"),
                    "end": (now - timedelta(hours=2)).strftime("%H:%M"),
                }
            ],
            "drain": {
                "timeout": "120s",
                "retryInterval": "1s",
                "podSelector": {"matchLabels": {TEST_LABEL: namespace}},
            },
            "routing": {
                "routes": [
                    {"kind": "HTTPRoute", "namespace": namespace, "name": "web"},
                    {"kind": "VirtualService", "namespace": namespace, "name": "web-mesh"},
                ],
                "steps": steps,
                "pace": pace,
            },
        },
    }
    cp.kubectl("apply", "-f", "-", input=json.dumps(body))
    return name


def weights(cp: Any, namespace: str) -> dict[str, list[int]]:
    route = cp.kubectl_json("-n", namespace, "get", "httproute", "web")
    mesh = cp.kubectl_json("-n", namespace, "get", "virtualservice", "web-mesh")
    return {
        "route": [b.get("weight", 1) for b in route["spec"]["rules"][0]["backendRefs"]],
        "mesh": [r.get("weight", 0) for r in mesh["spec"]["http"][0]["route"]],
    }


def plan_status(cp: Any, name: str) -> dict[str, Any]:
    return dict(cp.kubectl_json("get", "maintenanceplan", name).get("status", {}))


def wait_done(cp: Any, name: str) -> None:
    """Until the zone's node is Done; on a timeout the plan's status is in the message."""
    try:
        opp.wait_until(
            lambda: node_step(cp, name) == "Done", timeout=STEP_TIMEOUT, what=f"{ZONE_A_NODE} Done"
        )
    except AssertionError as exc:
        raise AssertionError(f"{exc}\nplan status: {json.dumps(plan_status(cp, name))[:6000]}") from None


def node_step(cp: Any, name: str) -> str | None:
    entries = plan_status(cp, name).get("progress", [])
    return next((e["step"] for e in entries if e["node"] == ZONE_A_NODE), None)


class Recorder:
    """The HTTPRoute's weights and the evictions of `a`'s pods, in etcd (resourceVersion) order."""

    def __init__(self, cp: Any, namespace: str) -> None:
        clients = kube.Clients.connect(str(cp.kubeconfig))
        self.events: list[tuple[int, str]] = []
        self.lock = threading.Lock()
        self.stopped = False
        self.errors: list[Exception] = []
        pods: Any = clients.core.list_namespaced_pod(namespace, label_selector="app=a")
        self.pods = {p.metadata.name for p in pods.items}
        routes_: Any = clients.custom.list_namespaced_custom_object(*GATEWAY[:2], namespace, GATEWAY[2])
        self.watches = [watch.Watch(), watch.Watch()]
        self.last: list[int] = []
        self._run(
            self.watches[0],
            clients.core.list_namespaced_pod,
            (namespace,),
            pods.metadata.resource_version,
            self._on_pod,
            label_selector="app=a",
        )
        self._run(
            self.watches[1],
            clients.custom.list_namespaced_custom_object,
            (*GATEWAY[:2], namespace, GATEWAY[2]),
            routes_["metadata"]["resourceVersion"],
            self._on_route,
        )

    def _run(self, w: watch.Watch, fn: Any, args: tuple[Any, ...], rv: str, on: Any, **kw: Any) -> None:
        def loop() -> None:
            try:
                for event in w.stream(fn, *args, resource_version=rv, timeout_seconds=300, **kw):
                    on(event["type"], event["object"])
            except Exception as exc:  # a broken watch would miss writes: the test fails on it
                if not self.stopped:
                    self.errors.append(exc)

        threading.Thread(target=loop, daemon=True).start()

    def _add(self, rv: str, what: str) -> None:
        with self.lock:
            self.events.append((int(rv), what))

    def _on_pod(self, kind: str, obj: Any) -> None:
        if obj.metadata.name in self.pods and (kind == "DELETED" or obj.metadata.deletion_timestamp):
            self.pods.discard(obj.metadata.name)
            self._add(obj.metadata.resource_version, "evicted")

    def _on_route(self, _: str, obj: dict[str, Any]) -> None:
        now = [b.get("weight", 1) for b in obj["spec"]["rules"][0]["backendRefs"]]
        if now != self.last:
            self.last = now
            self._add(obj["metadata"]["resourceVersion"], f"weights {now[0]}/{now[1]}")

    def ordered(self) -> list[str]:
        self.stopped = True
        for w in self.watches:
            w.stop()
        assert not self.errors, self.errors
        with self.lock:
            return [what for _, what in sorted(self.events)]


def setup(cp: Any, namespace: str) -> None:
    backend(cp, namespace, "a", ZONE_A_NODE)
    backend(cp, namespace, "b", ZONE_B_NODE)
    routes(cp, namespace)
    for app in ("a", "b"):
        opp.wait_until(partial(two_ready, cp, namespace, app), timeout=60, what=f"2 ready pods of {app}")


def two_ready(cp: Any, namespace: str, app: str) -> bool:
    return len(ready_pods(cp, namespace, app)) == 2


def ready_pods(cp: Any, namespace: str, app: str) -> list[str]:
    pods = cp.kubectl_json("-n", namespace, "get", "pods", "-l", f"app={app}")["items"]
    return [
        p["metadata"]["name"]
        for p in pods
        if p["metadata"].get("deletionTimestamp") is None
        and any(
            c["type"] == "Ready" and c["status"] == "True" for c in p.get("status", {}).get("conditions", [])
        )
    ]


def shifted_before_evictions_and_restored(timeline: list[str]) -> None:
    first_eviction = timeline.index("evicted")
    assert "weights 0/100" in timeline[:first_eviction], timeline
    assert timeline[-1] == "weights 50/50", timeline
    assert timeline.index("weights 50/50") > timeline.index("evicted"), timeline


def test_weights_move_off_the_zone_before_its_drain_and_return_after(
    control_plane: Any, namespace: str, operator: list[opp.OperatorProcess]
) -> None:
    cp = control_plane
    setup(cp, namespace)
    recorder = Recorder(cp, namespace)
    name = apply_plan(cp, namespace, steps=2, pace="2s")
    try:
        wait_done(cp, name)
        opp.wait_until(
            lambda: weights(cp, namespace) == {"route": [50, 50], "mesh": [50, 50]},
            timeout=STEP_TIMEOUT,
            what="weights restored",
        )
        timeline = recorder.ordered()
        # 50/50 -> 25/75 -> 0/100 (2 steps) before any of a's pods is evicted; back to 50/50 after.
        assert timeline[: timeline.index("evicted")] == ["weights 25/75", "weights 0/100"], timeline
        shifted_before_evictions_and_restored(timeline)
        status = plan_status(cp, name)
        assert {r["route"]: r["phase"] for r in status["routes"]} == {
            f"HTTPRoute/{namespace}/web": "Restored",
            f"VirtualService/{namespace}/web-mesh": "Restored",
        }
        decisions = [d for d in status["decisions"] if d["target"] == f"HTTPRoute/{namespace}/web"]
        assert [d["proposed"][f"0/{namespace}/a"] for d in decisions] == [25, 0, 25, 50]
        reasons = [
            e["reason"]
            for e in cp.kubectl_json("-n", "default", "get", "events")["items"]
            if e["involvedObject"].get("name") == name
        ]
        assert "RouteShifted" in reasons and "RouteRestored" in reasons
    finally:
        cp.kubectl("delete", "maintenanceplan", name, "--timeout=60s", check=False)


def test_weights_are_restored_after_the_operator_is_killed_mid_shift(
    control_plane: Any, namespace: str, operator: list[opp.OperatorProcess], prometheus: Any, tmp_path: Path
) -> None:
    cp = control_plane
    setup(cp, namespace)
    recorder = Recorder(cp, namespace)
    name = apply_plan(cp, namespace, steps=3, pace="8s")
    try:
        # Killed after the first or the second of three steps (8 s apart), before the last.
        opp.wait_until(
            lambda: 0 < weights(cp, namespace)["route"][0] < 50,
            timeout=STEP_TIMEOUT,
            what="a step before the last",
        )
        operator[0].process.kill()  # no graceful shutdown: a crash between two steps
        operator[0].process.wait()
        saved = {r["route"]: r for r in plan_status(cp, name)["routes"]}
        route = saved[f"HTTPRoute/{namespace}/web"]
        assert route["phase"] == "Shifting" and [b["weight"] for b in route["original"]] == [50, 50]
        operator.append(opp.start(cp, prometheus.url, tmp_path))
        wait_done(cp, name)
        opp.wait_until(
            lambda: weights(cp, namespace) == {"route": [50, 50], "mesh": [50, 50]},
            timeout=STEP_TIMEOUT,
            what="weights restored by the second operator",
        )
        timeline = recorder.ordered()
        assert timeline[: timeline.index("evicted")] == ["weights 33/67", "weights 17/83", "weights 0/100"], (
            timeline
        )
        shifted_before_evictions_and_restored(timeline)
    finally:
        cp.kubectl("delete", "maintenanceplan", name, "--timeout=60s", check=False)


def test_a_group_no_window_holds_is_split_and_said_so(
    control_plane: Any, namespace: str, operator: list[opp.OperatorProcess]
) -> None:
    # Two nodes grouped by a label, one at a time, 30 min each, in a daily window of 59 min: a
    # window holds one of them whatever the half-hour grid's offset, so the group is split over two
    # days' windows, said in `Scheduled` (reason GroupSplit) and a Warning Event. Recommend: no action.
    cp, key = control_plane, f"{TEST_LABEL}/group"
    nodes = [ZONE_A_NODE, ZONE_B_NODE]
    for node in nodes:
        cp.kubectl("label", "node", node, f"{key}={namespace}", "--overwrite")
    opens = datetime.now(UTC) + timedelta(hours=2)
    name = f"{namespace}-split"
    body = {
        "apiVersion": f"{GROUP}/v1alpha1",
        "kind": "MaintenancePlan",
        "metadata": {"name": name},
        "spec": {
            "nodes": nodes,
            "mode": "Recommend",
            "interval": "2s",
            "maxConcurrent": 1,
            "windows": [
                {"start": opens.strftime("%H:%M"), "end": (opens + timedelta(minutes=59)).strftime("%H:%M")}
            ],
            "drain": {"timeout": "30m", "podSelector": {"matchLabels": {TEST_LABEL: namespace}}},
            "routing": {
                "routes": [{"kind": "HTTPRoute", "namespace": namespace, "name": "web"}],
                "groupBy": key,
            },
        },
    }
    try:
        cp.kubectl("apply", "-f", "-", input=json.dumps(body))

        def split() -> dict[str, Any] | None:
            s = plan_status(cp, name)
            c = opp.condition({"status": s}, "Scheduled")
            return s if c is not None and c["reason"] == "GroupSplit" else None

        status = opp.wait_until(split, timeout=STEP_TIMEOUT, what="Scheduled reason GroupSplit")
        scheduled = opp.condition({"status": status}, "Scheduled")
        assert scheduled is not None and scheduled["status"] == "True"
        assert f"{key}={namespace}" in scheduled["message"] and "split over 2 windows" in scheduled["message"]
        starts = sorted(datetime.fromisoformat(s["start"]) for s in status["schedule"])
        assert [s["node"] for s in status["schedule"]] and len(starts) == 2
        assert starts[1] - starts[0] >= timedelta(hours=23), "one node per day's window"
        reasons = [
            (e["type"], e["reason"])
            for e in cp.kubectl_json("-n", "default", "get", "events")["items"]
            if e["involvedObject"].get("name") == name
        ]
        assert ("Warning", "GroupSplit") in reasons
        assert not plan_status(cp, name).get("progress"), "Recommend: nothing cordoned"
    finally:
        cp.kubectl("delete", "maintenanceplan", name, "--timeout=60s", check=False)
        for node in nodes:
            cp.kubectl("label", "node", node, f"{key}-", check=False)
