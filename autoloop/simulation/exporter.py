"""Synthetic workload exporter: simulated metrics for real Deployments on a (kwok) cluster.

Contract: watches Deployments labelled ``sim.autoloop.x0tta6bl4.io/enabled=true`` through the
Kubernetes API (polling), reads each one's service profile from its annotations and its settings
(replicas, requests/limits) from the object itself, simulates one step of
``autoloop.simulation.service`` per tick, and serves the result on ``127.0.0.1:<port>/metrics``
under the names real exporters use (cAdvisor, kube-state-metrics, an instrumented HTTP server),
so queries written for a real cluster work unchanged. Series exist only for objects that exist now.
API errors are logged and the last known state is kept; a bad annotation is logged and its default
used. Run: ``python -m autoloop.simulation.exporter --kubeconfig K --port P``.
"""

from __future__ import annotations

import argparse
import json
import logging
import math
import os
import re
import signal
import threading
import time
import zlib
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field, replace
from typing import Any, Final

import numpy as np
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, HistogramMetricFamily
from prometheus_client.registry import Collector, CollectorRegistry

from autoloop.api import common
from autoloop.simulation import service

LOG: Final = logging.getLogger("autoloop.simulation.exporter")

PREFIX: Final[str] = "sim.autoloop.x0tta6bl4.io/"
ENABLED_LABEL: Final[str] = PREFIX + "enabled"
ENABLED_SELECTOR: Final[str] = ENABLED_LABEL + "=true"
API_TIMEOUT_SECONDS: Final[float] = 5.0

# Latency buckets: geometric, 1 ms × 1.15^k up to the request timeout. With 15 % wide buckets the
# linear interpolation of histogram_quantile stays within a few percent of the true quantile.
BUCKET_GROWTH: Final[float] = 1.15
BUCKET_MIN_SECONDS: Final[float] = 0.001


def _latency_buckets() -> tuple[float, ...]:
    bounds: list[float] = []
    b = BUCKET_MIN_SECONDS
    while b < service.REQUEST_TIMEOUT_SECONDS:
        bounds.append(round(b, 6))
        b *= BUCKET_GROWTH
    bounds.append(service.REQUEST_TIMEOUT_SECONDS)
    return tuple(bounds)


LATENCY_BUCKETS: Final[tuple[float, ...]] = _latency_buckets()

# ---------------------------------------------------------------------------------------------
# Parsing annotations and object fields.

_DURATION_UNITS: Final[dict[str, float]] = {"ms": 1e-3, "s": 1.0, "m": 60.0, "h": 3600.0, "d": 86400.0}
_DURATION_RE: Final = re.compile(r"(\d+(?:\.\d*)?|\.\d+)(ms|s|m|h|d)")


def parse_quantity(text: str) -> float:
    """A Kubernetes resource quantity (``128Mi``, ``250m``, ``1.5``, ``2e3``) as a float."""
    try:
        return common.parse_quantity(text)
    except ValueError as exc:
        raise ValueError(f"not a quantity: {text!r}") from exc


def parse_duration(text: str) -> float:
    """Seconds from ``0.05``, ``50ms``, ``1m30s``, ``24h``; a bare number means seconds."""
    text = text.strip()
    try:
        return float(text)
    except ValueError:
        pass
    pos, total = 0, 0.0
    for m in _DURATION_RE.finditer(text):
        if m.start() != pos:
            break
        total += float(m.group(1)) * _DURATION_UNITS[m.group(2)]
        pos = m.end()
    if pos != len(text) or not text:
        raise ValueError(f"not a duration: {text!r}")
    return total


@dataclass(frozen=True)
class SimSpec:
    """What the annotations of one Deployment ask for."""

    profile: service.ServiceProfile
    fault_kind: str | None = None
    fault_start: float | None = None  # unix seconds; None → when first seen
    fault_magnitude: float = 1.0


