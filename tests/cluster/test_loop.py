"""OptimizationLoop end to end: real apiserver, real Prometheus, the synthetic workload, the operator."""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from typing import Any

import pytest

from autoloop.api.optimizationloop import unpack_engine_state
from tests.cluster import operator_process as opp

pytestmark = pytest.mark.cluster

FAST_SAFETY = {
    "maxStepPercent": 50,
    "cooldown": "5s",
    "maxChangesPerHour": 60,
    "minConfidence": 0.3,
    "rollback": {"enabled": True, "settleWindow": "10s"},
}


@pytest.fixture(scope="module")
def operator(control_plane: Any, prometheus: Any, tmp_path_factory: Any) -> Iterator[opp.OperatorProcess]:
    yield from opp.operator_fixture(control_plane, prometheus, tmp_path_factory)


def usage_worker() -> dict[str, Any]:
    """10 rps × 0.01 core-s over 3 pods ≈ 0.03 core and ~100 MiB per pod, against requests of
    2 cores and 1 GiB: what a usage loop should shrink."""
    return deployment("worker", replicas=3, cpu="2", memory="1Gi", rps=10, cpu_per_request=0.01)


@pytest.fixture(scope="module", autouse=True)
def usage_history(control_plane: Any, prometheus: Any) -> Iterator[str]:
    """The namespace of a workload with usage history, created when this module starts.

    A usage loop rightsizes from days of usage, and acts on a young workload only after a few
    minutes of it (a forecast needs 60 samples at >= 5 s steps): the history accumulates while
    the tests before the usage loop's run, as a real workload's does before a loop is declared.
    """
    with opp.fresh_namespace(control_plane, "usage-history") as namespace:
        apply(control_plane, namespace, usage_worker())
        yield namespace


def deployment(
    name: str, *, replicas: int, cpu: str, memory: str, rps: float, cpu_per_request: float
) -> dict[str, Any]:
    return {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": {
            "name": name,
            "labels": {"app": name, "sim.autoloop.x0tta6bl4.io/enabled": "true"},
            "annotations": {
                "sim.autoloop.x0tta6bl4.io/rps": str(rps),
                "sim.autoloop.x0tta6bl4.io/cpu-per-request": str(cpu_per_request),
                "sim.autoloop.x0tta6bl4.io/memory-base": "96Mi",
                "sim.autoloop.x0tta6bl4.io/latency-base": "0.04",
                "sim.autoloop.x0tta6bl4.io/noise": "0.02",
            },
        },
        "spec": {
            "replicas": replicas,
            "selector": {"matchLabels": {"app": name}},
            "template": {
                "metadata": {"labels": {"app": name}},
                "spec": {
                    "containers": [
                        {
                            "name": name,
                            "image": "registry.k8s.io/pause:3.10",
                            "resources": {"requests": {"cpu": cpu, "memory": memory}},
                        }
                    ]
                },
            },
        },
    }


def loop(name: str, *, mode: str, latency_target: float = 0.25, **extra: Any) -> dict[str, Any]:
    spec: dict[str, Any] = {
        "targetRef": {"kind": "Deployment", "name": name},
        "mode": mode,
        "interval": "5s",
        "objectives": [
            {"name": "latency", "metric": "LatencyP95", "target": latency_target, "weight": 2},
            {"name": "errors", "metric": "ErrorRatio", "target": 0.01, "weight": 4},
            {"name": "cost", "metric": "Cost", "weight": 1},
        ],
        "knobs": {"replicas": {"min": 1, "max": 12}, "cpu": {"min": "100m", "max": "2"}},
        "safety": FAST_SAFETY,
    }
    spec.update(extra)
    return {
        "apiVersion": "autoloop.x0tta6bl4.io/v1alpha1",
        "kind": "OptimizationLoop",
        "metadata": {"name": name},
        "spec": spec,
    }


