"""`autoloop explain` / `autoloop analyze` text: what a person at a terminal reads."""

from __future__ import annotations

import math
from datetime import UTC, datetime

import pytest

from autoloop import report

LOOP = {
    "kind": "OptimizationLoop",
    "metadata": {"namespace": "shop", "name": "web"},
    "spec": {
        "targetRef": {"kind": "Deployment", "name": "web"},
        "mode": "Recommend",
        "objectives": [{"name": "latency_p95", "metric": "LatencyP95"}, {"name": "q", "query": "up"}],
    },
    "status": {
        "phase": "Recommending",
        "message": "recommends replicas=3",
        "conditions": [{"type": "Ready", "status": "True", "reason": "Observing", "message": "ok"}],
        "baseline": {"replicas": 6, "cpu": "1000m"},
        "current": {"replicas": 6, "cpu": "1000m", "memory": "1536Mi"},
        "observed": {"latency_p95": 0.0853, "q": 12.345678},
        "improvement": {"cost": 0.0},
        "recommendation": {"decisionId": "web-000007", "settings": {"replicas": 3, "cpu": "750m"}},
        "decisions": [
            {
                "id": "web-000006",
                "time": "2026-11-25T10:00:00Z",
                "action": "Blocked",
                "current": {"replicas": 6},
                "proposed": {"replicas": 2},
                "observed": {"latency_p95": 0.081234},
                "verdicts": [
                    {"rule": "maxStep", "passed": False, "reason": "replicas step 67% exceeds 50%"},
                    {"rule": "bounds", "passed": True, "reason": "ok"},
                ],
                "explanation": "large step",
            },
            {
                "id": "web-000007",
                "time": "2026-11-25T10:01:00Z",
                "action": "Recommended",
                "current": {"replicas": 6},
                "proposed": {"replicas": 3},
                "verdicts": [{"rule": "bounds", "passed": True, "reason": "ok"}],
                "measured": {"latency_p95": 0.09},
            },
        ],
        "anomalies": [
            {
                "service": "db",
                "metric": "latency_p95",
                "direction": "up",
                "shape": "step",
                "peak_z": 25.0,
                "explained_by_load": False,
                "severity": "critical",
            }
        ],
        "analysis": {
            "causes": [
                {
                    "rank": 1,
                    "service": "db",
                    "metric": "latency_p95",
                    "fault_type": "latency",
                    "confidence": 0.93,
                    "action": "scale",
                    "explanation": "db slowed first",
                    "evidence": ["db latency_p95 up 4x at t=100"],
                }
            ]
        },
    },
}


def test_explain_shows_seen_proposed_safety_and_measured() -> None:
    text = report.explain(LOOP)
    assert "shop/web → Deployment/web" in text
    assert "Blocked web-000006: 6 replicas → 2 replicas" in text
    assert "safety: maxStep: replicas step 67% exceeds 50%" in text  # only the rule that refused
    assert "saw: latency_p95 81.2 ms" in text
    assert "safety: all 1 rules passed" in text
    assert "measured: latency_p95 90 ms" in text
    # Human units: cores and Gi for settings; a user's query has no known unit, so 4 digits.
    assert "current:  6 replicas, 1 core, 1.5Gi" in text
    assert "observed: latency_p95 85.3 ms, q 12.35" in text
    assert "autoloop.x0tta6bl4.io/approve=web-000007" in text  # how to approve, copy-pasteable


def test_analysis_ranks_causes_with_evidence_and_sparkline() -> None:
    text = report.analysis(LOOP, {"db/latency_p95": [0.1, 0.1, 0.1, 0.4, float("nan"), 0.4]})
    assert "1  db       latency_p95  latency  0.93        scale" in text
    assert "evidence:\n  - db latency_p95 up 4x at t=100" in text
    assert "DEMAND?  HARMLESS?  SEVERITY" in text
    assert "▁▁▁█ █" in text and "[0.1 .. 0.4]" in text


def test_sparkline_edges() -> None:
    assert report.sparkline([]) == ""
    assert report.sparkline([math.nan, math.nan]) == ""
    assert report.sparkline([1.0, 1.0]) == "▁▁"  # a flat series is a flat line, not a crash
    assert len(report.sparkline(list(range(500)), width=40)) == 40


def test_explain_counts_the_changes_against_the_budgets() -> None:
    loop = {
        **LOOP,
        "spec": {**LOOP["spec"], "safety": {"maxChangesPerHour": 2, "maxChangesPerDay": 5}},
        "status": {
            **LOOP["status"],
            "lastChangeTime": "2026-11-25T10:30:00Z",
            "recentChangeTimes": ["2026-11-24T09:00:00Z", "2026-11-25T01:00:00Z", "2026-11-25T10:30:00Z"],
        },
    }
    text = report.explain(loop, now=datetime(2026, 11, 25, 11, 0, tzinfo=UTC))
    # The change of 26 h ago is stored but no longer counts.
    assert "changes: last 2026-11-25T10:30:00Z; 1 in the last hour (max 2), 2 in the last 24h (max 5)" in text
    assert (
        "changes: last never; 0 in the last hour (max 4), 0 in the last 24h\n" in report.explain(LOOP) + "\n"
    )


