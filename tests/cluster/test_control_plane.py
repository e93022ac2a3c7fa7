"""The dev control plane behaves like a real cluster: RBAC, scheduling onto kwok nodes, the
Eviction API honouring PodDisruptionBudgets, and Prometheus scraping the synthetic exporter."""

from __future__ import annotations

import json
import subprocess
import time
from typing import Any

import pytest

from tests.cluster.conftest import ControlPlane, Prometheus

pytestmark = pytest.mark.cluster

SIM = "sim.autoloop.x0tta6bl4.io/"


def deployment(
    name: str,
    replicas: int,
    *,
    cpu_limit: str = "500m",
    annotations: dict[str, str] | None = None,
    sim: bool = False,
) -> str:
    labels = {"app": name}
    if sim:
        labels[SIM + "enabled"] = "true"
    manifest = {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": {"name": name, "labels": labels, "annotations": annotations or {}},
        "spec": {
            "replicas": replicas,
            "selector": {"matchLabels": {"app": name}},
            "template": {
                "metadata": {"labels": {"app": name}},
                "spec": {
                    "containers": [
                        {
                            "name": "app",
                            "image": "registry.example/fake:1",
                            "resources": {
                                "requests": {"cpu": cpu_limit, "memory": "256Mi"},
                                "limits": {"cpu": cpu_limit, "memory": "512Mi"},
                            },
                        }
                    ]
                },
            },
        },
    }
    return json.dumps(manifest)


def wait(predicate: Any, timeout: float, what: str, interval: float = 0.5) -> Any:
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout}s: {what}")
        time.sleep(interval)


def ready_pods(cp: ControlPlane, namespace: str, app: str) -> list[dict[str, Any]]:
    pods = cp.kubectl_json("-n", namespace, "get", "pods", "-l", f"app={app}")["items"]
    out = []
    for p in pods:
        conds = {c["type"]: c["status"] for c in p.get("status", {}).get("conditions", [])}
        if p["status"].get("phase") == "Running" and conds.get("Ready") == "True":
            out.append(p)
    return out


def exactly(items: list[dict[str, Any]], n: int) -> list[dict[str, Any]] | None:
    return items if len(items) == n else None


def test_rbac_is_enforced_for_service_account_tokens(control_plane: ControlPlane, namespace: str) -> None:
    cp = control_plane
    cp.kubectl("-n", namespace, "create", "serviceaccount", "reader")
    token = cp.kubectl("-n", namespace, "create", "token", "reader", "--duration=10m").stdout.strip()
    path = f"/api/v1/namespaces/{namespace}/secrets"

    status, body = cp.api("GET", path, token=token)
    assert status == 403, body
    assert body.get("reason") == "Forbidden"
    assert f"system:serviceaccount:{namespace}:reader" in body.get("message", "")

    cp.kubectl("-n", namespace, "create", "role", "secret-reader", "--verb=get,list", "--resource=secrets")
    cp.kubectl(
        "-n",
        namespace,
        "create",
        "rolebinding",
        "reader",
        "--role=secret-reader",
        f"--serviceaccount={namespace}:reader",
    )
    status, body = wait(
        lambda: (r := cp.api("GET", path, token=token))[0] == 200 and r, 30, "RoleBinding to apply"
    )
    assert body["kind"] == "SecretList"
    # The binding is namespaced: other namespaces stay forbidden.
    assert cp.api("GET", "/api/v1/namespaces/default/secrets", token=token)[0] == 403
    # A garbage token is not authenticated at all.
    assert cp.api("GET", path, token="not-a-token")[0] == 401
    # The same identity through a kubeconfig, as a component running as this ServiceAccount gets it.
    kubeconfig = cp.kubeconfig_for(namespace, "reader")
    as_sa = [str(cp.bin_dir / "kubectl"), "--kubeconfig", str(kubeconfig)]
    ok = subprocess.run(
        [*as_sa, "-n", namespace, "get", "secrets"], capture_output=True, text=True, timeout=30
    )
    assert ok.returncode == 0, ok.stderr
    denied = subprocess.run(
        [*as_sa, "-n", namespace, "get", "pods"], capture_output=True, text=True, timeout=30
    )
    assert denied.returncode != 0 and "Forbidden" in denied.stderr


def test_deployment_gets_running_ready_pods_on_kwok_nodes(
    control_plane: ControlPlane, namespace: str
) -> None:
    cp = control_plane
    cp.kubectl("-n", namespace, "apply", "-f", "-", input=deployment("web", 3))
    pods = wait(lambda: exactly(ready_pods(cp, namespace, "web"), 3), 90, "3 ready pods")
    kwok_nodes = {n["metadata"]["name"] for n in cp.kubectl_json("get", "nodes", "-l", "type=kwok")["items"]}
    assert {p["spec"]["nodeName"] for p in pods} <= kwok_nodes
    assert all(p["status"].get("podIP") for p in pods)
    # The Deployment controller saw them become ready, and the ReplicaSet owns them.
    dep = wait(
        lambda: (
            (d := cp.kubectl_json("-n", namespace, "get", "deployment", "web"))
            .get("status", {})
            .get("readyReplicas")
            == 3
            and d
        ),
        60,
        "readyReplicas=3",
    )
    assert dep["status"]["availableReplicas"] == 3
    assert all(p["metadata"]["ownerReferences"][0]["kind"] == "ReplicaSet" for p in pods)