def apply(control_plane: Any, namespace: str, *objects: dict[str, Any]) -> None:
    for obj in objects:
        control_plane.kubectl("-n", namespace, "apply", "-f", "-", input=json.dumps(obj))


def status(control_plane: Any, namespace: str, name: str) -> dict[str, Any]:
    return dict(opp.get_json(control_plane, namespace, f"oloop/{name}").get("status", {}))


def actions(control_plane: Any, namespace: str, name: str) -> list[str]:
    return [d["action"] for d in status(control_plane, namespace, name).get("decisions", [])]


def event_reasons(control_plane: Any, namespace: str, name: str) -> list[str]:
    out = control_plane.kubectl(
        "-n", namespace, "get", "events", "--field-selector", f"involvedObject.name={name}", "-o", "json"
    ).stdout
    return [
        e["reason"] for e in json.loads(out)["items"] if e["involvedObject"]["kind"] == "OptimizationLoop"
    ]


def replicas_and_cpu(control_plane: Any, namespace: str, name: str) -> tuple[int, str]:
    dep = opp.get_json(control_plane, namespace, f"deployment/{name}")
    container = dep["spec"]["template"]["spec"]["containers"][0]
    return int(dep["spec"]["replicas"]), str(container["resources"]["requests"]["cpu"])


def test_over_provisioned_workload_costs_less_at_the_same_slo(
    control_plane: Any, namespace: str, operator: Any
) -> None:
    # 80 rps × 0.01 core-s = 0.8 cores of work on 6 × 1 core: heavily over-provisioned.
    apply(
        control_plane,
        namespace,
        deployment("over", replicas=6, cpu="1", memory="256Mi", rps=80, cpu_per_request=0.01),
        loop("over", mode="Auto"),
    )

    def cheaper() -> dict[str, Any] | None:
        s = status(control_plane, namespace, "over")
        return (
            s
            if s.get("improvement", {}).get("cost", 0) >= 30
            and "Applied" in actions(control_plane, namespace, "over")
            else None
        )

    s = opp.wait_until(cheaper, timeout=240, interval=2, what="cost improvement ≥ 30 %")
    # Same SLO: the latency and error objectives still meet their targets after the changes.
    opp.wait_until(
        lambda: (lambda v: v["latency"] <= 0.25 and v["errors"] <= 0.01)(
            status(control_plane, namespace, "over")["observed"]
        ),
        timeout=60,
        what="SLO met after cost reduction",
    )
    applied = [d for d in s["decisions"] if d["action"] == "Applied"]
    # Every applied decision carries what it saw, proposed, and the safety verdicts.
    assert all(d["observed"] and d["proposed"] and (d["verdicts"] or d.get("passedRules")) for d in applied)
    assert all(v["passed"] for d in applied for v in d["verdicts"])
    dep = opp.get_json(control_plane, namespace, "deployment/over")
    assert dep["metadata"]["annotations"]["autoloop.x0tta6bl4.io/decision"] == applied[-1]["id"]
    managed_by = dep["metadata"]["annotations"]["autoloop.x0tta6bl4.io/managed-by"]
    assert managed_by == f"OptimizationLoop/{namespace}/over"
    replicas, _ = replicas_and_cpu(control_plane, namespace, "over")
    assert 1 <= replicas <= 12  # knob bounds hold
    events = control_plane.kubectl("-n", namespace, "describe", "oloop", "over").stdout
    assert "Applied" in events.split("Events:")[-1]
    # The learned state lives in the resource (a restarted operator continues from it).
    assert unpack_engine_state(s["engineState"])["iteration"] >= 1
    assert s["modelVersion"].startswith("response-model-v")
    # Sent to every watcher on every write: the whole status stays small.
    assert len(json.dumps(s)) < 8000, {k: len(json.dumps(v)) for k, v in s.items()}


