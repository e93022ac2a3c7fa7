"""Hostile input against the real apiserver and a running operator (property-based, hypothesis).

Random and adversarial specs of every kind: strings with quotes, newlines, PromQL injections,
unicode look-alikes of other namespaces, huge lists and values, wrong types. Each one is either
refused at apply (a 4xx from the apiserver, never a 5xx) or accepted; every accepted one must then
get a status from the operator for its generation with a `Ready` or `Invalid` condition, the
operator must stay alive with no traceback in its log, and nothing outside the test's namespace
may change (a decoy Deployment elsewhere keeps its resourceVersion; nodes keep spec and
annotations). Accepted loops and allocations run in `Recommend` mode on a target that exists,
so any write to a workload at all is an action the test catches.
"""

from __future__ import annotations

import json
import ssl
import urllib.error
import urllib.request
import uuid
from collections.abc import Iterator
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from kubernetes.client.exceptions import ApiException

from autoloop.operator import kube
from tests.cluster import operator_process as opp

pytestmark = pytest.mark.cluster

GROUP, VERSION = "autoloop.x0tta6bl4.io", "v1alpha1"
EXAMPLES = 25
"""Per kind: enough to cover the strategies' corners, small enough for the default test run."""

NASTY = [
    "",
    " ",
    '"',
    "'",
    "\\",
    "\n",
    'web"} or vector(1) or {"',
    '"}[5m]) or on() vector(1) #',
    "kube‐system",  # U+2010 hyphen
    "kubе-system",  # Cyrillic е
    "ｋｕｂｅ-system",  # full-width
    "web\u200b",  # zero-width space
    "$(rm -rf /)",
    "`id`",
    "../../etc/passwd",
    "%s%s%n",
    "\x00",
    "a" * 64,
    "a" * 5000,
    "${jndi:ldap://x}",
    "web; DROP TABLE",
    "*",
    "web\r\nX-Injected: 1",
]
nasty_text = st.one_of(st.sampled_from(NASTY), st.text(max_size=80))
nasty_number = st.one_of(
    st.integers(min_value=-(2**63), max_value=2**63 - 1),
    st.floats(allow_nan=False, allow_infinity=False),
    st.sampled_from(["1", "NaN", "Inf", "-1", "1e309", "0x10"]),
)
queries = st.one_of(
    nasty_text,
    st.sampled_from(
        [
            'up{namespace="kube-system"}',
            'up{namespace=~".*"}',
            'up{namespace!=""}',
            'up{job="a" or namespace="kube-system"}',
            "up @ 100",
            'label_replace(up, "namespace", "kube-system", "", "")',
            'sum by (namespace) ({__name__=~".+"})',
            'up{namespace="kube‐system"}',
            "absent(nothing)",
            "vector(NaN)",
            "vector(+Inf)",
            "1/0",
            "sum(" * 200 + ")" * 200,
        ]
    ),
)


def _loop_spec(name: Any, query: Any, metric: Any, bounds: tuple[Any, Any], extra: dict[str, Any]) -> Any:
    objective: dict[str, Any] = {"name": name, "query": query}
    if metric is not None:
        objective = {"name": name, "metric": metric}
    return {
        "targetRef": {"name": "web"},
        "mode": "Recommend",
        "interval": "5s",
        "objectives": [objective],
        "knobs": {"replicas": {"min": bounds[0], "max": bounds[1]}, "cpu": {"min": "100m", "max": "2"}},
        **extra,
    }


