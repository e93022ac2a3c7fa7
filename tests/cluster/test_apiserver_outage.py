"""The kube-apiserver goes away for a minute under a running operator.

What must hold: the operator does not exit while it is gone, and when the apiserver returns every
resource is reconciled again from what is stored: status passes resume, a spec change made after
the outage is observed, and the liveness endpoint answers. The apiserver is SIGKILLed (a crash, not a
graceful stop) and restarted by `dev/cluster.sh up` on the same port with the same etcd data.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import time
import urllib.request
from collections.abc import Iterator
from datetime import datetime
from typing import Any

import pytest

from tests.cluster import operator_process as opp
from tests.cluster.conftest import DEV, STATE

pytestmark = pytest.mark.cluster

OUTAGE_SECONDS = 60.0


@pytest.fixture(scope="module")
def operator(control_plane: Any, prometheus: Any, tmp_path_factory: Any) -> Iterator[opp.OperatorProcess]:
    yield from opp.operator_fixture(control_plane, prometheus, tmp_path_factory)


def _loop(replicas_max: int) -> dict[str, Any]:
    return {
        "apiVersion": "autoloop.x0tta6bl4.io/v1alpha1",
        "kind": "OptimizationLoop",
        "metadata": {"name": "web"},
        "spec": {
            "targetRef": {"name": "web"},
            "interval": "5s",
            "objectives": [{"name": "latency", "metric": "LatencyP95"}],
            "knobs": {"replicas": {"min": 1, "max": replicas_max}},
        },
    }


def _last_run(cp: Any, namespace: str) -> datetime | None:
    text = opp.get_json(cp, namespace, "oloop/web").get("status", {}).get("lastRunTime")
    return datetime.fromisoformat(text.replace("Z", "+00:00")) if text else None


def test_operator_survives_an_apiserver_crash_and_resumes_from_status(
    control_plane: Any, namespace: str, operator: opp.OperatorProcess
) -> None:
    cp = control_plane
    cp.kubectl("-n", namespace, "apply", "-f", str(opp.ROOT / "manifests" / "examples" / "workload.yaml"))
    cp.kubectl("-n", namespace, "apply", "-f", "-", input=json.dumps(_loop(10)))
    opp.wait_until(lambda: _last_run(cp, namespace), timeout=90, what="a first pass")

    pid = int((STATE / "pids" / "kube-apiserver.pid").read_text())
    os.kill(pid, signal.SIGKILL)
    down_at = time.monotonic()
    try:
        opp.wait_until(
            lambda: cp.kubectl("get", "--raw", "/readyz", check=False, timeout=5).returncode != 0,
            timeout=30,
            what="the apiserver gone",
        )
        while time.monotonic() - down_at < OUTAGE_SECONDS:
            assert operator.process.poll() is None, f"the operator exited:\n{operator.log()[-4000:]}"
            time.sleep(2)
    finally:
        subprocess.run([str(DEV / "cluster.sh"), "up"], check=True, timeout=300, env=cp.env)
    back = datetime.now().astimezone()
    assert operator.process.poll() is None

    # Passes resume: a status written after the apiserver came back.
    opp.wait_until(
        lambda: (t := _last_run(cp, namespace)) is not None and t > back, timeout=120, what="a pass after"
    )
    # And the watch is live again: a spec change made now is observed.
    cp.kubectl("-n", namespace, "apply", "-f", "-", input=json.dumps(_loop(12)))
    generation = opp.get_json(cp, namespace, "oloop/web")["metadata"]["generation"]
    opp.wait_until(
        lambda: opp.get_json(cp, namespace, "oloop/web")["status"].get("observedGeneration") == generation,
        timeout=120,
        what=f"generation {generation} observed",
    )
    opp.wait_until(
        lambda: urllib.request.urlopen(operator.healthz_url, timeout=2).status == 200,
        timeout=30,
        what="/healthz",
    )
    # An unreachable apiserver is a state, not a bug: one line per retry, never a traceback.
    assert "Traceback" not in operator.log(), operator.log()[-4000:]