def spec_from_annotations(
    annotations: Mapping[str, str], *, where: str = "", warn: Callable[[str], None] | None = None
) -> SimSpec:
    """Parse the ``sim.autoloop.x0tta6bl4.io/*`` annotations; bad values are reported through
    ``warn`` (default: the module logger) and replaced by their defaults."""
    warn = warn or LOG.warning
    default = service.ServiceProfile()
    fields: dict[str, Any] = {}

    def take(key: str, attr: str, parse: Any, *, positive: bool = True) -> None:
        raw = annotations.get(PREFIX + key)
        if raw is None:
            return
        try:
            value = parse(raw)
            if not math.isfinite(value) or (positive and value <= 0) or value < 0:
                raise ValueError("must be finite and positive")
        except (ValueError, TypeError) as e:
            warn(f"{where}: bad annotation {PREFIX}{key}={raw!r} ({e}); using default")
            return
        fields[attr] = value

    take("rps", "base_rps", float, positive=False)
    take("cpu-per-request", "cpu_seconds_per_request", parse_quantity)
    take("memory-base", "memory_base_bytes", parse_quantity)
    take("memory-per-rps", "memory_bytes_per_rps", parse_quantity, positive=False)
    take("latency-base", "base_latency_seconds", parse_duration)
    take("diurnal-amplitude", "diurnal_amplitude", float, positive=False)
    take("period", "period_seconds", parse_duration)
    take("noise", "noise", float, positive=False)
    calls_raw = annotations.get(PREFIX + "calls", "")
    calls = tuple(c.strip() for c in calls_raw.split(",") if c.strip())
    profile = replace(default, **fields, calls=calls)

    kind = annotations.get(PREFIX + "fault")
    if kind is not None and kind not in service.FAULT_KINDS:
        known = ", ".join(service.FAULT_KINDS)
        warn(f"{where}: unknown fault kind {kind!r} (known: {known}); ignoring")
        kind = None
    start: float | None = None
    magnitude = 1.0
    if kind is not None:
        raw_start = annotations.get(PREFIX + "fault-start")
        if raw_start is not None:
            try:
                start = float(raw_start)
            except ValueError:
                warn(f"{where}: bad fault-start {raw_start!r}; using first-seen time")
        raw_mag = annotations.get(PREFIX + "fault-magnitude")
        if raw_mag is not None:
            try:
                magnitude = float(raw_mag)
                if not math.isfinite(magnitude) or magnitude < 0:
                    raise ValueError(raw_mag)
            except ValueError:
                warn(f"{where}: bad fault-magnitude {raw_mag!r}; using 1.0")
                magnitude = 1.0
    return SimSpec(profile=profile, fault_kind=kind, fault_start=start, fault_magnitude=magnitude)


def _resource(resources: Mapping[str, Any] | None, section: str, name: str, parse: Any) -> float | None:
    values = (resources or {}).get(section) or {}
    raw = values.get(name)
    if raw is None:
        return None
    try:
        return float(parse(str(raw)))
    except ValueError:
        return None


def settings_from_deployment(dep: Mapping[str, Any]) -> service.Settings:
    """Replicas (ready, else desired) and the first container's requests/limits."""
    spec = dep.get("spec") or {}
    status = dep.get("status") or {}
    ready = status.get("readyReplicas")
    replicas = int(ready) if ready else int(spec.get("replicas", 1) or 0)
    containers = (((spec.get("template") or {}).get("spec") or {}).get("containers")) or [{}]
    res = containers[0].get("resources")
    cpu_req = _resource(res, "requests", "cpu", parse_quantity)
    cpu_lim = _resource(res, "limits", "cpu", parse_quantity)
    mem_req = _resource(res, "requests", "memory", parse_quantity)
    mem_lim = _resource(res, "limits", "memory", parse_quantity)
    # Kubernetes defaults a missing request to the limit; with neither, assume a small pod.
    cpu_req = cpu_req if cpu_req is not None else (cpu_lim if cpu_lim is not None else 0.1)
    mem_req = mem_req if mem_req is not None else (mem_lim if mem_lim is not None else 128 * service.MIB)
    return service.Settings(
        replicas=replicas,
        cpu_request_cores=cpu_req,
        cpu_limit_cores=cpu_lim,
        memory_request_bytes=mem_req,
        memory_limit_bytes=mem_lim,
    )


