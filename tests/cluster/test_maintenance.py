"""MaintenancePlan end to end: predict from node metrics, schedule, cordon, drain, act, uncordon.

The kwok nodes have no node-exporter, so this module runs its own Prometheus (the dev one has no
hook for extra scrape targets) scraping `autoloop.simulation.node_exporter`, with 72 h of history
backfilled by promtool from the same node model: kwok-node-2 has a disk filling at 2 %/h (90 %
now), the others are healthy. The operator runs as a real process with the shipped RBAC.
"""

from __future__ import annotations

import json
import subprocess
import sys
import threading
import time
import urllib.parse
import urllib.request
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
import yaml
from kubernetes import watch

from autoloop.api.common import GROUP
from autoloop.operator import kube
from autoloop.simulation.node_exporter import PREFIX, NodeModel, history_openmetrics
from tests.cluster import operator_process as opp

NODES = ("kwok-node-0", "kwok-node-1", "kwok-node-2")
RISKY = "kwok-node-2"
CORDONED_BY = f"{GROUP}/cordoned-by"
SIM_KEYS = ("disk-used", "disk-fill-rate", "memory-used", "temperature", "errors-per-hour", "reference-time")
HISTORY_HOURS = 72.0
HISTORY_STEP_SECONDS = 300.0
SCRAPE_INTERVAL = "2s"
JOB = "node-exporter-sim"
TEST_LABEL = "autoloop-maintenance-test"
FORCE_RBAC = Path(__file__).resolve().parents[2] / "manifests" / "optional" / "force-drain-rbac.yaml"


@dataclass
class NodePrometheus:
    url: str

    def query(self, promql: str) -> list[dict[str, Any]]:
        qs = urllib.parse.urlencode({"query": promql})
        with urllib.request.urlopen(f"{self.url}/api/v1/query?{qs}", timeout=10) as resp:
            answer = json.loads(resp.read())
        return list(answer["data"]["result"])


def _annotate_nodes(cp: Any, now: float) -> dict[str, NodeModel]:
    """Make RISKY's disk fill; the others healthy; one reference time for history and live data."""
    models: dict[str, NodeModel] = {}
    for node in NODES:
        values = {"reference-time": f"{now:.0f}"}
        if node == RISKY:
            values |= {"disk-used": "0.9", "disk-fill-rate": "0.02"}
        clear = [f"{PREFIX}{k}-" for k in SIM_KEYS if k not in values]
        cp.kubectl(
            "annotate", "node", node, "--overwrite", *[f"{PREFIX}{k}={v}" for k, v in values.items()], *clear
        )
        models[node] = NodeModel.from_annotations(
            {PREFIX + k: v for k, v in values.items()}, default_reference=now
        )
    return models


@pytest.fixture(scope="module")
def node_prometheus(control_plane: Any, tmp_path_factory: Any) -> Iterator[NodePrometheus]:
    work: Path = tmp_path_factory.mktemp("node-prometheus")
    now = time.time()
    models = _annotate_nodes(control_plane, now)
    history = work / "history.om"
    history.write_text(
        history_openmetrics(
            models,
            start=now - HISTORY_HOURS * 3600,
            end=now - 60,
            step=HISTORY_STEP_SECONDS,
            extra_labels={"job": JOB},
        )
    )
    data = work / "data"
    data.mkdir()
    subprocess.run(
        ["/usr/bin/promtool", "tsdb", "create-blocks-from", "openmetrics", str(history), str(data)],
        check=True,
        capture_output=True,
        cwd=work,
        timeout=300,
    )
    prom_port = opp.free_port()
    exporter, exporter_port = opp.start_node_exporter(control_plane, work)
    config = {
        "global": {"scrape_interval": SCRAPE_INTERVAL, "evaluation_interval": SCRAPE_INTERVAL},
        "scrape_configs": [
            {
                "job_name": JOB,
                "honor_labels": True,
                "static_configs": [{"targets": [f"127.0.0.1:{exporter_port}"]}],
            }
        ],
    }
    (work / "prometheus.yml").write_text(yaml.safe_dump(config))
    prom_log = (work / "prometheus.log").open("wb")
    prom = subprocess.Popen(
        [
            "/usr/bin/prometheus",
            f"--config.file={work / 'prometheus.yml'}",
            f"--storage.tsdb.path={data}",
            "--storage.tsdb.retention.time=3650d",
            f"--web.listen-address=127.0.0.1:{prom_port}",
            "--log.level=warn",
        ],
        stdout=prom_log,
        stderr=subprocess.STDOUT,
    )
    handle = NodePrometheus(url=f"http://127.0.0.1:{prom_port}")
    try:
        opp.wait_until(
            lambda: handle.query(f'node_filesystem_avail_bytes{{instance="{RISKY}"}}'),
            timeout=90,
            what="live node-exporter samples in the private Prometheus",
        )
        opp.wait_until(
            lambda: (
                float(
                    handle.query(f'count_over_time(node_filesystem_avail_bytes{{instance="{RISKY}"}}[72h])')[
                        0
                    ]["value"][1]
                )
                > 800
            ),
            timeout=30,
            what="backfilled history",
        )
        yield handle
    finally:
        opp.stop_process(prom)
        opp.stop_process(exporter)
        for node in NODES:
            control_plane.kubectl("annotate", "node", node, *[f"{PREFIX}{k}-" for k in SIM_KEYS], check=False)
            control_plane.kubectl("uncordon", node, check=False)