def evict(cp: ControlPlane, namespace: str, pod: str) -> tuple[int, dict[str, Any]]:
    body = {"apiVersion": "policy/v1", "kind": "Eviction", "metadata": {"name": pod, "namespace": namespace}}
    return cp.api("POST", f"/api/v1/namespaces/{namespace}/pods/{pod}/eviction", body=body)


def test_eviction_api_honours_pod_disruption_budget(control_plane: ControlPlane, namespace: str) -> None:
    cp = control_plane
    cp.kubectl("-n", namespace, "apply", "-f", "-", input=deployment("db", 2))
    wait(lambda: len(ready_pods(cp, namespace, "db")) == 2, 90, "2 ready pods")
    cp.kubectl(
        "-n", namespace, "create", "poddisruptionbudget", "db", "--selector=app=db", "--min-available=2"
    )

    def pdb_status() -> dict[str, Any]:
        return dict(cp.kubectl_json("-n", namespace, "get", "pdb", "db").get("status", {}))

    # The disruption controller must have counted both healthy pods before the check means anything.
    wait(
        lambda: pdb_status().get("currentHealthy") == 2 and pdb_status().get("expectedPods") == 2,
        60,
        "PDB status",
    )
    assert pdb_status()["disruptionsAllowed"] == 0
    victim = ready_pods(cp, namespace, "db")[0]["metadata"]["name"]
    status, body = evict(cp, namespace, victim)
    assert status == 429, body
    assert "disruption budget" in body.get("message", "")

    cp.kubectl("-n", namespace, "patch", "pdb", "db", "--type=merge", "-p", '{"spec":{"minAvailable":1}}')
    wait(lambda: pdb_status().get("disruptionsAllowed") == 1, 60, "disruptionsAllowed=1")
    status, body = evict(cp, namespace, victim)
    assert status == 201, body
    # The evicted pod goes away and the ReplicaSet replaces it.
    wait(
        lambda: (
            victim not in {p["metadata"]["name"] for p in ready_pods(cp, namespace, "db")}
            and len(ready_pods(cp, namespace, "db")) == 2
        ),
        90,
        "replacement pod",
    )


def test_prometheus_follows_kubectl_scale(
    control_plane: ControlPlane, prometheus: Prometheus, namespace: str
) -> None:
    cp = control_plane
    cp.kubectl(
        "-n",
        namespace,
        "apply",
        "-f",
        "-",
        input=deployment("api", 2, sim=True, annotations={SIM + "rps": "20"}),
    )
    q = f'kube_deployment_spec_replicas{{namespace="{namespace}",deployment="api"}}'
    prometheus.wait_for(q, lambda r: bool(r) and float(r[0]["value"][1]) == 2.0, timeout=60)
    cp.kubectl("-n", namespace, "scale", "deployment", "api", "--replicas=5")
    prometheus.wait_for(q, lambda r: bool(r) and float(r[0]["value"][1]) == 5.0, timeout=60)
    ready = f'kube_deployment_status_replicas_ready{{namespace="{namespace}",deployment="api"}}'
    prometheus.wait_for(ready, lambda r: bool(r) and float(r[0]["value"][1]) == 5.0, timeout=90)
    # Per-pod series exist for exactly the 5 live pods, named as cAdvisor / kube-state-metrics name them.
    cpu = f'container_cpu_usage_seconds_total{{namespace="{namespace}",container="app"}}'
    prometheus.wait_for(cpu, lambda r: len(r) == 5, timeout=60)
    req = f'kube_pod_container_resource_requests{{namespace="{namespace}",resource="cpu",unit="core"}}'
    result = prometheus.wait_for(req, lambda r: len(r) == 5, timeout=30)
    assert {float(s["value"][1]) for s in result} == {0.5}


def test_simulated_p95_falls_when_replicas_go_up(
    control_plane: ControlPlane, prometheus: Prometheus, namespace: str
) -> None:
    cp = control_plane
    # 100 rps × 10m CPU per request = 1 core of demand; 500m pods → 50 rps each.
    # 3 pods: ρ = 0.67, p95 ≈ 0.082 + 0.1 × ln 20 ≈ 0.38 s; 8 pods: ρ = 0.25, p95 ≈ 0.13 s.
    annotations = {SIM + "rps": "100", SIM + "cpu-per-request": "10m", SIM + "latency-base": "50ms"}
    cp.kubectl(
        "-n", namespace, "apply", "-f", "-", input=deployment("shop", 3, sim=True, annotations=annotations)
    )
    wait(lambda: len(ready_pods(cp, namespace, "shop")) == 3, 90, "3 ready pods")
    p95 = (
        "histogram_quantile(0.95, sum by (le) (rate(http_request_duration_seconds_bucket"
        f'{{namespace="{namespace}",service="shop"}}[10s])))'
    )

    def value_between(lo: float, hi: float) -> Any:
        return lambda r: bool(r) and lo < float(r[0]["value"][1]) < hi

    before = float(prometheus.wait_for(p95, value_between(0.28, 0.5), timeout=60)[0]["value"][1])
    cp.kubectl("-n", namespace, "scale", "deployment", "shop", "--replicas=8")
    after = float(prometheus.wait_for(p95, value_between(0.09, 0.18), timeout=90)[0]["value"][1])
    assert after < before * 0.6
    # No load is shed at either size: the 5xx share stays near the 0.1 % baseline.
    errors = (
        f'sum(rate(http_requests_total{{namespace="{namespace}",service="shop",code=~"5.."}}[10s]))'
        f' / sum(rate(http_requests_total{{namespace="{namespace}",service="shop"}}[10s]))'
    )
    ratio = prometheus.scalar(errors)
    assert ratio is not None and ratio < 0.01
