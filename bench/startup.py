"""Startup benchmark: how fast a person gets from a warm machine to a loop that reports Ready.

Run: `python -m bench.startup` (full: the control plane and Prometheus are stopped and started
again from the cached binaries, then 30 loops) or `python -m bench.startup --quick` (the running
control plane is reused, 8 loops; same code path). Needs the dev control plane built once
(`make cluster-build`); it stops nothing else but the operator it starts.

* `warm_start_seconds`: `dev/cluster.sh up` + `dev/prometheus.sh up` (full mode: from stopped, with
  cached binaries and etcd data; quick mode: already running, so only the health checks) plus
  `autoloop run` until its /healthz answers. Target <= 30 s.
* `apply_to_ready_p95_seconds`: an OptimizationLoop is created (one API call, as `kubectl apply`
  does) and timed until a watch sees its status with `Ready=True` for its generation; one at a
  time, on the example workload (Recommend mode, so several loops may share it). The operator
  runs with its defaults (`AUTOLOOP_TICK_SECONDS` 5 s). Target <= 2 s.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
import urllib.request
import uuid
from pathlib import Path
from typing import Any, Final

import numpy as np
from kubernetes import watch

from autoloop.operator import kube
from bench._operator import launch_operator

ROOT: Final = Path(__file__).resolve().parents[1]
DEV: Final = ROOT / "dev"
STATE: Final = Path(os.environ.get("AUTOLOOP_STATE", Path.home() / ".cache" / "autoloop" / "state"))
GROUP, VERSION = "autoloop.x0tta6bl4.io", "v1alpha1"
FULL_LOOPS: Final = 30
QUICK_LOOPS: Final = 8
READY_TIMEOUT_S: Final = 60.0


def _ports() -> dict[str, str]:
    lines = (STATE / "ports.env").read_text().splitlines()
    return dict(line.split("=", 1) for line in lines if "=" in line)


def _kubectl() -> Path:
    """The kubectl built with the control plane (same version as the apiserver)."""
    out = subprocess.run(
        ["bash", str(DEV / "build.sh"), "--print-bin-dir"], check=True, capture_output=True, text=True
    )
    return Path(out.stdout.strip()) / "kubectl"


def _run(*cmd: str, env: dict[str, str] | None = None) -> None:
    subprocess.run(cmd, check=True, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)


def control_plane_up(*, restart: bool) -> float:
    """Seconds for the dev control plane and Prometheus to be up (from stopped when `restart`)."""
    env = {**os.environ, "PYTHON": sys.executable}
    if restart:
        _run("bash", str(DEV / "prometheus.sh"), "down", env=env)
        _run("bash", str(DEV / "cluster.sh"), "down", env=env)
    t0 = time.monotonic()
    _run("bash", str(DEV / "cluster.sh"), "up", env=env)
    _run("bash", str(DEV / "prometheus.sh"), "up", env=env)
    return time.monotonic() - t0


def start_operator(kubeconfig: Path, log: Path) -> tuple[subprocess.Popen[bytes], float]:
    """`autoloop run` with its defaults; the seconds until /healthz answers."""
    prometheus = f"http://127.0.0.1:{_ports()['PROMETHEUS_PORT']}"
    t0 = time.monotonic()
    launched = launch_operator(kubeconfig, prometheus, log)
    process = launched.process
    while True:
        if process.poll() is not None:
            raise SystemExit(f"the operator exited with {process.returncode}; see {log}")
        try:
            with urllib.request.urlopen(launched.healthz_url, timeout=1) as r:
                if r.status == 200:
                    return process, time.monotonic() - t0
        except OSError:
            pass
        if time.monotonic() - t0 > 120:
            process.kill()
            raise SystemExit(f"the operator did not answer /healthz within 120 s; see {log}")
        time.sleep(0.05)


def _loop(name: str) -> dict[str, Any]:
    return {
        "apiVersion": f"{GROUP}/{VERSION}",
        "kind": "OptimizationLoop",
        "metadata": {"name": name},
        "spec": {
            "targetRef": {"name": "web"},
            "objectives": [{"name": "latency", "metric": "LatencyP95"}],
            "knobs": {"replicas": {"min": 1, "max": 8}},
        },
    }


def _ready(obj: dict[str, Any]) -> bool:
    status = obj.get("status") or {}
    if status.get("observedGeneration") != obj["metadata"].get("generation"):
        return False
    return any(c.get("type") == "Ready" and c.get("status") == "True" for c in status.get("conditions", []))


def apply_to_ready(clients: kube.Clients, namespace: str, name: str) -> float:
    """Seconds from the create call to the first watched status with Ready=True."""
    custom = clients.custom
    listed: dict[str, Any] = custom.list_namespaced_custom_object(  # type: ignore[assignment]
        GROUP, VERSION, namespace, "optimizationloops"
    )
    w = watch.Watch()
    t0 = time.monotonic()
    custom.create_namespaced_custom_object(GROUP, VERSION, namespace, "optimizationloops", _loop(name))
    try:
        for event in w.stream(
            custom.list_namespaced_custom_object,
            GROUP,
            VERSION,
            namespace,
            "optimizationloops",
            resource_version=listed["metadata"]["resourceVersion"],
            field_selector=f"metadata.name={name}",
            timeout_seconds=int(READY_TIMEOUT_S),
        ):
            if _ready(event["object"]):
                return time.monotonic() - t0
    finally:
        w.stop()
    raise SystemExit(f"loop {namespace}/{name} not Ready within {READY_TIMEOUT_S} s")


def _workload(clients: kube.Clients, namespace: str, kubeconfig: Path) -> None:
    """The example workload, with metrics in Prometheus before the first loop is timed."""
    kubectl = _kubectl()
    env = {**os.environ, "KUBECONFIG": str(kubeconfig)}
    _run(str(kubectl), "create", "namespace", namespace, env=env)
    _run(
        str(kubectl),
        "-n",
        namespace,
        "apply",
        "-f",
        str(ROOT / "manifests" / "examples" / "workload.yaml"),
        env=env,
    )
    _run(str(kubectl), "-n", namespace, "rollout", "status", "deployment/web", "--timeout=120s", env=env)
    # The first loop waits for the workload's first scrapes: not what a person applying a loop to
    # a running service sees, so it is warmed up and left out of the figures.
    apply_to_ready(clients, namespace, "warm-up")


def run(quick: bool) -> dict[str, Any]:
    control = control_plane_up(restart=not quick)
    kubeconfig = STATE / "kubeconfig"
    _run("bash", str(DEV / "cluster.sh"), "status")
    env = {**os.environ, "KUBECONFIG": str(kubeconfig)}
    kubectl = _kubectl()
    _run(str(kubectl), "apply", "-k", str(ROOT / "manifests"), env=env)
    _run(str(kubectl), "-n", "autoloop-system", "scale", "deployment/autoloop", "--replicas=0", env=env)
    workdir = Path(tempfile.mkdtemp(prefix="bench-startup-"))
    operator, healthy = start_operator(kubeconfig, workdir / "operator.log")
    namespace = f"bench-startup-{uuid.uuid4().hex[:6]}"
    clients = kube.Clients.connect(str(kubeconfig))
    try:
        _workload(clients, namespace, kubeconfig)
        latencies = [
            apply_to_ready(clients, namespace, f"loop-{i}")
            for i in range(QUICK_LOOPS if quick else FULL_LOOPS)
        ]
    finally:
        operator.terminate()
        operator.wait(timeout=30)
        _run(str(kubectl), "delete", "namespace", namespace, "--wait=false", env=env)
    lat = np.array(latencies)
    rows = [
        (
            "control plane + Prometheus up",
            f"{control:.1f} s",
            "from stopped" if not quick else "already running",
        ),
        ("operator /healthz", f"{healthy:.1f} s", "autoloop run"),
        ("warm start", f"{control + healthy:.1f} s", "target <= 30 s"),
        ("apply -> Ready p50", f"{np.percentile(lat, 50):.2f} s", f"{len(lat)} loops"),
        ("apply -> Ready p95", f"{np.percentile(lat, 95):.2f} s", "target <= 2 s"),
        ("apply -> Ready max", f"{lat.max():.2f} s", ""),
    ]
    width = max(len(r[0]) for r in rows)
    for name, value, note in rows:
        print(f"{name.ljust(width)}  {value:>8}  {note}")
    return {
        "warm_start_seconds": round(control + healthy, 2),
        "apply_to_ready_p95_seconds": round(float(np.percentile(lat, 95)), 3),
        "apply_to_ready_p50_seconds": round(float(np.percentile(lat, 50)), 3),
        "operator_healthz_seconds": round(healthy, 2),
        "control_plane_up_seconds": round(control, 2),
        "loops": len(lat),
        "quick": quick,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--quick", action="store_true", help="reuse the running control plane, 8 loops")
    args = parser.parse_args()
    print(json.dumps(run(args.quick)))


if __name__ == "__main__":
    main()