@pytest.fixture(scope="module")
def installed(control_plane: Any) -> None:
    opp.install(control_plane)


@pytest.fixture
def operator(
    control_plane: Any, node_prometheus: NodePrometheus, installed: None, tmp_path: Path
) -> Iterator[opp.OperatorProcess]:
    op = opp.start(control_plane, node_prometheus.url, tmp_path)
    try:
        yield op
    finally:
        op.stop()
        sys.stderr.write("---- operator log (tail) ----\n" + op.log()[-6000:] + "\n")


# -- helpers -----------------------------------------------------------------------------------------


def always_open() -> dict[str, str]:
    """An overnight window from an hour ago to two hours ago tomorrow: open for the next 22 h."""
    now = datetime.now(UTC)
    return {
        "start": (now - timedelta(hours=1)).strftime("%H:%M"),
        "end": (now - timedelta(hours=2)).strftime("%H:%M"),
    }


def plan_name(namespace: str, name: str) -> str:
    """Plans are cluster-scoped: each test's plans carry its namespace's name, so tests never meet."""
    return f"{namespace}-{name}"


def apply_plan(cp: Any, namespace: str, name: str, spec: dict[str, Any]) -> None:
    """A plan with an always-open window, short intervals, and a drain limited to this test's pods
    (the dev cluster is shared: other sessions' pods on the kwok nodes are left alone)."""
    drain = {"timeout": "60s", "retryInterval": "1s", "podSelector": {"matchLabels": {TEST_LABEL: namespace}}}
    drain |= spec.pop("drain", {})
    body = {
        "apiVersion": f"{GROUP}/v1alpha1",
        "kind": "MaintenancePlan",
        "metadata": {"name": plan_name(namespace, name)},
        "spec": {
            "windows": [always_open()],
            "interval": "2s",
            "drain": drain,
            **spec,
        },
    }
    cp.kubectl("apply", "-f", "-", input=json.dumps(body))


def deployment(
    cp: Any,
    namespace: str,
    name: str,
    *,
    replicas: int,
    node: str | None = None,
    labels: dict[str, str] | None = None,
) -> None:
    pod_labels = {"app": name, TEST_LABEL: namespace}
    spec: dict[str, Any] = {"containers": [{"name": "main", "image": "registry.k8s.io/pause:3.10"}]}
    if node is not None:
        spec["nodeSelector"] = {"kubernetes.io/hostname": node}
    body = {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": {"name": name, "namespace": namespace, "labels": labels or {"app": name}},
        "spec": {
            "replicas": replicas,
            "selector": {"matchLabels": {"app": name}},
            "template": {"metadata": {"labels": pod_labels}, "spec": spec},
        },
    }
    cp.kubectl("apply", "-f", "-", input=json.dumps(body))


def pdb(cp: Any, namespace: str, name: str, *, app: str, min_available: int) -> None:
    body = {
        "apiVersion": "policy/v1",
        "kind": "PodDisruptionBudget",
        "metadata": {"name": name, "namespace": namespace},
        "spec": {"minAvailable": min_available, "selector": {"matchLabels": {"app": app}}},
    }
    cp.kubectl("apply", "-f", "-", input=json.dumps(body))


def ready_pods(cp: Any, namespace: str, app: str) -> list[dict[str, Any]]:
    pods = cp.kubectl_json("-n", namespace, "get", "pods", "-l", f"app={app}")["items"]
    return [
        p
        for p in pods
        if p["metadata"].get("deletionTimestamp") is None
        and any(
            c["type"] == "Ready" and c["status"] == "True" for c in p.get("status", {}).get("conditions", [])
        )
    ]


def wait_ready(cp: Any, namespace: str, app: str, count: int) -> list[dict[str, Any]]:
    return opp.wait_until(
        lambda: (pods := ready_pods(cp, namespace, app)) and len(pods) >= count and pods,
        timeout=60,
        what=f"{count} ready pods of {app}",
    )


def plan_status(cp: Any, namespace: str, name: str) -> dict[str, Any]:
    return dict(cp.kubectl_json("get", "maintenanceplan", plan_name(namespace, name)).get("status", {}))


