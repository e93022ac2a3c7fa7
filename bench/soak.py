"""Soak: many loops, allocations and plans on the real control plane under random faults.

Run: `python -m bench.soak` (300 OptimizationLoops, 20 ResourceAllocations, 3 MaintenancePlans,
30 minutes of faults) or `python -m bench.soak --quick` (20 loops, 2 allocations, 1 plan, 90 s of
faults; same code path). `--seed N` fixes the fault schedule and the workloads; `--minutes M` and
`--loops N` give sizes in between (allocations = max(2, loops / 15); 3 plans from 10 minutes of
faults on, else 1); `--no-faults` runs the same objects for the same time with nothing broken
(the operator's memory under its own passes alone). Needs the dev control plane built once
(`make cluster-build`); the soak starts it and Prometheus if they are down, and uses them alone
while it runs (it restarts them).

What runs: the operator as a process (`autoloop run --tick 1`, the shipped ServiceAccount and
RBAC, default leader election) over Deployments of the synthetic workload on the soak's own kwok
nodes: one Auto OptimizationLoop per Deployment, Auto ResourceAllocations over three Deployments
each in their own namespaces, and MaintenancePlans each maintaining one shared `kwok-node-<i>`
(created during the faults; each drains only six pods of the soak that prefer its node, one
at a time under a PodDisruptionBudget).

Faults, on a seeded schedule (`bench._soak_faults`): the operator SIGKILLed and restarted (a
quarter of the restarts graceful), Prometheus SIGKILLed and started again, kube-apiserver
SIGKILLed and `dev/cluster.sh up` (once in a quick run, every 5-8 minutes in a full one), and a
"person" scaling managed Deployments, changing loops' knobs.replicas.max / knobs.cpu.max and
allocations' budget.maxCostPerHour.

Checked from the outside (`bench._soak_checks`, over what the soak's own watches recorded): the
bounds, max step, cooldown and hourly budget of every change the operator made, intent before
act, each decision id applied once, each node maintained once per plan horizon and no plan
holding more nodes than maxConcurrent, no stale write over another writer's change, and every
spec edit observed. The last line is one JSON object.
"""

from __future__ import annotations

import argparse
import dataclasses
import functools
import json
import math
import os
import random
import re
import signal
import tempfile
import threading
import time
import uuid
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Final

from kubernetes.client.exceptions import ApiException

from autoloop.api.common import GROUP
from autoloop.operator import kube
from bench import _soak_checks as checks
from bench import _soak_faults as faults
from bench import _soak_objects as objects
from bench._soak_cluster import (
    PROMETHEUS_BIN,
    REQUEST_TIMEOUT,
    UP_TIMEOUT_S,
    Cluster,
    Incarnation,
    OperatorRunner,
    component_pid,
    create_or_keep,
    kill_and_wait,
    ports,
    run_in_background,
    wait_for,
)
from bench._soak_watch import Recorder, start_watches

VERSION: Final = objects.VERSION
RSS_EVERY_S: Final = 10.0
RSS_SKIP_S: Final = 60.0
"""RSS growth is measured from the first sample at least this long after an incarnation started:
the first minute is start-up (imports, kopf's first list of every resource, the failure model
trained at start, each loop's first full history read), not growth while running."""
RSS_READY_S: Final = RSS_SKIP_S + 2 * RSS_EVERY_S
LOOPS_PER_NAMESPACE: Final = 30
NAMESPACE_READY_S: Final = 60.0
PLANS_GONE_S: Final = 90.0
PODS_GONE_S: Final = 120.0
REPLICAS_EDIT_MAX: Final = 8
LONG_RUN_S: Final = 600.0
SLOW_SCRAPE_LOOPS: Final = 50
SLOW_SCRAPE: Final = "10s"
"""With more than SLOW_SCRAPE_LOOPS services the synthetic exporter's page takes seconds to render
(3.6 MB and 3 s for 300 services on 2 cores), past the dev Prometheus's 1 s scrape timeout: the
soak scrapes every 10 s then, and puts the 1 s back when it ends."""
MAX_NOTES: Final = 50


@dataclass(frozen=True)
class Size:
    loops: int
    fault_seconds: float
    quick: bool
    faults: bool = True
    """False (`--no-faults`): the same objects and period, nothing broken (plans still created):
    the operator's memory with nothing but its own passes."""

    @property
    def allocations(self) -> int:
        return max(2, round(self.loops / 15))

    @property
    def plans(self) -> int:
        return 3 if self.fault_seconds >= LONG_RUN_S else 1

    @property
    def warmup_seconds(self) -> float:
        """Loops see a few intervals of metrics before the faults start."""
        return 60.0 if self.fault_seconds >= LONG_RUN_S else 20.0

    @property
    def settle_seconds(self) -> float:
        """At most this long after the faults for every status to catch up."""
        return 240.0 if self.fault_seconds >= LONG_RUN_S else 75.0

    @property
    def loop_interval(self) -> int:
        """About 10 passes a second in all (30 s for 300 loops), never under 10 s."""
        return max(10, math.ceil(self.loops / 10))

    @property
    def allocation_interval(self) -> int:
        return max(10, math.ceil(self.allocations * 1.5))


