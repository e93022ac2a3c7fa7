"""Install autoloop's manifests into the dev cluster and run the operator as a real process.

The operator authenticates with a token of the `autoloop` ServiceAccount from manifests/, so
every call it makes goes through the RBAC rules we ship: a missing permission fails the tests.
"""

from __future__ import annotations

import json
import re
import subprocess
import sys
import time
import urllib.request
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import yaml

from bench._operator import free_port, launch_operator

ROOT = Path(__file__).resolve().parents[2]


def wait_until(predicate: Callable[[], Any], *, timeout: float, interval: float = 0.5, what: str = "") -> Any:
    """Poll until predicate returns something truthy; fail with `what` after timeout."""
    deadline = time.monotonic() + timeout
    last: Any = None
    while time.monotonic() < deadline:
        try:
            last = predicate()
        except Exception as exc:  # the thing polled may not exist yet
            last = exc
        else:
            if last:
                return last
        time.sleep(interval)
    raise AssertionError(f"timed out after {timeout}s waiting for {what}; last: {last!r}")


def service_account_kubeconfig(control_plane: Any, path: Path) -> Path:
    """A kubeconfig for system:serviceaccount:autoloop-system:autoloop (a bound token)."""
    token = control_plane.kubectl(
        "-n", "autoloop-system", "create", "token", "autoloop", "--duration=4h"
    ).stdout
    admin = yaml.safe_load(Path(control_plane.kubeconfig).read_text())
    cluster = admin["clusters"][0]
    config = {
        "apiVersion": "v1",
        "kind": "Config",
        "clusters": [cluster],
        "users": [{"name": "autoloop", "user": {"token": token.strip()}}],
        "contexts": [{"name": "autoloop", "context": {"cluster": cluster["name"], "user": "autoloop"}}],
        "current-context": "autoloop",
    }
    path.write_text(yaml.safe_dump(config))
    return path


@dataclass
class OperatorProcess:
    process: subprocess.Popen[bytes]
    log_path: Path
    metrics_url: str
    healthz_url: str
    kubeconfig: Path

    def log(self) -> str:
        return self.log_path.read_text(errors="replace") if self.log_path.exists() else ""

    def metrics(self) -> str:
        with urllib.request.urlopen(self.metrics_url, timeout=5) as response:
            return str(response.read().decode())

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(timeout=20)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()


def install(control_plane: Any) -> None:
    """`kubectl apply -k manifests/` as a user would; the in-cluster Deployment is scaled to 0
    because the tests run the operator from this checkout (no image registry here)."""
    # The scope of a CRD cannot change in place: a cluster still serving the namespaced
    # MaintenancePlan of an older checkout gets the documented upgrade (delete the CRD, apply).
    old = control_plane.kubectl(
        "get", "crd", "maintenanceplans.autoloop.x0tta6bl4.io", "-o", "jsonpath={.spec.scope}", check=False
    )
    if old.returncode == 0 and old.stdout.strip() == "Namespaced":
        control_plane.kubectl("delete", "crd", "maintenanceplans.autoloop.x0tta6bl4.io", "--timeout=120s")
    control_plane.kubectl("apply", "-k", str(ROOT / "manifests"))
    for crd in ("optimizationloops", "resourceallocations", "maintenanceplans"):
        control_plane.kubectl(
            "wait", "--for=condition=Established", f"crd/{crd}.autoloop.x0tta6bl4.io", "--timeout=60s"
        )
    control_plane.kubectl("-n", "autoloop-system", "scale", "deployment/autoloop", "--replicas=0")


def start(
    control_plane: Any,
    prometheus_url: str,
    workdir: Path,
    *,
    tick: float = 1.0,
    extra_env: dict[str, str] | None = None,
) -> OperatorProcess:
    kubeconfig = service_account_kubeconfig(control_plane, workdir / "operator.kubeconfig")
    log_path = workdir / f"operator-{int(time.time() * 1000)}.log"
    launched = launch_operator(kubeconfig, prometheus_url, log_path, tick=tick, extra_env=extra_env)
    process = launched.process
    op = OperatorProcess(
        process=process,
        log_path=log_path,
        metrics_url=launched.metrics_url,
        healthz_url=launched.healthz_url,
        kubeconfig=kubeconfig,
    )

    def healthy() -> bool:
        if process.poll() is not None:
            raise AssertionError(f"operator exited with {process.returncode}:\n{op.log()[-4000:]}")
        with urllib.request.urlopen(op.healthz_url, timeout=2) as response:
            return bool(response.status == 200)

    try:
        wait_until(healthy, timeout=60, what="operator /healthz")
    except AssertionError:
        op.stop()
        raise
    return op