# ---------------------------------------------------------------------------------------------
# A latency distribution through the simulated p50/p95/p99, for the histogram.

_Z: Final[tuple[float, float, float]] = (0.0, service.Z_P95, service.Z_P99)


def _phi(z: float) -> float:
    return 0.5 * (1.0 + math.erf(z / math.sqrt(2.0)))


def latency_cdf(state: service.ServiceState, bounds: Sequence[float]) -> list[float]:
    """P(latency ≤ b) for each bound, for a distribution whose log-latency is piecewise linear in
    the normal score through (0, p50), (1.645, p95), (2.326, p99): lognormal-like tails whose
    quantiles reproduce the simulated ones exactly. The timeout bound holds all mass."""
    logs = [
        math.log(max(q, 1e-9))
        for q in (state.latency_p50_seconds, state.latency_p95_seconds, state.latency_p99_seconds)
    ]
    slopes = [
        max((logs[1] - logs[0]) / (_Z[1] - _Z[0]), 1e-6),
        max((logs[2] - logs[1]) / (_Z[2] - _Z[1]), 1e-6),
    ]
    out: list[float] = []
    for b in bounds:
        if b >= service.REQUEST_TIMEOUT_SECONDS:
            out.append(1.0)
            continue
        lb = math.log(b)
        # Below p95 the first segment's slope extends to the lower tail; above it, the second's.
        z = (lb - logs[0]) / slopes[0] if lb <= logs[1] else _Z[1] + (lb - logs[1]) / slopes[1]
        out.append(_phi(z))
    return out


# ---------------------------------------------------------------------------------------------
# Simulation state per Deployment.


@dataclass
class PodInfo:
    name: str
    container: str
    requests: dict[str, float]
    limits: dict[str, float]


@dataclass
class Workload:
    """One simulated Deployment: its last observed objects, its counters and its last step."""

    namespace: str
    name: str
    rng: np.random.Generator
    spec: SimSpec = field(default_factory=lambda: SimSpec(service.ServiceProfile()))
    settings: service.Settings = field(
        default_factory=lambda: service.Settings(1, 0.1, None, 128 * service.MIB, None)
    )
    spec_replicas: int = 0
    ready_replicas: int = 0
    pods: list[PodInfo] = field(default_factory=list)
    fault_first_seen: dict[str, float] = field(default_factory=dict)
    state: service.ServiceState | None = None
    cpu_seconds: dict[str, float] = field(default_factory=dict)  # per pod
    oom_events: dict[str, int] = field(default_factory=dict)
    restarts: dict[str, int] = field(default_factory=dict)
    requests: dict[str, float] = field(default_factory=lambda: {"200": 0.0, "500": 0.0, "503": 0.0})
    bucket_counts: list[float] = field(default_factory=lambda: [0.0] * len(LATENCY_BUCKETS))
    latency_sum: float = 0.0
    latency_count: float = 0.0

    def fault(self, now: float) -> service.Fault | None:
        kind = self.spec.fault_kind
        if kind is None:
            return None
        start = self.spec.fault_start
        if start is None:
            start = self.fault_first_seen.setdefault(kind, now)
        return service.Fault(kind, start_seconds=start, magnitude=self.spec.fault_magnitude)  # type: ignore[arg-type]


def _seed_for(seed: int, namespace: str, name: str) -> int:
    return zlib.crc32(f"{seed}/{namespace}/{name}".encode())


def _container_resources(pod: Mapping[str, Any]) -> PodInfo:
    containers = ((pod.get("spec") or {}).get("containers")) or [{"name": "app"}]
    first = containers[0]
    res = first.get("resources") or {}
    req: dict[str, float] = {}
    lim: dict[str, float] = {}
    for section, out in (("requests", req), ("limits", lim)):
        for r in ("cpu", "memory"):
            v = _resource(res, section, r, parse_quantity)
            if v is not None:
                out[r] = v
    return PodInfo(name=pod["metadata"]["name"], container=first.get("name", "app"), requests=req, limits=lim)