FULL: Final = Size(loops=300, fault_seconds=1800.0, quick=False)
QUICK: Final = Size(loops=20, fault_seconds=90.0, quick=True)


@dataclass
class Layout:
    """Names of everything one run creates."""

    run: str
    nodes: list[str]
    loop_namespaces: list[str]
    loops: list[tuple[str, str]]
    allocation_namespaces: list[str]
    allocations: list[tuple[str, str]]
    allocation_workloads: list[tuple[str, str, str]]
    """(namespace, Deployment, allocation)"""
    maintenance_namespace: str
    plans: list[tuple[str, str]]
    """(plan, node)"""

    def namespaces(self) -> list[str]:
        return [*self.loop_namespaces, *self.allocation_namespaces, self.maintenance_namespace]

    def managed(self) -> list[tuple[str, str]]:
        return [*self.loops, *((ns, name) for ns, name, _ in self.allocation_workloads)]


def layout(run: str, size: Size) -> Layout:
    spaces = max(2, math.ceil(size.loops / LOOPS_PER_NAMESPACE))
    loop_ns = [f"soak-{run}-{k}" for k in range(spaces)]
    alloc_ns = [f"soak-{run}-a{j}" for j in range(size.allocations)]
    return Layout(
        run=run,
        nodes=[f"soak-{run}-n{k}" for k in range(objects.nodes_needed(size.loops, size.allocations))],
        loop_namespaces=loop_ns,
        loops=[(loop_ns[i % spaces], f"w-{i:03d}") for i in range(size.loops)],
        allocation_namespaces=alloc_ns,
        allocations=[(ns, f"alloc-{j}") for j, ns in enumerate(alloc_ns)],
        allocation_workloads=[
            (ns, f"a{j}-{k}", f"alloc-{j}")
            for j, ns in enumerate(alloc_ns)
            for k in range(objects.WORKLOADS_PER_ALLOCATION)
        ],
        maintenance_namespace=f"soak-{run}-m",
        plans=[(f"soak-{run}-p{i}", f"kwok-node-{i}") for i in range(size.plans)],
    )


class ClientCache:
    """Admin API clients, built again only when the apiserver moved to another port."""

    def __init__(self, cluster: Cluster) -> None:
        self.cluster = cluster
        self._lock = threading.Lock()
        self._port: int | None = None
        self._clients: kube.Clients | None = None

    def get(self) -> kube.Clients:
        with self._lock:
            port = ports().get("APISERVER_PORT")
            if self._clients is None or port != self._port:
                if self._clients is not None:
                    self._clients.api.close()
                self._clients, self._port = self.cluster.clients(), port
            return self._clients


@dataclass
class Tally:
    done: Counter[str] = field(default_factory=Counter)
    skipped: Counter[str] = field(default_factory=Counter)
    failed: Counter[str] = field(default_factory=Counter)
    notes: list[str] = field(default_factory=list)
    unexpected_exits: int = 0
    moved_restarts: int = 0

    def note(self, text: str) -> None:
        """Keep the first MAX_NOTES notes (a failing call retried every second must not grow this)."""
        if len(self.notes) < MAX_NOTES:
            self.notes.append(text[:300])


