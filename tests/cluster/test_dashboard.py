"""The Grafana dashboard against the real thing: every panel query has data in the dev Prometheus.

The operator runs as a real process; the dev Prometheus scrapes its /metrics through the file-based
discovery of dev/prometheus.sh (job autoloop-operator), and `autoloop.simulation.node_exporter`
through job node-exporter-sim, so the kwok nodes have the series the failure predictor reads. The
examples are applied (the loop in Auto with a short interval and fast safety so it decides; the
MaintenancePlan in Recommend, so no node is touched), then each panel's PromQL, with Grafana's
variables replaced as Grafana would, is asked of Prometheus until it returns a series.
"""

from __future__ import annotations

import json
import os
import re
import sys
import time
import urllib.parse
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import yaml

from tests.cluster import operator_process as opp

pytestmark = pytest.mark.cluster

EXAMPLES = opp.ROOT / "manifests" / "examples"
DASHBOARD = opp.ROOT / "manifests" / "monitoring" / "autoloop-dashboard.json"
FAST_SAFETY = {
    "maxStepPercent": 50,
    "cooldown": "5s",
    "maxChangesPerHour": 60,
    "minConfidence": 0.3,
    "rollback": {"enabled": True, "settleWindow": "10s"},
}
PANELS_TIMEOUT_S = 360.0
VARIABLE = re.compile(r"\$\{(\w+)(?::\w+)?\}|\$(\w+)")


@dataclass
class Setup:
    operator: opp.OperatorProcess
    operator_targets: Path
    node_targets: Path


def _write_targets(path: Path, targets: list[str], labels: dict[str, str] | None = None) -> None:
    """Replace a file_sd file in one step (Prometheus re-reads it on change)."""
    groups = [{"targets": targets, "labels": labels or {}}] if targets else []
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(json.dumps(groups))
    os.replace(tmp, path)


@pytest.fixture(scope="module")
def setup(control_plane: Any, prometheus: Any, tmp_path_factory: Any) -> Iterator[Setup]:
    workdir: Path = tmp_path_factory.mktemp("dashboard")
    opp.install(control_plane)
    sd_dir = Path(control_plane.state_dir) / "prometheus"
    operator_targets = sd_dir / "operator-targets.json"
    node_targets = sd_dir / "node-exporter-targets.json"
    assert operator_targets.exists() and node_targets.exists(), (
        "dev/prometheus.sh up creates the file_sd files"
    )
    exporter, exporter_port = opp.start_node_exporter(control_plane, workdir)
    op = opp.start(control_plane, prometheus.url, workdir)
    try:
        port = urllib.parse.urlsplit(op.metrics_url).port
        _write_targets(operator_targets, [f"127.0.0.1:{port}"], {"test": "dashboard"})
        _write_targets(node_targets, [f"127.0.0.1:{exporter_port}"])
        prometheus.wait_for(
            f'up{{job="autoloop-operator",instance="127.0.0.1:{port}"}} == 1', bool, timeout=60
        )
        prometheus.wait_for('node_filesystem_avail_bytes{job="node-exporter-sim"}', bool, timeout=60)
        yield Setup(op, operator_targets, node_targets)
    finally:
        _write_targets(operator_targets, [])
        _write_targets(node_targets, [])
        op.stop()
        opp.stop_process(exporter)
        sys.stderr.write("---- operator log (tail) ----\n" + op.log()[-6000:] + "\n")


def _example(name: str) -> dict[str, Any]:
    return dict(yaml.safe_load((EXAMPLES / f"{name}.yaml").read_text()))


def _apply(control_plane: Any, namespace: str | None, obj: dict[str, Any]) -> None:
    where = ["-n", namespace] if namespace else []
    control_plane.kubectl(*where, "apply", "-f", "-", input=json.dumps(obj))


def _api_deployment() -> dict[str, Any]:
    """A second workload for the ResourceAllocation: the Auto loop manages `web`, and a workload
    another resource manages is left alone by an allocation."""
    web = next(
        d for d in yaml.safe_load_all((EXAMPLES / "workload.yaml").read_text()) if d["kind"] == "Deployment"
    )
    api = json.loads(json.dumps(web))
    api["metadata"]["name"] = "api"
    api["metadata"]["labels"].update({"app": "api", "tier": "backend"})
    api["spec"]["replicas"] = 2
    api["spec"]["selector"] = {"matchLabels": {"app": "api"}}
    api["spec"]["template"]["metadata"]["labels"] = {"app": "api"}
    api["spec"]["template"]["spec"]["containers"][0]["resources"] = {
        "requests": {"cpu": "500m", "memory": "256Mi"}
    }
    return dict(api)