def test_under_provisioned_workload_is_fixed(control_plane: Any, namespace: str, operator: Any) -> None:
    # 120 rps × 0.01 = 1.2 cores of work on 1 pod × 0.4 core (burst 0.6): saturated, errors.
    apply(
        control_plane,
        namespace,
        deployment("under", replicas=1, cpu="400m", memory="256Mi", rps=120, cpu_per_request=0.01),
        loop("under", mode="Auto"),
    )
    opp.wait_until(
        lambda: status(control_plane, namespace, "under").get("observed", {}).get("latency", 0) > 0.25,
        timeout=60,
        what="the SLO to be visibly broken first",
    )

    def fixed() -> dict[str, Any] | None:
        s = status(control_plane, namespace, "under")
        v = s.get("observed", {})
        ok = v and v["latency"] <= 0.25 and v["errors"] <= 0.01
        return s if ok else None

    s = opp.wait_until(fixed, timeout=240, interval=2, what="SLO restored")
    replicas, cpu = replicas_and_cpu(control_plane, namespace, "under")
    assert replicas > 1 or cpu != "400m"
    assert any(d["action"] == "Applied" for d in s["decisions"])


def test_change_that_makes_things_worse_is_rolled_back(
    control_plane: Any, prometheus: Any, namespace: str, operator: Any
) -> None:
    apply(
        control_plane,
        namespace,
        deployment("shaky", replicas=6, cpu="1", memory="256Mi", rps=80, cpu_per_request=0.01),
    )
    # A last good setting is remembered with the load it was good at and rolled back to only at a
    # similar load; a brand-new series' rate[1m] ramps up over its first minute, so the loop
    # starts on a workload whose load reads steady, as a real one's does.
    prometheus.wait_for(
        f'sum(rate(http_requests_total{{namespace="{namespace}"}}[1m])) > 72', bool, timeout=120
    )
    apply(control_plane, namespace, loop("shaky", mode="Auto"))
    opp.wait_until(
        lambda: "Applied" in actions(control_plane, namespace, "shaky"),
        timeout=180,
        interval=1,
        what="a change",
    )
    # Right after the loop shrinks the service, every request becomes four times as expensive
    # (a bad release): measured latency after the settle window breaks the SLO the change relied on.
    control_plane.kubectl(
        "-n",
        namespace,
        "annotate",
        "deployment",
        "shaky",
        "--overwrite",
        "sim.autoloop.x0tta6bl4.io/cpu-per-request=0.04",
    )

    def rolled_back() -> dict[str, Any] | None:
        s = status(control_plane, namespace, "shaky")
        c = opp.condition({"status": s}, "RolledBack")
        return s if c and c["status"] == "True" else None

    s = opp.wait_until(rolled_back, timeout=180, interval=2, what="RolledBack=True")
    rb = [d for d in s["decisions"] if d["action"] == "RolledBack"]
    assert rb and "SLO violated" in rb[-1]["explanation"]
    events = control_plane.kubectl(
        "-n", namespace, "get", "events", "--field-selector", "involvedObject.name=shaky", "-o", "json"
    ).stdout
    assert any(e["reason"] == "RolledBack" for e in json.loads(events)["items"])


