"""The operator SIGKILLed at each point of a decision, then started again: nothing lost, nothing twice.

`AUTOLOOP_CRASH_AT=<point>` (autoloop.operator.crashpoints) kills the process there, as a crash
would: before the intent is written, after it, after the target was patched. A second operator
(without the variable) must finish or confirm the decision from status and the target's
annotation, and the target's spec must change exactly once (its `metadata.generation` moves only
on spec changes). Allocations record no pending id: a decision recorded but never patched is marked
Abandoned and decided afresh, and a patched one is not repeated.
"""

from __future__ import annotations

import json
import threading
from pathlib import Path
from typing import Any

import pytest
from kubernetes import client, watch

from autoloop.operator import kube
from tests.cluster import operator_process as opp
from tests.cluster import test_allocation as alloc

pytestmark = pytest.mark.cluster

DECISION = kube.DECISION_ANNOTATION


class SpecChanges:
    """Every spec change of the namespace's Deployments, with the decision annotation it carried."""

    def __init__(self, cp: Any, namespace: str) -> None:
        self.changes: list[tuple[str, int, str | None]] = []
        self._stop = threading.Event()
        api = client.AppsV1Api(kube.Clients.connect(str(cp.kubeconfig)).api)
        listed = api.list_namespaced_deployment(namespace)
        seen = {d.metadata.name: d.metadata.generation for d in listed.items}
        args = (api, namespace, listed.metadata.resource_version, seen)
        self._thread = threading.Thread(target=self._run, args=args, daemon=True)
        self._thread.start()

    def _run(self, api: client.AppsV1Api, namespace: str, version: str, seen: dict[str, int]) -> None:
        w = watch.Watch()
        for event in w.stream(
            api.list_namespaced_deployment, namespace, resource_version=version, timeout_seconds=600
        ):
            obj = event["object"]
            name, generation = obj.metadata.name, obj.metadata.generation
            if seen.get(name, generation) != generation:
                self.changes.append((name, generation, (obj.metadata.annotations or {}).get(DECISION)))
            seen[name] = generation
            if self._stop.is_set():
                w.stop()

    def stop(self) -> None:
        self._stop.set()

    def by_decision(self) -> dict[str, int]:
        counts: dict[str, int] = {}
        for _, _, decision in self.changes:
            if decision:
                counts[decision] = counts.get(decision, 0) + 1
        return counts


@pytest.fixture
def installed(control_plane: Any) -> None:
    opp.install(control_plane)


@pytest.mark.parametrize(
    ("point", "after_restart"),
    [
        ("loop-before-intent", "Approved"),  # nothing recorded: decided and applied anew
        ("loop-after-intent", "Applied"),  # pending in status, not on the target: applied once
        ("loop-after-patch", "Confirmed"),  # pending in status and on the target: only confirmed
    ],
)
def test_a_loop_decision_survives_a_crash_at_each_point(
    control_plane: Any,
    prometheus: Any,
    namespace: str,
    installed: None,
    tmp_path: Path,
    point: str,
    after_restart: str,
) -> None:
    cp = control_plane
    opp.approved_recommendation(cp, namespace)  # its first pass applies r1: replicas 4 -> 2
    generation = opp.get_json(cp, namespace, "deploy/web")["metadata"]["generation"]
    opp.crash_at(cp, prometheus.url, tmp_path, point)

    crashed = opp.get_json(cp, namespace, "oloop/web").get("status", {})
    target = opp.get_json(cp, namespace, "deploy/web")
    recorded = point != "loop-before-intent"
    assert (crashed.get("pendingDecision") == "r1-approved") is recorded
    assert target["spec"]["replicas"] == (2 if point == "loop-after-patch" else 4)

    op = opp.start(cp, prometheus.url, tmp_path)
    try:
        done = opp.wait_until(
            lambda: (
                (s := opp.get_json(cp, namespace, "oloop/web").get("status", {})).get("lastRunTime")
                and not s.get("pendingDecision")
                and s
            ),
            timeout=60,
            what="the pass after the restart",
        )
        target = opp.get_json(cp, namespace, "deploy/web")
        assert target["spec"]["replicas"] == 2
        assert target["metadata"]["annotations"][DECISION] == "r1-approved"
        assert target["metadata"]["generation"] == generation + 1, "the target's spec changed more than once"
        assert [d["id"] for d in done["decisions"]].count("r1-approved") == 1
        events = cp.kubectl(
            "-n", namespace, "get", "events", "--field-selector", "involvedObject.name=web", "-o", "json"
        ).stdout
        reasons = [
            e["reason"]
            for e in json.loads(events)["items"]
            if e["involvedObject"]["kind"] == "OptimizationLoop"
        ]
        assert after_restart in reasons, reasons
    finally:
        op.stop()


@pytest.mark.slow
def test_an_allocation_crashed_after_intent_or_after_patch_applies_each_decision_once(
    control_plane: Any, prometheus: Any, namespace: str, installed: None, tmp_path: Path
) -> None:
    cp = control_plane
    alloc.create_workloads(cp, prometheus, namespace)
    changes = SpecChanges(cp, namespace)
    alloc.apply(cp, namespace, alloc.allocation("shop", mode="Auto"))
    try:
        # 1. Dies after recording its first Applied decision, before patching the workload.
        opp.crash_at(cp, prometheus.url, tmp_path, "allocation-after-intent")
        first = [
            d for d in alloc.ralloc(cp, namespace, "shop")["status"]["decisions"] if d["action"] == "Applied"
        ]
        assert len(first) == 1, first
        unapplied = first[0]
        assert changes.by_decision() == {}, "nothing reached a workload"

        # 2. The next operator finds it never reached its workload, abandons it, decides again,
        #    patches, and dies right after the patch.
        opp.crash_at(cp, prometheus.url, tmp_path, "allocation-after-patch")
        decisions = {d["id"]: d for d in alloc.ralloc(cp, namespace, "shop")["status"]["decisions"]}
        assert decisions[unapplied["id"]]["action"] == "Abandoned"
        patched = opp.wait_until(lambda: changes.by_decision() or None, timeout=10, what="the patch seen")
        assert len(patched) == 1 and unapplied["id"] not in patched

        # 3. A normal operator carries on: later steps are new decisions, none applied twice.
        op = opp.start(cp, prometheus.url, tmp_path)
        try:
            opp.wait_until(
                lambda: len(changes.by_decision()) >= 2,
                timeout=120,
                interval=2,
                what="a further step applied",
            )
        finally:
            op.stop()
        counts = changes.by_decision()
        assert all(n == 1 for n in counts.values()), counts
        assert unapplied["id"] not in counts
        stored = {d["id"]: d["action"] for d in alloc.ralloc(cp, namespace, "shop")["status"]["decisions"]}
        assert all(stored.get(i) == "Applied" for i in counts), (counts, stored)
    finally:
        changes.stop()
