"""Operator pieces that need no cluster: due-ness, status writes, settings, spec checks."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from autoloop.api.common import Decision
from autoloop.api.maintenanceplan import MaintenancePlan
from autoloop.api.optimizationloop import OptimizationLoop, OptimizationLoopStatus
from autoloop.engines import loop as engine
from autoloop.operator import maintenanceplan, optimizationloop, wiring
from autoloop.operator.settings import OperatorSettings

NOW = datetime(2026, 11, 25, 12, 0, tzinfo=UTC)


def _status(generation: int, seconds_ago: float | None) -> OptimizationLoopStatus:
    last = (
        None if seconds_ago is None else (NOW - timedelta(seconds=seconds_ago)).strftime("%Y-%m-%dT%H:%M:%SZ")
    )
    return OptimizationLoopStatus(observed_generation=generation, last_run_time=last)


@pytest.mark.parametrize(
    ("status", "generation", "due"),
    [
        (_status(1, None), 1, True),  # never ran
        (_status(1, 10), 2, True),  # spec changed: run now, whatever the interval
        (_status(1, 10), 1, False),  # ran 10 s ago, interval 30 s
        (_status(1, 30), 1, True),  # interval elapsed
    ],
)
def test_is_due(status: OptimizationLoopStatus, generation: int, due: bool) -> None:
    assert wiring.is_due(status, interval="30s", generation=generation, now=NOW) is due


def test_waiting_resource_is_retried_before_its_interval() -> None:
    # Interval 5m; the last pass 20 s ago was waiting for metrics: retry (15 s), don't wait 5 minutes.
    waiting = _status(1, 20)
    waiting.phase = "Waiting"
    assert wiring.is_due(waiting, interval="5m", generation=1, now=NOW)
    healthy = _status(1, 20)
    healthy.phase = "Observing"
    assert not wiring.is_due(healthy, interval="5m", generation=1, now=NOW)


def test_status_patch_removes_keys_no_longer_set() -> None:
    previous = {"message": "old", "phase": "Waiting", "observedGeneration": 1}
    status = OptimizationLoopStatus(observed_generation=1, phase="Observing")
    patch = wiring.status_patch(status, previous)
    # message is gone (merge-patch null), phase changed, unchanged keys are not re-sent.
    assert patch["message"] is None
    assert patch["phase"] == "Observing"
    assert "observedGeneration" not in patch


def test_settings_from_env_and_validate() -> None:
    s = OperatorSettings.from_env(
        {
            "AUTOLOOP_PROMETHEUS_URL": "http://p:9090",
            "AUTOLOOP_NAMESPACES": "a, b",
            "AUTOLOOP_TICK_SECONDS": "2.5",
        }
    )
    assert (s.prometheus_url, s.namespaces, s.tick_seconds) == ("http://p:9090", ["a", "b"], 2.5)
    s.validate()
    with pytest.raises(ValueError, match="http"):
        OperatorSettings(prometheus_url="p:9090").validate()
    assert OperatorSettings.from_env({"AUTOLOOP_WORKERS": "64"}).workers == 64
    with pytest.raises(ValueError, match="workers"):
        OperatorSettings(workers=0).validate()


def test_kopf_runs_as_many_passes_at_once_as_the_settings_say() -> None:
    import kopf

    from autoloop.operator.runner import configure_kopf

    settings = kopf.OperatorSettings()
    configure_kopf(settings, workers=48)
    assert settings.execution.max_workers == 48
    configure_kopf(settings)
    assert settings.execution.max_workers == OperatorSettings.workers


def _loop(query: str) -> OptimizationLoop:
    return OptimizationLoop.model_validate(
        {
            "spec": {
                "targetRef": {"name": "web"},
                "objectives": [{"name": "q", "query": query}],
                "knobs": {"replicas": {"min": 1, "max": 3}},
            }
        }
    )


def test_loop_spec_problems_refuse_foreign_namespace_query() -> None:
    problems = optimizationloop.spec_problems(_loop('up{namespace="kube-system"}'), "team-a")
    assert len(problems) == 1 and "objective q" in problems[0] and "kube-system" in problems[0]
    assert optimizationloop.spec_problems(_loop("up"), "team-a") == []


def test_plan_spec_problems_unknown_time_zone_bad_blocker_and_a_namespace() -> None:
    plan = MaintenancePlan.model_validate(
        {
            "spec": {
                "nodes": ["n1"],
                "windows": [{"start": "01:00", "end": "02:00", "timeZone": "Nowhere/City"}],
                "blockers": [{"query": "up{"}],
            }
        }
    )
    problems = maintenanceplan.spec_problems(plan, "")
    assert any("unknown time zone" in p for p in problems)
    assert any(p.startswith("blockers[0]: not valid PromQL") for p in problems)
    # An object of the kind in a namespace (an old namespaced CRD still served) is never acted on.
    assert any("cluster-scoped" in p for p in maintenanceplan.spec_problems(plan, "ns"))


def _stamp(seconds_ago: float) -> str:
    return (NOW - timedelta(seconds=seconds_ago)).strftime("%Y-%m-%dT%H:%M:%SZ")


def test_applied_changes_are_remembered_for_a_day_for_the_change_budgets() -> None:
    loop = _loop("rate(http_requests_total[1m])")
    status = OptimizationLoopStatus(recent_change_times=[_stamp(90_000), _stamp(7_200)])
    p = optimizationloop.LoopPass(loop, "shop", "web", 1, NOW, status)
    optimizationloop.note_change(p, NOW)
    # The change of 25 h ago is dropped, the one of 2 h ago kept, the new one appended.
    assert status.recent_change_times == [_stamp(7_200), _stamp(0)]
    assert status.last_change_time == _stamp(0)
    # A status written before recentChangeTimes existed: its last hour's applied decisions count too,
    # a blocked decision and an applied one older than an hour do not, and nothing counts twice.
    status.decisions = [
        Decision(id="a", time=_stamp(4_000), action="Applied"),
        Decision(id="b", time=_stamp(600), action="Blocked"),
        Decision(id="c", time=_stamp(300), action="Applied"),
        Decision(id="d", time=_stamp(0), action="Applied"),
    ]
    t = NOW.timestamp()
    assert optimizationloop.remembered_changes(p) == (t - 7_200, t - 300, t)
    # Bounded like the CRD says (maxItems), newest kept.
    for k in range(150):
        optimizationloop.note_change(p, NOW + timedelta(seconds=k))
    assert len(status.recent_change_times) == engine.MAX_CHANGE_TIMES
    assert status.recent_change_times[-1] == (NOW + timedelta(seconds=149)).strftime("%Y-%m-%dT%H:%M:%SZ")