def progress(cp: Any, namespace: str, name: str) -> dict[str, dict[str, Any]]:
    return {e["node"]: e for e in plan_status(cp, namespace, name).get("progress", [])}


def cordoned_by_us(cp: Any, owner: str) -> set[str]:
    nodes = cp.kubectl_json("get", "nodes")["items"]
    return {
        n["metadata"]["name"]
        for n in nodes
        if (n["metadata"].get("annotations") or {}).get(CORDONED_BY) == owner
        and n["spec"].get("unschedulable")
    }


def watch_until(
    done: Callable[[], bool], observe: Callable[[], None], *, timeout: float, what: str, interval: float = 0.3
) -> None:
    """Call observe() every interval (assertions inside it run during the whole run) until done()."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        observe()
        if done():
            return
        time.sleep(interval)
    raise AssertionError(f"timed out after {timeout}s waiting for {what}")


def condition(cp: Any, namespace: str, name: str, type_: str) -> dict[str, Any] | None:
    return opp.condition({"status": plan_status(cp, namespace, name)}, type_)


def events(cp: Any, namespace: str) -> list[str]:
    """The namespace's Events and those of its test's plans (Kubernetes keeps Events of
    cluster-scoped objects in `default`)."""
    items = cp.kubectl_json("-n", namespace, "get", "events")["items"]
    items += [
        e
        for e in cp.kubectl_json("-n", "default", "get", "events")["items"]
        if e["involvedObject"].get("kind") == "MaintenancePlan"
        and e["involvedObject"].get("name", "").startswith(f"{namespace}-")
    ]
    return [f"{e.get('reason')}: {e.get('message')}" for e in items]


def delete_plan(cp: Any, namespace: str, name: str) -> None:
    cp.kubectl("delete", "maintenanceplan", plan_name(namespace, name), "--timeout=60s", check=False)


class Timeline:
    """What happened to one node, its plan and the namespace's pods, in etcd order.

    Three watches (plan, node, pods) record each change with the resourceVersion that made it. All
    objects of one apiserver take their resourceVersion from the same etcd revision counter, so
    sorting by it gives the true order of writes across objects: the intent-before-act check runs
    on the real apiserver, not on a recording fake.
    """

    def __init__(self, cp: Any, namespace: str, plan: str, node: str) -> None:
        self.clients = kube.Clients.connect(str(cp.kubeconfig))
        self.namespace, self.plan, self.node = namespace, plan_name(namespace, plan), node
        self.events: list[tuple[int, str]] = []
        self.lock = threading.Lock()
        self.watches: list[watch.Watch] = []
        self.errors: list[Exception] = []
        self.stopped = False
        core, custom = self.clients.core, self.clients.custom
        nodes = core.list_node(field_selector=f"metadata.name={node}")
        self.cordoned = bool(nodes.items[0].spec.unschedulable)
        pods = core.list_namespaced_pod(namespace)
        self.pods = {p.metadata.name for p in pods.items}
        plans = custom.list_cluster_custom_object(GROUP, "v1alpha1", "maintenanceplans")
        self.step: str | None = None
        self.threads = [
            self._start(
                core.list_node,
                (),
                nodes.metadata.resource_version,
                self._on_node,
                field_selector=f"metadata.name={node}",
            ),
            self._start(core.list_namespaced_pod, (namespace,), pods.metadata.resource_version, self._on_pod),
            self._start(
                custom.list_cluster_custom_object,
                (GROUP, "v1alpha1", "maintenanceplans"),
                plans["metadata"]["resourceVersion"],
                self._on_plan,
            ),
        ]

    def _start(self, fn: Any, args: tuple[Any, ...], rv: str, on: Any, **kw: Any) -> threading.Thread:
        w = watch.Watch()
        self.watches.append(w)

        def run() -> None:
            try:
                for event in w.stream(fn, *args, resource_version=rv, timeout_seconds=300, **kw):
                    on(event["type"], event["object"])
            except Exception as exc:  # a watch that breaks before the end would miss writes
                if not self.stopped:
                    self.errors.append(exc)

        thread = threading.Thread(target=run, daemon=True)
        thread.start()
        return thread

    def _add(self, rv: str, what: str) -> None:
        with self.lock:
            self.events.append((int(rv), what))

    def _on_node(self, _: str, obj: Any) -> None:
        cordoned = bool(obj.spec.unschedulable)
        if cordoned != self.cordoned:
            self.cordoned = cordoned
            self._add(obj.metadata.resource_version, "cordon" if cordoned else "uncordon")

    def _on_pod(self, kind: str, obj: Any) -> None:
        name = obj.metadata.name
        if name in self.pods and (kind == "DELETED" or obj.metadata.deletion_timestamp is not None):
            self.pods.discard(name)  # the first sign of its eviction only
            self._add(obj.metadata.resource_version, f"evicted {name}")

    def _on_plan(self, _: str, obj: dict[str, Any]) -> None:
        if obj["metadata"]["name"] != self.plan:
            return
        entry = next((e for e in obj.get("status", {}).get("progress", []) if e["node"] == self.node), None)
        if entry is not None and entry["step"] != self.step:
            self.step = entry["step"]
            self._add(obj["metadata"]["resourceVersion"], f"step {self.step}")

    def ordered(self) -> list[str]:
        """Stop watching; the recorded changes in etcd order."""
        self.stopped = True
        for w in self.watches:
            w.stop()
        assert not self.errors, f"a watch broke, changes may be missing: {self.errors}"
        with self.lock:
            return [what for _, what in sorted(self.events)]


def maintain_with_actions(namespace: str, node: str) -> dict[str, Any]:
    """An Auto plan for `node` that annotates it and restarts the namespace's `web` Deployment."""
    return {
        "nodes": [node],
        "mode": "Auto",
        "actions": {
            "annotate": {"example.com/fw": "1"},
            "restartWorkloads": {"namespace": namespace, "selector": {"matchLabels": {"app": "web"}}},
        },
    }


