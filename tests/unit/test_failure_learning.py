"""Failure learning's pure parts: signal validation, the plan's own maintenance, adopting a training.

Reading, training and cadence against a fleet in a real Prometheus are in
tests/cluster/test_failure_learning_source.py.
"""

from __future__ import annotations

import re
from datetime import UTC, datetime
from typing import Any

import pytest
from pydantic import ValidationError

from autoloop.api.maintenance_prediction import ModelKind, Prediction, PredictionStatus, Signal
from autoloop.api.maintenanceplan import MaintenancePlan, MaintenancePlanStatus
from autoloop.engines import failure
from autoloop.operator import failure_learning as fl
from autoloop.operator import maintenance_planning
from autoloop.operator.refits import BackgroundRefits

RIPPLE = "node_psu_ripple_millivolts"
RIPPLE_QUERY = 'max(node_psu_ripple_millivolts{instance="$node"})'
NODES = ("n-0", "n-1", "n-2", "n-3")
END = 1_790_000_000.0


def plan_with(signals: list[dict[str, str]], **prediction: Any) -> MaintenancePlan:
    return MaintenancePlan.model_validate(
        {
            "spec": {
                "nodes": list(NODES),
                "windows": [{"start": "02:00", "end": "04:00"}],
                "prediction": {"signals": signals, **prediction},
            }
        }
    )


def test_signal_queries_are_escaped_and_parsed() -> None:
    plan = plan_with([{"name": RIPPLE, "query": RIPPLE_QUERY}])
    queries = maintenance_planning.node_queries('we"ird\\node', plan.spec.prediction.signals)
    assert queries[RIPPLE] == 'max(node_psu_ripple_millivolts{instance="we\\"ird\\\\node"})'
    assert fl.signal_problems(plan) == []
    bad = plan_with([{"name": "x", "query": "max(x{node=$node)"}])
    assert fl.signal_problems(bad)[0].startswith("prediction.signals[0] (x): not valid PromQL")


@pytest.mark.parametrize(
    ("signals", "message"),
    [
        ([{"name": "x", "query": "up"}], "$node placeholder"),
        ([{"name": "1x", "query": "x{node='$node'}"}], "String should match pattern"),
        ([{"name": "x", "query": "a{node='$node'}"}, {"name": "x", "query": "b{node='$node'}"}], "unique: x"),
    ],
)
def test_invalid_signals_are_refused(signals: list[dict[str, str]], message: str) -> None:
    with pytest.raises(ValidationError, match=re.escape(message)):
        Prediction.model_validate({"signals": signals})


def test_planned_maintenance_is_not_a_failure() -> None:
    status = MaintenancePlanStatus.model_validate(
        {
            "progress": [
                {
                    "node": "a",
                    "step": "Done",
                    "startedAt": "2026-12-07T01:00:00Z",
                    "updatedAt": "2026-12-07T01:30:00Z",
                },
                {"node": "b", "step": "Draining", "startedAt": "2026-12-07T02:00:00Z"},
            ]
        }
    )
    now = datetime(2026, 12, 7, 3, tzinfo=UTC).timestamp()
    out = fl.planned_intervals(status, now)
    one = datetime(2026, 12, 7, 1, tzinfo=UTC).timestamp()
    assert out == {"a": [(one, one + 1800)], "b": [(one + 3600, now)]}


def test_signal_round_trip_in_the_api() -> None:
    s = Signal(name=RIPPLE, query=RIPPLE_QUERY)
    assert s.wire() == {"name": RIPPLE, "query": RIPPLE_QUERY}


def test_a_failed_read_keeps_the_last_model_and_numbers_only_new_cluster_models() -> None:
    model = failure.FailurePredictor()
    cluster = fl.Trained("fp", model, PredictionStatus(model=ModelKind.CLUSTER, message="cluster"), END)
    first = fl.adopt(None, cluster, version=4)
    assert first.status.version == 5 and first.status.trained_at is not None
    unread = fl.Trained(
        "fp", None, PredictionStatus(message="history unreadable"), END + 60, read_history=False
    )
    kept = fl.adopt(first, unread, version=5)
    assert kept.model is model and kept.status.model == "Cluster" and kept.status.version == 5
    assert (
        not kept.read_history
        and kept.finished == END + 60
        and "keeping the last model" in kept.status.message
    )
    prior_only = fl.Trained("fp", None, PredictionStatus(message="prior"), END + 120)
    assert fl.adopt(kept, prior_only, version=5).status.version == 5


def test_a_plan_without_a_pass_for_a_day_is_forgotten() -> None:
    state = fl.Learner(BackgroundRefits())
    for key in ("MaintenancePlan/kept", "MaintenancePlan/deleted"):
        state.touch(key, 0.0)
        state.models[key] = object()  # type: ignore[assignment]
        state.down_since[key] = {"n1": 0.0}
        state.relabel.add(key)
    state.touch("MaintenancePlan/kept", fl.FORGET_AFTER_SECONDS)
    assert (
        set(state.models)
        == set(state.down_since)
        == state.relabel
        == {
            "MaintenancePlan/kept",
            "MaintenancePlan/deleted",
        }
    ), "a day without a pass is not yet gone"
    state.touch("MaintenancePlan/kept", fl.FORGET_AFTER_SECONDS + 1)
    assert (
        set(state.models)
        == set(state.down_since)
        == state.relabel
        == set(state.seen)
        == {"MaintenancePlan/kept"}
    )


def test_default_predictors_are_kept_for_a_few_horizons(monkeypatch: pytest.MonkeyPatch) -> None:
    made: list[float] = []

    class Fake:
        def __init__(self, horizon_hours: float, random_state: int) -> None:
            made.append(horizon_hours)

        def fit_arrays(self, **_: Any) -> Fake:
            return self

    from autoloop.simulation import fleet

    monkeypatch.setattr(maintenance_planning, "_predictors", {})
    monkeypatch.setattr(maintenance_planning.failure, "FailurePredictor", Fake)
    monkeypatch.setattr(
        fleet,
        "simulate_fleet",
        lambda *a, **k: type("D", (), {"timestamps": [], "metrics": {}, "failures": [], "nodes": []})(),
    )
    for h in (1.0, 2.0, 3.0, 4.0, 1.0, 5.0):
        maintenance_planning.predictor(h)
    assert list(maintenance_planning._predictors) == [3.0, 4.0, 1.0, 5.0], "least recently used out"
    assert made == [1.0, 2.0, 3.0, 4.0, 5.0], "a kept horizon is not trained again"