def _pod_serving(pod: Mapping[str, Any]) -> bool:
    meta = pod.get("metadata") or {}
    status = pod.get("status") or {}
    return meta.get("deletionTimestamp") is None and status.get("phase") == "Running"


class Simulator:
    """Holds every Workload; ``observe`` takes fresh API objects, ``step`` advances time."""

    def __init__(self, *, seed: int = 0) -> None:
        self.seed = seed
        self.lock = threading.Lock()
        self.workloads: dict[tuple[str, str], Workload] = {}
        self._warned: set[str] = set()

    def _warn_once(self, message: str) -> None:
        """Annotations are re-read every tick; report each distinct problem once."""
        if message not in self._warned:
            self._warned.add(message)
            LOG.warning("%s", message)

    def observe(
        self,
        deployments: Iterable[Mapping[str, Any]],
        pods: Mapping[tuple[str, str], Sequence[Mapping[str, Any]]],
    ) -> None:
        """Replace the known Deployments with ``deployments``; ``pods`` by (namespace, deployment)."""
        with self.lock:
            seen: set[tuple[str, str]] = set()
            for dep in deployments:
                meta = dep["metadata"]
                key = (meta["namespace"], meta["name"])
                seen.add(key)
                w = self.workloads.get(key)
                if w is None:
                    w = Workload(key[0], key[1], np.random.default_rng(_seed_for(self.seed, *key)))
                    self.workloads[key] = w
                w.spec = spec_from_annotations(
                    meta.get("annotations") or {}, where=f"{key[0]}/{key[1]}", warn=self._warn_once
                )
                if w.spec.fault_kind is None:
                    w.fault_first_seen.clear()
                w.settings = settings_from_deployment(dep)
                w.spec_replicas = int((dep.get("spec") or {}).get("replicas", 1) or 0)
                w.ready_replicas = int((dep.get("status") or {}).get("readyReplicas") or 0)
                w.pods = [_container_resources(p) for p in pods.get(key, []) if _pod_serving(p)]
                names = {p.name for p in w.pods}
                for counters in (w.cpu_seconds, w.oom_events, w.restarts):
                    for gone in set(counters) - names:
                        del counters[gone]
            for gone_key in set(self.workloads) - seen:
                del self.workloads[gone_key]

    def step(self, now: float, tick_seconds: float) -> None:
        """Simulate one tick for every workload, callees before callers."""
        with self.lock:
            done: dict[tuple[str, str], service.ServiceState] = {}
            visiting: set[tuple[str, str]] = set()

            def visit(key: tuple[str, str]) -> service.ServiceState | None:
                if key in done:
                    return done[key]
                w = self.workloads.get(key)
                if w is None:
                    return None
                if key in visiting:  # a call cycle: use the callee's previous step
                    return w.state
                visiting.add(key)
                downstream = [s for c in w.spec.profile.calls if (s := visit((w.namespace, c))) is not None]
                state = service.simulate_step(
                    w.spec.profile,
                    w.settings,
                    now,
                    w.rng,
                    fault=w.fault(now),
                    downstream=downstream,
                    step_seconds=tick_seconds,
                )
                visiting.discard(key)
                self._account(w, state, tick_seconds)
                done[key] = state
                return state

            for key in sorted(self.workloads):
                visit(key)

    @staticmethod
    def _account(w: Workload, state: service.ServiceState, tick: float) -> None:
        w.state = state
        for p in w.pods:
            w.cpu_seconds[p.name] = w.cpu_seconds.get(p.name, 0.0) + state.cpu_cores_per_pod * tick
            w.oom_events.setdefault(p.name, 0)
            w.restarts.setdefault(p.name, 0)
        for p in w.pods[: state.oom_kills]:
            w.oom_events[p.name] += 1
            w.restarts[p.name] += 1
        total = state.rps * tick
        rho = state.utilisation
        shed = 0.0 if rho <= 1.0 else 1.0 - 1.0 / rho
        failed = total * state.error_ratio
        w.requests["503"] += min(total * shed, failed)
        w.requests["500"] += failed - min(total * shed, failed)
        w.requests["200"] += total - failed
        cdf = latency_cdf(state, LATENCY_BUCKETS)
        prev_b, prev_c, mean = 0.0, 0.0, 0.0
        for i, (b, c) in enumerate(zip(LATENCY_BUCKETS, cdf, strict=True)):
            w.bucket_counts[i] += total * c
            mean += (c - prev_c) * 0.5 * (b + prev_b)
            prev_b, prev_c = b, c
        w.latency_sum += total * mean
        w.latency_count += total

    def snapshot(self) -> list[Workload]:
        """Deep-enough copies for a scrape, taken under the lock."""
        with self.lock:
            return [
                replace(
                    w,
                    pods=list(w.pods),
                    cpu_seconds=dict(w.cpu_seconds),
                    oom_events=dict(w.oom_events),
                    restarts=dict(w.restarts),
                    requests=dict(w.requests),
                    bucket_counts=list(w.bucket_counts),
                )
                for w in self.workloads.values()
            ]