class Soak:
    """One run: set up, fault, settle, judge, clean up."""

    def __init__(self, size: Size, seed: int, workdir: Path) -> None:
        self.size, self.seed, self.workdir = size, seed, workdir
        self.cluster = Cluster(scrape_interval=SLOW_SCRAPE if size.loops > SLOW_SCRAPE_LOOPS else None)
        self.admin = ClientCache(self.cluster)
        self.watch_clients = ClientCache(self.cluster)
        self.lay = layout(uuid.uuid4().hex[:6], size)
        self.recorder = Recorder()
        self.tally = Tally()
        self.stop_watches = threading.Event()
        self.stop_sampler = threading.Event()
        self.runner: OperatorRunner | None = None
        self.restoring: dict[str, threading.Thread] = {}
        self.moved = threading.Event()
        self.edit_counter = 0
        self.loop_spec: dict[tuple[str, str], dict[str, Any]] = {}
        self.budgets: dict[tuple[str, str], float] = {}
        self.plans_created: set[str] = set()
        self.settled_after = 0.0

    # -- setup ---------------------------------------------------------------------------------------

    def setup(self) -> None:
        self.cluster.up()
        self.cluster.prometheus_up()
        self.cluster.install()
        hours = math.ceil((self.size.fault_seconds + 3600.0) / 3600.0)
        token = self.cluster.operator_token(f"{hours}h")
        start_watches(self.recorder, self.stop_watches, self.watch_clients.get, self.lay.run)
        self.create_objects()
        self.runner = OperatorRunner(self.cluster, self.workdir, token=token)
        self.runner.start()
        if not self.runner.wait_healthy():
            raise RuntimeError(f"the operator never answered /healthz; see {self.workdir}")
        run_in_background(self.sample_rss, "rss")

    def create_objects(self) -> None:
        c = self.admin.get()
        run, lay = self.lay.run, self.lay
        rng = random.Random(self.seed)
        for name in lay.nodes:
            create_or_keep(c.core.create_node, objects.node(name, run))
        for ns in lay.namespaces():
            create_or_keep(c.core.create_namespace, objects.namespace(ns, run))
        for ns in lay.namespaces():
            read = functools.partial(
                c.core.read_namespaced_service_account, "default", ns, _request_timeout=REQUEST_TIMEOUT
            )
            ready = wait_for(read, timeout=NAMESPACE_READY_S, interval=0.5)
            if not ready:
                raise RuntimeError(f"ServiceAccount default never appeared in {ns}")
        for ns, name in lay.loops:
            create_or_keep(
                c.apps.create_namespaced_deployment, ns, objects.workload(name, run, objects.profile(rng))
            )
            body = objects.loop(name, run, interval_s=self.size.loop_interval)
            create_or_keep(
                c.custom.create_namespaced_custom_object, GROUP, VERSION, ns, "optimizationloops", body
            )
            self.loop_spec[(ns, name)] = {"replicas": max(objects.REPLICAS_MAX_CHOICES), "cpu": "2"}
            self.recorder.record.managers[f"{ns}/{name}"] = checks.Manager("OptimizationLoop", f"{ns}/{name}")
        limits = checks.AllocationLimits(
            min_replicas=1,
            node_cpu=objects.NODE_CPU,
            node_memory=objects.NODE_MEMORY_GIB * 2.0**30,
            interval_seconds=float(self.size.allocation_interval),
        )
        for ns, name, alloc in lay.allocation_workloads:
            labels = {objects.ALLOC_GROUP_LABEL: alloc}
            body = objects.workload(name, run, objects.profile(rng), labels=labels)
            create_or_keep(c.apps.create_namespaced_deployment, ns, body)
            manager = checks.Manager("ResourceAllocation", f"{ns}/{alloc}", allocation=limits)
            self.recorder.record.managers[f"{ns}/{name}"] = manager
        for ns, name in lay.allocations:
            body = objects.allocation(name, run, interval_s=self.size.allocation_interval, budget=1.0)
            create_or_keep(
                c.custom.create_namespaced_custom_object, GROUP, VERSION, ns, "resourceallocations", body
            )
            self.budgets[(ns, name)] = 1.0
        for i, (plan, node) in enumerate(lay.plans):
            body = objects.drain_workload(f"drain-{i}", run, node)
            create_or_keep(c.apps.create_namespaced_deployment, lay.maintenance_namespace, body)
            budget = objects.drain_budget(f"drain-{i}", run)
            create_or_keep(
                c.policy.create_namespaced_pod_disruption_budget, lay.maintenance_namespace, budget
            )
            self.recorder.record.plans[plan] = checks.PlanLimits(
                nodes=frozenset({node}), max_concurrent=1, horizon_seconds=objects.PLAN_HORIZON_SECONDS
            )

    def sample_rss(self) -> None:
        while not self.stop_sampler.wait(RSS_EVERY_S):
            if self.runner is not None:
                self.runner.sample()

    # -- faults --------------------------------------------------------------------------------------

    def tick(self) -> None:
        """Between faults: an operator that exited by itself is counted and started again; one
        whose apiserver or Prometheus moved to another port is restarted to follow it."""
        assert self.runner is not None
        if self.runner.exited_on_its_own():
            self.tally.unexpected_exits += 1
            self.runner.start()
        if self.moved.is_set():
            self.moved.clear()
            self.tally.moved_restarts += 1
            self.runner.stop()
            self.runner.start()

    def restore(self, kind: str, fn: Callable[[], None]) -> None:
        def body() -> None:
            before = (ports().get("APISERVER_PORT"), ports().get("PROMETHEUS_PORT"))
            try:
                fn()
            except Exception as exc:
                self.tally.note(f"{kind}: restore failed: {exc}")
            if (ports().get("APISERVER_PORT"), ports().get("PROMETHEUS_PORT")) != before:
                self.moved.set()

        self.restoring[kind] = run_in_background(body, f"restore-{kind}")

    def busy(self, kind: str) -> bool:
        thread = self.restoring.get(kind)
        return thread is not None and thread.is_alive()

    def fault_component(self, kind: str, name: str, binary: str, up: Callable[[], None]) -> str:
        """SIGKILL a dev component by its pid file, then start it again in the background."""
        if self.busy(kind):
            return "skipped"
        pid = component_pid(name, binary)
        if pid is None:
            return "skipped"
        kill_and_wait(pid)
        self.restore(kind, up)
        return "done"

    def fault(self, f: faults.Fault) -> str:
        assert self.runner is not None
        if f.kind == faults.OPERATOR_KILL:
            self.runner.kill()
            self.runner.start()
            return "done"
        if f.kind == faults.OPERATOR_RESTART:
            self.runner.stop()
            self.runner.start()
            return "done"
        if f.kind == faults.PROMETHEUS_RESTART:
            return self.fault_component(f.kind, "prometheus", PROMETHEUS_BIN, self.cluster.prometheus_up)
        if f.kind == faults.APISERVER_RESTART:
            binary = str(self.cluster.bin / "kube-apiserver")
            return self.fault_component(f.kind, "kube-apiserver", binary, self.cluster.up)
        edits = {
            faults.EDIT_REPLICAS: self.edit_replicas,
            faults.EDIT_LOOP_SPEC: self.edit_loop_spec,
            faults.EDIT_BUDGET: self.edit_budget,
        }
        return edits[f.kind](random.Random(f.arg))

    def edit_replicas(self, rng: random.Random) -> str:
        """A person scales a managed Deployment by one or two replicas."""
        ns, name = rng.choice(self.lay.managed())
        knobs = self.recorder.knobs_of(f"{ns}/{name}")
        if knobs is None:
            return "skipped"
        new = min(REPLICAS_EDIT_MAX, max(1, int(knobs["replicas"]) + rng.choice((-2, -1, 1, 2))))
        self.edit_counter += 1
        body = {
            "metadata": {"annotations": {objects.EDIT_ANNOTATION: str(self.edit_counter)}},
            "spec": {"replicas": new},
        }
        self.admin.get().apps.patch_namespaced_deployment(name, ns, body, _request_timeout=REQUEST_TIMEOUT)
        return "done"

    def edit_loop_spec(self, rng: random.Random) -> str:
        """A person moves a loop's knobs.replicas.max (two times in three) or knobs.cpu.max."""
        ns, name = rng.choice(self.lay.loops)
        spec = self.loop_spec[(ns, name)]
        knob = "cpu" if rng.random() < 1 / 3 else "replicas"
        choices = objects.CPU_MAX_CHOICES if knob == "cpu" else objects.REPLICAS_MAX_CHOICES
        value = rng.choice([v for v in choices if v != spec[knob]])
        body = {"spec": {"knobs": {knob: {"max": value}}}}
        t = time.time()
        answer = self.admin.get().custom.patch_namespaced_custom_object(
            GROUP, VERSION, ns, "optimizationloops", name, body, _request_timeout=REQUEST_TIMEOUT
        )
        spec[knob] = value
        self.note_edit(t, f"OptimizationLoop/{ns}/{name}", answer, f"knobs.{knob}.max={value}")
        return "done"

    def edit_budget(self, rng: random.Random) -> str:
        """A person changes an allocation's budget (sometimes below what the floor needs)."""
        ns, name = rng.choice(self.lay.allocations)
        value = rng.choice([b for b in objects.BUDGET_CHOICES if b != self.budgets[(ns, name)]])
        body = {"spec": {"budget": {"maxCostPerHour": value}}}
        t = time.time()
        answer = self.admin.get().custom.patch_namespaced_custom_object(
            GROUP, VERSION, ns, "resourceallocations", name, body, _request_timeout=REQUEST_TIMEOUT
        )
        self.budgets[(ns, name)] = value
        self.note_edit(t, f"ResourceAllocation/{ns}/{name}", answer, f"budget.maxCostPerHour={value}")
        return "done"

    def note_edit(self, t: float, resource: str, answer: Any, what: str) -> None:
        generation = int((answer or {}).get("metadata", {}).get("generation") or 0)
        with self.recorder.lock:
            self.recorder.record.edits.append(
                checks.SpecEdit(t=t, resource=resource, generation=generation, what=what)
            )

    def create_plan(self, index: int) -> bool:
        plan, node = self.lay.plans[index]
        try:
            c = self.admin.get()
            create_or_keep(
                c.custom.create_cluster_custom_object,
                GROUP,
                VERSION,
                "maintenanceplans",
                objects.plan(plan, self.lay.run, node),
            )
        except Exception as exc:
            self.tally.note(f"creating {plan}: {type(exc).__name__}")
            return False
        self.plans_created.add(plan)
        return True

    def run_faults(self) -> None:
        """The seeded schedule, in real time; the plans are created at seeded moments of its first
        40 %, so their maintenance runs while the faults do."""
        schedule = (
            faults.schedule(self.seed, self.size.fault_seconds, faults.gaps_for(self.size.fault_seconds))
            if self.size.faults
            else []
        )
        rng = random.Random(self.seed + 1)
        plan_times = sorted(
            (rng.uniform(0.05, 0.4) * self.size.fault_seconds, i) for i in range(len(self.lay.plans))
        )
        began = time.monotonic()

        def wait_until(offset: float) -> None:
            while (now := time.monotonic() - began) < offset:
                self.tick()
                while plan_times and plan_times[0][0] <= now and self.create_plan(plan_times[0][1]):
                    plan_times.pop(0)
                time.sleep(min(0.5, max(0.0, offset - now)))

        for f in schedule:
            wait_until(f.at)
            try:
                outcome = self.fault(f)
            except Exception as exc:  # an edit refused while the apiserver is down, etc.
                outcome = "failed"
                self.tally.note(f"{f.kind} at {f.at:.0f}s: {type(exc).__name__}")
            getattr(self.tally, outcome)[f.kind] += 1
        wait_until(self.size.fault_seconds)

    # -- settle and judge ----------------------------------------------------------------------------

    def restore_all(self) -> None:
        assert self.runner is not None
        for thread in list(self.restoring.values()):
            thread.join(timeout=UP_TIMEOUT_S)
        self.cluster.up()
        self.cluster.prometheus_up()
        self.tick()
        self.runner.start()
        self.runner.wait_healthy()
        for index, (plan, _) in enumerate(self.lay.plans):
            if plan not in self.plans_created:
                self.create_plan(index)

    def resources(self) -> list[tuple[str, dict[str, Any]]]:
        c = self.admin.get()
        selector = f"{objects.SOAK_LABEL}={self.lay.run}"
        out: list[tuple[str, dict[str, Any]]] = []
        for kind, plural in (
            ("OptimizationLoop", "optimizationloops"),
            ("ResourceAllocation", "resourceallocations"),
            ("MaintenancePlan", "maintenanceplans"),
        ):
            listed = items(
                c.custom.list_cluster_custom_object, GROUP, VERSION, plural, label_selector=selector
            )
            out.extend((kind, item) for item in listed)
        return out

    @staticmethod
    def resource_key(kind: str, obj: dict[str, Any]) -> str:
        meta = obj["metadata"]
        return (
            f"{kind}/{meta['namespace']}/{meta['name']}"
            if meta.get("namespace")
            else f"{kind}/{meta['name']}"
        )

    def all_observed(self) -> bool:
        """Every resource's status describes its current spec (False when the API does not answer)."""
        try:
            listed = self.resources()
        except Exception:
            return False
        return all(
            (obj.get("status") or {}).get("observedGeneration") == obj["metadata"].get("generation")
            for _, obj in listed
        )

    def settle(self) -> None:
        """Faults stopped: give every resource a few passes, until every status describes its
        current spec and the running operator has lived long enough for an RSS figure (or the
        settle time is up)."""
        assert self.runner is not None
        began = time.monotonic()
        least = 2 * max(self.size.loop_interval, self.size.allocation_interval) + 15
        while (elapsed := time.monotonic() - began) < self.size.settle_seconds:
            self.tick()
            if elapsed >= least and self.runner.age() >= RSS_READY_S and self.all_observed():
                break
            time.sleep(2.0)
        self.settled_after = time.monotonic() - began

    def final_snapshot(self) -> None:
        """What the apiserver holds after the settle period, fed through the same recorder."""
        handlers = {
            "OptimizationLoop": self.recorder.on_loop,
            "ResourceAllocation": self.recorder.on_allocation,
            "MaintenancePlan": self.recorder.on_plan,
        }
        listed_resources = self.resources()
        now = time.time()
        for kind, obj in listed_resources:
            handlers[kind](obj, now, True)
            observed = (obj.get("status") or {}).get("observedGeneration")
            with self.recorder.lock:
                self.recorder.record.final_generations[self.resource_key(kind, obj)] = (
                    int(obj["metadata"].get("generation") or 0),
                    observed if isinstance(observed, int) else None,
                )
        listed = items(
            self.admin.get().apps.list_deployment_for_all_namespaces,
            label_selector=f"{objects.SOAK_LABEL}={self.lay.run},{objects.SIM}/enabled=true",
        )
        now = time.time()
        for item in listed:
            self.recorder.on_deployment(item, now, listed=True)  # only what the watch has not shown
        time.sleep(3.0)  # the watches deliver what they still hold

    # -- clean-up ------------------------------------------------------------------------------------

    def teardown(self) -> None:
        """Plans first, while the operator runs (their finalizer uncordons what they hold), then the
        operator, then any node one of our plans still holds, the namespaces, the soak's nodes."""
        self.stop_watches.set()
        self.stop_sampler.set()
        for step in (
            self.delete_plans,
            self.stop_operator,
            self.release_nodes,
            self.delete_namespaces,
            self.delete_nodes,
            self.restore_scrape_interval,
        ):
            try:
                step()
            except Exception as exc:
                self.tally.note(f"clean-up {step.__name__}: {type(exc).__name__}: {exc}"[:300])

    def delete_plans(self) -> None:
        c = self.admin.get()
        for plan, _ in self.lay.plans:
            try:
                c.custom.delete_cluster_custom_object(
                    GROUP, VERSION, "maintenanceplans", plan, _request_timeout=REQUEST_TIMEOUT
                )
            except ApiException as exc:
                if exc.status != 404:
                    raise

        def gone() -> bool:
            return not [o for k, o in self.resources() if k == "MaintenancePlan"]

        if not wait_for(gone, timeout=PLANS_GONE_S):
            for plan, _ in self.lay.plans:  # the operator never released them: drop our finalizer
                body = {"metadata": {"finalizers": None}}
                try:
                    c.custom.patch_cluster_custom_object(
                        GROUP, VERSION, "maintenanceplans", plan, body, _request_timeout=REQUEST_TIMEOUT
                    )
                except ApiException:
                    continue
            self.tally.note("plans kept their finalizer after deletion; removed it")

    def stop_operator(self) -> None:
        if self.runner is not None:
            self.runner.stop()

    def release_nodes(self) -> None:
        """Uncordon a node still cordoned by one of our plans; drop our plans' maintenance marker."""
        c = self.admin.get()
        ours = {plan for plan, _ in self.lay.plans}
        for node in items(c.core.list_node):
            name = str(node["metadata"]["name"])
            annotations = node["metadata"].get("annotations") or {}
            patch: dict[str, Any] = {}
            if annotations.get(objects.CORDONED_BY_ANNOTATION) in ours:
                patch = {
                    "spec": {"unschedulable": None},
                    "metadata": {"annotations": {objects.CORDONED_BY_ANNOTATION: None}},
                }
                self.tally.note(f"{name} was still cordoned by a soak plan; uncordoned")
            marker = annotations.get(objects.MAINTENANCE_ANNOTATION, "")
            if marker.split("@", 1)[0] in ours:
                patch.setdefault("metadata", {}).setdefault("annotations", {})[
                    objects.MAINTENANCE_ANNOTATION
                ] = None
            if patch:
                c.core.patch_node(name, patch, _request_timeout=REQUEST_TIMEOUT)

    def restore_scrape_interval(self) -> None:
        if self.cluster.scrape_interval is not None:
            self.cluster.scrape_interval = None
            self.cluster.prometheus_up()

    def delete_namespaces(self) -> None:
        c = self.admin.get()
        for ns in self.lay.namespaces():
            try:
                c.core.delete_namespace(ns, _request_timeout=REQUEST_TIMEOUT)  # like --wait=false
            except ApiException as exc:
                if exc.status != 404:
                    raise

    def delete_nodes(self) -> None:
        """After the soak's pods are gone (kwok finishes their deletion while it manages the node)."""
        c = self.admin.get()
        selector = f"{objects.SOAK_LABEL}={self.lay.run}"
        wait_for(
            lambda: not items(c.core.list_pod_for_all_namespaces, label_selector=selector),
            timeout=PODS_GONE_S,
            interval=2.0,
        )
        for name in self.lay.nodes:
            try:
                c.core.delete_node(name, _request_timeout=REQUEST_TIMEOUT)
            except ApiException as exc:
                if exc.status != 404:
                    raise


