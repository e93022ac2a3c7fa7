"""The walking skeleton on the real control plane: install, apply examples, read status and Events."""

from __future__ import annotations

import json
import re
import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.argocd_lua import health_of
from tests.cluster import operator_process as opp

pytestmark = pytest.mark.cluster

EXAMPLES = opp.ROOT / "manifests" / "examples"
INVALID = sorted((EXAMPLES / "invalid").glob("*.yaml"))


@pytest.fixture(scope="module")
def operator(control_plane: Any, prometheus: Any, tmp_path_factory: Any) -> Iterator[opp.OperatorProcess]:
    yield from opp.operator_fixture(control_plane, prometheus, tmp_path_factory)


def _expected_message(path: Path) -> str:
    first = path.read_text().splitlines()[0]
    assert first.startswith("# expect: "), f"{path.name} must start with '# expect: <message fragment>'"
    return first.removeprefix("# expect: ")


@pytest.mark.parametrize("path", INVALID, ids=lambda p: p.stem)
def test_invalid_example_is_refused_at_apply(
    control_plane: Any, namespace: str, operator: Any, path: Path
) -> None:
    result = control_plane.kubectl("-n", namespace, "apply", "-f", str(path), check=False)
    assert result.returncode != 0, f"{path.name} was accepted:\n{result.stdout}"
    assert _expected_message(path) in result.stderr, result.stderr
    found = control_plane.kubectl("-n", namespace, "get", "-f", str(path), "-o", "name", check=False)
    assert found.returncode != 0 and "NotFound" in found.stderr, f"nothing may be created: {found.stdout}"


def _apply_examples(control_plane: Any, namespace: str) -> None:
    for name in ("workload", "optimizationloop", "resourceallocation", "maintenanceplan"):
        control_plane.kubectl("-n", namespace, "apply", "-f", str(EXAMPLES / f"{name}.yaml"))


def _ours(control_plane: Any, namespace: str) -> list[str]:
    """`kubectl get autoloop` in the namespace (the category lists cluster-scoped plans too), less
    the plans this module did not create (a `make demo` on the same dev cluster leaves its own)."""
    names = control_plane.kubectl("-n", namespace, "get", "autoloop", "-o", "name").stdout.split()
    return [n for n in names if not n.startswith("maintenanceplan.") or n.endswith("/nightly")]


def _ready(control_plane: Any, namespace: str, ref: str) -> dict[str, Any] | None:
    obj = opp.get_json(control_plane, namespace, ref)
    ready = opp.condition(obj, "Ready")
    generation = obj["metadata"]["generation"]
    if ready and ready["status"] == "True" and obj["status"].get("observedGeneration") == generation:
        return obj
    return None


def test_examples_become_ready_with_status_columns_and_events(
    control_plane: Any, namespace: str, operator: Any
) -> None:
    _apply_examples(control_plane, namespace)
    control_plane.kubectl("-n", namespace, "rollout", "status", "deployment/web", "--timeout=90s")

    loop = opp.wait_until(
        lambda: _ready(control_plane, namespace, "oloop/web"), timeout=120, what="oloop/web Ready=True"
    )
    assert loop["status"]["current"] == {"replicas": 4, "cpu": "1000m", "memory": "512Mi"}
    assert opp.condition(loop, "MetricsAvailable")["status"] == "True"  # type: ignore[index]
    assert opp.condition(loop, "TargetFound")["status"] == "True"  # type: ignore[index]
    observed = loop["status"]["observed"]
    assert set(observed) == {"latency", "errors", "cost"}
    # Cost is requests × replicas × price: 4 × (1 core × 0.0316 + 0.5 GiB × 0.0042) per hour.
    assert observed["cost"] == pytest.approx(4 * (0.0316 + 0.5 * 0.0042), rel=1e-4)
    assert 0 < observed["latency"] < 5
    assert loop["metadata"].get("finalizers", []) == []  # timers must not pin loops with a finalizer

    alloc = opp.wait_until(
        lambda: _ready(control_plane, namespace, "ralloc/frontend"), timeout=120, what="ralloc Ready=True"
    )
    assert alloc["status"]["workloadCount"] == 1
    plan = opp.wait_until(
        lambda: _ready(control_plane, namespace, "mplan/nightly"), timeout=60, what="mplan Ready=True"
    )
    assert plan["status"]["nextWindow"].endswith("Z")
    assert "namespace" not in plan["metadata"], "a MaintenancePlan is cluster-scoped"
    # Argo CD's health checks on the objects as the apiserver returns them.
    for obj in (loop, alloc, plan):
        assert health_of(obj).status == "Healthy", (obj["kind"], health_of(obj))

    # Printer columns: what a person sees with kubectl get.
    table = control_plane.kubectl("-n", namespace, "get", "oloop").stdout.splitlines()
    assert table[0].split()[:6] == ["NAME", "TARGET", "MODE", "READY", "PHASE", "REPLICAS"]
    assert table[1].split()[:6] == ["web", "web", "Recommend", "True", "Recommending", "4"]
    wide = control_plane.kubectl("-n", namespace, "get", "oloop", "-o", "wide").stdout
    assert "1000m" in wide and "512Mi" in wide
    everything = _ours(control_plane, namespace)
    assert sorted(everything) == [
        "maintenanceplan.autoloop.x0tta6bl4.io/nightly",
        "optimizationloop.autoloop.x0tta6bl4.io/web",
        "resourceallocation.autoloop.x0tta6bl4.io/frontend",
    ]
    ralloc_table = control_plane.kubectl("-n", namespace, "get", "ralloc").stdout
    assert "WORKLOADS" in ralloc_table and "BUDGET/H" in ralloc_table
    mplan_table = control_plane.kubectl("get", "mplan").stdout
    assert "NEXT WINDOW" in mplan_table and "AT RISK" in mplan_table
    control_plane.kubectl("delete", "mplan", "nightly", "--timeout=60s")

    # Events: kubectl describe shows the operator's Event for the Ready transition.
    described = opp.wait_until(
        lambda: (lambda d: d if "Observing" in d.split("Events:")[-1] else None)(
            control_plane.kubectl("-n", namespace, "describe", "oloop", "web").stdout
        ),
        timeout=30,
        what="an Event on oloop/web",
    )
    assert "target found and metrics available" in described


