"""Fixtures for the cluster tier: a real control plane (dev/cluster.sh), a real Prometheus
(dev/prometheus.sh) scraping the synthetic exporter, and a fresh namespace per test.

The cluster, Prometheus and the exporter are left running after the session so the next run starts
warm; `.ci/run` / the Makefile stop them (`dev/prometheus.sh down; dev/cluster.sh down`).
Everything under tests/cluster is marked `cluster`.
A cold `dev/cluster.sh up` compiles Kubernetes (tens of minutes): run `dev/cluster.sh build` before
pytest so a per-test timeout does not cut the build.
"""

from __future__ import annotations

import json
import os
import ssl
import subprocess
import sys
import time
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

from tests.cluster.operator_process import fresh_namespace

REPO = Path(__file__).resolve().parents[2]
DEV = REPO / "dev"
STATE = Path(os.environ.get("AUTOLOOP_STATE", Path.home() / ".cache" / "autoloop" / "state"))
LOG_TAIL_LINES = 40
CLUSTER_UP_TIMEOUT_S = 3600.0  # covers a cold build when nothing is cached


def read_ports() -> dict[str, int]:
    ports: dict[str, int] = {}
    path = STATE / "ports.env"
    if path.exists():
        for line in path.read_text().splitlines():
            key, _, value = line.partition("=")
            if value.strip().isdigit():
                ports[key.strip()] = int(value)
    return ports


@dataclass
class ControlPlane:
    """Handle on the running dev control plane."""

    kubeconfig: Path
    state_dir: Path
    bin_dir: Path
    env: dict[str, str] = field(default_factory=dict)

    @property
    def server(self) -> str:
        return f"https://127.0.0.1:{read_ports()['APISERVER_PORT']}"

    def kubectl(
        self, *args: str, check: bool = True, input: str | None = None, timeout: float = 120.0
    ) -> subprocess.CompletedProcess[str]:
        """Run our kubectl (same version as the apiserver) as cluster admin."""
        cmd = [str(self.bin_dir / "kubectl"), "--kubeconfig", str(self.kubeconfig), *args]
        result = subprocess.run(
            cmd, input=input, capture_output=True, text=True, env=self.env, timeout=timeout
        )
        if check and result.returncode != 0:
            raise AssertionError(f"kubectl {' '.join(args)} failed ({result.returncode}):\n{result.stderr}")
        return result

    def kubeconfig_for(self, namespace: str, service_account: str, *, duration: str = "1h") -> Path:
        """A kubeconfig authenticating as a ServiceAccount (TokenRequest token): run a component
        with exactly the RBAC its manifests grant, as it would run in the cluster."""
        out = subprocess.run(
            [str(DEV / "cluster.sh"), "sa-kubeconfig", namespace, service_account, duration],
            check=True,
            capture_output=True,
            text=True,
            env=self.env,
        )
        return Path(out.stdout.strip().splitlines()[-1])

    def kubectl_json(self, *args: str) -> Any:
        return json.loads(self.kubectl(*args, "-o", "json").stdout)

    def ssl_context(self, *, admin: bool = True) -> ssl.SSLContext:
        ctx = ssl.create_default_context(cafile=str(self.state_dir / "pki" / "ca.crt"))
        if admin:
            ctx.load_cert_chain(
                str(self.state_dir / "pki" / "admin.crt"), str(self.state_dir / "pki" / "admin.key")
            )
        return ctx

    def api(
        self, method: str, path: str, *, body: Any = None, token: str | None = None
    ) -> tuple[int, dict[str, Any]]:
        """Raw HTTP call to the apiserver: as admin (client cert), or with a bearer token."""
        data = json.dumps(body).encode() if body is not None else None
        req = urllib.request.Request(self.server + path, data=data, method=method)
        req.add_header("Content-Type", "application/json")
        if token is not None:
            req.add_header("Authorization", f"Bearer {token}")
        try:
            with urllib.request.urlopen(
                req, context=self.ssl_context(admin=token is None), timeout=10
            ) as resp:
                return resp.status, json.loads(resp.read() or b"{}")
        except urllib.error.HTTPError as e:
            return e.code, json.loads(e.read() or b"{}")


