"""Prometheus misbehaving under a running loop: errors, slowness, NaN/Inf, empty and stale answers.

The operator talks to the real Prometheus through a small HTTP proxy in this test that passes
requests through unchanged, or answers in one fault mode at a time. For each fault the loop (mode
`Auto`, on an over-provisioned workload it wants to shrink) must say why in
`MetricsAvailable=False`, apply nothing while the fault lasts, and the operator must stay alive;
when the proxy passes requests through again the loop is Ready again.
"""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest

from tests.cluster import operator_process as opp
from tests.cluster.fault_proxy import FaultProxy

pytestmark = pytest.mark.cluster

PROMETHEUS_TIMEOUT_S = 2
"""The operator's Prometheus timeout here (AUTOLOOP_PROMETHEUS_TIMEOUT_SECONDS): `slow` exceeds it."""


@pytest.fixture(scope="module")
def proxy(prometheus: Any) -> Iterator[FaultProxy]:
    p = FaultProxy(prometheus.url)
    yield p
    p.close()


@pytest.fixture(scope="module")
def operator(control_plane: Any, proxy: FaultProxy, tmp_path_factory: Any) -> Iterator[opp.OperatorProcess]:
    opp.install(control_plane)
    workdir: Path = tmp_path_factory.mktemp("operator")
    op = opp.start(
        control_plane,
        proxy.url,
        workdir,
        extra_env={"AUTOLOOP_PROMETHEUS_TIMEOUT_SECONDS": str(PROMETHEUS_TIMEOUT_S)},
    )
    try:
        yield op
    finally:
        op.stop()


def _applied_since(cp: Any, namespace: str, since: datetime) -> list[dict[str, Any]]:
    decisions = opp.get_json(cp, namespace, "oloop/web").get("status", {}).get("decisions", [])
    return [
        d
        for d in decisions
        if d.get("action") in ("Applied", "RolledBack")
        and datetime.fromisoformat(d["time"].replace("Z", "+00:00")) >= since
    ]


def _metrics_condition(cp: Any, namespace: str) -> dict[str, Any] | None:
    return opp.condition(opp.get_json(cp, namespace, "oloop/web"), "MetricsAvailable")


@pytest.mark.parametrize(
    ("mode", "reasons"),
    [
        ("error", {"QueryFailed", "PrometheusUnreachable"}),
        ("slow", {"PrometheusUnreachable"}),
        ("garbage", {"QueryFailed", "PrometheusUnreachable"}),
        ("nan", {"NaN"}),
        ("inf", {"NaN"}),
        ("empty", {"NoData"}),
        ("stale", {"Stale"}),
    ],
)
def test_a_misbehaving_prometheus_stops_actions_and_says_why(
    control_plane: Any,
    namespace: str,
    proxy: FaultProxy,
    operator: opp.OperatorProcess,
    mode: str,
    reasons: set[str],
) -> None:
    cp = control_plane
    cp.kubectl("-n", namespace, "apply", "-f", str(opp.ROOT / "manifests" / "examples" / "workload.yaml"))
    loop = {
        "apiVersion": "autoloop.x0tta6bl4.io/v1alpha1",
        "kind": "OptimizationLoop",
        "metadata": {"name": "web"},
        "spec": {
            "targetRef": {"name": "web"},
            "mode": "Auto",
            "interval": "5s",
            "objectives": [{"name": "latency", "metric": "LatencyP95", "target": 0.5}],
            "knobs": {"replicas": {"min": 1, "max": 8}},
            "safety": {"cooldown": "5s", "maxChangesPerHour": 60, "minConfidence": 0.0},
        },
    }
    cp.kubectl("-n", namespace, "apply", "-f", "-", input=json.dumps(loop))
    opp.wait_until(
        lambda: (c := _metrics_condition(cp, namespace)) and c["status"] == "True",
        timeout=120,
        what="metrics available before the fault",
    )
    proxy.mode = mode
    start = datetime.now(UTC).replace(microsecond=0)
    try:
        cond = opp.wait_until(
            lambda: (c := _metrics_condition(cp, namespace)) and c["status"] == "False" and c,
            timeout=90,
            what=f"MetricsAvailable=False under fault {mode}",
        )
        assert cond["reason"] in reasons, cond
        version = cp.kubectl_json("-n", namespace, "get", "deployment", "web")["metadata"]["resourceVersion"]
        time.sleep(12)  # a few passes under the fault
        assert operator.process.poll() is None, operator.log()[-4000:]
        assert (
            cp.kubectl_json("-n", namespace, "get", "deployment", "web")["metadata"]["resourceVersion"]
            == version
        )
        stuck = _metrics_condition(cp, namespace)
        assert stuck is not None and stuck["status"] == "False", stuck
        # Anything applied after the fault was seen would have been blind.
        seen = datetime.fromisoformat(cond["lastTransitionTime"].replace("Z", "+00:00"))
        assert not _applied_since(cp, namespace, seen), _applied_since(cp, namespace, start)
    finally:
        proxy.mode = "pass"
    opp.wait_until(
        lambda: (c := _metrics_condition(cp, namespace)) and c["status"] == "True",
        timeout=120,
        what="metrics available after the fault",
    )
    cp.kubectl("-n", namespace, "delete", "oloop", "web", "--timeout=60s")
