"""The soak's hands on the dev control plane: scripts, components' pid files, the operator process.

Everything here talks to 127.0.0.1 only (the dev scripts pick ports there) and signals only the
processes it started or the dev components named by their pid files, after checking that
`/proc/<pid>/cmdline` still names the component's binary (as dev/lib.sh does).
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
import time
import urllib.request
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Final

import yaml
from kubernetes.client.exceptions import ApiException

from autoloop.operator import kube
from bench._operator import launch_operator

ROOT: Final = Path(__file__).resolve().parents[1]
DEV: Final = ROOT / "dev"
STATE: Final = Path(os.environ.get("AUTOLOOP_STATE", Path.home() / ".cache" / "autoloop" / "state"))
PROMETHEUS_BIN: Final = os.environ.get("PROMETHEUS_BIN", "/usr/bin/prometheus")
UP_TIMEOUT_S: Final = 600.0
"""`dev/cluster.sh up` from a crashed apiserver restarts the chain in ~15 s; a cold build is not
the soak's business (run `make cluster-build` first)."""
PROMETHEUS_UP_TIMEOUT_S: Final = 300.0
KILL_WAIT_S: Final = 15.0
GRACEFUL_STOP_S: Final = 30.0
HEALTHZ_TIMEOUT_S: Final = 120.0
REQUEST_TIMEOUT: Final = (5.0, 20.0)
"""(connect, read) seconds of every API call the soak makes."""


def ports() -> dict[str, int]:
    out: dict[str, int] = {}
    path = STATE / "ports.env"
    if path.exists():
        for line in path.read_text().splitlines():
            key, _, value = line.partition("=")
            if value.strip().isdigit():
                out[key.strip()] = int(value)
    return out


def bin_dir() -> Path:
    out = subprocess.run(
        ["bash", str(DEV / "build.sh"), "--print-bin-dir"],
        check=True,
        capture_output=True,
        text=True,
        timeout=60,
    )
    return Path(out.stdout.strip())


def component_pid(name: str, binary: str) -> int | None:
    """The pid in `$STATE/pids/<name>.pid`, if that process still runs `binary`."""
    try:
        pid = int((STATE / "pids" / f"{name}.pid").read_text().strip())
        cmdline = Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
    except (OSError, ValueError):
        return None
    return pid if binary in cmdline else None


def kill_and_wait(pid: int, sig: int = signal.SIGKILL, timeout: float = KILL_WAIT_S) -> bool:
    """Signal one process and wait until it is gone; True when it went."""
    try:
        os.kill(pid, sig)
    except ProcessLookupError:
        return True
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if not Path(f"/proc/{pid}").exists() or _zombie(pid):
            return True
        time.sleep(0.1)
    return False


def _zombie(pid: int) -> bool:
    try:
        return " Z " in Path(f"/proc/{pid}/stat").read_text().split(")", 1)[1][:4]
    except OSError:
        return True