def items(fn: Callable[..., Any], *args: Any, **kwargs: Any) -> list[dict[str, Any]]:
    """The items of a list call, as plain dicts (one bounded request)."""
    answer: Any = fn(*args, **kwargs, _request_timeout=REQUEST_TIMEOUT, _preload_content=False)
    return list(json.loads(answer.data).get("items") or [])


# -- figures --------------------------------------------------------------------------------------------


def _rss_window(incarnations: list[Incarnation]) -> tuple[list[tuple[float, float]], int]:
    """The samples of the longest-lived incarnation from its first at least RSS_SKIP_S after it
    started (see RSS_SKIP_S), and its pid; ([], 0) when none has two."""
    best: tuple[list[tuple[float, float]], int] = ([], 0)
    for inc in incarnations:
        window = [(t, v) for t, v in inc.samples if t - inc.started >= RSS_SKIP_S]
        if len(window) < 2:
            continue
        if not best[0] or window[-1][0] - window[0][0] > best[0][-1][0] - best[0][0][0]:
            best = (window, inc.pid)
    return best


def rss_growth(incarnations: list[Incarnation]) -> tuple[float | None, float, int]:
    """(growth MiB, window seconds, pid) over the longest-lived incarnation, from its first sample
    at least RSS_SKIP_S after it started (see RSS_SKIP_S) to its last sample."""
    window, pid = _rss_window(incarnations)
    if not window:
        return (None, 0.0, 0)
    return (round(window[-1][1] - window[0][1], 1), round(window[-1][0] - window[0][0], 1), pid)