def test_recommend_mode_changes_nothing_until_one_decision_is_approved(
    control_plane: Any, namespace: str, operator: Any
) -> None:
    apply(
        control_plane,
        namespace,
        deployment("rec", replicas=6, cpu="1", memory="256Mi", rps=80, cpu_per_request=0.01),
        loop("rec", mode="Recommend"),
    )
    before = opp.get_json(control_plane, namespace, "deployment/rec")
    rec = opp.wait_until(
        lambda: status(control_plane, namespace, "rec").get("recommendation"),
        timeout=180,
        interval=2,
        what="a recommendation",
    )
    time.sleep(12)  # several more passes: still nothing may change on the target
    after = opp.get_json(control_plane, namespace, "deployment/rec")
    assert after["metadata"]["generation"] == before["metadata"]["generation"]
    assert "autoloop.x0tta6bl4.io/decision" not in after["metadata"].get("annotations", {})

    decision_id = status(control_plane, namespace, "rec")["recommendation"]["decisionId"]
    wanted = status(control_plane, namespace, "rec")["recommendation"]["settings"]
    del rec
    control_plane.kubectl(
        "-n", namespace, "annotate", "oloop", "rec", f"autoloop.x0tta6bl4.io/approve={decision_id}"
    )

    def applied() -> dict[str, Any] | None:
        dep = opp.get_json(control_plane, namespace, "deployment/rec")
        return dep if dep["metadata"].get("annotations", {}).get("autoloop.x0tta6bl4.io/decision") else None

    dep = opp.wait_until(applied, timeout=60, what="the approved decision on the target")
    assert dep["metadata"]["annotations"]["autoloop.x0tta6bl4.io/decision"] == f"{decision_id}-approved"
    assert dep["spec"]["replicas"] == wanted["replicas"]
    generation = dep["metadata"]["generation"]
    time.sleep(12)  # exactly once: later passes do not apply it again
    s = status(control_plane, namespace, "rec")
    assert [d["action"] for d in s["decisions"]].count("Approved") == 1
    # The approved recommendation is marked so; a newer one may have replaced it since.
    assert s["recommendation"]["decisionId"] != decision_id or s["recommendation"]["approved"] is True
    assert opp.get_json(control_plane, namespace, "deployment/rec")["metadata"]["generation"] == generation


def test_restart_between_intent_and_apply_applies_exactly_once(
    control_plane: Any, namespace: str, operator: Any
) -> None:
    """A decision recorded as pending but not on the target is applied once; one found on the
    target is only confirmed (as after an operator crash between the two writes); one whose target
    someone else changed meanwhile is abandoned, and their change kept."""
    apply(
        control_plane,
        namespace,
        deployment("crash", replicas=4, cpu="1", memory="256Mi", rps=40, cpu_per_request=0.01),
        deployment("done", replicas=4, cpu="1", memory="256Mi", rps=40, cpu_per_request=0.01),
        deployment("moved", replicas=4, cpu="1", memory="256Mi", rps=40, cpu_per_request=0.01),
        loop("crash", mode="Recommend", suspend=True),
        loop("done", mode="Recommend", suspend=True),
        loop("moved", mode="Recommend", suspend=True),
    )
    for name in ("crash", "done", "moved"):
        opp.wait_until(
            lambda n=name: status(control_plane, namespace, n).get("phase") == "Suspended",
            timeout=60,
            what=f"{name} suspended",
        )
    control_plane.kubectl(
        "-n", namespace, "annotate", "deployment", "done", "autoloop.x0tta6bl4.io/decision=done-000042"
    )
    done_generation = opp.get_json(control_plane, namespace, "deployment/done")["metadata"]["generation"]
    control_plane.kubectl("-n", namespace, "scale", "deployment", "moved", "--replicas=5")
    now = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())
    for name in ("crash", "done", "moved"):
        decision = {
            "id": f"{name}-000042",
            "time": now,
            "action": "Applied",
            "target": f"Deployment/{name}",
            "current": {"replicas": 4, "cpu": "1000m"},
            "proposed": {"replicas": 3, "cpu": "750m"},
            "explanation": "recorded before a simulated crash",
        }
        patch = {"status": {"pendingDecision": decision["id"], "decisions": [decision]}}
        control_plane.kubectl(
            "-n",
            namespace,
            "patch",
            "oloop",
            name,
            "--subresource=status",
            "--type=merge",
            "-p",
            json.dumps(patch),
        )
    # The next pass of each loop resolves its pending decision.
    opp.wait_until(
        lambda: status(control_plane, namespace, "crash").get("pendingDecision") is None,
        timeout=60,
        what="crash resolved",
    )
    for name in ("done", "moved"):
        opp.wait_until(
            lambda n=name: status(control_plane, namespace, n).get("pendingDecision") is None,
            timeout=60,
            what=f"{name} resolved",
        )
    assert replicas_and_cpu(control_plane, namespace, "crash") == (3, "750m")
    crash = opp.get_json(control_plane, namespace, "deployment/crash")
    assert crash["metadata"]["annotations"]["autoloop.x0tta6bl4.io/decision"] == "crash-000042"
    generation = crash["metadata"]["generation"]
    time.sleep(8)
    assert opp.get_json(control_plane, namespace, "deployment/crash")["metadata"]["generation"] == generation
    # The one that had reached its target is not applied a second time.
    assert replicas_and_cpu(control_plane, namespace, "done") == (4, "1")
    assert (
        opp.get_json(control_plane, namespace, "deployment/done")["metadata"]["generation"] == done_generation
    )
    # The decision was made from 4 replicas; someone scaled to 5 since: theirs stands.
    assert replicas_and_cpu(control_plane, namespace, "moved") == (5, "1")
    reasons = event_reasons(control_plane, namespace, "moved")
    assert "Abandoned" in reasons, reasons