loop_specs = st.builds(
    _loop_spec,
    name=st.one_of(st.just("q"), nasty_text),
    query=queries,
    metric=st.one_of(st.none(), st.sampled_from(["LatencyP95", "Bogus", ""]), nasty_text),
    bounds=st.tuples(nasty_number, nasty_number),
    extra=st.fixed_dictionaries(
        {},
        optional={
            "targetRef": st.fixed_dictionaries(
                {"name": nasty_text},
                optional={"namespace": nasty_text, "kind": nasty_text, "apiVersion": nasty_text},
            ),
            "interval": nasty_text,
            "knobs": st.dictionaries(nasty_text, nasty_text, max_size=3),
            "objectives": st.lists(
                st.fixed_dictionaries({"name": st.just("x"), "query": queries}), min_size=0, max_size=40
            ),
            "safety": st.dictionaries(st.sampled_from(["maxStepPercent", "cooldown", "bogus"]), nasty_number),
        },
    ),
)
alloc_specs = st.builds(
    lambda labels, budget, extra: {
        "workloads": {"selector": {"matchLabels": labels}},
        "budget": {"maxCostPerHour": budget},
        "mode": "Recommend",
        "interval": "10s",
        **extra,
    },
    labels=st.dictionaries(st.one_of(st.just("app"), nasty_text), nasty_text, max_size=3),
    budget=nasty_number,
    extra=st.fixed_dictionaries(
        {},
        optional={
            "timeLimit": nasty_text,
            "horizon": nasty_text,
            "solver": nasty_text,
            "workloads": st.fixed_dictionaries(
                {"targetRefs": st.lists(st.fixed_dictionaries({"name": nasty_text}), max_size=3)}
            ),
            "capacity": st.fixed_dictionaries(
                {"nodeSelector": st.dictionaries(nasty_text, nasty_text, max_size=2)}
            ),
        },
    ),
)
plan_specs = st.builds(
    lambda nodes, annotate, blocker, extra: {
        "nodes": nodes,
        "windows": [{"start": "01:00", "end": "02:00"}],
        "mode": "Recommend",
        "interval": "10s",
        "actions": {"annotate": annotate},
        "blockers": [{"query": blocker}],
        **extra,
    },
    nodes=st.lists(nasty_text, min_size=1, max_size=5),
    annotate=st.dictionaries(nasty_text, nasty_text, max_size=3),
    blocker=queries,
    extra=st.fixed_dictionaries(
        {},
        optional={
            "maxConcurrent": st.one_of(nasty_number, nasty_text),
            "windows": st.lists(
                st.fixed_dictionaries({"start": nasty_text, "end": nasty_text, "timeZone": nasty_text}),
                max_size=3,
            ),
            "nodeSelector": st.fixed_dictionaries({"matchLabels": st.dictionaries(nasty_text, nasty_text)}),
        },
    ),
)


class Applied:
    """Every object the apiserver accepted, to be checked once the operator had time for it."""

    def __init__(self, clients: kube.Clients) -> None:
        self.clients = clients
        self.accepted: list[tuple[str, str, str]] = []  # (plural, namespace, name)
        self.refused = 0
        self.counter = 0
        self.run = uuid.uuid4().hex[:6]
        self.before: dict[str, Any] = {}


@pytest.fixture(scope="module")
def operator(control_plane: Any, prometheus: Any, tmp_path_factory: Any) -> Iterator[opp.OperatorProcess]:
    yield from opp.operator_fixture(control_plane, prometheus, tmp_path_factory)


@pytest.fixture(scope="module")
def arena(control_plane: Any, operator: opp.OperatorProcess) -> Iterator[tuple[str, str, Applied]]:
    """The test's namespace with a target `web`, and a decoy namespace that must stay untouched."""
    with (
        opp.fresh_namespace(control_plane, "hostile") as namespace,
        opp.fresh_namespace(control_plane, "decoy") as decoy,
    ):
        for ns in (namespace, decoy):
            control_plane.kubectl("-n", ns, "apply", "-f", "-", input=json.dumps(_web(ns)))
            control_plane.kubectl("-n", ns, "rollout", "status", "deployment/web", "--timeout=90s")
        applied = Applied(kube.Clients.connect(str(control_plane.kubeconfig)))
        applied.before = _outside(control_plane, namespace, decoy)
        yield namespace, decoy, applied
        custom = applied.clients.custom
        for plural, ns, name in applied.accepted:
            try:
                if ns:
                    custom.delete_namespaced_custom_object(GROUP, VERSION, ns, plural, name)
                else:
                    custom.delete_cluster_custom_object(GROUP, VERSION, plural, name)
            except ApiException:
                pass


def _outside(cp: Any, namespace: str, decoy: str) -> dict[str, Any]:
    """What no accepted object may change (Recommend mode everywhere, so the target neither)."""
    return {
        "decoy": cp.kubectl_json("-n", decoy, "get", "deployment", "web")["metadata"]["resourceVersion"],
        "target": cp.kubectl_json("-n", namespace, "get", "deployment", "web")["metadata"]["resourceVersion"],
        "nodes": {
            n["metadata"]["name"]: (n["spec"], n["metadata"].get("annotations", {}))
            for n in cp.kubectl_json("get", "nodes")["items"]
        },
    }


def _web(namespace: str) -> dict[str, Any]:
    return {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": {"name": "web", "namespace": namespace, "labels": {"app": "web"}},
        "spec": {
            "replicas": 1,
            "selector": {"matchLabels": {"app": "web"}},
            "template": {
                "metadata": {"labels": {"app": "web"}},
                "spec": {
                    "containers": [
                        {
                            "name": "main",
                            "image": "registry.k8s.io/pause:3.10",
                            "resources": {"requests": {"cpu": "100m", "memory": "64Mi"}},
                        }
                    ]
                },
            },
        },
    }