class SimCollector(Collector):
    """Yields the current samples of every workload; vanished pods and Deployments vanish."""

    def __init__(self, sim: Simulator) -> None:
        self.sim = sim

    def collect(self) -> Iterator[Any]:
        pod_labels = ["namespace", "pod", "container"]
        cpu = CounterMetricFamily(
            "container_cpu_usage_seconds", "Cumulative CPU time (cAdvisor).", labels=pod_labels
        )
        mem = GaugeMetricFamily(
            "container_memory_working_set_bytes", "Working set (cAdvisor).", labels=pod_labels
        )
        oom = CounterMetricFamily("container_oom_events", "OOM events (cAdvisor).", labels=pod_labels)
        restarts = CounterMetricFamily(
            "kube_pod_container_status_restarts",
            "Container restarts (kube-state-metrics).",
            labels=pod_labels,
        )
        res_labels = [*pod_labels, "resource", "unit"]
        reqs = GaugeMetricFamily(
            "kube_pod_container_resource_requests", "Requests (kube-state-metrics).", labels=res_labels
        )
        lims = GaugeMetricFamily(
            "kube_pod_container_resource_limits", "Limits (kube-state-metrics).", labels=res_labels
        )
        dep_labels = ["namespace", "deployment"]
        spec_r = GaugeMetricFamily("kube_deployment_spec_replicas", "Desired replicas.", labels=dep_labels)
        ready_r = GaugeMetricFamily(
            "kube_deployment_status_replicas_ready", "Ready replicas.", labels=dep_labels
        )
        http = CounterMetricFamily(
            "http_requests", "HTTP requests by status code.", labels=["namespace", "service", "code"]
        )
        hist = HistogramMetricFamily(
            "http_request_duration_seconds", "HTTP request latency.", labels=["namespace", "service"]
        )
        units = {"cpu": "core", "memory": "byte"}
        for w in self.sim.snapshot():
            spec_r.add_metric([w.namespace, w.name], w.spec_replicas)
            ready_r.add_metric([w.namespace, w.name], w.ready_replicas)
            for p in w.pods:
                lv = [w.namespace, p.name, p.container]
                cpu.add_metric(lv, w.cpu_seconds.get(p.name, 0.0))
                oom.add_metric(lv, w.oom_events.get(p.name, 0))
                restarts.add_metric(lv, w.restarts.get(p.name, 0))
                if w.state is not None:
                    mem.add_metric(lv, w.state.memory_bytes_per_pod)
                for r, v in p.requests.items():
                    reqs.add_metric([*lv, r, units[r]], v)
                for r, v in p.limits.items():
                    lims.add_metric([*lv, r, units[r]], v)
            if w.state is None:
                continue
            for code, v in w.requests.items():
                http.add_metric([w.namespace, w.name, code], v)
            buckets = [(_le(b), c) for b, c in zip(LATENCY_BUCKETS, w.bucket_counts, strict=True)]
            buckets.append(("+Inf", w.latency_count))
            hist.add_metric([w.namespace, w.name], buckets, w.latency_sum)
        yield from (cpu, mem, oom, restarts, reqs, lims, spec_r, ready_r, http, hist)