def test_patch_on_a_changed_target_is_refused_with_409(control_plane: Any, namespace: str) -> None:
    """Workload patches carry the resourceVersion the decision was made from. The apiserver
    answers 409 to a stale one; when the replicas/resources changed since, that is a Conflict
    (the pass drops it and decides again); when only something else moved, it is retried."""
    from autoloop.api.common import TargetRef
    from autoloop.api.optimizationloop import Settings
    from autoloop.operator import kube
    from autoloop.operator.optimizationloop import patch_target, workload_patch

    apply(
        control_plane,
        namespace,
        deployment("raced", replicas=4, cpu="1", memory="256Mi", rps=40, cpu_per_request=0.01),
    )
    clients = kube.Clients.connect(str(control_plane.kubeconfig))
    ref = TargetRef(kind="Deployment", name="raced")
    seen = kube.read_workload(clients, namespace, ref, None)
    control_plane.kubectl("-n", namespace, "scale", "deployment", "raced", "--replicas=6")
    # The raw patch with the stale resourceVersion: the apiserver itself refuses it.
    raw = workload_patch(seen, Settings(replicas=2), decision_id="raced-000001", owner=f"{namespace}/x")
    with pytest.raises(kube.Conflict):
        kube.patch_workload(clients, namespace, ref, raw)
    with pytest.raises(kube.Conflict, match="changed to"):
        patch_target(clients, seen, Settings(replicas=2), decision_id="raced-000001", owner=f"{namespace}/x")
    assert replicas_and_cpu(control_plane, namespace, "raced") == (6, "1")
    # Only an annotation moved since the read: the 409 is retried and the change lands.
    fresh = kube.read_workload(clients, namespace, ref, None)
    control_plane.kubectl("-n", namespace, "annotate", "deployment", "raced", "team=payments")
    patch_target(clients, fresh, Settings(replicas=2), decision_id="raced-000002", owner=f"{namespace}/x")
    assert replicas_and_cpu(control_plane, namespace, "raced") == (2, "1")


def test_a_target_deleted_or_renamed_after_the_decision_is_not_recreated(
    control_plane: Any, namespace: str
) -> None:
    """Deleted (or renamed: deleted, and a copy made under another name) between the read a
    decision was made from and its patch: the patch finds nothing (TargetNotFound: the pass says
    `Ready=False ApplyFailed`, the next one `TargetFound=False`) and creates nothing under the old
    name; the copy is untouched."""
    from autoloop.api.common import TargetRef
    from autoloop.api.optimizationloop import Settings
    from autoloop.operator import kube
    from autoloop.operator.optimizationloop import patch_target

    apply(
        control_plane,
        namespace,
        deployment("moving", replicas=4, cpu="1", memory="256Mi", rps=40, cpu_per_request=0.01),
    )
    clients = kube.Clients.connect(str(control_plane.kubeconfig))
    seen = kube.read_workload(clients, namespace, TargetRef(kind="Deployment", name="moving"), None)
    apply(
        control_plane,
        namespace,
        deployment("moved", replicas=4, cpu="1", memory="256Mi", rps=40, cpu_per_request=0.01),
    )
    control_plane.kubectl("-n", namespace, "delete", "deployment", "moving", "--wait=true")
    with pytest.raises(kube.TargetNotFound):
        patch_target(clients, seen, Settings(replicas=2), decision_id="moving-000001", owner=f"{namespace}/x")
    gone = control_plane.kubectl("-n", namespace, "get", "deployment", "moving", check=False)
    assert gone.returncode != 0 and "NotFound" in gone.stderr
    assert replicas_and_cpu(control_plane, namespace, "moved") == (4, "1")