ONE_TURN_OF_TWO_PODS = [
    "step Cordoned",
    "cordon",
    "step Draining",
    "evicted",
    "evicted",
    "step Acting",
    "step Uncordoning",
    "uncordon",
    "step Done",
]
"""A node's turn in etcd order (Timeline, evictions collapsed): each step is in status before its
action reaches the node or the pods, every action once."""


# -- tests -------------------------------------------------------------------------------------------


def test_requested_node_is_cordoned_drained_through_evictions_and_uncordoned(
    control_plane: Any, namespace: str, operator: opp.OperatorProcess
) -> None:
    cp, node, owner = control_plane, "kwok-node-1", plan_name(namespace, "plan")
    deployment(cp, namespace, "web", replicas=2, node=node)
    before = {p["metadata"]["name"] for p in wait_ready(cp, namespace, "web", 2)}
    timeline = Timeline(cp, namespace, "plan", node)
    apply_plan(cp, namespace, "plan", maintain_with_actions(namespace, node))
    seen_cordoned: set[str] = set()
    steps: list[str] = []

    def observe() -> None:
        seen_cordoned.update(cordoned_by_us(cp, owner))
        step = progress(cp, namespace, "plan").get(node, {}).get("step")
        if step and (not steps or steps[-1] != step):
            steps.append(step)

    watch_until(
        lambda: progress(cp, namespace, "plan").get(node, {}).get("step") == "Done",
        observe,
        timeout=90,
        what=f"{node} Done",
    )
    entry = progress(cp, namespace, "plan")[node]
    # Intent before act, in etcd order: each step is in status before its action reaches the node
    # or the pods, so a restart at any point resumes from a step that says what may have happened.
    time.sleep(1)  # let the watches deliver the last writes
    order = [("evicted" if e.startswith("evicted") else e) for e in timeline.ordered()]
    assert order == ONE_TURN_OF_TWO_PODS, order
    assert seen_cordoned == {node}, seen_cordoned
    # Both pods went through the Eviction API (counted from its 201 answers; RBAC grants no pod
    # delete). This assumes no other operator instance acts on the cluster meanwhile.
    assert entry["evicted"] == 2, entry
    found = cp.kubectl_json("get", "node", node)
    assert not found["spec"].get("unschedulable"), "uncordoned when done"
    assert CORDONED_BY not in (found["metadata"].get("annotations") or {})
    assert found["metadata"]["annotations"].get("example.com/fw") == "1"
    order = ["Cordoned", "Draining", "Acting", "Uncordoning", "Done"]
    assert [order.index(x) for x in steps] == sorted(order.index(x) for x in steps), (
        f"steps in order: {steps}"
    )
    # The restart is a pod-template annotation stamped with the node's start (idempotent on resume).
    template = cp.kubectl_json("-n", namespace, "get", "deployment", "web")["spec"]["template"]
    assert template["metadata"]["annotations"]["kubectl.kubernetes.io/restartedAt"] == entry["startedAt"]
    after = {p["metadata"]["name"] for p in wait_ready(cp, namespace, "web", 2)}
    assert not before & after, "the evicted pods were replaced"
    reasons = "\n".join(events(cp, namespace))
    assert "Draining" in reasons and "Done" in reasons, reasons
    completed = condition(cp, namespace, "plan", "Completed")
    assert completed is not None and completed["status"] == "True", completed
    delete_plan(cp, namespace, "plan")
    cp.kubectl("annotate", "node", node, "example.com/fw-", f"{GROUP}/maintenance-", check=False)