@contextmanager
def fresh_namespace(control_plane: Any, base: str) -> Iterator[str]:
    """A new namespace named after `base` (made unique), ready for pods; deleted afterwards
    (without waiting)."""
    base = re.sub(r"[^a-z0-9-]+", "-", base.lower()).strip("-")[:40].strip("-")
    name = f"t-{base}-{uuid.uuid4().hex[:6]}"
    control_plane.kubectl("create", "namespace", name)
    # The ServiceAccount controller creates `default` shortly after; pods need it (admission).
    deadline = time.monotonic() + 30
    while control_plane.kubectl("-n", name, "get", "serviceaccount", "default", check=False).returncode != 0:
        if time.monotonic() > deadline:
            raise AssertionError(f"ServiceAccount default never appeared in {name}")
        time.sleep(0.2)
    try:
        yield name
    finally:
        control_plane.kubectl("delete", "namespace", name, "--wait=false", check=False)


def get_json(control_plane: Any, namespace: str, *args: str) -> dict[str, Any]:
    out = control_plane.kubectl("-n", namespace, "get", *args, "-o", "json").stdout
    result: dict[str, Any] = json.loads(out)
    return result


def condition(obj: dict[str, Any], type: str) -> dict[str, Any] | None:
    for c in obj.get("status", {}).get("conditions", []):
        if c.get("type") == type:
            return dict(c)
    return None


def crash_at(cp: Any, prometheus_url: str, workdir: Path, point: str) -> None:
    """Run an operator that dies at `point`; wait for the SIGKILL."""
    kubeconfig = service_account_kubeconfig(cp, workdir / "operator.kubeconfig")
    launched = launch_operator(
        kubeconfig,
        prometheus_url,
        workdir / f"crash-{point}.log",
        tick=1.0,
        extra_env={"AUTOLOOP_CRASH_AT": point},
    )
    try:
        code = launched.process.wait(timeout=150)
    except Exception:
        launched.process.kill()
        raise
    assert code == -9, (
        f"the operator ended with {code}, not at {point}:\n{(workdir / f'crash-{point}.log').read_text()[-3000:]}"
    )


def operator_fixture(control_plane: Any, prometheus: Any, tmp_path_factory: Any) -> Iterator[OperatorProcess]:
    install(control_plane)
    op = start(control_plane, prometheus.url, tmp_path_factory.mktemp("operator"))
    try:
        yield op
    finally:
        op.stop()
        sys.stderr.write("---- operator log (tail) ----\n" + op.log()[-6000:] + "\n")


def start_node_exporter(control_plane: Any, workdir: Path) -> tuple[subprocess.Popen[bytes], int]:
    """The simulated node_exporter (autoloop.simulation.node_exporter) for the cluster's nodes, on
    a free port; its output in `workdir`/node-exporter.log. The caller stops it."""
    port = free_port()
    with (workdir / "node-exporter.log").open("wb") as log:
        process = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "autoloop.simulation.node_exporter",
                "--kubeconfig",
                str(control_plane.kubeconfig),
                "--port",
                str(port),
            ],
            cwd=ROOT,
            stdout=log,
            stderr=subprocess.STDOUT,
        )
    return process, port


def approved_recommendation(cp: Any, namespace: str) -> dict[str, Any]:
    """A Recommend loop `web` (interval 1h) whose recorded recommendation r1 (replicas 4 → 2 on
    Deployment `web`) a user has approved; its first pass applies it. The loop as stored."""
    cp.kubectl("-n", namespace, "apply", "-f", str(ROOT / "manifests" / "examples" / "workload.yaml"))
    loop = {
        "apiVersion": "autoloop.x0tta6bl4.io/v1alpha1",
        "kind": "OptimizationLoop",
        "metadata": {"name": "web", "annotations": {"autoloop.x0tta6bl4.io/approve": "r1"}},
        "spec": {
            "targetRef": {"name": "web"},
            "mode": "Recommend",
            "interval": "1h",
            "objectives": [{"name": "latency", "metric": "LatencyP95"}],
            "knobs": {"replicas": {"min": 1, "max": 6}},
        },
    }
    cp.kubectl("-n", namespace, "apply", "-f", "-", input=json.dumps(loop))
    recorded = {
        "id": "r1",
        "time": datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ"),
        "action": "Recommended",
        "target": "Deployment/web",
        "current": {"replicas": 4},
        "proposed": {"replicas": 2},
    }
    cp.kubectl(
        "-n", namespace, "patch", "oloop", "web", "--subresource=status", "--type=merge",
        "-p", json.dumps({"status": {"decisions": [recorded]}}),
    )  # fmt: skip
    return get_json(cp, namespace, "oloop/web")


def stop_process(process: subprocess.Popen[bytes]) -> None:
    """SIGTERM, then SIGKILL after 20 s."""
    if process.poll() is None:
        process.terminate()
        try:
            process.wait(timeout=20)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()
