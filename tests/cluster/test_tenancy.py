"""Scope follows power, on the real apiserver with the shipped RBAC and a running operator.

A user who holds only the built-in `edit` role in one namespace (impersonated with `kubectl --as
--as-group`) tries every kind and every field that could reach outside that namespace. Each attempt
must be refused by the apiserver (RBAC or schema) or reported `Invalid`/not found in status by the
operator, and nothing outside the namespace may change: nodes keep their spec, labels and
annotations, the other namespace's Deployment keeps its resourceVersion, its pods stay the same.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

import pytest

from tests.cluster import operator_process as opp

pytestmark = pytest.mark.cluster

GROUP = "autoloop.x0tta6bl4.io"
USER, USER_GROUP = "alice", "tenant-devs"


@pytest.fixture(scope="module")
def operator(control_plane: Any, prometheus: Any, tmp_path_factory: Any) -> Iterator[opp.OperatorProcess]:
    yield from opp.operator_fixture(control_plane, prometheus, tmp_path_factory)


@pytest.fixture
def victim(control_plane: Any) -> Iterator[str]:
    """Another team's namespace, with a Deployment whose labels the tenant's selectors also match."""
    with opp.fresh_namespace(control_plane, "victim") as name:
        control_plane.kubectl("-n", name, "apply", "-f", "-", input=json.dumps(_deployment("web", name)))
        control_plane.kubectl("-n", name, "rollout", "status", "deployment/web", "--timeout=90s")
        yield name


def _deployment(name: str, namespace: str) -> dict[str, Any]:
    labels = {"app": name, "tier": "frontend"}
    return {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": {"name": name, "namespace": namespace, "labels": labels},
        "spec": {
            "replicas": 2,
            "selector": {"matchLabels": {"app": name}},
            "template": {
                "metadata": {"labels": labels},
                "spec": {
                    "containers": [
                        {
                            "name": "main",
                            "image": "registry.k8s.io/pause:3.10",
                            "resources": {"requests": {"cpu": "500m", "memory": "256Mi"}},
                        }
                    ]
                },
            },
        },
    }


def _as_user(cp: Any, namespace: str, *args: str, body: dict[str, Any] | None = None) -> Any:
    return cp.kubectl(
        "--as",
        USER,
        "--as-group",
        USER_GROUP,
        "-n",
        namespace,
        *args,
        input=json.dumps(body) if body is not None else None,
        check=False,
    )


def _outside(cp: Any, victim: str) -> dict[str, Any]:
    """What must not change: node spec, labels and annotations (kwok heartbeats move their
    resourceVersion, so it is not compared); the victim's Deployment and pods; every plan."""
    nodes = {
        n["metadata"]["name"]: (
            n["spec"],
            n["metadata"].get("labels", {}),
            n["metadata"].get("annotations", {}),
        )
        for n in cp.kubectl_json("get", "nodes")["items"]
    }
    deployment = cp.kubectl_json("-n", victim, "get", "deployment", "web")
    pods = sorted(p["metadata"]["uid"] for p in cp.kubectl_json("-n", victim, "get", "pods")["items"])
    plans = sorted(p["metadata"]["name"] for p in cp.kubectl_json("get", "maintenanceplans")["items"])
    return {
        "nodes": nodes,
        "deployment": (deployment["metadata"]["resourceVersion"], deployment["spec"]),
        "pods": pods,
        "plans": plans,
    }


def _loop(name: str, **spec: Any) -> dict[str, Any]:
    return {
        "apiVersion": f"{GROUP}/v1alpha1",
        "kind": "OptimizationLoop",
        "metadata": {"name": name},
        "spec": {
            "targetRef": {"name": "web"},
            "mode": "Auto",
            "interval": "5s",
            "objectives": [{"name": "latency", "metric": "LatencyP95"}],
            "knobs": {"replicas": {"min": 1, "max": 10}},
            **spec,
        },
    }