def test_loop_without_slo_signals_rightsizes_requests_from_usage(
    control_plane: Any, usage_history: str, operator: Any
) -> None:
    """No latency or error objective: the loop sizes CPU and memory requests from usage with the
    rightsizing recommender (the code bench/rightsizing replays), through the safety validator,
    and leaves replicas alone. The workload (`usage_worker`) has run since the module started."""
    namespace = usage_history
    apply(
        control_plane,
        namespace,
        loop(
            "worker",
            mode="Auto",
            objectives=[{"name": "cost", "metric": "Cost", "weight": 1}],
            knobs={"cpu": {"min": "50m", "max": "2"}, "memory": {"min": "64Mi", "max": "2Gi"}},
            # A young workload: the recommender's confidence grows with days of history. Two
            # changes a day at most: the third step down is refused by the daily budget.
            safety={**FAST_SAFETY, "minConfidence": 0, "maxChangesPerDay": 2},
        ),
    )

    def shrunk() -> dict[str, Any] | None:
        # Counted by the change times the budgets keep: the decision history is bounded by size
        # and may hold only the newest of the two.
        s = status(control_plane, namespace, "worker")
        return s if len(s.get("recentChangeTimes", [])) >= 2 else None

    s = opp.wait_until(shrunk, timeout=300, interval=2, what="two usage-driven changes applied")
    first = next(d for d in s["decisions"] if d["action"] == "Applied")
    assert "rightsize from usage" in first["explanation"], first
    assert "pendingDecision" not in s
    # The newest decision keeps every rule's verdict (older ones only the rules that failed).
    newest = [d for d in s["decisions"] if d["action"] == "Applied"][-1]
    if newest is s["decisions"][-1]:
        rules = {v["rule"] for v in newest["verdicts"]} | set(newest.get("passedRules", []))
        assert rules >= {"ownership", "bounds", "maxStep", "pdbHeadroom"}
    assert all(v["passed"] for d in s["decisions"] if d["action"] == "Applied" for v in d["verdicts"])
    dep = opp.get_json(control_plane, namespace, "deployment/worker")
    requests = dep["spec"]["template"]["spec"]["containers"][0]["resources"]["requests"]
    from autoloop.api.common import parse_quantity

    assert dep["spec"]["replicas"] == 3  # replicas are not the usage loop's to change
    assert parse_quantity(requests["cpu"]) <= 1.0  # two steps of at most 50 % from 2 cores
    assert parse_quantity(requests["memory"]) <= 512 * 2**20
    assert dep["metadata"]["annotations"]["autoloop.x0tta6bl4.io/decision"].startswith("worker-u")

    def refused_for_the_day() -> dict[str, Any] | None:
        s = status(control_plane, namespace, "worker")
        blocked = [d for d in s.get("decisions", []) if d["action"] == "Blocked"]
        refused = [v["reason"] for d in blocked for v in d["verdicts"] if not v["passed"]]
        return s if any("in the last 24h (max 2)" in r for r in refused) else None

    s = opp.wait_until(
        refused_for_the_day, timeout=120, interval=2, what="a third change refused for the day"
    )
    # The decision history is bounded by size (an older Applied may have left it); the change
    # times the budgets count keep every change of the day.
    assert 1 <= [d["action"] for d in s["decisions"]].count("Applied") <= 2
    assert len(s["recentChangeTimes"]) == 2 and s["recentChangeTimes"][-1] == s["lastChangeTime"]
    assert "SafetyBlocked" in {c["type"] for c in s["conditions"] if c["status"] == "True"}
    # The intent written before each change was cleared once the change was made: no decision is
    # left pending, and none was "confirmed after a restart" on a later pass.
    assert "pendingDecision" not in s
    events = control_plane.kubectl("-n", namespace, "describe", "oloop", "worker").stdout
    assert "Applied" in events.split("Events:")[-1] and "Confirmed" not in events.split("Events:")[-1]


