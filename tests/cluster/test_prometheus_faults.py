"""Prometheus misbehaving under a running loop: errors, slowness, NaN/Inf, empty and stale answers.

The operator talks to the real Prometheus through a small HTTP proxy in this test that passes
requests through unchanged, or answers in one fault mode at a time. For each fault the loop (mode
`Auto`, on an over-provisioned workload it wants to shrink) must say why in
`MetricsAvailable=False`, apply nothing while the fault lasts, and the operator must stay alive;
when the proxy passes requests through again the loop is Ready again.
"""

from __future__ import annotations

import contextlib
import http.server
import json
import threading
import time
import urllib.request
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest

from tests.cluster import operator_process as opp

pytestmark = pytest.mark.cluster

PROMETHEUS_TIMEOUT_S = 2
"""The operator's Prometheus timeout here (AUTOLOOP_PROMETHEUS_TIMEOUT_SECONDS): `slow` exceeds it."""


class FaultProxy:
    """Forwards GETs and POSTs to Prometheus, or answers in the fault `mode` it is set to."""

    def __init__(self, upstream: str) -> None:
        self.upstream = upstream
        self.mode = "pass"
        self.calls = 0
        proxy = self

        class Handler(http.server.BaseHTTPRequestHandler):
            def log_message(self, *_: Any) -> None:
                pass

            def do_GET(self) -> None:
                proxy.answer(self, None)

            def do_POST(self) -> None:
                proxy.answer(self, self.rfile.read(int(self.headers.get("Content-Length") or 0)))

        self.server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def forward(self, handler: http.server.BaseHTTPRequestHandler, body: bytes | None) -> tuple[int, bytes]:
        req = urllib.request.Request(self.upstream + handler.path, data=body, method=handler.command)
        if body is not None:
            req.add_header(
                "Content-Type", handler.headers.get("Content-Type", "application/x-www-form-urlencoded")
            )
        with urllib.request.urlopen(req, timeout=30) as resp:
            return resp.status, resp.read()

    def answer(self, handler: http.server.BaseHTTPRequestHandler, body: bytes | None) -> None:
        self.calls += 1
        mode = self.mode
        status, payload = 200, b""
        if mode == "error":
            status, payload = 503, b"service unavailable"
        elif mode == "slow":
            time.sleep(PROMETHEUS_TIMEOUT_S * 3)
            status, payload = self.forward(handler, body)
        elif mode == "garbage":
            payload = b'{"status": "success", "data": '
        else:
            status, payload = self.forward(handler, body)
            if mode in ("nan", "inf", "empty", "stale") and handler.path.startswith("/api/v1/query"):
                payload = json.dumps(self.rewrite(json.loads(payload), mode)).encode()
        handler.send_response(status)
        handler.send_header("Content-Type", "application/json")
        handler.send_header("Content-Length", str(len(payload)))
        handler.end_headers()
        with contextlib.suppress(OSError):  # the operator gave up on a slow answer
            handler.wfile.write(payload)

    @staticmethod
    def rewrite(answer: dict[str, Any], mode: str) -> dict[str, Any]:
        data = answer.get("data", {})
        if mode == "empty":
            data["result"] = []
            return answer
        for series in data.get("result", []):
            if "value" in series:
                series["value"] = FaultProxy.sample(series["value"], mode)
            if "values" in series:
                series["values"] = [FaultProxy.sample(v, mode) for v in series["values"]]
        return answer

    @staticmethod
    def sample(point: list[Any], mode: str) -> list[Any]:
        if mode == "nan":
            return [point[0], "NaN"]
        if mode == "inf":
            return [point[0], "+Inf"]
        return [float(point[0]) - 3600.0, point[1]]  # stale: an hour old

    def close(self) -> None:
        self.server.shutdown()


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
