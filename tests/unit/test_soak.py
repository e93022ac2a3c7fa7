"""bench/soak: the invariant checks over hand-made logs (each must fail on a log that breaks it),
the seeded fault schedule, the watch's attribution of changes, and the RSS window."""

from __future__ import annotations

import dataclasses
import itertools
from pathlib import Path
from typing import Any

import pytest

from bench import _soak_checks as checks
from bench import _soak_faults as faults
from bench import _soak_objects as objects
from bench._soak_cluster import Incarnation
from bench._soak_watch import Recorder
from bench.soak import QUICK, layout, rss_growth

MI = float(2**20)
LOG = Path("operator.log")
POLICY = checks.Policy(
    bounds={"replicas": (1.0, 8.0), "cpu": (0.1, 2.0), "memory": (128 * MI, 1024 * MI)},
    max_step_percent=40.0,
    cooldown_seconds=20.0,
    max_changes_per_hour=8,
)


def knobs(replicas: float, cpu: float = 0.5, memory: float = 256 * MI) -> dict[str, float]:
    return {"replicas": replicas, "cpu": cpu, "memory": memory}


def op(
    t: float,
    before: dict[str, float],
    after: dict[str, float],
    decision: str | None = "d",
    workload: str = "ns/w",
) -> checks.Change:
    return checks.Change(
        t=t,
        workload=workload,
        before=before,
        after=after,
        author="operator",
        decision=decision,
        fresh_decision=True,
    )


# -- attribution ---------------------------------------------------------------------------------------


def test_attribute_tells_the_operator_a_person_and_a_merged_update_apart() -> None:
    base = checks.Snapshot(knobs(3), decision="d1", edit_marker="1")
    assert checks.attribute(base, checks.Snapshot(knobs(3), "d2", "1")) is None  # knobs unchanged
    assert checks.attribute(base, checks.Snapshot(knobs(4), "d2", "1")) == ("operator", True)
    assert checks.attribute(base, checks.Snapshot(knobs(4), "d1", "2")) == ("person", False)
    assert checks.attribute(base, checks.Snapshot(knobs(4), "d2", "2")) == ("unknown", True)
    # The same decision id written again with new knobs: only a repeated application does that.
    assert checks.attribute(base, checks.Snapshot(knobs(4), "d1", "1")) == ("operator", False)


def _deployment(
    replicas: int, cpu: str, *, decision: str | None = None, edit: str | None = None, version: int = 0
) -> dict[str, Any]:
    annotations = {
        k: v for k, v in ((objects.DECISION_ANNOTATION, decision), (objects.EDIT_ANNOTATION, edit)) if v
    }
    return {
        "metadata": {
            "namespace": "ns",
            "name": "w",
            "annotations": annotations,
            "resourceVersion": str(version) if version else "",
        },
        "spec": {
            "replicas": replicas,
            "template": {
                "spec": {"containers": [{"resources": {"requests": {"cpu": cpu, "memory": "256Mi"}}}]}
            },
        },
    }


def test_the_recorder_logs_each_change_with_its_author() -> None:
    r = Recorder()
    r.on_deployment(_deployment(3, "500m"), 1.0)  # the baseline: no change yet
    r.on_deployment(_deployment(3, "500m", decision="w-000001"), 2.0)  # annotation only
    r.on_deployment(_deployment(2, "500m", decision="w-000002"), 3.0)
    r.on_deployment(_deployment(4, "500m", decision="w-000002", edit="1"), 4.0)
    r.on_deployment(_deployment(4, "300m", decision="w-000003", edit="1"), 5.0)
    authors = [(c.t, c.author, c.decision) for c in r.record.changes]
    assert authors == [
        (3.0, "operator", "w-000002"),
        (4.0, "person", "w-000002"),
        (5.0, "operator", "w-000003"),
    ]
    assert r.record.changes[-1].before == knobs(4, 0.5) and r.record.changes[-1].after == knobs(4, 0.3)


def test_a_list_older_than_the_watch_does_not_move_the_recorder_back() -> None:
    """What the first full run's final list did: answered from a revision before a change the
    watch had already shown, it logged that change undone, then redone by the next watch event."""
    r = Recorder()
    r.on_deployment(_deployment(3, "93m", decision="a-1", version=10), 1.0)
    r.on_deployment(_deployment(3, "95m", decision="a-2", version=12), 2.0)
    r.on_deployment(_deployment(3, "93m", decision="a-1", version=11), 3.0, listed=True)  # older
    r.on_deployment(_deployment(3, "95m", decision="a-2", version=13), 4.0)  # a status update
    assert [(c.t, c.decision) for c in r.record.changes] == [(2.0, "a-2")]
    # A newer list still records what the watch had not delivered yet.
    r.on_deployment(_deployment(3, "97m", decision="a-3", version=20), 5.0, listed=True)
    assert [(c.decision, c.listed) for c in r.record.changes][-1] == ("a-3", True)


