"""Pure helpers of the MaintenancePlan operator: limits, steps, slots, blockers, queries, drain filter."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import numpy as np
import pytest

from autoloop.api.common import LabelSelector
from autoloop.api.maintenanceplan import (
    Actions,
    MaintenancePlan,
    MaintenancePlanStatus,
    NodeProgress,
    ScheduledSlot,
    WorkloadRestart,
)
from autoloop.metrics.source import MetricsUnavailable, Series
from autoloop.operator import draining, kube, wiring
from autoloop.operator import maintenance_planning as planning
from autoloop.operator import maintenanceplan as mp
from autoloop.simulation.node_exporter import PREFIX, NodeModel, history_openmetrics

NOW = datetime(2026, 1, 5, 3, 0, tzinfo=UTC)


def stamp(minutes: float) -> str:
    return (NOW + timedelta(minutes=minutes)).strftime("%Y-%m-%dT%H:%M:%SZ")


def entry(node: str, step: str, *, started: float = -5, updated: float = -1) -> NodeProgress:
    return NodeProgress(node=node, step=step, started_at=stamp(started), updated_at=stamp(updated))


def plan(**spec: object) -> MaintenancePlan:
    return MaintenancePlan.model_validate({"spec": {"windows": [{"start": "02:00", "end": "05:00"}], **spec}})


@pytest.mark.parametrize(
    ("value", "total", "expected"),
    [
        (3, 10, 3),
        ("10%", 25, 2),  # 2.5 rounds down
        ("10%", 5, 1),  # 0.5 rounds down to 0, but never below 1
        ("50%", 3, 1),  # 1.5 -> 1, as in the scheduler's example
        ("100%", 7, 7),
    ],
)
def test_concurrency_limit(value: int | str, total: int, expected: int) -> None:
    assert mp.concurrency_limit(value, total) == expected


LABELS = {
    "a": {"zone": "z1"},
    "b": {"zone": "z1"},
    "c": {"zone": "z2"},
    "d": {},
}


@pytest.mark.parametrize(
    ("progress", "node", "limit", "groups", "blocked_by"),
    [
        ([], "a", 1, {}, None),
        ([entry("b", "Draining")], "a", 1, {}, "1 of 1 nodes"),
        # Done and Skipped nodes no longer count against the limit.
        ([entry("b", "Done"), entry("c", "Skipped")], "a", 1, {}, None),
        # Room globally, but zone z1 already has its one node.
        ([entry("b", "Cordoned")], "a", 2, {"zone": 1}, "zone=z1"),
        ([entry("c", "Acting")], "a", 2, {"zone": 1}, None),
        # A node without the group's label is limited only globally.
        ([entry("b", "Cordoned")], "d", 2, {"zone": 1}, None),
        ([entry("b", "Uncordoning"), entry("c", "Draining")], "d", 2, {}, "2 of 2 nodes"),
    ],
)
def test_room_for(
    progress: list[NodeProgress], node: str, limit: int, groups: dict[str, int], blocked_by: str | None
) -> None:
    reason = mp.room_for(node, progress=progress, labels=LABELS, limit=limit, group_limits=groups)
    if blocked_by is None:
        assert reason is None
    else:
        assert reason is not None and blocked_by in reason


def test_spacing_wait_counts_from_the_latest_start() -> None:
    progress = [entry("a", "Done", started=-30), entry("b", "Draining", started=-4)]
    # Latest start 4 min ago, spacing 10 min: 6 min to wait.
    assert mp.spacing_wait(progress, min_spacing=timedelta(minutes=10), now=NOW) == timedelta(minutes=6)
    assert mp.spacing_wait(progress, min_spacing=timedelta(minutes=3), now=NOW) == timedelta(0)
    assert mp.spacing_wait([], min_spacing=timedelta(minutes=10), now=NOW) == timedelta(0)


@pytest.mark.parametrize(
    ("actions", "walk"),
    [
        (Actions(), ["Cordoned", "Draining", "Uncordoning", "Done"]),
        (Actions(annotate={"x": "1"}), ["Cordoned", "Draining", "Acting", "Uncordoning", "Done"]),
        (Actions(drain=False, ready_annotation="ok"), ["Cordoned", "Acting", "Uncordoning", "Done"]),
        # Without a cordon there is nothing to uncordon.
        (
            Actions(
                cordon=False, restart_workloads=WorkloadRestart(namespace="shop", selector=LabelSelector())
            ),
            ["Draining", "Acting", "Done"],
        ),
        (Actions(uncordon=False), ["Cordoned", "Draining", "Done"]),
    ],
)
def test_step_transitions(actions: Actions, walk: list[str]) -> None:
    steps, step = [], "Pending"
    while step != "Done":
        step = mp.next_step(step, actions)
        steps.append(step)
    assert steps == walk


def test_due_picks_slots_containing_now_in_start_order() -> None:
    schedule = [
        ScheduledSlot(node="late", start=stamp(30), end=stamp(60)),
        ScheduledSlot(node="b", start=stamp(-1), end=stamp(9)),
        ScheduledSlot(node="a", start=stamp(-10), end=stamp(1)),
        ScheduledSlot(node="over", start=stamp(-20), end=stamp(0)),  # the end is exclusive
    ]
    assert mp.due(schedule, NOW) == ["a", "b"]


def test_resting_nodes_are_active_or_recently_finished() -> None:
    progress = [
        entry("active", "Draining"),
        entry("recent", "Done", updated=-60),
        entry("old", "Done", updated=-25 * 60),
        entry("failed", "Failed", updated=-5),
    ]
    assert mp.resting(progress, cooldown=timedelta(hours=24), now=NOW) == {"active", "recent", "failed"}


def test_window_open() -> None:
    p = plan()
    assert mp.window_open(p, NOW)  # 03:00 in 02:00-05:00
    assert not mp.window_open(p, NOW + timedelta(hours=2))  # 05:00 is the exclusive end
    overnight = plan(windows=[{"start": "22:00", "end": "04:00"}])
    assert mp.window_open(overnight, NOW)


def test_blocker_queries_keep_admin_queries_and_escape_alert_names() -> None:
    # A plan is cluster-scoped: its author may read every namespace, so the query is not pinned.
    p = plan(blockers=[{"query": 'up{job="db"} == 0'}, {"alert": 'Disk"Full'}])
    queries = mp.blocker_queries(p)
    assert queries[0] == 'up{job="db"} == 0'
    assert queries[1] == 'ALERTS{alertname="Disk\\"Full",alertstate="firing"}'


def test_node_queries_escape_the_node_name() -> None:
    queries = planning.node_queries('evil"} or vector(1) or {"')
    assert 'instance="evil\\"} or vector(1) or {\\""' in queries["node_filesystem_avail_bytes"]


@pytest.mark.parametrize(
    ("spec", "minutes"),
    [
        ({}, 10.0),  # drain timeout 10m
        ({"drain": {"timeout": "2m"}}, 10.0),  # floored at MIN_DURATION_MINUTES
        ({"drain": {"timeout": "20m"}, "actions": {"readyAnnotation": "ok", "readyTimeout": "15m"}}, 35.0),
    ],
)
def test_duration_minutes(spec: dict[str, object], minutes: float) -> None:
    assert planning.duration_minutes(plan(**spec)) == minutes


def pod(name: str, **kw: object) -> draining.Pod:
    return draining.Pod(namespace="ns", name=name, **kw)  # type: ignore[arg-type]


def test_to_evict_skips_daemonsets_mirrors_finished_and_unselected_pods() -> None:
    pods = [
        pod("web", labels={"app": "web"}, owner_kinds=("ReplicaSet",)),
        pod("agent", owner_kinds=("DaemonSet",)),
        pod("static", mirror=True),
        pod("job", finished=True),
        pod("db", labels={"app": "db"}),
    ]
    assert [p.name for p in draining.to_evict(pods, None)] == ["web", "db"]
    only_web = LabelSelector(match_labels={"app": "web"})
    assert [p.name for p in draining.to_evict(pods, only_web)] == ["web"]


def test_budget_pods_counts_covered_pods_per_budget() -> None:
    budget = draining.Budget(
        key="ns/web",
        selector=LabelSelector(match_labels={"app": "web"}),
        namespace="ns",
        disruptions_allowed=1,
    )
    other_ns = draining.Budget(
        key="other/web",
        selector=LabelSelector(match_labels={"app": "web"}),
        namespace="other",
        disruptions_allowed=1,
    )
    pods = [
        pod("w1", labels={"app": "web"}),
        pod("w2", labels={"app": "web"}),
        pod("d", labels={"app": "db"}),
    ]
    assert draining.budget_pods(pods, [budget, other_ns]) == {"ns/web": 2}


def test_node_model_fills_from_a_flat_history() -> None:
    ref = 1_800_000_000.0
    model = NodeModel.from_annotations(
        {PREFIX + "disk-used": "0.9", PREFIX + "disk-fill-rate": "0.02", PREFIX + "reference-time": str(ref)},
        default_reference=0.0,
    )
    assert model.disk_used_at(ref) == pytest.approx(0.9)
    assert model.disk_used_at(ref - 10 * 3600) == pytest.approx(0.7)  # 0.9 - 10 h * 2 %/h
    assert model.disk_used_at(ref - 40 * 3600) == pytest.approx(0.4)  # flat at the baseline before the fill
    assert model.disk_used_at(ref + 10 * 3600) == pytest.approx(0.999)  # capped, never over full
    bad = NodeModel.from_annotations({PREFIX + "temperature": "hot"}, default_reference=5.0)
    assert bad.temperature == 45.0 and bad.reference_time == 5.0


def test_history_openmetrics_groups_families_and_carries_target_labels() -> None:
    text = history_openmetrics(
        {"n1": NodeModel()}, start=0.0, end=600.0, step=300.0, extra_labels={"job": "sim"}
    )
    lines = text.splitlines()
    assert lines[-1] == "# EOF"
    avail = [line for line in lines if line.startswith("node_filesystem_avail_bytes{")]
    assert len(avail) == 3  # t = 0, 300, 600
    assert 'job="sim"' in avail[0] and 'instance="n1"' in avail[0]
    # Each family's samples follow its one TYPE line (OpenMetrics forbids interleaving).
    types = [line for line in lines if line.startswith("# TYPE")]
    assert len(types) == len(set(types)) == 7


class FakeSource:
    """Answers by query substring: a float, or a MetricsUnavailable reason to raise."""

    def __init__(self, answers: dict[str, float | str]) -> None:
        self.answers = answers

    def _answer(self, query: str) -> float:
        for key, value in self.answers.items():
            if key in query:
                if isinstance(value, str):
                    raise MetricsUnavailable(value, f"{value}: {query}")
                return value
        raise MetricsUnavailable("NoData", f"no series: {query}")

    def instant(self, query: str, *, at: float | None = None) -> float:
        return self._answer(query)

    def range(self, query: str, *, start: float, end: float, step: float) -> Series:
        value = self._answer(query)
        stamps = np.arange(start, end + 1, step)
        return Series(timestamps=stamps, values=np.full(len(stamps), value))


def node(name: str) -> kube.Node:
    return kube.Node(name, {}, {}, 1.0, 1.0, 10, False, True)


def test_prometheus_down_means_unknown_not_healthy() -> None:
    obs = planning.observe(
        FakeSource({"vector(1)": "PrometheusUnreachable"}),
        [node("a")],
        horizon_hours=24.0,
        now=NOW.timestamp(),
    )
    assert obs.down is not None and obs.down.startswith("PrometheusUnreachable")
    assert obs.unknown == ["a"] and obs.predictions == {}


def test_a_node_without_series_is_unknown() -> None:
    obs = planning.observe(
        FakeSource({"vector(1)": 1.0}), [node("a"), node("b")], horizon_hours=24.0, now=NOW.timestamp()
    )
    assert obs.down is None
    assert obs.unknown == ["a", "b"] and obs.predictions == {}


@pytest.mark.parametrize(
    ("answers", "blocked", "reason"),
    [
        ({"vector(1)": 1.0}, False, "Clear"),  # the blocker query has no series
        ({"pending_jobs": 3.0}, True, "BlockerFiring"),
        ({"pending_jobs": "AmbiguousResult"}, True, "BlockerFiring"),  # several series: still fires
        ({"pending_jobs": "PrometheusUnreachable"}, True, "BlockerFailed"),  # a failed query blocks
    ],
)
def test_check_blockers(answers: dict[str, float | str], blocked: bool, reason: str) -> None:
    p = plan(blockers=[{"query": "pending_jobs > 0"}])
    pass_ = wiring.Pass(
        resource=p, namespace="ns", name="x", generation=1, now=NOW, status=MaintenancePlanStatus()
    )
    assert mp.check_blockers(pass_, FakeSource(answers)) is blocked
    cond = pass_.status.condition("Blocked")
    assert cond is not None and cond.reason == reason


def _pod(name: str, *, terminating: bool = False) -> draining.Pod:
    return draining.Pod(namespace="shop", name=name, uid=f"uid-{name}", terminating=terminating)


def test_a_drain_cut_short_by_a_crash_counts_the_evictions_it_made_once() -> None:
    # The round meant to evict a, b and c (saved before it evicted them); it evicted a (gone) and b
    # (terminating), then the operator died before saving the count.
    entry = NodeProgress(node="n1", step="Draining", evicted=1, evicting=["uid-a", "uid-b", "uid-c"])
    mp.Executor.count_interrupted_evictions(entry, [_pod("b", terminating=True), _pod("c"), _pod("d")])
    assert entry.evicted == 3 and entry.evicting == ["uid-c"]
    # The next look finds nothing new: nothing counted twice.
    mp.Executor.count_interrupted_evictions(entry, [_pod("c"), _pod("d")])
    assert entry.evicted == 3 and entry.evicting == ["uid-c"]
    untouched = NodeProgress(node="n2", step="Draining", evicted=4)
    mp.Executor.count_interrupted_evictions(untouched, [])
    assert untouched.evicted == 4
