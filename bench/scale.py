"""Scale: one operator replica over 100, 500 and 1,000 OptimizationLoops on the local control plane.

Run: `python -m bench.scale` (100, 500 and 1,000 loops at a 60 s interval, each size measured for
3 intervals) or `python -m bench.scale --quick` (20 loops at 10 s, same code path). `--sizes`,
`--interval`, `--intervals` and `--tick` change them. Needs the dev control plane built once
(`make cluster-build`); set AUTOLOOP_STATE to run on a control plane of its own (the dev scripts
pick free ports for it).

What runs: the operator from this checkout as one process (`autoloop run`, the shipped
ServiceAccount, leader election on), over Auto loops of one-replica Deployments of the synthetic
workload on kwok nodes (`bench._scale_objects`), metrics from the synthetic exporter through
Prometheus. Sizes grow in one cluster (the next size adds loops); the operator is restarted at
each size so that its memory is that size's. Each size: warm up until every loop has run a pass
under the new process, then measure a window of `--intervals` intervals (`bench._scale_measure`).
A size whose warm-up does not finish within WARMUP_INTERVALS intervals (it is measured all the
same), or whose pass lag p99 exceeds an interval, cannot keep up: larger sizes are not run.

The last line is one JSON object: the figures of the largest size run, and each size under
"by_size".
"""

from __future__ import annotations

import argparse
import functools
import json
import os
import random
import signal
import tempfile
import threading
import time
import uuid
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Final

from kubernetes.client.exceptions import ApiException

from autoloop.api.common import GROUP
from autoloop.operator import kube
from bench import _scale_measure as measure
from bench import _scale_objects as objects
from bench import _scale_report as report
from bench._scale_watch import Seen, watch_loops
from bench._soak_cluster import (
    PROMETHEUS_BIN,
    REQUEST_TIMEOUT,
    Cluster,
    OperatorRunner,
    component_pid,
    create_or_keep,
    run_in_background,
    wait_for,
)
from bench._soak_objects import VERSION

FULL_SIZES: Final = (100, 500, 1000)
QUICK_SIZES: Final = (20,)
FULL_INTERVAL_S: Final = 60
QUICK_INTERVAL_S: Final = 10
MEASURE_INTERVALS: Final = 3
WARMUP_INTERVALS: Final = 4
"""A size whose every loop has not run once under the new operator within this many intervals
(after its objects exist) cannot keep up."""
CREATE_WORKERS: Final = 4
NAMESPACE_READY_S: Final = 60.0
PODS_GONE_S: Final = 180.0
TARGETS: Final = {"loops": 1000, "lag_p99_s": 5.0, "rss_mib": 500.0, "status_bytes_p99": 5000.0}
"""From the issue: 1,000 loops with pass lag p99 < 5 s, RSS < 500 MiB, < 5 kB of status per loop."""


def scrape_interval(loops: int) -> str | None:
    """The synthetic exporter renders every service's series on each scrape (3 s for 300 services
    on 2 cores, see bench.soak.SLOW_SCRAPE): past 50 services the dev Prometheus's 1 s scrape
    (and its timeout) is too short; past 300, 10 s is."""
    if loops <= 50:
        return None
    return "10s" if loops <= 300 else "30s"


@dataclass(frozen=True)
class Plan:
    sizes: tuple[int, ...]
    interval_s: int
    intervals: int
    tick_s: float
    quick: bool