def _create(cp: Any, applied: Applied, kind: str, plural: str, namespace: str, spec: Any) -> None:
    """Create one object through the API; a 4xx is a refusal, a 5xx or a hang is a failure."""
    applied.counter += 1
    name = f"h{applied.counter}"
    body = {"apiVersion": f"{GROUP}/{VERSION}", "kind": kind, "metadata": {"name": name}, "spec": spec}
    custom = applied.clients.custom
    try:
        if namespace:
            custom.create_namespaced_custom_object(GROUP, VERSION, namespace, plural, body)
        else:
            name = f"hostile-{applied.run}-{name}"  # cluster-scoped: unique across runs
            body["metadata"]["name"] = name
            custom.create_cluster_custom_object(GROUP, VERSION, plural, body)
    except ApiException as exc:
        assert exc.status is not None and 400 <= exc.status < 500, f"{exc.status}: {exc.body}"
        applied.refused += 1
        return
    except ValueError:
        applied.refused += 1  # not even serialisable as JSON (e.g. a lone surrogate): never sent
        return
    applied.accepted.append((plural, namespace, name))


SETTINGS = settings(
    max_examples=EXAMPLES,
    deadline=None,
    derandomize=True,
    suppress_health_check=[
        HealthCheck.function_scoped_fixture,
        HealthCheck.too_slow,
        HealthCheck.data_too_large,
    ],
)


@SETTINGS
@given(spec=loop_specs)
def test_random_loops_are_refused_or_reported(control_plane: Any, arena: Any, spec: Any) -> None:
    namespace, _, applied = arena
    _create(control_plane, applied, "OptimizationLoop", "optimizationloops", namespace, spec)


@SETTINGS
@given(spec=alloc_specs)
def test_random_allocations_are_refused_or_reported(control_plane: Any, arena: Any, spec: Any) -> None:
    namespace, _, applied = arena
    _create(control_plane, applied, "ResourceAllocation", "resourceallocations", namespace, spec)


@SETTINGS
@given(spec=plan_specs)
def test_random_plans_are_refused_or_reported(control_plane: Any, arena: Any, spec: Any) -> None:
    _, _, applied = arena
    _create(control_plane, applied, "MaintenancePlan", "maintenanceplans", "", spec)


def test_yaml_that_expands_is_refused_by_the_apiserver(control_plane: Any, arena: Any) -> None:
    namespace, _, _ = arena
    laughs = ["a: &a [x, x, x, x, x, x, x, x, x, x]"]
    for i in range(1, 10):
        prev = chr(ord("a") + i - 1)
        cur = chr(ord("a") + i)
        laughs.append(f"{cur}: &{cur} [" + ", ".join([f"*{prev}"] * 10) + "]")
    body = (
        f"apiVersion: {GROUP}/{VERSION}\nkind: OptimizationLoop\nmetadata:\n  name: laughs\n"
        "spec:\n" + "\n".join("  " + line for line in laughs) + "\n"
    )
    path = f"/apis/{GROUP}/{VERSION}/namespaces/{namespace}/optimizationloops"
    req = urllib.request.Request(control_plane.server + path, data=body.encode(), method="POST")
    req.add_header("Content-Type", "application/yaml")
    try:
        with urllib.request.urlopen(req, context=control_plane.ssl_context(), timeout=30) as resp:
            status = resp.status
    except urllib.error.HTTPError as exc:
        status = exc.code
    except (ssl.SSLError, TimeoutError, urllib.error.URLError) as exc:
        raise AssertionError(f"the apiserver did not answer: {exc}") from exc
    assert 400 <= status < 500, status
    assert control_plane.kubectl("get", "--raw", "/readyz").stdout.strip() == "ok"


def test_every_accepted_object_is_reported_and_nothing_acts(
    control_plane: Any, arena: Any, operator: opp.OperatorProcess
) -> None:
    """Runs after the property tests in this module (pytest keeps file order)."""
    namespace, decoy, applied = arena
    cp = control_plane
    assert applied.refused > 0, "the strategies produce specs the schema must refuse"
    assert applied.accepted, "the strategies produce specs the schema accepts"

    def reported(plural: str, ns: str, name: str) -> bool:
        obj = kube.read_resource(applied.clients, plural=plural, namespace=ns, name=name)
        status = obj.get("status") or {}
        types = {c.get("type") for c in status.get("conditions", [])}
        return status.get("observedGeneration") == obj["metadata"]["generation"] and bool(
            types & {"Ready", "Invalid"}
        )

    for plural, ns, name in applied.accepted:
        opp.wait_until(
            lambda p=plural, n=ns, m=name: reported(p, n, m), timeout=90, what=f"status of {plural}/{name}"
        )
    assert operator.process.poll() is None, "the operator died"
    log = operator.log()
    assert "Traceback" not in log, log[log.find("Traceback") - 2000 :][:6000]
    assert _outside(cp, namespace, decoy) == applied.before, "an accepted hostile spec acted"