def rss_late_growth(incarnations: list[Incarnation]) -> float | None:
    """Growth MiB over the second half of rss_growth's window (its first sample at or after the
    middle, to its last). At 300 loops the operator's RSS keeps filling for minutes after the
    first (its passes' first rounds, malloc arenas reaching their high-water marks) and then holds:
    that shows in rss_growth but not here, where a leak (growth in proportion to time) still shows
    about half of it."""
    window, _ = _rss_window(incarnations)
    if not window:
        return None
    middle = (window[0][0] + window[-1][0]) / 2.0
    late = [v for t, v in window if t >= middle]
    return round(late[-1] - late[0], 1)


def log_findings(logs: list[str]) -> dict[str, int]:
    text = "\n".join(logs)
    return {
        "operator_tracebacks": text.count("Traceback (most recent call last)"),
        "operator_failed_passes": len(re.findall(r"pass of \S+ failed", text)),
    }


def summarise(soak: Soak, report: checks.Report, wall: float) -> dict[str, Any]:
    assert soak.runner is not None
    t = soak.tally
    incarnations = soak.runner.incarnations
    growth, window, pid = rss_growth(incarnations)
    restarts = t.done[faults.OPERATOR_KILL] + t.done[faults.OPERATOR_RESTART]
    edits = t.done[faults.EDIT_REPLICAS] + t.done[faults.EDIT_LOOP_SPEC] + t.done[faults.EDIT_BUDGET]
    return {
        "bench": "soak",
        "quick": soak.size.quick,
        "seed": soak.seed,
        "minutes": round(soak.size.fault_seconds / 60.0, 2),
        "faults": soak.size.faults,
        "loops": len(soak.lay.loops),
        "allocations": len(soak.lay.allocations),
        "plans": len(soak.lay.plans),
        "actions": report.operator_changes + report.node_maintenances,
        "safety_violations": len(report.safety),
        "lost_updates": len(report.lost),
        "double_actions": len(report.double),
        "operator_restarts": restarts,
        "rss_growth_mib": growth,
        "rss_window_seconds": window,
        "rss_pid": pid,
        "rss_late_growth_mib": rss_late_growth(incarnations),
        "workload_changes": report.operator_changes,
        "rollbacks": report.rollbacks,
        "node_maintenances": report.node_maintenances,
        "person_changes": report.person_changes,
        "merged_changes": report.merged_changes,
        "listed_changes": report.listed_changes,
        "conflicting_edits": edits,
        "apiserver_restarts": t.done[faults.APISERVER_RESTART],
        "prometheus_restarts": t.done[faults.PROMETHEUS_RESTART],
        "faults_by_kind": dict(sorted(t.done.items())),
        "faults_failed": dict(sorted(t.failed.items())),
        "faults_skipped": dict(sorted(t.skipped.items())),
        "operator_unexpected_exits": t.unexpected_exits,
        "operator_restarts_for_moved_ports": t.moved_restarts,
        **log_findings(soak.runner.logs()),
        "decisions_seen": len(soak.recorder.record.decisions),
        "watch_errors": sum(s.errors for s in soak.recorder.stats.values()),
        "settle_seconds": round(soak.settled_after, 1),
        "wall_seconds": round(wall, 1),
        "violations": [v.line() for v in (*report.safety, *report.double, *report.lost)][:20],
        "notes": t.notes[:20],
        "workdir": str(soak.workdir),
    }