class Scale:
    """One run: the cluster and objects, the operator, one window per size, clean-up."""

    def __init__(self, plan: Plan, workdir: Path, seed: int) -> None:
        self.plan, self.workdir = plan, workdir
        self.rng = random.Random(seed)
        self.cluster = Cluster()
        self.lay = objects.layout(uuid.uuid4().hex[:6], max(plan.sizes))
        self.selector = f"{objects.LABEL}={self.lay.run}"
        self.clients: kube.Clients | None = None
        self.seen = Seen()
        self.stop = threading.Event()
        self.runner: OperatorRunner | None = None
        self.created = 0
        self.notes: list[str] = []

    def admin(self) -> kube.Clients:
        if self.clients is None:
            self.clients = self.cluster.clients()
        return self.clients

    def setup(self) -> None:
        self.cluster.up()
        self.cluster.prometheus_up()
        self.cluster.install()
        token = self.cluster.operator_token("6h")
        self.runner = OperatorRunner(self.cluster, self.workdir, token=token, tick=self.plan.tick_s)
        for name in self.lay.nodes:
            create_or_keep(self.admin().core.create_node, objects.node(name, self.lay.run))
        watch_clients = self.cluster.clients()
        run_in_background(
            lambda: watch_loops(lambda: watch_clients, self.seen, self.stop, self.selector), "watch"
        )

    def grow(self, n: int) -> None:
        """Create the namespaces, Deployments and loops of the first n services."""
        c = self.admin()
        for ns in self.lay.namespaces_for(n):
            create_or_keep(c.core.create_namespace, objects.namespace(ns, self.lay.run))
            read = functools.partial(
                c.core.read_namespaced_service_account, "default", ns, _request_timeout=REQUEST_TIMEOUT
            )
            ready = wait_for(read, timeout=NAMESPACE_READY_S, interval=0.5)
            if not ready:
                raise RuntimeError(f"ServiceAccount default never appeared in {ns}")
        todo = self.lay.loops[self.created : n]
        bodies = [(ns, objects.workload(name, self.lay.run, self.rng), name) for ns, name in todo]

        def one(item: tuple[str, dict[str, Any], str]) -> None:
            ns, deployment, name = item
            create_or_keep(c.apps.create_namespaced_deployment, ns, deployment)
            body = objects.loop(name, self.lay.run, interval_s=self.plan.interval_s)
            create_or_keep(
                c.custom.create_namespaced_custom_object, GROUP, VERSION, ns, "optimizationloops", body
            )

        with ThreadPoolExecutor(CREATE_WORKERS) as pool:
            list(pool.map(one, bodies))
        self.created = n

    def restart_operator(self) -> float:
        assert self.runner is not None
        self.runner.stop()
        began = time.time()
        self.runner.start()
        if not self.runner.wait_healthy():
            raise RuntimeError(f"the operator never answered /healthz; see {self.workdir}")
        return began

    def warm_up(self, n: int, since: float) -> float | None:
        """Seconds until every loop ran a pass started at or after `since`; None past the limit."""
        limit = WARMUP_INTERVALS * self.plan.interval_s
        done = wait_for(lambda: self.seen.started_since(since) >= n, timeout=limit, interval=1.0)
        return round(time.time() - since, 1) if done else None

    def others(self) -> dict[str, int | None]:
        return {
            "kube-apiserver": component_pid("kube-apiserver", "kube-apiserver"),
            "prometheus": component_pid("prometheus", PROMETHEUS_BIN),
            "exporter": component_pid("exporter", "autoloop.simulation.exporter"),
        }

    def window(self, n: int) -> dict[str, Any]:
        assert self.runner is not None
        pid = self.runner.incarnations[-1].pid
        w = measure.Window(
            pid=pid, metrics_url=f"http://127.0.0.1:{measure.metrics_port(pid)}/metrics", others=self.others()
        )
        w.start(time.time())
        done = threading.Event()
        sampler = run_in_background(lambda: w.sample_until(done), "rss")
        time.sleep(self.plan.intervals * self.plan.interval_s)
        w.end(time.time())
        done.set()
        sampler.join(timeout=10)
        statuses = self.list_loops()
        largest = max(statuses, key=lambda item: measure.wire_bytes(item.get("status") or {}), default=None)
        if largest is not None:
            (self.workdir / f"largest-status-{n}.json").write_text(
                json.dumps(largest.get("status"), indent=1)
            )
        return measure.figures(w, self.seen, statuses, loops=n, interval=float(self.plan.interval_s))

    def list_loops(self) -> list[dict[str, Any]]:
        answer: Any = self.admin().custom.list_cluster_custom_object(
            GROUP,
            VERSION,
            "optimizationloops",
            label_selector=self.selector,
            _request_timeout=(5.0, 120.0),
            _preload_content=False,
        )
        return list(json.loads(answer.data).get("items") or [])

    def size(self, n: int) -> dict[str, Any]:
        """Grow to n, restart the operator, warm up, measure."""
        began = time.monotonic()
        wanted = scrape_interval(n)
        if wanted != self.cluster.scrape_interval:
            self.cluster.scrape_interval = wanted
            self.cluster.prometheus_up()
        self.grow(n)
        created_s = round(time.monotonic() - began, 1)
        since = self.restart_operator()
        warm = self.warm_up(n, since)
        warmed = self.seen.started_since(since)
        result = self.window(n)  # measured even when the warm-up did not finish: how far behind
        lag = result["lag_p99_s"]
        kept_up = warm is not None and lag is not None and lag < self.plan.interval_s
        return {
            **result,
            "kept_up": kept_up,
            "created_s": created_s,
            "warmup_s": warm,
            "warmed_loops": warmed,
        }

    def teardown(self) -> None:
        """The operator first (nothing may act while the objects go), then namespaces, nodes."""
        self.stop.set()
        steps = (self.stop_operator, self.delete_namespaces, self.delete_nodes, self.restore_scrape)
        for step in steps:
            try:
                step()
            except Exception as exc:
                self.notes.append(f"clean-up {step.__name__}: {type(exc).__name__}: {exc}"[:300])

    def stop_operator(self) -> None:
        if self.runner is not None:
            self.runner.stop()

    def delete_namespaces(self) -> None:
        for ns in self.lay.namespaces:
            try:
                self.admin().core.delete_namespace(ns, _request_timeout=REQUEST_TIMEOUT)
            except ApiException as exc:
                if exc.status != 404:
                    raise

    def delete_nodes(self) -> None:
        """After the pods are gone (kwok finishes their deletion while it manages the node)."""
        c = self.admin()

        def no_pods() -> bool:
            answer: Any = c.core.list_pod_for_all_namespaces(
                label_selector=self.selector, limit=1, _request_timeout=REQUEST_TIMEOUT
            )
            return not answer.items

        wait_for(no_pods, timeout=PODS_GONE_S, interval=3.0)
        for name in self.lay.nodes:
            try:
                c.core.delete_node(name, _request_timeout=REQUEST_TIMEOUT)
            except ApiException as exc:
                if exc.status != 404:
                    raise

    def restore_scrape(self) -> None:
        if self.cluster.scrape_interval is not None:
            self.cluster.scrape_interval = None
            self.cluster.prometheus_up()


