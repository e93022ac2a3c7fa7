"""Start the operator from this checkout as a process: shared by the benches and the cluster tests.

`python -m autoloop.cli run` on free metrics and liveness ports, with the given kubeconfig (a
ServiceAccount token, so calls go through the shipped RBAC) and Prometheus, its output in `log`.
"""

from __future__ import annotations

import os
import socket
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def free_port() -> int:
    """A TCP port free on 127.0.0.1 now."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@dataclass(frozen=True)
class Launched:
    process: subprocess.Popen[bytes]
    metrics_url: str
    healthz_url: str


def launch_operator(
    kubeconfig: Path,
    prometheus_url: str,
    log: Path,
    *,
    tick: float | None = None,
    extra_env: dict[str, str] | None = None,
) -> Launched:
    """The operator process (not waited for: poll its /healthz)."""
    metrics, liveness = free_port(), free_port()
    env = {
        **os.environ,
        "KUBECONFIG": str(kubeconfig),
        "AUTOLOOP_PROMETHEUS_URL": prometheus_url,
        "PYTHONUNBUFFERED": "1",
        **(extra_env or {}),
    }
    cmd = [sys.executable, "-m", "autoloop.cli", "run", "--metrics-port", str(metrics)]
    cmd += ["--liveness-port", str(liveness)]
    if tick is not None:
        cmd += ["--tick", str(tick)]
    with log.open("wb") as out:
        process = subprocess.Popen(cmd, cwd=ROOT, env=env, stdout=out, stderr=subprocess.STDOUT)
    return Launched(
        process=process,
        metrics_url=f"http://127.0.0.1:{metrics}/metrics",
        healthz_url=f"http://127.0.0.1:{liveness}/healthz",
    )