def table(result: dict[str, Any]) -> None:
    rows = [
        (
            "size",
            f"{result['loops']} loops, {result['allocations']} allocations, {result['plans']} plans",
            "",
        ),
        (
            "faults",
            f"{result['minutes']} min",
            ", ".join(f"{k} {v}" for k, v in result["faults_by_kind"].items()),
        ),
        (
            "actions",
            str(result["actions"]),
            f"{result['workload_changes']} workload changes ({result['rollbacks']} rollbacks), {result['node_maintenances']} node maintenances",
        ),
        ("safety violations", str(result["safety_violations"]), "must be 0"),
        ("lost updates", str(result["lost_updates"]), "must be 0"),
        ("double actions", str(result["double_actions"]), "must be 0"),
        (
            "operator restarts",
            str(result["operator_restarts"]),
            f"{result['operator_unexpected_exits']} unexpected exits",
        ),
        (
            "RSS growth",
            f"{result['rss_growth_mib']} MiB",
            f"over {result['rss_window_seconds']} s of pid {result['rss_pid']}; "
            f"{result['rss_late_growth_mib']} MiB over its second half",
        ),
        (
            "person changes",
            str(result["person_changes"]),
            f"{result['conflicting_edits']} edits made, {result['merged_changes']} changes merged by a re-list",
        ),
        ("settle", f"{result['settle_seconds']} s", f"wall {result['wall_seconds']} s"),
    ]
    width = max(len(r[0]) for r in rows)
    for name, value, note in rows:
        print(f"{name.ljust(width)}  {value:>12}  {note}")
    for line in result["violations"]:
        print(f"  ! {line}")
    for line in result["notes"]:
        print(f"  - {line}")