def _apply_examples(control_plane: Any, namespace: str, plan: str) -> None:
    control_plane.kubectl("-n", namespace, "apply", "-f", str(EXAMPLES / "workload.yaml"))
    _apply(control_plane, namespace, _api_deployment())
    loop = _example("optimizationloop")
    loop["spec"].update({"mode": "Auto", "interval": "5s", "safety": FAST_SAFETY})
    _apply(control_plane, namespace, loop)
    alloc = _example("resourceallocation")
    alloc["spec"]["workloads"] = {"targetRefs": [{"name": "api"}]}
    alloc["spec"]["interval"] = "30s"
    _apply(control_plane, namespace, alloc)
    mplan = _example("maintenanceplan")
    mplan["metadata"]["name"] = plan
    mplan["spec"]["interval"] = "5s"
    mplan["spec"]["mode"] = "Recommend"  # plans and predicts; never cordons a shared node
    _apply(control_plane, None, mplan)


def panel_queries(values: dict[str, str]) -> list[tuple[str, str]]:
    """(panel title, PromQL with Grafana's variables replaced) of every panel target."""
    dashboard = json.loads(DASHBOARD.read_text())
    out = []
    for panel in dashboard["panels"]:
        for p in [panel, *panel.get("panels", [])]:
            if p["type"] == "row":
                continue
            for t in p["targets"]:
                expr = VARIABLE.sub(lambda m: values[m.group(1) or m.group(2)], t["expr"])
                out.append((f"{p['title']} [{t['refId']}]", expr))
    return out


def _series_gone(op: opp.OperatorProcess, pattern: str) -> bool:
    return re.search(pattern, op.metrics()) is None


def test_every_panel_has_data(control_plane: Any, prometheus: Any, namespace: str, setup: Setup) -> None:
    plan = f"{namespace}-nightly"
    try:
        _apply_examples(control_plane, namespace, plan)
        values = {
            "__rate_interval": "1m",
            "__interval": "15s",
            "__range": "10m",
            "namespace": namespace,  # [a-z0-9-]: a regex matching itself, as Grafana sends one value
            "plan": plan,
        }
        pending = dict(panel_queries(values))
        assert len(pending) >= 10
        deadline = time.monotonic() + PANELS_TIMEOUT_S
        while pending and time.monotonic() < deadline:
            for title, expr in list(pending.items()):
                if prometheus.query(expr):
                    del pending[title]
            time.sleep(2.0)
        assert not pending, "panels without data after {:.0f}s:\n{}".format(
            PANELS_TIMEOUT_S, "\n".join(f"{t}: {e}" for t, e in pending.items())
        )

        # This loop's own series: its rollbacks counter exists (from 0) before any rollback.
        rollbacks = prometheus.query(f'autoloop_rollbacks_total{{namespace="{namespace}",name="web"}}')
        assert rollbacks and float(rollbacks[0]["value"][1]) >= 0
        # Young or gappy node series (the exporter runs only during tests) leave some passes
        # without predictions, and the series goes with them: wait for one that has them.
        risks = prometheus.wait_for(
            f'autoloop_node_failure_risk{{plan="{plan}"}}',
            lambda r: {x["metric"]["node"] for x in r} >= {"kwok-node-0"},
            timeout=60,
        )
        assert all(0.0 <= float(r["value"][1]) <= 1.0 for r in risks)

        # A deleted resource's series leave the operator's /metrics.
        control_plane.kubectl("delete", "mplan", plan, "--timeout=60s")
        opp.wait_until(
            lambda: _series_gone(
                setup.operator, rf'autoloop_(maintenance_nodes|node_failure_risk)\{{[^}}]*"{plan}"'
            ),
            timeout=30,
            what=f"the series of MaintenancePlan {plan} to go",
        )
        control_plane.kubectl("-n", namespace, "delete", "oloop", "web", "--timeout=60s")
        opp.wait_until(
            lambda: _series_gone(setup.operator, rf'autoloop_\w+\{{[^}}]*namespace="{namespace}",name="web"'),
            timeout=30,
            what="the series of OptimizationLoop web to go",
        )
    finally:
        control_plane.kubectl("delete", "mplan", plan, "--ignore-not-found", "--timeout=60s", check=False)