@dataclass
class Cluster:
    """The dev control plane and Prometheus, driven through their scripts."""

    bin: Path = field(default_factory=bin_dir)
    scrape_interval: str | None = None
    """Prometheus scrape interval for `dev/prometheus.sh up` (its default, 1s, when None)."""

    @property
    def kubeconfig(self) -> Path:
        return STATE / "kubeconfig"

    def env(self) -> dict[str, str]:
        env = {
            **os.environ,
            "KUBECONFIG": str(self.kubeconfig),
            "AUTOLOOP_STATE": str(STATE),
            "PYTHON": sys.executable,
            "PATH": f"{self.bin}{os.pathsep}{os.environ.get('PATH', '')}",
        }
        env.pop("PROM_SCRAPE_INTERVAL", None)
        if self.scrape_interval is not None:
            env["PROM_SCRAPE_INTERVAL"] = self.scrape_interval
        return env

    def script(self, name: str, *args: str, timeout: float) -> None:
        subprocess.run(
            ["bash", str(DEV / name), *args],
            check=True,
            env=self.env(),
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
            timeout=timeout,
        )

    def up(self) -> None:
        self.script("cluster.sh", "up", timeout=UP_TIMEOUT_S)

    def prometheus_up(self) -> None:
        self.script("prometheus.sh", "up", timeout=PROMETHEUS_UP_TIMEOUT_S)

    def prometheus_url(self) -> str:
        return f"http://127.0.0.1:{ports()['PROMETHEUS_PORT']}"

    def kubectl(
        self, *args: str, input: str | None = None, check: bool = True, timeout: float = 120.0
    ) -> subprocess.CompletedProcess[str]:
        result = subprocess.run(
            [str(self.bin / "kubectl"), "--kubeconfig", str(self.kubeconfig), *args],
            input=input,
            capture_output=True,
            text=True,
            env=self.env(),
            timeout=timeout,
        )
        if check and result.returncode != 0:
            raise RuntimeError(
                f"kubectl {' '.join(args)} failed ({result.returncode}): {result.stderr.strip()}"
            )
        return result

    def clients(self) -> kube.Clients:
        """Fresh clients from the admin kubeconfig (rewritten by `up` if the apiserver moved)."""
        return kube.Clients.connect(str(self.kubeconfig))

    def install(self) -> None:
        """`kubectl apply -k manifests/` as a user would; the in-cluster Deployment scaled to 0 (the
        soak runs the operator from this checkout). A namespaced MaintenancePlan CRD of an older
        checkout gets the documented upgrade (delete the CRD, apply)."""
        crd = "crd/maintenanceplans.autoloop.x0tta6bl4.io"
        old = self.kubectl("get", crd, "-o", "jsonpath={.spec.scope}", check=False)
        if old.returncode == 0 and old.stdout.strip() == "Namespaced":
            self.kubectl("delete", crd, "--timeout=120s")
        self.kubectl("apply", "-k", str(ROOT / "manifests"))
        for plural in ("optimizationloops", "resourceallocations", "maintenanceplans"):
            self.kubectl(
                "wait", "--for=condition=Established", f"crd/{plural}.autoloop.x0tta6bl4.io", "--timeout=60s"
            )
        self.kubectl("-n", "autoloop-system", "scale", "deployment/autoloop", "--replicas=0")

    def operator_token(self, duration: str) -> str:
        return self.kubectl(
            "-n", "autoloop-system", "create", "token", "autoloop", f"--duration={duration}"
        ).stdout.strip()

    def operator_kubeconfig(self, token: str, path: Path) -> Path:
        """A kubeconfig for the operator's ServiceAccount token, pointing where the admin one points
        now (the apiserver keeps its port across restarts while it is free; this follows it if not)."""
        admin = yaml.safe_load(self.kubeconfig.read_text())
        cluster = admin["clusters"][0]
        config = {
            "apiVersion": "v1",
            "kind": "Config",
            "clusters": [cluster],
            "users": [{"name": "autoloop", "user": {"token": token}}],
            "contexts": [{"name": "autoloop", "context": {"cluster": cluster["name"], "user": "autoloop"}}],
            "current-context": "autoloop",
        }
        path.write_text(yaml.safe_dump(config))
        path.chmod(0o600)
        return path


@dataclass
class Incarnation:
    """One operator process from start to end, with its RSS samples (seconds, MiB)."""

    pid: int
    started: float
    log: Path
    ended: float | None = None
    end: str = "running"
    """killed | stopped | exited (on its own) | running"""
    samples: list[tuple[float, float]] = field(default_factory=list)


def create_or_keep(fn: Callable[..., Any], *args: Any) -> None:
    """Create one object; an existing one is fine (a retried call, a second run)."""
    try:
        fn(*args, _request_timeout=REQUEST_TIMEOUT)
    except ApiException as exc:
        if exc.status != 409:
            raise