def _le(b: float) -> str:
    return repr(float(b))


# ---------------------------------------------------------------------------------------------
# The Kubernetes side: poll Deployments and their pods.


def _selects(dep: Mapping[str, Any], pod: Mapping[str, Any]) -> bool:
    """Whether the Deployment's selector (matchLabels, and In/NotIn/Exists/DoesNotExist
    matchExpressions) selects the pod; an empty selector selects nothing, as for a Deployment."""
    selector = (dep.get("spec") or {}).get("selector") or {}
    labels = (pod.get("metadata") or {}).get("labels") or {}
    match = selector.get("matchLabels") or {}
    exprs = selector.get("matchExpressions") or []
    if not match and not exprs:
        return False
    if any(labels.get(k) != v for k, v in match.items()):
        return False
    for e in exprs:
        key, op, values = e.get("key"), e.get("operator"), e.get("values") or []
        ok = {
            "In": key in labels and labels[key] in values,
            "NotIn": key not in labels or labels[key] not in values,
            "Exists": key in labels,
            "DoesNotExist": key not in labels,
        }.get(op, False)
        if not ok:
            return False
    return True


class ClusterReader:
    """Lists the enabled Deployments and their pods; keeps the last good answer on errors."""

    def __init__(self, kubeconfig: str | None, namespace: str | None) -> None:
        self.kubeconfig = kubeconfig
        self.kubeconfig_mtime: float | None = None
        self.namespace = namespace
        self.failing = False
        self.last: tuple[list[dict[str, Any]], dict[tuple[str, str], list[dict[str, Any]]]] | None = None
        self.apps: Any = None
        self.core: Any = None

    def _connect(self) -> None:
        """(Re)build the clients when the kubeconfig changed: a restarted dev cluster may have new
        ports and certificates, and a long-running exporter must follow it."""
        from kubernetes import client, config  # imported here: the pure model needs no client

        if self.kubeconfig:
            mtime = os.stat(self.kubeconfig).st_mtime
            if self.apps is not None and mtime == self.kubeconfig_mtime:
                return
            api_client = config.new_client_from_config(config_file=self.kubeconfig)
            self.kubeconfig_mtime = mtime
        elif self.apps is None:
            config.load_incluster_config()
            api_client = client.ApiClient()
        else:
            return
        self.apps = client.AppsV1Api(api_client)
        self.core = client.CoreV1Api(api_client)
        # urllib3 warns on every retry while the apiserver is away and the client's Configuration
        # resets its level to WARNING; the reader reports an outage once instead.
        logging.getLogger("urllib3").setLevel(logging.ERROR)

    def read(self) -> tuple[list[dict[str, Any]], dict[tuple[str, str], list[dict[str, Any]]]] | None:
        try:
            self._connect()
            # Raw JSON (`_preload_content=False`): the client's model deserialisation costs far more
            # CPU than the simulation itself at a 1 s tick.
            resp: Any  # an urllib3 response: the typed return annotation does not cover raw mode
            if self.namespace:
                resp = self.apps.list_namespaced_deployment(
                    self.namespace,
                    label_selector=ENABLED_SELECTOR,
                    _request_timeout=API_TIMEOUT_SECONDS,
                    _preload_content=False,
                )
            else:
                resp = self.apps.list_deployment_for_all_namespaces(
                    label_selector=ENABLED_SELECTOR,
                    _request_timeout=API_TIMEOUT_SECONDS,
                    _preload_content=False,
                )
            dep_dicts: list[dict[str, Any]] = json.loads(resp.data)["items"]
            # One pod list per namespace; each Deployment's pods are matched by its selector here.
            ns_pods: dict[str, list[dict[str, Any]]] = {}
            for ns in sorted({d["metadata"]["namespace"] for d in dep_dicts}):
                presp: Any = self.core.list_namespaced_pod(
                    ns, _request_timeout=API_TIMEOUT_SECONDS, _preload_content=False
                )
                ns_pods[ns] = json.loads(presp.data)["items"]
            pods: dict[tuple[str, str], list[dict[str, Any]]] = {}
            for d in dep_dicts:
                ns, name = d["metadata"]["namespace"], d["metadata"]["name"]
                pods[(ns, name)] = [p for p in ns_pods.get(ns, []) if _selects(d, p)]
            self.last = (dep_dicts, pods)
        except Exception as e:  # any API/transport failure: keep serving the last state
            if not self.failing:  # log a failure once, not once per tick
                LOG.warning(
                    "reading the cluster failed (%s: %s); keeping the last known state", type(e).__name__, e
                )
            self.failing = True
            return self.last
        if self.failing:
            LOG.info("reading the cluster works again")
        self.failing = False
        return self.last