def run(plan: Plan, seed: int) -> dict[str, Any]:
    workdir = Path(tempfile.mkdtemp(prefix="bench-scale-"))
    scale = Scale(plan, workdir, seed)
    by_size: list[dict[str, Any]] = []
    began = time.monotonic()
    try:
        scale.setup()
        for n in plan.sizes:
            result = scale.size(n)
            by_size.append(result)
            print(f"# {n} loops: {json.dumps(result)}", flush=True)
            if not result["kept_up"]:
                break
    finally:
        scale.teardown()
    return summary(plan, by_size, scale.notes, workdir, time.monotonic() - began)


def summary(
    plan: Plan, by_size: list[dict[str, Any]], notes: list[str], workdir: Path, wall: float
) -> dict[str, Any]:
    measured = [r for r in by_size if "passes" in r]
    top = measured[-1] if measured else {}
    return {
        "loops": top.get("loops"),
        "lag_p99_s": top.get("lag_p99_s"),
        "rss_mib": top.get("rss_mib"),
        "status_bytes_p99": top.get("status_bytes_p99"),
        "apiserver_requests_per_pass": top.get("apiserver_requests_per_pass"),
        "bench": "scale",
        "quick": plan.quick,
        "interval_s": plan.interval_s,
        "tick_s": plan.tick_s,
        "sizes_planned": list(plan.sizes),
        "first_size_not_kept_up": next((r["loops"] for r in by_size if not r["kept_up"]), None),
        "targets": TARGETS,
        "by_size": {str(r["loops"]): r for r in by_size},
        "notes": notes,
        "workdir": str(workdir),
        "wall_seconds": round(wall, 1),
    }


def _interrupted(signum: int, _: Any) -> None:
    raise KeyboardInterrupt(f"signal {signum}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--quick", action="store_true", help="20 loops at a 10 s interval")
    parser.add_argument("--sizes", type=str, default=None, help="comma-separated loop counts")
    parser.add_argument("--interval", type=int, default=None, help="loop interval, seconds")
    parser.add_argument(
        "--intervals", type=int, default=MEASURE_INTERVALS, help="intervals measured per size"
    )
    parser.add_argument(
        "--tick", type=float, default=1.0, help="operator --tick, seconds (the soak's 1; shipped default 5)"
    )
    parser.add_argument("--seed", type=int, default=1, help="seed of the workloads' load")
    args = parser.parse_args()
    sizes: tuple[int, ...] = QUICK_SIZES if args.quick else FULL_SIZES
    if args.sizes:
        sizes = tuple(int(s) for s in args.sizes.split(","))
    interval = args.interval or (QUICK_INTERVAL_S if args.quick else FULL_INTERVAL_S)
    plan = Plan(
        sizes=sizes, interval_s=interval, intervals=args.intervals, tick_s=args.tick, quick=args.quick
    )
    signal.signal(signal.SIGTERM, _interrupted)
    os.environ.setdefault("PYTHONUNBUFFERED", "1")
    result = run(plan, args.seed)
    report.table(result)
    print(json.dumps(result))


if __name__ == "__main__":
    main()