def test_the_recorder_keeps_each_loop_spec_and_decision() -> None:
    r = Recorder()
    loop = objects.loop("w", "run", interval_s=10)
    loop["metadata"] |= {"namespace": "ns", "generation": 1}
    loop["status"] = {
        "observedGeneration": 1,
        "decisions": [
            {
                "id": "w-000004",
                "time": "2026-01-01T00:00:10Z",
                "action": "Applied",
                "current": {"replicas": 3},
                "proposed": {"replicas": 2, "cpu": "400m"},
            }
        ],
    }
    r.on_loop(loop, 100.0)
    loop["metadata"]["generation"] = 2
    loop["spec"]["knobs"]["replicas"]["max"] = 4
    r.on_loop(loop, 200.0)
    timeline = r.record.loop_timelines["ns/w"]
    assert [p.bounds["replicas"] for _, p in timeline] == [(1.0, 8.0), (1.0, 4.0)]
    d = r.record.decisions[("ns", "w-000004")]
    assert (
        d.action == "Applied"
        and d.proposed == {"replicas": 2.0, "cpu": 0.4}
        and d.current == {"replicas": 3.0}
    )
    assert r.record.observed_generations["OptimizationLoop/ns/w"] == 1


# -- single changes ------------------------------------------------------------------------------------


def test_bounds_hold_within_the_documented_rounding_and_fail_outside() -> None:
    assert checks.bounds_violation(op(0, knobs(4), knobs(5)), [POLICY]) is None
    assert "replicas=9" in (checks.bounds_violation(op(0, knobs(8), knobs(9)), [POLICY]) or "")
    # CPU is written to the nearest millicore: 2.0004 cores is 2000m; 2.001 is over.
    assert checks.bounds_violation(op(0, knobs(4, 1.5), knobs(4, 2.0004)), [POLICY]) is None
    assert checks.bounds_violation(op(0, knobs(4, 1.5), knobs(4, 2.001)), [POLICY]) is not None
    # Memory is rounded up to whole MiB: under 1 MiB over the max is rounding, 2 MiB is not.
    assert checks.bounds_violation(op(0, knobs(4), knobs(4, memory=1024.5 * MI)), [POLICY]) is None
    assert checks.bounds_violation(op(0, knobs(4), knobs(4, memory=1026 * MI)), [POLICY]) is not None
    # An unchanged knob outside its bounds (a person put it there) is not the operator's change.
    assert checks.bounds_violation(op(0, knobs(10, 0.5), knobs(10, 0.6)), [POLICY]) is None
    undeclared = checks.Policy(
        bounds={"replicas": (1.0, 8.0)}, max_step_percent=40, cooldown_seconds=0, max_changes_per_hour=8
    )
    assert "no bounds" in (checks.bounds_violation(op(0, knobs(4), knobs(4, 0.6)), [undeclared]) or "")


def test_bounds_accept_either_spec_around_an_edit() -> None:
    lowered = checks.Policy(
        bounds={**POLICY.bounds, "replicas": (1.0, 4.0)},
        max_step_percent=40,
        cooldown_seconds=20,
        max_changes_per_hour=8,
    )
    change = op(0, knobs(5), knobs(6))
    assert checks.bounds_violation(change, [lowered]) is not None
    assert checks.bounds_violation(change, [POLICY, lowered]) is None


def test_max_step_with_the_one_replica_floor_and_rounding() -> None:
    assert checks.step_violation(op(0, knobs(5), knobs(7)), [POLICY]) is None  # 40 %
    assert "60.0%" in (checks.step_violation(op(0, knobs(5), knobs(8)), [POLICY]) or "")
    assert checks.step_violation(op(0, knobs(2), knobs(3)), [POLICY]) is None  # +1 is always allowed
    assert checks.step_violation(op(0, knobs(2), knobs(4)), [POLICY]) is not None
    assert checks.step_violation(op(0, knobs(4, 1.0), knobs(4, 1.4004)), [POLICY]) is None
    assert checks.step_violation(op(0, knobs(4, 1.0), knobs(4, 1.402)), [POLICY]) is not None
    assert checks.step_violation(op(0, knobs(4, 1.0), knobs(4, 0.5)), [POLICY]) is not None
    assert (
        checks.step_violation(op(0, knobs(4), knobs(4, memory=256 * 1.4 * MI + 0.5 * MI)), [POLICY]) is None
    )
    assert checks.step_violation(op(0, knobs(4), knobs(4, memory=256 * 1.5 * MI)), [POLICY]) is not None