def run(
    *,
    kubeconfig: str | None,
    port: int,
    namespace: str | None,
    tick_seconds: float,
    seed: int,
    host: str = "127.0.0.1",
    stop: threading.Event | None = None,
) -> None:
    """Serve until ``stop`` is set: read the cluster, simulate a step, sleep to the next tick."""
    from prometheus_client import start_http_server

    stop = stop or threading.Event()
    sim = Simulator(seed=seed)
    registry = CollectorRegistry()
    registry.register(SimCollector(sim))
    server, thread = start_http_server(port, addr=host, registry=registry)
    LOG.info(
        "serving http://%s:%d/metrics (tick %.2fs, namespace %s)", host, port, tick_seconds, namespace or "*"
    )
    reader = ClusterReader(kubeconfig, namespace)
    next_tick = time.monotonic()
    try:
        while not stop.is_set():
            observed = reader.read()
            if observed is not None:
                sim.observe(*observed)
            sim.step(time.time(), tick_seconds)
            next_tick += tick_seconds
            delay = next_tick - time.monotonic()
            if delay < 0:  # fell behind (slow API): do not try to catch up with a burst
                next_tick = time.monotonic()
                delay = 0.0
            stop.wait(delay)
    finally:
        server.shutdown()
        thread.join(timeout=5)


def main(argv: list[str] | None = None) -> int:
    """CLI entry point (also `autoloop simulate`)."""
    parser = argparse.ArgumentParser(prog="autoloop-simulate", description=__doc__.split("\n\n")[0])
    parser.add_argument("--kubeconfig", help="kubeconfig file (default: in-cluster config)")
    parser.add_argument("--port", type=int, required=True, help="port for /metrics")
    parser.add_argument("--host", default="127.0.0.1", help="address to listen on")
    parser.add_argument("--namespace", help="only this namespace (default: all)")
    parser.add_argument("--tick", type=float, default=1.0, help="seconds per simulated step")
    parser.add_argument("--seed", type=int, default=0, help="random seed")
    parser.add_argument("--log-level", default="INFO")
    args = parser.parse_args(argv)
    logging.basicConfig(
        level=args.log_level.upper(), format="%(asctime)s %(levelname)s %(name)s: %(message)s"
    )
    if args.tick <= 0:
        parser.error("--tick must be positive")
    stop = threading.Event()

    def _stop(signum: int, _frame: object) -> None:
        LOG.info("signal %d: stopping", signum)
        stop.set()

    signal.signal(signal.SIGTERM, _stop)
    signal.signal(signal.SIGINT, _stop)
    run(
        kubeconfig=args.kubeconfig,
        port=args.port,
        namespace=args.namespace,
        tick_seconds=args.tick,
        seed=args.seed,
        host=args.host,
        stop=stop,
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