def test_human_units() -> None:
    assert report.human_setting("cpu", "250m") == "0.25 cores"
    assert report.human_setting("memory", "118Mi") == "118Mi"
    assert report.human_setting("replicas", 1) == "1 replica"
    assert report.human_value(0.0004, "ratio") == "0.04 %"
    assert report.human_value(12.5, "seconds") == "12.50 s"
    assert report.human_value(0.132, "cost") == "0.132/h"
    assert report.human_value(float("nan"), "seconds") == "nan"
    assert report.human_value(0.2, "cores") == "0.2 cores"
    assert report.human_value(123425228.95, "bytes") == "118Mi"
    assert report.human_value(1796640000.0, "time") == "2026-12-07T10:40:00Z"


def test_the_engines_values_in_a_decision_are_shown_in_human_units() -> None:
    decision = {
        "id": "web-000009",
        "time": "2026-12-07T10:00:00Z",
        "action": "Applied",
        "current": {"replicas": 4},
        "proposed": {"replicas": 2},
        "observed": {
            "cpu_per_pod": 0.0661,
            "memory_per_pod": 123425228.95,
            "rps": 26.45,
            "utilisation": 0.066,
        },
        "predicted": {"latency_p95": 0.0723, "memory_floor": 148150000.0},
        "measured": {"at": 1796640000.0, "latency_p95": 0.1104},
    }
    loop = {**LOOP, "status": {**LOOP["status"], "decisions": [decision]}}
    text = report.explain(loop)
    assert "saw: cpu_per_pod 0.0661 cores, memory_per_pod 118Mi, rps 26.4/s, utilisation 6.6 %" in text
    assert "predicted: latency_p95 72.3 ms, memory_floor 141Mi" in text
    assert "measured: at 2026-12-07T10:40:00Z, latency_p95 110 ms" in text


def test_explain_allocation_shows_each_workloads_change_and_cost_against_budget() -> None:
    alloc = {
        "kind": "ResourceAllocation",
        "metadata": {"namespace": "shop", "name": "frontend"},
        "spec": {"mode": "Auto", "budget": {"maxCostPerHour": 2.0}},
        "status": {
            "phase": "Allocated",
            "conditions": [{"type": "Ready", "status": "True", "reason": "Allocated", "message": "ok"}],
            "costPerHour": 0.4213,
            "slaScore": 1.0,
            "solver": {"name": "CPSAT", "seconds": 0.031, "gap": 0.0},
            "allocations": [
                {
                    "name": "web",
                    "replicas": 3,
                    "cpu": "250m",
                    "memory": "256Mi",
                    "currentReplicas": 4,
                    "currentCpu": "1000m",
                    "currentMemory": "512Mi",
                }
            ],
        },
    }
    text = report.explain_any(alloc)
    assert text.startswith("ResourceAllocation shop/frontend  mode=Auto")
    assert "cost: 0.421/h of a budget of 2/h; SLA score 1.0; solver CPSAT in 0.03 s, gap 0 %" in text
    assert "web       4 → 3     1 core → 0.25 cores  512Mi → 256Mi" in text


def test_explain_plan_shows_risk_schedule_and_progress() -> None:
    plan = {
        "kind": "MaintenancePlan",
        "metadata": {"name": "nightly"},
        "spec": {"mode": "Auto"},
        "status": {
            "phase": "Maintaining",
            "nextWindow": "2026-12-08T01:00:00Z",
            "solver": "CPSAT",
            "predictions": [{"node": "n1", "probability": 0.82, "reasons": ["disk full in 5 h"]}],
            "schedule": [{"node": "n2", "start": "s", "end": "e", "reason": "risk 10 %"}],
            "progress": [{"node": "n1", "step": "Draining", "startedAt": "t", "evicted": 2, "message": "m"}],
        },
    }
    text = report.explain_any(plan)
    assert text.startswith("MaintenancePlan nightly  mode=Auto  phase=Maintaining")  # cluster-scoped
    assert "n1    82 %  disk full in 5 h" in text
    assert "n2    s      e    risk 10 %" in text
    assert "n1    Draining  t        2        m" in text


def test_explain_refs() -> None:
    from autoloop.cli import parse_ref

    assert parse_ref("shop/web") == ("optimizationloops", "shop", "web")
    assert parse_ref("ralloc/shop/frontend") == ("resourceallocations", "shop", "frontend")
    assert parse_ref("mplan/nightly") == ("maintenanceplans", "", "nightly")
    for bad in ("web", "mplan/ns/nightly", "ralloc/shop", "shop/"):
        with pytest.raises(SystemExit):
            parse_ref(bad)


def test_explain_counts_rules_listed_by_name_and_shows_an_exemption() -> None:
    remedy = {
        "id": "web-000008",
        "time": "2026-12-07T10:00:00Z",
        "action": "Applied",
        "current": {"replicas": 2},
        "proposed": {"replicas": 6},
        "verdicts": [{"rule": "maxStep", "passed": True, "reason": "exempt: the SLO is broken now (remedy)"}],
        "passedRules": ["ownership", "bounds", "cooldown"],
    }
    plain = {**remedy, "id": "web-000009", "verdicts": [], "passedRules": ["ownership", "bounds"]}
    text = report.explain({**LOOP, "status": {**LOOP["status"], "decisions": [remedy, plain]}})
    assert "safety: maxStep: exempt: the SLO is broken now (remedy) (the other 3 passed)" in text
    assert "safety: all 2 rules passed" in text