def test_a_workload_managed_by_another_controller_is_left_alone(
    control_plane: Any, namespace: str, operator: Any
) -> None:
    """Two controllers changing one Deployment fight: a target whose managed-by annotation names
    someone else (here a ResourceAllocation) is observed by nobody else and never patched."""
    dep = deployment("taken", replicas=6, cpu="1", memory="256Mi", rps=40, cpu_per_request=0.01)
    dep["metadata"]["annotations"]["autoloop.x0tta6bl4.io/managed-by"] = (
        f"ResourceAllocation/{namespace}/shop"
    )
    apply(control_plane, namespace, dep, loop("taken", mode="Auto"))
    generation = opp.get_json(control_plane, namespace, "deployment/taken")["metadata"]["generation"]

    def refused() -> dict[str, Any] | None:
        s = status(control_plane, namespace, "taken")
        c = opp.condition({"status": s}, "Ready")
        return c if c and c["reason"] == "ManagedElsewhere" else None

    ready = opp.wait_until(refused, timeout=60, interval=1, what="Ready=False ManagedElsewhere")
    assert ready["status"] == "False" and f"ResourceAllocation/{namespace}/shop" in ready["message"]
    assert "ManagedElsewhere" in event_reasons(control_plane, namespace, "taken")
    time.sleep(10)  # two more passes
    assert opp.get_json(control_plane, namespace, "deployment/taken")["metadata"]["generation"] == generation
    assert not [
        d for d in status(control_plane, namespace, "taken").get("decisions", []) if d["action"] == "Applied"
    ]


def test_replicas_and_the_requests_an_hpa_scales_on_are_left_to_it(
    control_plane: Any, namespace: str, operator: Any
) -> None:
    """An HPA on CPU utilisation owns the replicas, and CPU requests are what its utilisation is
    relative to: the loop pins both (the over-provisioned service would otherwise shrink)."""
    hpa = {
        "apiVersion": "autoscaling/v2",
        "kind": "HorizontalPodAutoscaler",
        "metadata": {"name": "scaled"},
        "spec": {
            "scaleTargetRef": {"apiVersion": "apps/v1", "kind": "Deployment", "name": "scaled"},
            "minReplicas": 1,
            "maxReplicas": 10,
            "metrics": [
                {
                    "type": "Resource",
                    "resource": {"name": "cpu", "target": {"type": "Utilization", "averageUtilization": 70}},
                }
            ],
        },
    }
    apply(
        control_plane,
        namespace,
        deployment("scaled", replicas=6, cpu="1", memory="256Mi", rps=80, cpu_per_request=0.01),
        hpa,
        loop("scaled", mode="Auto"),
    )

    def pinned() -> dict[str, Any] | None:
        c = opp.condition({"status": status(control_plane, namespace, "scaled")}, "AutoscalerPresent")
        return c if c and c["status"] == "True" else None

    c = opp.wait_until(pinned, timeout=60, interval=1, what="AutoscalerPresent=True")
    assert (
        "HorizontalPodAutoscaler scaled" in c["message"]
        and "replicas, cpu_request left to it" in c["message"]
    )
    time.sleep(20)  # several passes of a loop that would otherwise cut 6 × 1 core
    assert replicas_and_cpu(control_plane, namespace, "scaled") == (6, "1")
    assert "Applied" not in actions(control_plane, namespace, "scaled")