def test_missing_target_and_semantic_errors_are_reported(
    control_plane: Any, namespace: str, operator: Any
) -> None:
    spec = {
        "apiVersion": "autoloop.x0tta6bl4.io/v1alpha1",
        "kind": "OptimizationLoop",
        "metadata": {"name": "orphan"},
        "spec": {
            "targetRef": {"name": "does-not-exist"},
            "objectives": [{"name": "latency", "metric": "LatencyP95"}],
            "knobs": {"replicas": {"min": 1, "max": 3}},
        },
    }
    control_plane.kubectl("-n", namespace, "apply", "-f", "-", input=json.dumps(spec))

    def target_missing() -> dict[str, Any] | None:
        c = opp.condition(opp.get_json(control_plane, namespace, "oloop/orphan"), "Ready")
        return c if c and c["reason"] == "TargetNotFound" else None

    ready = opp.wait_until(target_missing, timeout=60, what="Ready=False TargetNotFound")
    assert ready["status"] == "False" and "does-not-exist" in ready["message"]
    # Argo CD sees a missing target as Degraded, not as Progressing forever.
    assert health_of(opp.get_json(control_plane, namespace, "oloop/orphan")).status == "Degraded"
    events = control_plane.kubectl(
        "-n", namespace, "get", "events", "--field-selector", "involvedObject.name=orphan", "-o", "json"
    ).stdout
    assert any(
        e["reason"] == "TargetNotFound" and e["type"] == "Warning" for e in json.loads(events)["items"]
    )

    # A query reaching into another namespace passes the schema but is refused by the operator.
    spec["metadata"]["name"] = "snoop"  # type: ignore[index]
    spec["spec"]["objectives"] = [{"name": "q", "query": 'sum(up{namespace="kube-system"})'}]  # type: ignore[index]
    control_plane.kubectl("-n", namespace, "apply", "-f", "-", input=json.dumps(spec))

    def invalid() -> dict[str, Any] | None:
        c = opp.condition(opp.get_json(control_plane, namespace, "oloop/snoop"), "Invalid")
        return c if c and c["status"] == "True" else None

    cond = opp.wait_until(invalid, timeout=60, what="Invalid=True")
    assert "kube-system" in cond["message"]
    snoop = opp.get_json(control_plane, namespace, "oloop/snoop")
    assert snoop["status"]["phase"] == "Invalid"
    assert health_of(snoop).status == "Degraded"
    # Suspended is Argo CD's Suspended, not Progressing.
    control_plane.kubectl(
        "-n", namespace, "patch", "oloop", "orphan", "--type=merge", "-p", '{"spec":{"suspend":true}}'
    )
    suspended = opp.wait_until(
        lambda: (
            (o := opp.get_json(control_plane, namespace, "oloop/orphan"))["status"].get("observedGeneration")
            == o["metadata"]["generation"]
            and o
        ),
        timeout=60,
        what="the suspended spec observed",
    )
    assert health_of(suspended).status == "Suspended"