def test_pdb_and_concurrency_are_never_exceeded(
    control_plane: Any, namespace: str, operator: opp.OperatorProcess
) -> None:
    cp, owner = control_plane, plan_name(namespace, "plan")
    deployment(cp, namespace, "web", replicas=3)
    wait_ready(cp, namespace, "web", 3)
    pdb(cp, namespace, "web", app="web", min_available=2)
    apply_plan(cp, namespace, "plan", {"nodes": list(NODES), "mode": "Auto", "maxConcurrent": 1})
    peak_nodes, low_ready = 0, 3

    def observe() -> None:
        nonlocal peak_nodes, low_ready
        peak_nodes = max(peak_nodes, len(cordoned_by_us(cp, owner)))
        low_ready = min(low_ready, len(ready_pods(cp, namespace, "web")))

    def all_done() -> bool:
        entries = progress(cp, namespace, "plan")
        return len(entries) == 3 and all(e["step"] == "Done" for e in entries.values())

    watch_until(all_done, observe, timeout=100, what="all three nodes Done")
    assert peak_nodes == 1, f"at most maxConcurrent=1 node cordoned at once, saw {peak_nodes}"
    assert low_ready >= 2, f"the PDB (minAvailable 2) held: lowest ready count {low_ready}"
    assert sum(e["evicted"] for e in progress(cp, namespace, "plan").values()) >= 3
    assert not cordoned_by_us(cp, owner)
    delete_plan(cp, namespace, "plan")


def test_prediction_selects_the_node_whose_disk_fills(
    control_plane: Any, namespace: str, operator: opp.OperatorProcess
) -> None:
    cp, owner = control_plane, plan_name(namespace, "plan")
    apply_plan(cp, namespace, "plan", {"nodeSelector": {"matchLabels": {"type": "kwok"}}, "mode": "Auto"})
    seen: set[str] = set()
    watch_until(
        lambda: progress(cp, namespace, "plan").get(RISKY, {}).get("step") == "Done",
        lambda: seen.update(cordoned_by_us(cp, owner)),
        timeout=90,
        what=f"{RISKY} maintained",
    )
    status = plan_status(cp, namespace, "plan")
    top = status["predictions"][0]
    assert top["node"] == RISKY and top["probability"] >= 0.3, status["predictions"]
    assert any("disk" in r for r in top["reasons"]), top
    others = [p for p in status["predictions"] if p["node"] != RISKY]
    assert len(others) == 2 and all(p["probability"] < 0.3 for p in others), others
    assert status["nodesAtRisk"] == 1
    # The cordon is too short to catch by polling when nothing needs draining: Events tell instead.
    assert seen <= {RISKY}, f"only the risky node is touched, saw {seen}"
    assert set(progress(cp, namespace, "plan")) == {RISKY}
    assert any(e.startswith(f"Draining: {RISKY}: cordoned") for e in events(cp, namespace)), events(
        cp, namespace
    )
    assert not cordoned_by_us(cp, owner)
    delete_plan(cp, namespace, "plan")


def test_recommend_mode_publishes_the_plan_and_cordons_nothing(
    control_plane: Any, namespace: str, operator: opp.OperatorProcess
) -> None:
    cp, owner = control_plane, plan_name(namespace, "plan")
    apply_plan(cp, namespace, "plan", {"nodes": ["kwok-node-0", RISKY], "mode": "Recommend"})
    # The riskiest node first: it is the one predicted to fail (disk full in ~5 h).
    status = opp.wait_until(
        lambda: (
            (s := plan_status(cp, namespace, "plan"))
            and [x["node"] for x in s.get("schedule", [])] == [RISKY, "kwok-node-0"]
            and s
        ),
        timeout=60,
        what="a published schedule, riskiest node first",
    )
    risky, healthy = (status["schedule"][0]["reason"], status["schedule"][1]["reason"])
    risk = {r: int(r.split("%")[0].removeprefix("risk ")) for r in (risky, healthy)}
    # The disk fills within the horizon: a high risk, with the disk named as the reason.
    assert risk[risky] >= 50 and "disk" in risky, status["schedule"]
    assert risk[healthy] < 10, status["schedule"]
    assert status["solver"].startswith("CPSAT")
    seen: set[str] = set()
    end = time.monotonic() + 8  # four passes at interval 2s
    while time.monotonic() < end:
        seen |= cordoned_by_us(cp, owner)
        time.sleep(0.5)
    assert not seen and not plan_status(cp, namespace, "plan").get("progress")
    in_progress = condition(cp, namespace, "plan", "InProgress")
    assert in_progress is not None and in_progress["reason"] == "RecommendOnly"
    delete_plan(cp, namespace, "plan")


