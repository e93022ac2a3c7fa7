"""The API models: parsing helpers, conditions, selectors, windows, defaults."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta

import pytest
from pydantic import ValidationError

from autoloop.api.common import (
    ConditionStatus,
    Decision,
    LabelSelector,
    RuleVerdict,
    StatusBase,
    format_cpu,
    format_memory,
    parse_duration,
    parse_quantity,
)
from autoloop.api.maintenanceplan import MaintenancePlan, Window
from autoloop.api.optimizationloop import (
    OptimizationLoop,
    OptimizationLoopStatus,
    pack_engine_state,
    unpack_engine_state,
)

NOW = datetime(2026, 11, 25, 12, 0, tzinfo=UTC)  # a Wednesday


@pytest.mark.parametrize(
    ("text", "value"),
    [
        ("250m", 0.25),
        ("1", 1.0),
        (2, 2.0),
        ("1.5", 1.5),
        ("512Mi", 512 * 2**20),
        ("1Gi", 2**30),
        ("2G", 2e9),
        ("100k", 1e5),
    ],
)
def test_parse_quantity(text: str | int, value: float) -> None:
    assert parse_quantity(text) == pytest.approx(value)


@pytest.mark.parametrize("text", ["lots", "1.5.2", "-1", "1 Gi", "Gi"])
def test_parse_quantity_refuses_garbage(text: str) -> None:
    with pytest.raises(ValueError, match="invalid quantity"):
        parse_quantity(text)


@pytest.mark.parametrize(
    ("text", "seconds"),
    [("30s", 30), ("5m", 300), ("1h30m", 5400), ("250ms", 0.25), ("1.5h", 5400)],
)
def test_parse_duration(text: str, seconds: float) -> None:
    assert parse_duration(text).total_seconds() == pytest.approx(seconds)


@pytest.mark.parametrize("text", ["1d", "every minute", "", "5"])
def test_parse_duration_refuses_garbage(text: str) -> None:
    with pytest.raises(ValueError, match="invalid duration"):
        parse_duration(text)


def test_format_rounds_requests_up_never_down() -> None:
    # 3 MiB + 1 byte must not become 3Mi: a request never shrinks by formatting.
    assert format_memory(3 * 2**20 + 1) == "4Mi"
    assert format_memory(3 * 2**20) == "3Mi"
    assert format_cpu(0.2504) == "250m"
    assert format_cpu(0.0001) == "1m"


def test_condition_transition_time_moves_only_on_status_change() -> None:
    status = StatusBase()
    assert status.set_condition("Ready", "False", "Waiting", "a", generation=1, now=NOW)
    first = status.condition("Ready")
    assert first is not None and first.last_transition_time == "2026-11-25T12:00:00Z"
    # Same status and reason an hour later: no transition, no Event.
    assert not status.set_condition(
        "Ready", "False", "Waiting", "b", generation=2, now=NOW + timedelta(hours=1)
    )
    again = status.condition("Ready")
    assert again is not None
    assert again.last_transition_time == "2026-11-25T12:00:00Z"
    assert again.message == "b" and again.observed_generation == 2
    # Status flips: transition time moves.
    assert status.set_condition("Ready", "True", "Observing", "c", generation=2, now=NOW + timedelta(hours=2))
    flipped = status.condition("Ready")
    assert flipped is not None and flipped.status == ConditionStatus.TRUE
    assert flipped.last_transition_time == "2026-11-25T14:00:00Z"
    assert len(status.conditions) == 1


def test_decision_history_is_bounded() -> None:
    from autoloop.api.common import Decision

    status = StatusBase()
    for i in range(StatusBase.HISTORY_LIMIT + 7):
        status.record(Decision(id=f"d{i}", time="t", action="Recommended"))
    assert len(status.decisions) == StatusBase.HISTORY_LIMIT
    assert status.decisions[-1].id == f"d{StatusBase.HISTORY_LIMIT + 6}"  # newest kept, oldest dropped


@pytest.mark.parametrize(
    ("selector", "labels", "matches"),
    [
        ({"matchLabels": {"a": "1"}}, {"a": "1", "b": "2"}, True),
        ({"matchLabels": {"a": "1"}}, {"a": "2"}, False),
        ({"matchExpressions": [{"key": "a", "operator": "In", "values": ["1", "3"]}]}, {"a": "3"}, True),
        ({"matchExpressions": [{"key": "a", "operator": "NotIn", "values": ["1"]}]}, {"a": "1"}, False),
        ({"matchExpressions": [{"key": "a", "operator": "Exists"}]}, {}, False),
        ({"matchExpressions": [{"key": "a", "operator": "DoesNotExist"}]}, {}, True),
    ],
)
def test_label_selector(selector: dict[str, object], labels: dict[str, str], matches: bool) -> None:
    assert LabelSelector.model_validate(selector).matches(labels) is matches


def test_label_selector_query_string() -> None:
    sel = LabelSelector.model_validate(
        {
            "matchLabels": {"tier": "frontend"},
            "matchExpressions": [{"key": "env", "operator": "In", "values": ["a", "b"]}],
        }
    )
    assert sel.to_query() == "tier=frontend,env in (a,b)"


def test_window_openings_respect_days_and_time_zone() -> None:
    # Mon and Wed 02:00-05:00 Berlin (UTC+1 in November). At Wed 12:00 UTC today's window is over,
    # so the next openings are Mon 30 Nov and Wed 2 Dec, at 01:00 UTC.
    w = Window(days=["Mon", "Wed"], start="02:00", end="05:00", time_zone="Europe/Berlin")
    starts = [s.astimezone(UTC).isoformat() for s, _ in w.openings(NOW, days=7)]
    assert starts == ["2026-11-30T01:00:00+00:00", "2026-12-02T01:00:00+00:00"]


def test_window_inside_opening_is_reported() -> None:
    w = Window(start="11:00", end="13:00")
    start, end = w.openings(NOW, days=1)[0]
    assert start <= NOW < end


def test_window_unknown_time_zone() -> None:
    with pytest.raises(ValueError, match="unknown time zone"):
        Window(start="01:00", end="02:00", time_zone="Mars/Olympus").zone()


def test_loop_defaults_fill_in() -> None:
    loop = OptimizationLoop.model_validate(
        {
            "spec": {
                "targetRef": {"name": "web"},
                "objectives": [{"name": "latency", "metric": "LatencyP95"}],
                "knobs": {"replicas": {"min": 1, "max": 3}},
            }
        }
    )
    assert loop.spec.mode == "Recommend"
    assert loop.spec.interval == "1m"
    assert loop.spec.safety.cooldown == "5m"
    assert loop.spec.target_ref.kind == "Deployment"
    assert loop.status.conditions == []


def test_loop_refuses_unknown_metric() -> None:
    with pytest.raises(ValidationError):
        OptimizationLoop.model_validate(
            {
                "spec": {
                    "targetRef": {"name": "web"},
                    "objectives": [{"name": "x", "metric": "Happiness"}],
                    "knobs": {"replicas": {"min": 1, "max": 3}},
                }
            }
        )


def test_overnight_window_ends_next_day() -> None:
    # 22:00-06:00 UTC on Wednesdays: the opening that starts Wed 22:00 ends Thu 06:00.
    w = Window(days=["Wed"], start="22:00", end="06:00")
    start, end = w.openings(NOW, days=1)[0]
    assert (start.isoformat(), end.isoformat()) == ("2026-11-25T22:00:00+00:00", "2026-11-26T06:00:00+00:00")


def _plan(**spec: object) -> dict[str, object]:
    return {"spec": {"nodes": ["n1"], "windows": [{"start": "01:00", "end": "02:00"}], **spec}}


@pytest.mark.parametrize(
    ("spec", "fragment"),
    [
        ({"maxConcurrent": 0}, "maxConcurrent must allow at least one node"),
        ({"maxConcurrent": "0%"}, "maxConcurrent must allow at least one node"),
        ({"maxConcurrent": "101%"}, "maxConcurrent must allow at least one node"),
        ({"actions": {"annotate": {"bad key!": "x"}}}, "is not a qualified name"),
        ({"actions": {"annotate": {"node.alpha.kubernetes.io/ttl": "0"}}}, "reserved prefix"),
        ({"actions": {"annotate": {"kubernetes.io/role": "x"}}}, "reserved prefix"),
        ({"actions": {"annotate": {"k8s.io/x": "x"}}}, "reserved prefix"),
        ({"actions": {"annotate": {"autoloop.x0tta6bl4.io/cordoned-by": "x"}}}, "reserved prefix"),
        ({"actions": {"readyAnnotation": "kubernetes.io/hostname"}}, "reserved prefix"),
        ({"actions": {"restartWorkloads": {"selector": {}}}}, "namespace"),
    ],
)
def test_maintenance_plan_refuses_what_the_schema_refuses(spec: dict[str, object], fragment: str) -> None:
    """The pydantic models refuse what the CRD's CEL rules refuse, so library users and an operator
    facing an older CRD get the same answer."""
    with pytest.raises(ValidationError, match=fragment):
        MaintenancePlan.model_validate(_plan(**spec))


@pytest.mark.parametrize("value", [1, "3", "1%", "100%"])
def test_maintenance_plan_accepts_sane_concurrency(value: int | str) -> None:
    assert MaintenancePlan.model_validate(_plan(maxConcurrent=value)).spec.max_concurrent == value


def test_maintenance_plan_is_the_only_cluster_scoped_kind() -> None:
    from autoloop.api.crd import custom_resource_definition
    from autoloop.api.resourceallocation import ResourceAllocation

    scopes = {
        k.KIND: custom_resource_definition(k)["spec"]["scope"]
        for k in (OptimizationLoop, ResourceAllocation, MaintenancePlan)
    }
    assert scopes == {
        "OptimizationLoop": "Namespaced",
        "ResourceAllocation": "Namespaced",
        "MaintenancePlan": "Cluster",
    }


@pytest.mark.parametrize(
    ("selector", "fragment"),
    [
        ({"matchLabels": {"$": "web"}}, "label key '\\$' is not a qualified name"),
        ({"matchLabels": {"app": 'web" or x'}}, "is not valid"),
        ({"matchLabels": {"app": "a" * 64}}, "is not valid"),
        ({"matchExpressions": [{"key": "bad key", "operator": "In", "values": ["a"]}]}, "pattern"),
        ({"matchExpressions": [{"key": "app", "operator": "In", "values": ["-x"]}]}, "is not valid"),
    ],
)
def test_label_selectors_follow_the_apiservers_label_rules(
    selector: dict[str, object], fragment: str
) -> None:
    """Refused when the resource is read, not by the list call of every pass (which answers 400)."""
    with pytest.raises(ValidationError, match=fragment):
        LabelSelector.model_validate(selector)


def test_valid_label_selectors_pass() -> None:
    selector = LabelSelector.model_validate(
        {
            "matchLabels": {"app.kubernetes.io/name": "web", "tier": ""},
            "matchExpressions": [{"key": "zone", "operator": "In", "values": ["a-1", "b_2.x"]}],
        }
    )
    assert selector.to_query() == "app.kubernetes.io/name=web,tier=,zone in (a-1,b_2.x)"


def _decision(i: int, *, failing: int = 0) -> Decision:
    return Decision(
        id=f"web-{i:06d}",
        time="2026-12-07T10:00:00Z",
        action="Applied",
        observed={"rps": 26.4, "latency_p95": 0.0915, "cpu_per_pod": 0.0661},
        current={"replicas": 4},
        proposed={"replicas": 2},
        verdicts=[
            RuleVerdict(rule=f"rule{k}", passed=k >= failing, reason="a reason " * 5) for k in range(10)
        ],
        explanation="x" * 400,
    )


def test_loop_decision_history_is_bounded_by_size_and_keeps_the_newest_whole() -> None:
    status = OptimizationLoopStatus()
    for i in range(30):
        status.record(_decision(i))
    wired = [d.wire() for d in status.decisions]
    assert len(json.dumps(wired)) <= OptimizationLoopStatus.DECISIONS_BUDGET_BYTES
    assert status.decisions[-1] == _decision(29), "the newest decision is kept whole"
    assert len(status.decisions) >= 2
    assert len(status.decisions) >= 3, "older decisions are compacted to a few hundred bytes"
    for older in status.decisions[:-1]:
        assert older.verdicts == [] and len(older.explanation) == 200
        assert older.observed == {} and older.proposed == {"replicas": 2}
    # A refusal keeps the rules that failed in history.
    status.record(_decision(30, failing=2))
    status.record(_decision(31))
    assert [v.rule for v in status.decisions[-2].verdicts] == ["rule0", "rule1"]
    # One decision larger than the budget on its own is still kept.
    huge = _decision(32).model_copy(update={"explanation": "y" * 4000})
    status.record(huge)
    assert status.decisions[-1] == huge


def test_engine_state_is_stored_compressed_and_read_back() -> None:
    state = {"iteration": 7, "history": [{"t": float(i), "rps": 26.4 + i} for i in range(50)]}
    packed = pack_engine_state(state)
    assert set(packed) == {"z"}
    assert len(json.dumps(packed)) < len(json.dumps(state)) / 2
    assert unpack_engine_state(packed) == state
    assert unpack_engine_state(state) == state, "a state an older operator wrote uncompressed"
    assert unpack_engine_state(None) == {}
    with pytest.raises(ValueError, match=r"engineState\.z"):
        unpack_engine_state({"z": "not base64!"})
    with pytest.raises(ValueError, match=r"engineState\.z"):
        unpack_engine_state({"z": "aGVsbG8="})  # base64 of something that is not zlib


def _anomaly(metric: str, start: float, end: float | None) -> dict[str, object]:
    return {
        "service": "web",
        "metric": metric,
        "kind": "latency",
        "direction": "up",
        "start": start,
        "detected_at": start + 30.0,
        "end": end,
        "peak_z": 7.5,
        "severity": "critical",
        "explained_by_load": metric == "error_rate",
        "benign": False,
        "explanation": f"web/{metric} rose 3.1x over its reference since t={start:.0f}s " * 3,
    }


def _full_loop_status() -> OptimizationLoopStatus:
    """A loop status at full history, composed as the scale bench found them (run 6, p99 of each
    field: decisions 2.2, conditions 1.6, anomalies 1.3, engine state 1.1, analysis 0.9 kB)."""
    status = OptimizationLoopStatus(
        recent_change_times=[f"2026-12-07T{h:02d}:00:00Z" for h in range(8)],
        anomalies=[
            _anomaly("latency_p95", 1000.0, None),
            _anomaly("error_rate", 1100.0, None),
            _anomaly("cpu", 500.0, 700.0),
            _anomaly("memory", 300.0, 400.0),
        ],
        analysis={
            "causes": [
                {"service": s, "score": 0.9 - i / 10, "explanation": "e" * 100, "evidence": ["v" * 80] * 3}
                for i, s in enumerate(["db", "web", "cache"])
            ],
            "confident": True,
        },
        # 1.1 kB of engine state that does not compress, as the bench measured.
        engine_state={"z": "".join(f"{(i * 7919) % 104729:x}" for i in range(300))[:1100]},
    )
    for i in range(30):
        status.record(_decision(i))
    for kind in ("Ready", "TargetFound", "MetricsAvailable"):
        status.set_condition(kind, "True", "Reason", "m" * 80, generation=1, now=NOW)
    status.set_condition("AnomalyDetected", "True", "Active", "a" * 1000, generation=1, now=NOW)
    return status


def test_a_loop_status_is_cut_to_its_budget_and_keeps_what_the_next_pass_acts_on() -> None:
    status = _full_loop_status()
    before = status.model_copy(deep=True)
    assert status.json_bytes() > 7000
    cut = status.fit_to_budget()
    assert status.json_bytes() <= (OptimizationLoopStatus.STATUS_BUDGET_BYTES or 0)
    assert cut, "what was cut is reported"
    # Never cut: the newest decision whole, the engine state, the change times, the active anomalies'
    # starts (the next pass keeps them out of its reference) and the top root cause.
    newest = status.decisions[-1]
    whole = _decision(29)
    assert newest.model_dump(exclude={"verdicts", "passed_rules"}) == whole.model_dump(
        exclude={"verdicts", "passed_rules"}
    )
    assert newest.verdicts == [] and newest.passed_rules == [v.rule for v in whole.verdicts], (
        "every rule that passed, by name: their reasons went"
    )
    # The older decisions list no rule that passed: that goes without saying in history.
    assert all(d.passed_rules is None and d.verdicts == [] for d in status.decisions[:-1])
    assert status.engine_state == before.engine_state
    assert status.recent_change_times == before.recent_change_times
    assert [a["start"] for a in status.anomalies if a.get("end") is None] == [1000.0, 1100.0]
    assert status.analysis is not None and status.analysis["causes"][0]["service"] == "db"
    assert status.analysis["confident"] is True
    assert status.analysis["causes"][0]["evidence"] == ["v" * 80], (
        "the top cause keeps its strongest evidence"
    )
    # An anomaly cut to what says what it is, how strong and since when.
    assert all(set(a) <= OptimizationLoopStatus.ANOMALY_FIELDS_KEPT for a in status.anomalies)
    assert {(a["metric"], a["peak_z"]) for a in status.anomalies} == {
        ("latency_p95", 7.5),
        ("error_rate", 7.5),
    }
    # Flags stay when set; unset ones and an active anomaly's null end go (missing reads as unset).
    assert [a.get("explained_by_load") for a in status.anomalies] == [None, True]
    assert not any("benign" in a or "end" in a for a in status.anomalies)
    # Cut first: ended anomalies; last, the decision history (the trail a person reads).
    assert cut[:2] == ["ended anomaly web/memory", "ended anomaly web/cpu"]
    assert "reasons of the rules decision web-000029 passed" in cut
    # The detail made room: the decision history (which goes last) is whole.
    assert not any(c.startswith("decision ") for c in cut) and len(status.decisions) == len(before.decisions)
    assert [c.type for c in status.conditions] == [c.type for c in before.conditions]
    assert all(len(c.message) <= max(StatusBase.CONDITION_MESSAGE_KEPT, 200) for c in status.conditions)


def test_a_status_within_its_budget_is_not_cut() -> None:
    status = _full_loop_status()
    status.fit_to_budget()
    fitted = status.model_dump()
    assert status.fit_to_budget() == []
    assert status.model_dump() == fitted
    small = OptimizationLoopStatus(anomalies=[_anomaly("cpu", 500.0, 700.0)])
    small.record(_decision(1))
    small.record(_decision(2))
    assert small.fit_to_budget() == [] and len(small.decisions) == 2 and len(small.anomalies) == 1


def test_cutting_stops_when_only_what_the_operator_acts_on_is_left() -> None:
    status = OptimizationLoopStatus(engine_state={"z": "q" * 6000})
    status.record(_decision(1))
    status.record(_decision(2))
    newest = _decision(3, failing=3)
    remedy = RuleVerdict(rule="maxStep", passed=True, reason="exempt: the SLO is broken now (remedy)")
    newest = newest.model_copy(update={"verdicts": [*newest.verdicts, remedy]})
    status.record(newest)
    cut = status.fit_to_budget()
    assert cut[0] == "reasons of the rules decision web-000003 passed" and cut[-1] == "decision web-000002"
    assert all(c.startswith("decision ") for c in cut[1:]), "older decisions go last"
    assert status.json_bytes() > (OptimizationLoopStatus.STATUS_BUDGET_BYTES or 0)
    assert status.engine_state == {"z": "q" * 6000}
    [kept] = status.decisions
    assert kept.model_dump(exclude={"verdicts", "passed_rules"}) == newest.model_dump(
        exclude={"verdicts", "passed_rules"}
    )
    assert [(v.rule, v.passed, v.reason) for v in kept.verdicts] == [
        *((f"rule{k}", False, "a reason " * 5) for k in range(3)),
        ("maxStep", True, remedy.reason),
    ], "failing and exempt verdicts stay whole"
    assert kept.passed_rules == [f"rule{k}" for k in range(3, 10)], "the others by name"


def test_kinds_without_a_budget_are_never_cut() -> None:
    status = StatusBase()
    for i in range(20):
        status.record(_decision(i))
    assert StatusBase.STATUS_BUDGET_BYTES is None
    assert status.fit_to_budget() == [] and len(status.decisions) == 20
