"""Prometheus misbehaving under a running loop: errors, slowness, NaN/Inf, empty and stale answers,
and counters reset by a restarted exporter.

The operator talks to the real Prometheus through a small HTTP proxy in this test that passes
requests through unchanged, or answers in one fault mode at a time. For each fault the loop (mode
`Auto`, on an over-provisioned workload it wants to shrink) must say why in
`MetricsAvailable=False`, apply nothing while the fault lasts, and the operator must stay alive;
when the proxy passes requests through again the loop is Ready again.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
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


def _loop_on_workload(
    cp: Any, namespace: str, *, mode: str, objectives: list[dict[str, Any]], **spec: Any
) -> None:
    """The example workload and a 5 s OptimizationLoop `web` on it."""
    cp.kubectl("-n", namespace, "apply", "-f", str(opp.ROOT / "manifests" / "examples" / "workload.yaml"))
    loop = {
        "apiVersion": "autoloop.x0tta6bl4.io/v1alpha1",
        "kind": "OptimizationLoop",
        "metadata": {"name": "web"},
        "spec": {
            "targetRef": {"name": "web"},
            "mode": mode,
            "interval": "5s",
            "objectives": objectives,
            "knobs": {"replicas": {"min": 1, "max": 8}},
            **spec,
        },
    }
    cp.kubectl("-n", namespace, "apply", "-f", "-", input=json.dumps(loop))


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
    _loop_on_workload(
        cp,
        namespace,
        mode="Auto",
        objectives=[{"name": "latency", "metric": "LatencyP95", "target": 0.5}],
        safety={"cooldown": "5s", "maxChangesPerHour": 60, "minConfidence": 0.0},
    )
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


def _observed(cp: Any, namespace: str) -> dict[str, float]:
    return dict(opp.get_json(cp, namespace, "oloop/web").get("status", {}).get("observed", {}))


def _raw_requests(prometheus: Any, namespace: str) -> float:
    """The exporter's request counter for this test's workload as last scraped (not a rate)."""
    rows = prometheus.query(f'sum(http_requests_total{{namespace="{namespace}"}})')
    return float(rows[0]["value"][1]) if rows else -1.0


@pytest.mark.slow  # a minute around an exporter restart: `make test-slow`
def test_a_counter_reset_reads_as_prometheus_reads_it(
    control_plane: Any, namespace: str, prometheus: Any, operator: opp.OperatorProcess
) -> None:
    # The exporter restarted: its request counters and latency histogram start again from zero.
    # The loop's objectives are rates and quantiles of those counters over a window (`rate`,
    # `histogram_quantile`): a reset inside the window must read as Prometheus reads it (no
    # negative rate, no spike), so what the loop observes after it stays what it was. Recommend:
    # nothing changes the workload meanwhile.
    cp = control_plane
    _loop_on_workload(
        cp,
        namespace,
        mode="Recommend",
        objectives=[
            {"name": "latency", "metric": "LatencyP95", "target": 0.5},
            {"name": "errors", "metric": "ErrorRatio", "target": 0.05},
        ],
    )
    before = opp.wait_until(
        lambda: (o := _observed(cp, namespace)) and "latency" in o and "errors" in o and o,
        timeout=120,
        what="latency and errors observed",
    )
    counted = opp.wait_until(
        lambda: (v := _raw_requests(prometheus, namespace)) > 0 and v, timeout=60, what="requests counted"
    )
    pid_file = cp.state_dir / "pids" / "exporter.pid"
    os.kill(int(pid_file.read_text().strip()), signal.SIGTERM)
    env = dict(cp.env)
    env["PYTHON"] = sys.executable
    subprocess.run([str(opp.ROOT / "dev" / "prometheus.sh"), "up"], check=True, timeout=300, env=env)
    opp.wait_until(
        lambda: 0 <= _raw_requests(prometheus, namespace) < counted,
        timeout=60,
        what="the request counter scraped from zero again (a reset)",
    )
    reset_at = time.monotonic()
    seen: list[dict[str, float]] = []
    while time.monotonic() < reset_at + 40:  # the rate window spans the reset
        metrics = _metrics_condition(cp, namespace)
        assert metrics is not None and metrics["status"] == "True", metrics
        seen.append(_observed(cp, namespace))
        time.sleep(2)
    assert operator.process.poll() is None, operator.log()[-4000:]
    for o in seen:
        assert 0.5 * before["latency"] <= o["latency"] <= 2.0 * before["latency"], (before, o)
        assert 0.0 <= o["errors"] <= max(2.0 * before["errors"], 0.01), (before, o)
    cp.kubectl("-n", namespace, "delete", "oloop", "web", "--timeout=60s")