def test_a_blocker_returning_a_series_pauses_maintenance(
    control_plane: Any, namespace: str, operator: opp.OperatorProcess
) -> None:
    cp, owner, node = control_plane, plan_name(namespace, "plan"), "kwok-node-0"
    # absent() of a metric nobody exports returns one series: the blocker fires.
    blocker = {"query": "absent(autoloop_test_never_exported)"}
    apply_plan(cp, namespace, "plan", {"nodes": [node], "mode": "Auto", "blockers": [blocker]})
    blocked = opp.wait_until(
        lambda: (c := condition(cp, namespace, "plan", "Blocked")) and c["status"] == "True" and c,
        timeout=60,
        what="condition Blocked",
    )
    assert "absent(autoloop_test_never_exported" in blocked["message"], blocked
    end = time.monotonic() + 6
    while time.monotonic() < end:
        assert not cordoned_by_us(cp, owner)
        time.sleep(0.5)
    assert not plan_status(cp, namespace, "plan").get("progress")
    # Lifting the blocker lets the node through.
    cp.kubectl(
        "patch",
        "maintenanceplan",
        plan_name(namespace, "plan"),
        "--type=merge",
        "-p",
        '{"spec":{"blockers":[]}}',
    )
    opp.wait_until(
        lambda: progress(cp, namespace, "plan").get(node, {}).get("step") == "Done",
        timeout=60,
        what=f"{node} Done after the blocker cleared",
    )
    cleared = condition(cp, namespace, "plan", "Blocked")
    assert cleared is not None and cleared["status"] == "False"
    delete_plan(cp, namespace, "plan")


def test_operator_killed_mid_drain_resumes_without_draining_a_done_node_again(
    control_plane: Any, namespace: str, node_prometheus: NodePrometheus, installed: None, tmp_path: Path
) -> None:
    cp, owner = control_plane, plan_name(namespace, "plan")
    stuck, quick = "kwok-node-0", "kwok-node-1"
    # Two pods pinned to `stuck` behind minAvailable 1: one eviction passes, the second is refused
    # for good (the replacement cannot schedule on the cordoned node).
    deployment(cp, namespace, "db", replicas=2, node=stuck)
    deployment(cp, namespace, "web", replicas=1, node=quick)
    wait_ready(cp, namespace, "db", 2)
    wait_ready(cp, namespace, "web", 1)
    pdb(cp, namespace, "db", app="db", min_available=1)
    opp.wait_until(
        lambda: (
            cp.kubectl_json("-n", namespace, "get", "pdb", "db").get("status", {}).get("disruptionsAllowed")
            == 1
        ),
        timeout=30,
        what="PDB db allows one disruption",
    )
    spec = {
        "nodes": [stuck, quick],
        "mode": "Auto",
        "maxConcurrent": 2,
        "drain": {"timeout": "10m", "retryInterval": "1s"},
    }
    apply_plan(cp, namespace, "plan", spec)
    first = opp.start(cp, node_prometheus.url, tmp_path)
    try:
        opp.wait_until(
            lambda: (
                (e := progress(cp, namespace, "plan")).get(quick, {}).get("step") == "Done"
                and e.get(stuck, {}).get("step") == "Draining"
                and "refused" in e[stuck]["message"]
            ),
            timeout=90,
            what=f"{quick} Done and {stuck} draining against the PDB",
        )
    finally:
        first.process.kill()  # no graceful shutdown: a crash mid-drain
        first.process.wait()
    before = progress(cp, namespace, "plan")
    assert before[stuck]["evicted"] == 1, before
    done_before = before[quick]
    second = opp.start(cp, node_prometheus.url, tmp_path)
    try:
        peak = 0

        def observe() -> None:
            nonlocal peak
            cordoned = cordoned_by_us(cp, owner)
            peak = max(peak, len(cordoned))
            assert quick not in cordoned, f"{quick} was Done and must not be cordoned again"

        # The restarted operator keeps retrying the refused eviction; then the PDB is lifted.
        end = time.monotonic() + 8
        while time.monotonic() < end:
            observe()
            time.sleep(0.5)
        assert progress(cp, namespace, "plan")[stuck]["step"] == "Draining"
        cp.kubectl("-n", namespace, "delete", "pdb", "db")
        watch_until(
            lambda: progress(cp, namespace, "plan")[stuck]["step"] == "Done",
            observe,
            timeout=60,
            what=f"{stuck} Done after the PDB was lifted",
        )
        after = progress(cp, namespace, "plan")
        assert after[quick] == done_before, "the Done node's entry is untouched"
        assert after[stuck]["evicted"] >= before[stuck]["evicted"], "the count survived the restart"
        assert after[stuck]["startedAt"] == before[stuck]["startedAt"], "resumed, not restarted"
        assert peak <= 2
        delete_plan(cp, namespace, "plan")
    finally:
        second.stop()
        sys.stderr.write("---- operator log (tail) ----\n" + second.log()[-6000:] + "\n")