def test_a_decision_made_from_other_settings_than_the_target_had_is_a_lost_update() -> None:
    decision = checks.DecisionRecord(id="d", t=0, action="Applied", current=knobs(4), proposed=knobs(3))
    assert checks.stale_overwrite(op(1, knobs(4), knobs(3)), decision) is None
    # A person scaled to 6 after the decision saw 4: writing 3 over it loses their change.
    assert "replicas=4" in (checks.stale_overwrite(op(1, knobs(6), knobs(3)), decision) or "")
    # The status writes CPU in millicores: 0.5004 cores read as 500m is the same setting.
    assert checks.stale_overwrite(op(1, knobs(4, 0.5004), knobs(3)), decision) is None


def test_the_change_made_must_be_the_one_recorded() -> None:
    decision = checks.DecisionRecord(
        id="d", t=0, action="Applied", current=knobs(4), proposed={"replicas": 3.0, "cpu": 0.4}
    )
    assert checks.applied_mismatch(op(1, knobs(4), knobs(3, 0.4)), decision) is None
    assert checks.applied_mismatch(op(1, knobs(4), knobs(2, 0.4)), decision) is not None


# -- per target ----------------------------------------------------------------------------------------


def test_hourly_budget_counts_a_trailing_hour() -> None:
    assert checks.budget_violations([i * 60.0 for i in range(8)], 8) == []
    assert checks.budget_violations([i * 60.0 for i in range(9)], 8) == [480.0]
    # Nine changes spread over more than an hour: never more than eight in one.
    assert checks.budget_violations([i * 500.0 for i in range(9)], 8) == []


def test_cooldown_exempts_rollbacks_but_counts_them() -> None:
    assert checks.cooldown_violations([(0, False), (20, False), (45, False)], 20, slack=2) == []
    assert checks.cooldown_violations([(0, False), (10, False)], 20, slack=2) == [(10, 10)]
    assert checks.cooldown_violations([(0, False), (5, True)], 20, slack=2) == []
    assert checks.cooldown_violations([(0, False), (5, True), (15, False)], 20, slack=2) == [(15, 10)]


def test_a_decision_id_applied_twice_is_a_double_action() -> None:
    once = [op(1, knobs(4), knobs(3), "d1"), op(30, knobs(3), knobs(2), "d2")]
    assert checks.double_applications(once) == []
    twice = [*once, op(60, knobs(5), knobs(3), "d1")]
    found = checks.double_applications(twice)
    assert [(v.check, v.t) for v in found] == [("doubleApply", 60)]
    # Two workloads may carry the same id (loop ids restart per target): not a double action.
    assert (
        checks.double_applications(
            [op(1, knobs(4), knobs(3), "d1", "a/x"), op(2, knobs(4), knobs(3), "d1", "b/x")]
        )
        == []
    )
    assert [v.check for v in checks.double_applications([op(1, knobs(4), knobs(3), None)])] == [
        "noDecisionId"
    ]


def test_policies_between_covers_every_spec_in_effect() -> None:
    a, b, c = (
        checks.Policy(bounds={}, max_step_percent=p, cooldown_seconds=0, max_changes_per_hour=1)
        for p in (1, 2, 3)
    )
    timeline = [(0.0, a), (100.0, b), (200.0, c)]
    assert checks.policies_between(timeline, 50, 60) == [a]
    assert checks.policies_between(timeline, 90, 150) == [a, b]
    assert checks.policies_between(timeline, 250, 300) == [c]
    assert checks.policies_between(timeline, -10, -5) == [a]
    assert checks.policies_between([], 0, 1) == []


# -- nodes ---------------------------------------------------------------------------------------------

PLANS = {"p": checks.PlanLimits(nodes=frozenset({"n0", "n1"}), max_concurrent=1, horizon_seconds=3600)}


def ns(t: float, node: str, cordoned: bool, by: str | None = "p") -> checks.NodeState:
    return checks.NodeState(t=t, node=node, cordoned=cordoned, cordoned_by=by if cordoned else None)