def dump_record(record: checks.Record, incarnations: list[Incarnation], path: Path) -> None:
    """The evidence behind the figures: every change, decision, node state and edit recorded."""
    data = {
        "changes": [dataclasses.asdict(c) for c in sorted(record.changes, key=lambda c: c.t)],
        "decisions": {f"{ns}/{i}": dataclasses.asdict(d) for (ns, i), d in sorted(record.decisions.items())},
        "node_states": [dataclasses.asdict(s) for s in record.node_states],
        "edits": [dataclasses.asdict(e) for e in record.edits],
        "final_generations": record.final_generations,
        "observed_generations": record.observed_generations,
        "managers": {k: dataclasses.asdict(m) for k, m in record.managers.items()},
        "loop_timelines": {
            k: [(t, dataclasses.asdict(p)) for t, p in v] for k, v in record.loop_timelines.items()
        },
        "plans": {k: {**dataclasses.asdict(p), "nodes": sorted(p.nodes)} for k, p in record.plans.items()},
        "operator": [dataclasses.asdict(i) for i in incarnations],
    }
    path.write_text(json.dumps(data, indent=1, default=str))


def run(size: Size, seed: int) -> dict[str, Any]:
    workdir = Path(tempfile.mkdtemp(prefix="bench-soak-"))
    soak = Soak(size, seed, workdir)
    phases: dict[str, float] = {}
    began = mark = time.monotonic()

    def phase(name: str) -> None:
        nonlocal mark
        now = time.monotonic()
        phases[name] = round(now - mark, 1)
        mark = now

    try:
        soak.setup()
        phase("setup")
        time.sleep(size.warmup_seconds)
        phase("warmup")
        soak.run_faults()
        phase("faults")
        soak.restore_all()
        soak.settle()
        phase("settle")
        soak.final_snapshot()
        report = checks.evaluate(soak.recorder.record)
    finally:
        mark = time.monotonic()
        soak.teardown()
        phase("teardown")
        incarnations = soak.runner.incarnations if soak.runner else []
        dump_record(soak.recorder.record, incarnations, workdir / "record.json")
    return {**summarise(soak, report, time.monotonic() - began), "phase_seconds": phases}


def _interrupted(signum: int, _: Any) -> None:
    raise KeyboardInterrupt(f"signal {signum}")


def size_from(args: argparse.Namespace) -> Size:
    base = QUICK if args.quick else FULL
    loops = args.loops if args.loops is not None else base.loops
    seconds = args.minutes * 60.0 if args.minutes is not None else base.fault_seconds
    return Size(loops=loops, fault_seconds=seconds, quick=args.quick, faults=not args.no_faults)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument(
        "--quick", action="store_true", help="20 loops, 2 allocations, 1 plan, 90 s of faults"
    )
    parser.add_argument("--seed", type=int, default=1, help="seed of the fault schedule and the workloads")
    parser.add_argument("--minutes", type=float, default=None, help="minutes of faults")
    parser.add_argument("--loops", type=int, default=None, help="number of OptimizationLoops")
    parser.add_argument(
        "--no-faults", action="store_true", help="the same period with nothing broken (memory baseline)"
    )
    args = parser.parse_args()
    signal.signal(signal.SIGTERM, _interrupted)
    os.environ.setdefault("PYTHONUNBUFFERED", "1")
    result = run(size_from(args), args.seed)
    table(result)
    print(json.dumps(result))


if __name__ == "__main__":
    main()