def test_external_agent_readiness_annotation_gates_the_uncordon(
    control_plane: Any, namespace: str, operator: opp.OperatorProcess
) -> None:
    """The declared action is an annotation for an external agent (say, a firmware updater); the
    node stays cordoned in Acting until the agent sets the readiness annotation."""
    cp, node, owner = control_plane, "kwok-node-0", plan_name(namespace, "plan")
    ready_key = "example.com/firmware-done"
    cp.kubectl("annotate", "node", node, f"{ready_key}-", check=False)
    apply_plan(
        cp,
        namespace,
        "plan",
        {
            "nodes": [node],
            "mode": "Auto",
            "actions": {"annotate": {"example.com/firmware": "v2"}, "readyAnnotation": ready_key},
        },
    )
    opp.wait_until(
        lambda: progress(cp, namespace, "plan").get(node, {}).get("step") == "Acting",
        timeout=60,
        what=f"{node} Acting",
    )
    opp.wait_until(
        lambda: (
            (cp.kubectl_json("get", "node", node)["metadata"].get("annotations") or {}).get(
                "example.com/firmware"
            )
            == "v2"
        ),
        timeout=30,
        what="the agent's annotation on the node",
    )
    time.sleep(6)  # three passes: without the agent's answer nothing moves on
    assert progress(cp, namespace, "plan")[node]["step"] == "Acting"
    assert cordoned_by_us(cp, owner) == {node}
    cp.kubectl("annotate", "node", node, f"{ready_key}=true")  # the agent is done
    opp.wait_until(
        lambda: progress(cp, namespace, "plan").get(node, {}).get("step") == "Done",
        timeout=60,
        what=f"{node} Done after the readiness annotation",
    )
    assert not cordoned_by_us(cp, owner)
    delete_plan(cp, namespace, "plan")
    cp.kubectl(
        "annotate",
        "node",
        node,
        "example.com/firmware-",
        f"{ready_key}-",
        f"{GROUP}/maintenance-",
        check=False,
    )


def test_pdb_blocking_the_drain_skips_the_node_and_force_needs_its_rbac(
    control_plane: Any, namespace: str, operator: opp.OperatorProcess
) -> None:
    """Two pods pinned to the node behind minAvailable 1: the first eviction passes, the second is
    refused for good (its replacement cannot schedule on the cordoned node), so after the drain
    timeout the node is Skipped and uncordoned. A PDB that allows nothing keeps the node out of
    the plan (Scheduled=False) unless `force: true`; then the pod is deleted after the timeout, but
    only with the optional force-drain RBAC (the shipped RBAC refuses: Failed)."""
    cp, node, owner = control_plane, "kwok-node-1", plan_name(namespace, "plan")
    quick = {"timeout": "4s", "retryInterval": "1s"}

    def finished(name: str, step: str) -> dict[str, Any]:
        seen: list[str] = []

        def reached() -> dict[str, Any] | None:
            e = progress(cp, namespace, name).get(node)
            if e and (not seen or seen[-1] != e["step"]):
                seen.append(e["step"])
            return e if e and e["step"] == step else None

        try:
            return opp.wait_until(reached, timeout=60, what=f"{name}: {node} {step}")
        except AssertionError as exc:
            raise AssertionError(
                f"{exc}; steps seen {seen}; status {plan_status(cp, namespace, name)}"
            ) from None

    deployment(cp, namespace, "web", replicas=2, node=node)
    wait_ready(cp, namespace, "web", 2)
    pdb(cp, namespace, "web", app="web", min_available=1)
    timeline = Timeline(cp, namespace, "plain", node)
    apply_plan(cp, namespace, "plain", {"nodes": [node], "mode": "Auto", "drain": dict(quick)})
    entry = finished("plain", "Skipped")
    assert "drain timed out" in entry["message"] and "web" in entry["message"], entry
    assert "disruption budget" in entry["message"], entry  # the apiserver's 429 reason, kept
    assert entry["evicted"] == 1, entry
    opp.wait_until(
        lambda: not cordoned_by_us(cp, plan_name(namespace, "plain")), timeout=30, what="uncordoned"
    )
    time.sleep(1)  # let the watches deliver the last writes
    order = [("evicted" if e.startswith("evicted") else e) for e in timeline.ordered()]
    # One eviction passed, the second was refused until the timeout; Skipped is written first.
    assert order == ["step Cordoned", "cordon", "step Draining", "evicted", "step Skipped", "uncordon"], order
    delete_plan(cp, namespace, "plain")
    cp.kubectl("-n", namespace, "delete", "deployment", "web", "--wait=false")
    cp.kubectl("-n", namespace, "delete", "pdb", "web")

    deployment(cp, namespace, "db", replicas=1, node=node)
    (pod,) = wait_ready(cp, namespace, "db", 1)
    pdb(cp, namespace, "db", app="db", min_available=1)
    apply_plan(cp, namespace, "never", {"nodes": [node], "mode": "Auto", "drain": dict(quick)})
    refused = opp.wait_until(
        lambda: (c := condition(cp, namespace, "never", "Scheduled")) and c["status"] == "False" and c,
        timeout=30,
        what="Scheduled=False for a PDB that allows nothing",
    )
    assert f"PDB {namespace}/db allows no disruption" in refused["message"], refused
    assert not cordoned_by_us(cp, plan_name(namespace, "never"))
    delete_plan(cp, namespace, "never")

    apply_plan(cp, namespace, "plan", {"nodes": [node], "mode": "Auto", "force": True, "drain": dict(quick)})
    entry = finished("plan", "Failed")
    assert "force delete refused (403" in entry["message"], entry
    assert [p["metadata"]["name"] for p in ready_pods(cp, namespace, "db")] == [pod["metadata"]["name"]]
    opp.wait_until(lambda: not cordoned_by_us(cp, owner), timeout=30, what="uncordoned after Failed")
    delete_plan(cp, namespace, "plan")

    cp.kubectl("apply", "-f", str(FORCE_RBAC))
    try:
        apply_plan(
            cp, namespace, "forced", {"nodes": [node], "mode": "Auto", "force": True, "drain": dict(quick)}
        )
        finished("forced", "Done")
        forced = [e for e in events(cp, namespace) if e.startswith("ForceDeleted")]
        assert forced and pod["metadata"]["name"] in forced[0], forced
        opp.wait_until(
            lambda: (
                pod["metadata"]["name"]
                not in {p["metadata"]["name"] for p in ready_pods(cp, namespace, "db")}
            ),
            timeout=30,
            what="the PDB-protected pod deleted",
        )
        assert not cordoned_by_us(cp, plan_name(namespace, "forced"))
    finally:
        cp.kubectl("delete", "-f", str(FORCE_RBAC), check=False)
        delete_plan(cp, namespace, "forced")