def test_a_node_cordoned_once_and_resumed_is_one_maintenance() -> None:
    states = [
        ns(1, "n0", True),
        ns(5, "n0", True),
        ns(30, "n0", False),
        ns(40, "n1", True),
        ns(60, "n1", False),
    ]
    episodes = checks.cordon_episodes(states)
    assert [(e.node, e.start, e.end) for e in episodes] == [("n0", 1, 30), ("n1", 40, 60)]
    assert checks.double_drains(episodes, PLANS) == []
    assert checks.concurrency_violations(states, PLANS) == []


def test_a_node_drained_again_within_the_horizon_is_a_double_action() -> None:
    states = [ns(1, "n0", True), ns(30, "n0", False), ns(100, "n0", True), ns(130, "n0", False)]
    found = checks.double_drains(checks.cordon_episodes(states), PLANS)
    assert [(v.check, v.t) for v in found] == [("doubleDrain", 100)]
    later = [ns(1, "n0", True), ns(30, "n0", False), ns(4000, "n0", True)]
    assert checks.double_drains(checks.cordon_episodes(later), PLANS) == []


def test_more_nodes_cordoned_than_max_concurrent_is_a_violation() -> None:
    states = [ns(1, "n0", True), ns(2, "n1", True), ns(3, "n0", False), ns(4, "n1", False)]
    found = checks.concurrency_violations(states, PLANS)
    assert [(v.check, v.t) for v in found] == [("maxConcurrent", 2)]
    # Another owner's cordon does not count against this plan.
    assert checks.concurrency_violations([ns(1, "n0", True), ns(2, "n1", True, by="other")], PLANS) == []


def test_a_plan_cordoning_a_node_it_does_not_select_is_caught() -> None:
    episodes = checks.cordon_episodes([ns(1, "n9", True)])
    assert [v.check for v in checks.foreign_cordons(episodes, PLANS)] == ["foreignNode"]
    assert checks.foreign_cordons(checks.cordon_episodes([ns(1, "n0", True)]), PLANS) == []


# -- generations ---------------------------------------------------------------------------------------


def test_generations_behind_and_edits_never_observed_are_lost_updates() -> None:
    assert checks.generation_lags({"a": (3, 3), "b": (2, 2)}) == []
    assert [v.subject for v in checks.generation_lags({"a": (3, 2), "b": (2, None)})] == ["a", "b"]
    edit = checks.SpecEdit(t=1, resource="a", generation=3, what="knobs.replicas.max=4")
    assert checks.unobserved_edits([edit], {"a": 3}) == []
    assert [v.check for v in checks.unobserved_edits([edit], {"a": 2})] == ["unobservedEdit"]


# -- policies from specs -------------------------------------------------------------------------------


def test_the_soak_loop_spec_reads_as_its_policy() -> None:
    policy = checks.loop_policy(objects.loop("w", "run", interval_s=10)["spec"])
    assert policy.bounds == {"replicas": (1.0, 8.0), "cpu": (0.1, 2.0), "memory": (128 * MI, 1024 * MI)}
    assert (policy.max_step_percent, policy.cooldown_seconds, policy.max_changes_per_hour) == (40.0, 20.0, 8)


def test_allocation_policy_follows_todays_replicas() -> None:
    limits = checks.AllocationLimits(
        min_replicas=1, node_cpu=64, node_memory=256 * 2.0**30, interval_seconds=10
    )
    assert checks.allocation_policy(limits, knobs(3)).bounds["replicas"] == (1.0, 10.0)
    assert checks.allocation_policy(limits, knobs(7)).bounds["replicas"] == (1.0, 14.0)
    policy = checks.allocation_policy(limits, knobs(3))
    assert (policy.max_step_percent, policy.cooldown_seconds, policy.max_changes_per_hour) == (50.0, 9.0, 400)


# -- the whole record ----------------------------------------------------------------------------------


def _record(changes: list[checks.Change], decisions: list[checks.DecisionRecord]) -> checks.Record:
    return checks.Record(
        changes=changes,
        decisions={("ns", d.id): d for d in decisions},
        managers={"ns/w": checks.Manager("OptimizationLoop", "ns/w")},
        loop_timelines={"ns/w": [(0.0, POLICY)]},
        plans=PLANS,
        node_states=[ns(50, "n0", True), ns(60, "n0", False)],
        edits=[checks.SpecEdit(t=5, resource="OptimizationLoop/ns/w", generation=2, what="x")],
        observed_generations={"OptimizationLoop/ns/w": 2},
        final_generations={"OptimizationLoop/ns/w": (2, 2)},
    )


