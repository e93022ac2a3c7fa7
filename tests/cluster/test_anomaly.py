"""Anomaly detection and root cause on the real stack: a fault injected into one service of a
small graph (web → api → db) is named in the loop's status and in an Event."""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from typing import Any

import pytest

from tests.cluster import operator_process as opp
from tests.cluster.test_loop import apply, deployment, loop, status

pytestmark = pytest.mark.cluster

REFERENCE_SECONDS = 150
"""Healthy history the detector gets before the fault."""


@pytest.fixture(scope="module")
def operator(control_plane: Any, prometheus: Any, tmp_path_factory: Any) -> Iterator[opp.OperatorProcess]:
    yield from opp.operator_fixture(control_plane, prometheus, tmp_path_factory)


def service(name: str, calls: str = "") -> dict[str, Any]:
    dep = deployment(name, replicas=3, cpu="1", memory="256Mi", rps=60, cpu_per_request=0.005)
    if calls:
        dep["metadata"]["annotations"]["sim.autoloop.x0tta6bl4.io/calls"] = calls
    return dep


def test_injected_fault_is_named_as_root_cause(control_plane: Any, namespace: str, operator: Any) -> None:
    apply(
        control_plane,
        namespace,
        service("db"),
        service("api", calls="db"),
        service("web", calls="api"),
        loop("web", mode="Recommend", dependencies=["api", "db"]),
    )
    last_status: dict[str, Any] = {}

    def running() -> bool:
        last_status.update(status(control_plane, namespace, "web"))
        return last_status.get("phase") == "Recommending"

    # The first passes wait for every signal of three services to have samples: well under a
    # minute on a quiet machine; two clean-clone CI runs beside other work took over 90 s.
    try:
        opp.wait_until(running, timeout=180, what="loop running")
    except AssertionError as exc:
        shown = {k: last_status.get(k) for k in ("phase", "message", "lastRunTime", "conditions")}
        raise AssertionError(f"{exc}; last status: {json.dumps(shown)[:3000]}") from None
    time.sleep(REFERENCE_SECONDS)
    calm = status(control_plane, namespace, "web")
    # Demand moving is reported but is not a fault; nothing unexplained may be active (what the
    # safety freeze reads). A short ended blip on the near-noiseless simulator can be flagged.
    # Also not counted: a change smaller than the HPA's tolerance (10 %). The simulator's latency
    # has ~0.1 % noise, so a 0.7 % dip as a young series' rates settle reads as a 5-sigma step (a
    # clean-clone CI run saw one). The detector itself no longer alarms on such a change
    # (`anomaly.significance`); the filter states the test's own bar.
    unexplained = [
        a
        for a in calm.get("anomalies", [])
        if not a.get("explained_by_load")
        and not a.get("low_confidence")
        and not a.get("benign")
        and a.get("end") is None
        and abs(a["relative_change"]) >= 0.1
    ]
    assert unexplained == [], f"false alarm on a healthy graph: {unexplained}"

    control_plane.kubectl(
        "-n",
        namespace,
        "annotate",
        "deployment",
        "db",
        "--overwrite",
        "sim.autoloop.x0tta6bl4.io/fault=latency",
        f"sim.autoloop.x0tta6bl4.io/fault-start={time.time():.0f}",
        "sim.autoloop.x0tta6bl4.io/fault-magnitude=4",
    )

    seen: list[Any] = []

    def analysed() -> dict[str, Any] | None:
        s = status(control_plane, namespace, "web")
        causes = (s.get("analysis") or {}).get("causes") or []
        seen[:] = [s.get("anomalies"), s.get("analysis"), s.get("message")]
        # The analysis of the injected fault: db first, on its latency (a pass may first analyse a
        # small load dip across the graph, which also names a service but is not this fault).
        top = causes[0] if causes else {}
        on_latency = any("latency" in e for e in top.get("evidence", []))
        return s if top.get("service") == "db" and on_latency else None

    try:
        s = opp.wait_until(analysed, timeout=120, interval=2, what="db ranked first")
    except AssertionError as exc:
        raise AssertionError(f"{exc}; last status: {json.dumps(seen)[:3000]}") from None
    top = s["analysis"]["causes"][0]
    # The service is what the issue asks to name; the fault type is scored by bench/rca (a slower
    # service here can also read as CPU saturation: both raise latency at flat load).
    assert top["evidence"] and top["action"] in ("scale", "rollback", "restart", "schedule_maintenance"), top
    assert any(a["service"] in ("db", "api", "web") for a in s["anomalies"])
    cond = opp.condition({"status": s}, "AnomalyDetected")
    assert cond is not None and cond["status"] == "True"
    events = json.loads(
        control_plane.kubectl(
            "-n", namespace, "get", "events", "--field-selector", "involvedObject.name=web", "-o", "json"
        ).stdout
    )["items"]
    root = [e for e in events if e["reason"] == "RootCause"]
    # The Event for the current top cause names db (earlier passes may have ranked others first).
    assert any("root cause db" in e["message"] for e in root), [e["message"] for e in root]