@pytest.mark.slow  # a minute per point: `make test-slow`
@pytest.mark.parametrize(
    "point", ["plan-after-cordon", "plan-after-evict", "plan-after-act", "plan-after-uncordon"]
)
def test_operator_killed_between_a_step_and_its_record_does_it_once(
    control_plane: Any,
    namespace: str,
    node_prometheus: NodePrometheus,
    installed: None,
    tmp_path: Path,
    point: str,
) -> None:
    """SIGKILL right after an action, before the step that follows it is in status
    (`AUTOLOOP_CRASH_AT`, autoloop.operator.crashpoints); a new operator resumes the node from its
    recorded step: in etcd order the node is cordoned once, each pod evicted once, the workloads
    restarted once, the node uncordoned once, and the entry is the same turn (same start)."""
    cp, node = control_plane, "kwok-node-1"
    deployment(cp, namespace, "web", replicas=2, node=node)
    wait_ready(cp, namespace, "web", 2)
    generation = cp.kubectl_json("-n", namespace, "get", "deployment", "web")["metadata"]["generation"]
    timeline = Timeline(cp, namespace, "plan", node)
    apply_plan(cp, namespace, "plan", maintain_with_actions(namespace, node))
    opp.crash_at(cp, node_prometheus.url, tmp_path, point)
    started = progress(cp, namespace, "plan")[node]["startedAt"]
    second = opp.start(cp, node_prometheus.url, tmp_path)
    try:
        opp.wait_until(
            lambda: progress(cp, namespace, "plan").get(node, {}).get("step") == "Done",
            timeout=90,
            what=f"{node} Done after the restart",
        )
        time.sleep(1)  # let the watches deliver the last writes
        order = [("evicted" if e.startswith("evicted") else e) for e in timeline.ordered()]
        assert order == ONE_TURN_OF_TWO_PODS, order
        entry = progress(cp, namespace, "plan")[node]
        assert entry["startedAt"] == started, "resumed, not started again"
        assert entry["evicted"] == 2 and not entry.get("evicting"), "each eviction counted once"
        web = cp.kubectl_json("-n", namespace, "get", "deployment", "web")
        assert web["metadata"]["generation"] == generation + 1, "restarted once"
        assert (
            web["spec"]["template"]["metadata"]["annotations"]["kubectl.kubernetes.io/restartedAt"] == started
        )
        found = cp.kubectl_json("get", "node", node)
        assert not found["spec"].get("unschedulable")
        assert found["metadata"]["annotations"].get("example.com/fw") == "1"
        delete_plan(cp, namespace, "plan")
    finally:
        second.stop()
        sys.stderr.write("---- operator log (tail) ----\n" + second.log()[-4000:] + "\n")
        cp.kubectl("annotate", "node", node, "example.com/fw-", f"{GROUP}/maintenance-", check=False)