def test_a_namespace_editor_cannot_reach_outside_the_namespace(
    control_plane: Any, namespace: str, victim: str, operator: opp.OperatorProcess
) -> None:
    cp = control_plane
    cp.kubectl(
        "-n", namespace, "create", "rolebinding", "devs-edit", "--clusterrole=edit", f"--group={USER_GROUP}"
    )
    # The aggregation controller folds autoloop-edit into `edit` asynchronously.
    opp.wait_until(
        lambda: (
            _as_user(cp, namespace, "auth", "can-i", "create", f"optimizationloops.{GROUP}").stdout.strip()
            == "yes"
        ),
        timeout=60,
        what="edit aggregates autoloop-edit",
    )
    # The baseline: this user cannot patch nodes, write plans, or evict pods outside the namespace
    # (`edit` allows evictions inside it).
    for ns, verb, resource in (
        (namespace, "patch", "nodes"),
        (namespace, "create", f"maintenanceplans.{GROUP}"),
        (victim, "create", "pods/eviction"),
        (victim, "create", f"optimizationloops.{GROUP}"),
    ):
        answer = _as_user(cp, ns, "auth", "can-i", verb, resource).stdout.strip()
        assert answer == "no", f"{USER} can {verb} {resource} in {ns}"

    # The tenant's own workload, with the same name and labels as the victim's.
    cp.kubectl("-n", namespace, "apply", "-f", "-", input=json.dumps(_deployment("web", namespace)))
    cp.kubectl("-n", namespace, "rollout", "status", "deployment/web", "--timeout=90s")
    before = _outside(cp, victim)

    # 1. Node maintenance: the plan of the report (Auto, every node, a window open now, an
    #    annotation on the nodes) is refused outright: the kind is cluster-scoped.
    nodes = sorted(before["nodes"])
    plan = {
        "apiVersion": f"{GROUP}/v1alpha1",
        "kind": "MaintenancePlan",
        "metadata": {"name": f"{namespace}-drain-all"},
        "spec": {
            "nodes": nodes,
            "mode": "Auto",
            "windows": [{"start": "00:00", "end": "23:59"}],
            "actions": {"annotate": {"example.com/owned": "yes"}},
        },
    }
    refused = _as_user(cp, namespace, "apply", "-f", "-", body=plan)
    assert refused.returncode != 0 and "forbidden" in refused.stderr.lower(), refused.stderr
    in_namespace = {**plan, "metadata": {**plan["metadata"], "namespace": namespace}}
    refused = _as_user(cp, namespace, "create", "-f", "-", body=in_namespace)
    assert refused.returncode != 0 and "forbidden" in refused.stderr.lower(), refused.stderr

    # 2. Targets: a namespace in targetRef is refused by the schema; the other namespace by RBAC.
    refused = _as_user(
        cp, namespace, "apply", "-f", "-", body=_loop("cross", targetRef={"name": "web", "namespace": victim})
    )
    assert refused.returncode != 0 and "targetRef cannot name a namespace" in refused.stderr, refused.stderr
    refused = _as_user(cp, victim, "apply", "-f", "-", body=_loop("theirs"))
    assert refused.returncode != 0 and "forbidden" in refused.stderr.lower(), refused.stderr
    alloc = {
        "apiVersion": f"{GROUP}/v1alpha1",
        "kind": "ResourceAllocation",
        "metadata": {"name": "cross"},
        "spec": {
            "workloads": {"targetRefs": [{"name": "web", "namespace": victim}]},
            "budget": {"maxCostPerHour": 10},
        },
    }
    refused = _as_user(cp, namespace, "apply", "-f", "-", body=alloc)
    assert refused.returncode != 0 and "targetRef cannot name a namespace" in refused.stderr, refused.stderr

    # 3. Queries that read another namespace pass the schema and are marked Invalid by the operator.
    snoops = {
        "snoop-eq": f'sum(up{{namespace="{victim}"}})',
        "snoop-re": 'sum(up{namespace=~".+"})',
        "snoop-ne": f'sum(up{{namespace!="{namespace}"}})',
        "snoop-or": 'sum(up{job="a" or namespace="kube-system"})',
    }
    for name, query in snoops.items():
        body = _loop(name, objectives=[{"name": "q", "query": query}])
        created = _as_user(cp, namespace, "apply", "-f", "-", body=body)
        assert created.returncode == 0, created.stderr

    # 4. A selector matching the other team's labels selects only the tenant's Deployment.
    alloc = {
        "apiVersion": f"{GROUP}/v1alpha1",
        "kind": "ResourceAllocation",
        "metadata": {"name": "frontend"},
        "spec": {
            "workloads": {"selector": {"matchLabels": {"tier": "frontend"}}},
            "budget": {"maxCostPerHour": 10},
            "mode": "Auto",
            "interval": "10s",
        },
    }
    created = _as_user(cp, namespace, "apply", "-f", "-", body=alloc)
    assert created.returncode == 0, created.stderr

    def invalid(name: str) -> dict[str, Any] | None:
        c = opp.condition(opp.get_json(cp, namespace, f"oloop/{name}"), "Invalid")
        return c if c and c["status"] == "True" else None

    for name in snoops:
        cond = opp.wait_until(lambda n=name: invalid(n), timeout=60, what=f"{name} Invalid=True")
        assert "namespace" in cond["message"], cond
    allocation = opp.wait_until(
        lambda: (
            (o := opp.get_json(cp, namespace, "ralloc/frontend")).get("status", {}).get("lastRunTime") and o
        ),
        timeout=60,
        what="a pass of the allocation",
    )
    assert allocation["status"].get("workloadCount") in (None, 1), allocation["status"]
    assert {a["name"] for a in allocation["status"].get("allocations", [])} <= {"web"}

    # Nothing outside the namespace changed, after several passes of every resource.
    after = _outside(cp, victim)
    assert after["deployment"] == before["deployment"], "the other namespace's Deployment was written"
    assert after["pods"] == before["pods"], "the other namespace's pods were replaced or evicted"
    assert after["plans"] == before["plans"]
    assert after["nodes"] == before["nodes"], "a node's spec, labels or annotations changed"
    for node in after["nodes"].values():
        assert "example.com/owned" not in node[2]