@dataclass
class Prometheus:
    """Handle on the dev Prometheus that scrapes the synthetic exporter."""

    url: str
    exporter_port: int

    def query(self, promql: str) -> list[dict[str, Any]]:
        """Instant query; the `result` list of the API answer."""
        qs = urllib.parse.urlencode({"query": promql})
        with urllib.request.urlopen(f"{self.url}/api/v1/query?{qs}", timeout=10) as resp:
            answer = json.loads(resp.read())
        assert answer["status"] == "success", answer
        return list(answer["data"]["result"])

    def scalar(self, promql: str) -> float | None:
        """The single value of a one-series query, or None when empty."""
        result = self.query(promql)
        if not result:
            return None
        return float(result[0]["value"][1])

    def wait_for(
        self, promql: str, predicate: Callable[[list[dict[str, Any]]], bool], timeout: float = 60.0
    ) -> list[dict[str, Any]]:
        """Poll `promql` until `predicate(result)` holds; fail with the last result otherwise."""
        deadline = time.monotonic() + timeout
        last: list[dict[str, Any]] = []
        while True:
            last = self.query(promql)
            if predicate(last):
                return last
            if time.monotonic() > deadline:
                raise AssertionError(f"timed out after {timeout}s waiting on {promql!r}; last result: {last}")
            time.sleep(1.0)


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    here = Path(__file__).parent
    for item in items:
        if here in Path(str(item.path)).parents:
            item.add_marker(pytest.mark.cluster)


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo[None]) -> Iterator[None]:
    """On a failure in this tier, attach the tail of every component log to the report."""
    outcome: Any = yield
    report = outcome.get_result()
    if report.failed and Path(__file__).parent in Path(str(item.path)).parents:
        logs = sorted((STATE / "logs").glob("*.log"))
        for log in logs:
            lines = log.read_text(errors="replace").splitlines()[-LOG_TAIL_LINES:]
            report.sections.append((f"tail of {log}", "\n".join(lines)))


@pytest.fixture(scope="session")
def control_plane() -> ControlPlane:
    subprocess.run([str(DEV / "cluster.sh"), "up"], check=True, timeout=CLUSTER_UP_TIMEOUT_S)
    bin_dir = Path(
        subprocess.run(
            [str(DEV / "build.sh"), "--print-bin-dir"], check=True, capture_output=True, text=True
        ).stdout.strip()
    )
    kubeconfig = STATE / "kubeconfig"
    env = dict(os.environ)
    env["KUBECONFIG"] = str(kubeconfig)
    env["PATH"] = f"{bin_dir}{os.pathsep}{env.get('PATH', '')}"
    env["AUTOLOOP_STATE"] = str(STATE)
    return ControlPlane(kubeconfig=kubeconfig, state_dir=STATE, bin_dir=bin_dir, env=env)


@pytest.fixture(scope="session")
def prometheus(control_plane: ControlPlane) -> Prometheus:
    """Prometheus scraping the synthetic exporter, both started by `dev/prometheus.sh up`.

    The exporter runs as a shared background process (restarted by the script when its code
    changes) rather than this session's child: concurrent sessions on one machine share the cluster
    and Prometheus, and one session's exit must not take the others' metrics away.
    """
    env = dict(control_plane.env)
    env["PYTHON"] = sys.executable
    subprocess.run([str(DEV / "prometheus.sh"), "up"], check=True, timeout=600, env=env)
    ports = read_ports()
    prom = Prometheus(
        url=f"http://127.0.0.1:{ports['PROMETHEUS_PORT']}", exporter_port=ports["EXPORTER_PORT"]
    )
    # Ready when Prometheus has scraped the exporter successfully.
    prom.wait_for('up{job="autoloop-sim"}', lambda r: bool(r) and r[0]["value"][1] == "1", timeout=60)
    return prom


@pytest.fixture
def namespace(control_plane: ControlPlane, request: pytest.FixtureRequest) -> Iterator[str]:
    """A fresh namespace named after the test; deleted afterwards (without waiting)."""
    with fresh_namespace(control_plane, request.node.name) as name:
        yield name