def test_spec_is_never_written_and_deletion_is_clean(
    control_plane: Any, namespace: str, operator: Any
) -> None:
    _apply_examples(control_plane, namespace)
    opp.wait_until(lambda: _ready(control_plane, namespace, "oloop/web"), timeout=120, what="oloop Ready")
    loop = opp.get_json(control_plane, namespace, "oloop/web")
    # The apiserver bumps generation only on spec changes: generation 1 means nobody wrote the spec.
    assert loop["metadata"]["generation"] == 1
    plan = opp.wait_until(lambda: _ready(control_plane, namespace, "mplan/nightly"), timeout=60, what="mplan")
    assert plan["metadata"]["finalizers"] == ["autoloop.x0tta6bl4.io/finalizer"]  # it may have to uncordon
    for ref in ("oloop/web", "ralloc/frontend", "mplan/nightly"):
        control_plane.kubectl("-n", namespace, "delete", ref, "--timeout=60s")
    assert _ours(control_plane, namespace) == []


def test_operator_metrics_and_rbac(control_plane: Any, namespace: str, operator: Any) -> None:
    _apply_examples(control_plane, namespace)
    text = opp.wait_until(
        lambda: (lambda m: m if "autoloop_reconcile_total{" in m else None)(operator.metrics()),
        timeout=60,
        what="autoloop_reconcile_total on /metrics",
    )
    assert "autoloop_step_duration_seconds_bucket" in text
    # What the scale bench reads: the passes' apiserver requests (with bytes sent) and PromQL queries.
    text = opp.wait_until(
        lambda: (
            lambda m: (
                m if re.search(r'^autoloop_apiserver_requests_total\{verb="PATCH"\} [1-9]', m, re.M) else None
            )
        )(operator.metrics()),
        timeout=60,
        what="PATCH requests counted",
    )
    assert re.search(r'^autoloop_apiserver_request_bytes_total\{verb="PATCH"\} [1-9]', text, re.M)
    assert re.search(r'^autoloop_apiserver_requests_total\{verb="GET"\} [1-9]', text, re.M)
    assert re.search(r"^autoloop_prometheus_queries_total [1-9]", text, re.M)
    sa = "system:serviceaccount:autoloop-system:autoloop"

    def can(*args: str) -> bool:
        out = control_plane.kubectl("auth", "can-i", *args, "--as", sa, check=False)
        return out.stdout.strip() == "yes"

    assert can("patch", "deployments", "-n", "default")
    assert can("create", "pods", "--subresource=eviction", "-n", "default")
    assert can("patch", "optimizationloops.autoloop.x0tta6bl4.io", "--subresource=status", "-n", "default")
    assert not can(
        "update", "optimizationloops.autoloop.x0tta6bl4.io", "-n", "default"
    )  # patch only: kopf's annotations
    assert not can("get", "secrets", "-n", "default")
    assert not can("delete", "pods", "-n", "default")
    assert not can("update", "nodes")
    assert not can("create", "deployments", "-n", "default")


def test_in_cluster_deployment_is_non_root_and_hardened(control_plane: Any, operator: Any) -> None:
    dep = opp.get_json(control_plane, "autoloop-system", "deployment/autoloop")
    pod = dep["spec"]["template"]["spec"]
    assert pod["securityContext"]["runAsNonRoot"] is True
    container = pod["containers"][0]
    assert container["securityContext"]["readOnlyRootFilesystem"] is True
    assert container["securityContext"]["capabilities"]["drop"] == ["ALL"]
    assert container["livenessProbe"]["httpGet"]["path"] == "/healthz"


def test_operator_survives_prometheus_outage(
    control_plane: Any, prometheus: Any, namespace: str, operator: Any
) -> None:
    """Prometheus down → MetricsAvailable=False with a reason, no crash; back up → Ready again."""
    _apply_examples(control_plane, namespace)
    opp.wait_until(lambda: _ready(control_plane, namespace, "oloop/web"), timeout=120, what="oloop Ready")
    script = opp.ROOT / "dev" / "prometheus.sh"
    subprocess.run(["bash", str(script), "down"], check=True, env=control_plane.env)
    try:

        def unavailable() -> dict[str, Any] | None:
            c = opp.condition(opp.get_json(control_plane, namespace, "oloop/web"), "MetricsAvailable")
            return c if c and c["status"] == "False" else None

        cond = opp.wait_until(unavailable, timeout=90, what="MetricsAvailable=False")
        assert cond["reason"] == "PrometheusUnreachable"
        assert operator.process.poll() is None
    finally:
        subprocess.run(["bash", str(script), "up"], check=True, env=control_plane.env)
    opp.wait_until(
        lambda: _ready(control_plane, namespace, "oloop/web"), timeout=120, what="Ready after outage"
    )
