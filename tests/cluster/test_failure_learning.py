"""MaintenancePlan learns its failure model from the cluster's own history in Prometheus.

A private Prometheus holds 10 days of backfilled history (promtool, as in test_maintenance) of the
three kwok nodes: healthy node-exporter metrics, a PSU ripple signal that rises for a day before
each failure, and kube-state-metrics' Ready condition dropping to 0 for 30 min at each failure, a
failure mode the simulator prior has never seen. At the end, kwok-node-1's ripple has been rising
for 8 h (about to fail) and kwok-node-0's disk has been filling for a day (what the prior knows,
and in this cluster never preceded a failure). The operator runs as a real process with the
shipped RBAC; the plan (Recommend mode: nothing is drained) lists the ripple in
`spec.prediction.signals`. Before its first training ends the plan predicts with the prior; after
it, status reports a cluster model that measured better on the cluster's own past than the prior,
and kwok-node-1 ranks first.
"""

from __future__ import annotations

import json
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from kubernetes import client, watch

from autoloop.api.common import GROUP
from autoloop.engines import failure
from autoloop.operator import kube
from tests.cluster import fleet_prometheus as fleet
from tests.cluster import operator_process as opp
from tests.cluster.fleet_prometheus import RIPPLE, RIPPLE_QUERY, PrecursorFleet

pytestmark = pytest.mark.slow  # minutes of a scenario: `make test-slow`

NODES = ("kwok-node-0", "kwok-node-1", "kwok-node-2")
ABOUT_TO_FAIL = "kwok-node-1"
FILLING = "kwok-node-0"
HISTORY_DAYS = 10.0
PLAN = "failure-learning"


def _fleet(now: float) -> PrecursorFleet:
    data = fleet.precursor_fleet(NODES, end=now - 60.0, days=HISTORY_DAYS, about_to_fail=ABOUT_TO_FAIL)
    # The prior's bait: a root filesystem filling for the last day (55 % -> 90 %, full in ~7 h).
    day = int(24 * 3600 / 300.0)
    avail = data.metrics[FILLING][failure.DISK_AVAIL]
    avail[-day:] = data.metrics[FILLING][failure.DISK_SIZE][-day:] * np.linspace(0.45, 0.10, day)
    return data


@pytest.fixture(scope="module")
def history(tmp_path_factory: Any) -> Iterator[tuple[str, PrecursorFleet]]:
    data = _fleet(time.time())
    with fleet.backfilled_prometheus(data, tmp_path_factory.mktemp("failure-learning-prometheus")) as url:
        yield url, data


@pytest.fixture
def operator(control_plane: Any, history: tuple[str, PrecursorFleet], tmp_path: Path) -> Iterator[None]:
    opp.install(control_plane)
    op = opp.start(control_plane, history[0], tmp_path)
    try:
        yield
    finally:
        control_plane.kubectl("delete", "maintenanceplan", PLAN, "--timeout=60s", check=False)
        op.stop()
        sys.stderr.write("---- operator log (tail) ----\n" + op.log()[-6000:] + "\n")


def test_the_plan_learns_its_clusters_failure_mode(
    control_plane: Any, history: tuple[str, PrecursorFleet], operator: None
) -> None:
    data = history[1]
    body = {
        "apiVersion": f"{GROUP}/v1alpha1",
        "kind": "MaintenancePlan",
        "metadata": {"name": PLAN},
        "spec": {
            "nodes": list(NODES),
            "windows": [{"start": "02:00", "end": "04:00"}],
            "interval": "2s",
            "prediction": {"signals": [{"name": RIPPLE, "query": RIPPLE_QUERY}], "lookback": "240h"},
        },
    }
    # Every status the plan passes through, from a watch started before it exists: polling can
    # miss the short time the prior's predictions are shown on a busy machine.
    api = client.CustomObjectsApi(kube.Clients.connect(str(control_plane.kubeconfig)).api)
    listed = api.list_cluster_custom_object(GROUP, "v1alpha1", "maintenanceplans")
    control_plane.kubectl("apply", "-f", "-", input=json.dumps(body))
    by_prior: list[str] = []
    status: dict[str, Any] | None = None
    started = time.monotonic()
    stream = watch.Watch()
    for event in stream.stream(
        api.list_cluster_custom_object,
        GROUP,
        "v1alpha1",
        "maintenanceplans",
        field_selector=f"metadata.name={PLAN}",
        resource_version=listed["metadata"]["resourceVersion"],
        timeout_seconds=240,
    ):
        seen = event["object"].get("status") or {}
        model = (seen.get("prediction") or {}).get("model")
        ranked = [r["node"] for r in seen.get("predictions", [])]
        if model == "Prior" and len(ranked) == len(NODES):
            by_prior[:] = ranked
        if model == "Cluster":
            status = seen
            stream.stop()
    assert status is not None, "no cluster model in the plan's status within 240 s"
    sys.stderr.write(f"cluster model after {time.monotonic() - started:.0f}s: {status['prediction']}\n")
    prediction = status["prediction"]
    generated = sum(len(v) for v in data.failures.values())
    assert prediction["version"] == 1 and prediction["failures"] == generated
    prior, cluster = prediction["prior"], prediction["cluster"]
    # Measured on the newest part of the cluster's past, which neither model was trained on.
    assert cluster["prAuc"] > prior["prAuc"] + 0.15, prediction["message"]
    assert cluster["precision"] >= 0.8 and (
        prior.get("precision") is None or prior["precision"] < cluster["precision"]
    )
    assert prediction["trainedAt"] and prediction["nextTrainingAt"] and prediction["measuredSince"]
    # The prior flagged the filling disk; the cluster model ranks the node whose ripple rises first.
    assert by_prior and by_prior[0] == FILLING, by_prior
    ranked = status["predictions"]
    assert ranked[0]["node"] == ABOUT_TO_FAIL, ranked
    assert ranked[0]["probability"] >= 0.5 > max(r["probability"] for r in ranked[1:]), ranked
    assert any(RIPPLE in reason for reason in ranked[0]["reasons"]), ranked