def test_evaluate_passes_a_clean_run_and_counts_each_kind_of_fault() -> None:
    d1 = checks.DecisionRecord(id="w-1", t=100, action="Applied", current=knobs(5), proposed=knobs(4))
    d2 = checks.DecisionRecord(id="w-2", t=130, action="Applied", current=knobs(6), proposed=knobs(5))
    clean = [
        op(101, knobs(5), knobs(4), "w-1"),
        checks.Change(t=110, workload="ns/w", before=knobs(4), after=knobs(6), author="person"),
        op(131, knobs(6), knobs(5), "w-2"),
    ]
    report = checks.evaluate(_record(clean, [d1, d2]))
    assert (report.safety, report.double, report.lost) == ([], [], [])
    assert (report.operator_changes, report.person_changes, report.node_maintenances) == (2, 1, 1)

    d3 = checks.DecisionRecord(id="w-3", t=140, action="Applied", current=knobs(5), proposed=knobs(1))
    dirty = [
        *clean,
        op(141, knobs(5), knobs(1), "w-3"),  # an 80 % step, decided 10 s after the last change
        # w-2 again: decided from 6 while the target had 1, proposed 5 but wrote 6, a 500 % step,
        # and with w-2's decision time it follows w-2 at once.
        op(150, knobs(1), knobs(6), "w-2"),
    ]
    report = checks.evaluate(_record(dirty, [d1, d2, d3]))
    checks_found = sorted(v.check for v in report.safety)
    assert checks_found == ["appliedMismatch", "cooldown", "cooldown", "maxStep", "maxStep"]
    assert [v.check for v in report.double] == ["doubleApply"]
    assert [v.check for v in report.lost] == ["staleOverwrite"]


def test_evaluate_exempts_a_rollback_from_step_and_cooldown() -> None:
    d1 = checks.DecisionRecord(id="w-1", t=100, action="Applied", current=knobs(6), proposed=knobs(4))
    rb = checks.DecisionRecord(id="w-2", t=105, action="RolledBack", current=knobs(4), proposed=knobs(8))
    changes = [op(101, knobs(6), knobs(4), "w-1"), op(106, knobs(4), knobs(8), "w-2")]
    report = checks.evaluate(_record(changes, [d1, rb]))
    assert report.safety == [] and report.rollbacks == 1


def test_evaluate_exempts_a_remedy_the_decision_saw_the_slo_broken_for() -> None:
    # Replicas 2 -> 6 (200 %) 5 s after the last change, while the decision saw the SLO broken:
    # the validator's remedy, exempt from the max step and (no pod restarted) the cooldown.
    d1 = checks.DecisionRecord(id="w-1", t=100, action="Applied", current=knobs(3), proposed=knobs(2))
    d2 = checks.DecisionRecord(
        id="w-2", t=105, action="Applied", current=knobs(2), proposed=knobs(6), slo_broken=True
    )
    changes = [op(101, knobs(3), knobs(2), "w-1"), op(106, knobs(2), knobs(6), "w-2")]
    report = checks.evaluate(_record(changes, [d1, d2]))
    assert report.safety == [] and report.rollbacks == 0
    # Without the broken SLO it is an ordinary change; a remedy that resizes pods keeps the cooldown;
    # a change that also takes something away is no remedy.
    calm = checks.DecisionRecord(id="w-2", t=105, action="Applied", current=knobs(2), proposed=knobs(6))
    assert sorted(v.check for v in checks.evaluate(_record(changes, [d1, calm])).safety) == [
        "cooldown",
        "maxStep",
    ]
    for after, found in ((knobs(6, cpu=1.0), ["cooldown"]), (knobs(6, cpu=0.2), ["cooldown", "maxStep"])):
        other = [op(101, knobs(3), knobs(2), "w-1"), op(106, knobs(2), after, "w-2")]
        decided = dataclasses.replace(d2, proposed=after)
        assert sorted(v.check for v in checks.evaluate(_record(other, [d1, decided])).safety) == found


def test_a_remedy_counts_in_the_hourly_budget_but_is_not_a_violation() -> None:
    times = [i * 60.0 for i in range(10)]
    assert checks.budget_violations(times, 8) == [480.0, 540.0]
    assert checks.budget_violations(times, 8, exempt=[480.0]) == [540.0]