def rss_mib(pid: int) -> float | None:
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024.0
    except (OSError, ValueError, IndexError):
        return None
    return None


class OperatorRunner:
    """`python -m autoloop.cli run` with the operator ServiceAccount's token, restarted at will."""

    def __init__(self, cluster: Cluster, workdir: Path, *, token: str, tick: float = 1.0) -> None:
        self.cluster = cluster
        self.workdir = workdir
        self.token = token
        self.tick = tick
        self.incarnations: list[Incarnation] = []
        self._process: subprocess.Popen[bytes] | None = None
        self._lock = threading.Lock()
        self.liveness_url = ""

    def start(self) -> None:
        with self._lock:
            if self._process is not None and self._process.poll() is None:
                return
            kubeconfig = self.cluster.operator_kubeconfig(self.token, self.workdir / "operator.kubeconfig")
            log = self.workdir / f"operator-{len(self.incarnations):03d}.log"
            launched = launch_operator(kubeconfig, self.cluster.prometheus_url(), log, tick=self.tick)
            self._process = launched.process
            self.liveness_url = launched.healthz_url
            self.incarnations.append(Incarnation(pid=self._process.pid, started=time.time(), log=log))

    def _end(self, how: str) -> None:
        current = self.incarnations[-1] if self.incarnations else None
        if current is not None and current.ended is None:
            current.ended, current.end = time.time(), how

    def kill(self) -> None:
        """SIGKILL (a crash) and wait for the process to go."""
        with self._lock:
            if self._process is not None and self._process.poll() is None:
                self._process.kill()
                self._process.wait(timeout=KILL_WAIT_S)
                self._end("killed")

    def stop(self) -> None:
        """SIGTERM (a graceful stop: kopf finishes, the Lease is handed back); SIGKILL after 30 s."""
        with self._lock:
            if self._process is not None and self._process.poll() is None:
                self._process.terminate()
                try:
                    self._process.wait(timeout=GRACEFUL_STOP_S)
                    self._end("stopped")
                except subprocess.TimeoutExpired:
                    self._process.kill()
                    self._process.wait(timeout=KILL_WAIT_S)
                    self._end("killed")

    def exited_on_its_own(self) -> bool:
        """True (once) when the running incarnation ended without being told to."""
        with self._lock:
            if self._process is not None and self._process.poll() is not None:
                current = self.incarnations[-1]
                if current.ended is None:
                    current.ended, current.end = time.time(), f"exited({self._process.returncode})"
                    return True
            return False

    def sample(self) -> None:
        with self._lock:
            if self._process is None or self._process.poll() is not None:
                return
            value = rss_mib(self._process.pid)
            if value is not None:
                self.incarnations[-1].samples.append((time.time(), value))

    def age(self) -> float:
        """Seconds the running incarnation has lived (0 when none runs)."""
        with self._lock:
            current = self.incarnations[-1] if self.incarnations else None
            return time.time() - current.started if current and current.ended is None else 0.0

    def healthy(self) -> bool:
        try:
            with urllib.request.urlopen(self.liveness_url, timeout=2) as response:
                return bool(response.status == 200)
        except OSError:
            return False

    def wait_healthy(self, timeout: float = HEALTHZ_TIMEOUT_S) -> bool:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.healthy():
                return True
            if self.exited_on_its_own():
                self.start()
            time.sleep(0.5)
        return False

    def logs(self) -> list[str]:
        return [i.log.read_text(errors="replace") for i in self.incarnations if i.log.exists()]


def run_in_background(fn: Callable[[], None], name: str) -> threading.Thread:
    thread = threading.Thread(target=fn, name=name, daemon=True)
    thread.start()
    return thread


def wait_for(predicate: Callable[[], Any], *, timeout: float, interval: float = 1.0) -> bool:
    """Poll `predicate` (exceptions count as False) until true or `timeout`."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            if predicate():
                return True
        except Exception:
            pass
        time.sleep(interval)
    return False