def test_a_decision_read_from_status_knows_whether_it_saw_the_slo_broken() -> None:
    entry = {"id": "w-1", "time": "2026-12-07T10:00:00Z", "action": "Applied", "observed": {"slo_met": 0}}
    assert checks.decision_from_status(entry).slo_broken
    assert not checks.decision_from_status({**entry, "observed": {"slo_met": 1}}).slo_broken
    assert not checks.decision_from_status({**entry, "observed": {}}).slo_broken


def test_evaluate_does_not_judge_one_step_on_a_change_a_relist_may_have_merged() -> None:
    d1 = checks.DecisionRecord(id="w-1", t=100, action="Applied", current=knobs(6), proposed=knobs(5))
    merged = checks.Change(
        t=101,
        workload="ns/w",
        before=knobs(8),
        after=knobs(5),
        author="operator",
        decision="w-1",
        listed=True,
    )
    report = checks.evaluate(_record([merged], [d1]))
    assert (report.safety, report.lost, report.listed_changes) == ([], [], 1)
    watched = checks.Change(
        t=101, workload="ns/w", before=knobs(8), after=knobs(5), author="operator", decision="w-1"
    )
    report = checks.evaluate(_record([watched], [d1]))
    assert [v.check for v in report.lost] == ["staleOverwrite"]


def test_evaluate_flags_a_change_whose_intent_was_never_recorded() -> None:
    report = checks.evaluate(_record([op(101, knobs(5), knobs(4), "w-9")], []))
    assert [v.check for v in report.safety] == ["noIntent"]


# -- schedule, layout, RSS -----------------------------------------------------------------------------


def test_the_fault_schedule_is_reproducible_by_seed() -> None:
    first = faults.schedule(7, 90.0, faults.QUICK_GAPS)
    assert first == faults.schedule(7, 90.0, faults.QUICK_GAPS)
    assert first != faults.schedule(8, 90.0, faults.QUICK_GAPS)
    assert first == sorted(first) and all(0 <= f.at < 90 for f in first)
    kinds = [f.kind for f in first]
    assert kinds.count(faults.APISERVER_RESTART) == 1
    assert 30 <= next(f.at for f in first if f.kind == faults.APISERVER_RESTART) <= 60
    assert 2 <= kinds.count(faults.OPERATOR_KILL) + kinds.count(faults.OPERATOR_RESTART) <= 5
    assert kinds.count(faults.EDIT_REPLICAS) >= 10  # every few seconds
    # Operator restarts stop after two thirds: the last incarnation lives long enough to measure.
    assert all(f.at < 60 for f in first if f.kind in (faults.OPERATOR_KILL, faults.OPERATOR_RESTART))


def test_a_full_schedule_crashes_the_apiserver_every_five_to_eight_minutes() -> None:
    full = faults.schedule(1, 1800.0, faults.gaps_for(1800.0))
    at = [f.at for f in full if f.kind == faults.APISERVER_RESTART]
    assert 3 <= len(at) <= 6
    assert all(300 <= b - a <= 480 for a, b in itertools.pairwise(at))
    restarts = [f for f in full if f.kind in (faults.OPERATOR_KILL, faults.OPERATOR_RESTART)]
    assert any(f.kind == faults.OPERATOR_RESTART for f in restarts) and any(
        f.kind == faults.OPERATOR_KILL for f in restarts
    )


def test_the_quick_layout_spreads_loops_and_keeps_allocations_apart() -> None:
    lay = layout("abc123", QUICK)
    assert len(lay.loops) == 20 and len(lay.allocations) == 2 and len(lay.plans) == 1
    assert len({ns for ns, _ in lay.loops}) >= 2
    assert not {ns for ns, _ in lay.loops} & {ns for ns, _ in lay.allocations}
    assert lay.plans == [("soak-abc123-p0", "kwok-node-0")]


def test_rss_growth_skips_the_first_minute_and_takes_the_longest_life() -> None:
    short = Incarnation(pid=1, started=0, log=LOG, samples=[(70, 100.0), (80, 150.0)])
    long = Incarnation(
        pid=2,
        started=100,
        log=LOG,
        samples=[(110, 50.0), (165, 90.0), (200, 100.0), (400, 112.5)],
    )
    assert rss_growth([short, long]) == (pytest.approx(22.5), 235.0, 2)
    assert rss_growth([Incarnation(pid=3, started=0, log=LOG, samples=[(10, 1.0)])]) == (None, 0.0, 0)
