"""Failure learning reading a real Prometheus: labels, training, choosing, cadence.

`fleet_prometheus.precursor_fleet` (a PSU ripple rising for ~24 h before each failure, built-in
node metrics healthy: a failure mode the simulator prior does not know) is backfilled into a
private Prometheus, and `failure_learning` reads it through the operator's `PrometheusSource`,
so the operator's PromQL meets a real query engine. No apiserver: nodes and passes are built here.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from datetime import UTC, datetime
from typing import Any

import kopf
import pytest

from autoloop.api.maintenance_prediction import Prediction
from autoloop.api.maintenanceplan import MaintenancePlan, MaintenancePlanStatus
from autoloop.engines import failure
from autoloop.metrics.prometheus import PrometheusSource
from autoloop.operator import failure_learning as fl
from autoloop.operator import kube, maintenance_planning, wiring
from autoloop.operator.refits import BackgroundRefits
from autoloop.simulation import fleet as sim
from tests.cluster import fleet_prometheus as fleet
from tests.cluster import operator_process as opp
from tests.cluster.fleet_prometheus import RIPPLE, RIPPLE_QUERY, PrecursorFleet
from tests.unit.test_failure_learning import NODES, plan_with

END = 1_790_000_000.0
TRAINING_TIMEOUT_SECONDS = 120.0


@pytest.fixture(scope="module")
def prior() -> failure.FailurePredictor:
    """A small stand-in for the simulator prior (same simulator, fewer nodes: seconds, not a minute)."""
    data = sim.simulate_fleet(sim.FleetConfig(n_nodes=40, days=10.0), random_state=sim.DEFAULT_TRAIN_SEED)
    return failure.FailurePredictor(random_state=0).fit_arrays(
        timestamps=data.timestamps,
        metrics=data.metrics,
        failure_times=[[f.time for f in data.failures if f.node == n] for n in data.nodes],
    )


@pytest.fixture(scope="module")
def fleet_data() -> PrecursorFleet:
    return fleet.precursor_fleet(NODES, end=END, days=12.0, about_to_fail="n-2")


@pytest.fixture(scope="module")
def source(fleet_data: PrecursorFleet, tmp_path_factory: Any) -> Iterator[PrometheusSource]:
    with fleet.backfilled_prometheus(fleet_data, tmp_path_factory.mktemp("failure-learning-source")) as url:
        yield PrometheusSource(url)


def job(spec: dict[str, Any] | None = None, *, now: float = END) -> fl.Job:
    prediction = Prediction.model_validate(spec or {"signals": [{"name": RIPPLE, "query": RIPPLE_QUERY}]})
    return fl.Job(nodes=NODES, spec=prediction, horizon_hours=24.0, threshold=0.3, now=now, planned={})


def node(name: str, *, ready: bool = True) -> kube.Node:
    return kube.Node(name, {}, {}, 1.0, 1.0, 10, False, ready)


def test_labels_from_readiness_match_the_generated_failures(
    fleet_data: PrecursorFleet, source: PrometheusSource
) -> None:
    history, failures, first = fl.read_history(source, job())
    assert failures == fleet_data.failures
    assert sum(len(v) for v in failures.values()) >= 12
    assert {s.name for s in history} == set(NODES) and first == fleet_data.timestamps[0]
    assert all(RIPPLE in s.metrics for s in history)


def test_the_cluster_model_wins_where_the_prior_is_blind(
    fleet_data: PrecursorFleet, source: PrometheusSource, prior: failure.FailurePredictor
) -> None:
    trained = fl.train(source, prior, job(), "fp")
    s = trained.status
    assert trained.model is not None and s.model == "Cluster", s.message
    assert s.failures == sum(len(v) for v in fleet_data.failures.values())
    assert s.prior is not None and s.cluster is not None
    assert s.cluster.pr_auc is not None and s.prior.pr_auc is not None
    assert s.cluster.pr_auc > s.prior.pr_auc + 0.3, s.message
    assert s.cluster.precision is not None and s.cluster.precision >= 0.7
    # Now: n-2's ripple has been rising for 8 h, nobody else's: it ranks first with the cluster
    # model, on the series the operator reads for its predictions.
    obs = maintenance_planning.observe(
        source,
        [node(n) for n in NODES],
        horizon_hours=24.0,
        now=END,
        model=trained.model,
        signals=job().spec.signals,
    )
    assert obs.down is None and obs.unknown == [], obs
    ranked = sorted(obs.predictions.values(), key=lambda p: -p.probability)
    assert ranked[0].node == "n-2" and ranked[0].probability > 2 * ranked[1].probability
    assert any(RIPPLE in r for r in ranked[0].reasons)


def test_too_little_history_keeps_the_prior(
    source: PrometheusSource, prior: failure.FailurePredictor
) -> None:
    trained = fl.train(source, prior, job({"minFailures": 100}), "fp")
    assert trained.model is None and trained.status.model == "Prior"
    assert "needs 100" in trained.status.message and trained.status.failures >= 12
    short = fl.train(source, prior, job({"lookback": "48h"}), "fp")
    assert short.model is None and short.status.history_hours is not None and short.status.history_hours <= 48


def test_a_signal_without_data_is_missing_not_a_crash(
    source: PrometheusSource, prior: failure.FailurePredictor
) -> None:
    spec = {"signals": [{"name": "gpu_xid_errors_total", "query": 'sum(gpu_xid_errors_total{node="$node"})'}]}
    trained = fl.train(source, prior, job(spec), "fp")
    assert trained.status.missing_signals == ["gpu_xid_errors_total"]
    # Without the ripple nothing predicts these failures: the prior stays, measured.
    assert trained.model is None and trained.status.prior is not None


def test_prometheus_down_is_retried_later(prior: failure.FailurePredictor) -> None:
    # Nothing listens on a port just freed: every query is refused by the kernel.
    down = PrometheusSource(f"http://127.0.0.1:{opp.free_port()}", timeout_seconds=2.0)
    trained = fl.train(down, prior, job(), "fp")
    assert not trained.read_history and trained.model is None
    assert "PrometheusUnreachable" in trained.status.message, trained.status.message
    assert "Connection refused" in trained.status.message, trained.status.message


def a_pass(plan: MaintenancePlan, status: MaintenancePlanStatus, now: float) -> maintenance_planning.PlanPass:
    return wiring.Pass(
        resource=plan,
        namespace="",
        name="p",
        generation=1,
        now=datetime.fromtimestamp(now, UTC),
        status=status,
    )


def wait_collectable(refits: BackgroundRefits[Any], key: str) -> None:
    deadline = time.monotonic() + TRAINING_TIMEOUT_SECONDS
    while not refits._futures[key].done():  # the test waits for the worker itself
        assert time.monotonic() < deadline, "training did not finish"
        time.sleep(0.1)


def test_passes_train_in_the_background_adopt_and_retrain_when_due(
    source: PrometheusSource, prior: failure.FailurePredictor
) -> None:
    plan = plan_with([{"name": RIPPLE, "query": RIPPLE_QUERY}])
    refits: BackgroundRefits[Any] = BackgroundRefits()
    memo = kopf.Memo(metrics=source, refits=refits)
    nodes = [node(n) for n in NODES]
    key = "MaintenancePlan/p"
    status = MaintenancePlanStatus()
    # First pass: nothing trained yet, so it predicts with the prior and starts a training.
    p = a_pass(plan, status, END)
    assert fl.model_for(p, memo, nodes, horizon_hours=24.0, prior=prior) is None
    assert p.status.prediction is not None and p.status.prediction.model == "Prior"
    assert refits.in_flight(key)
    wait_collectable(refits, key)
    # The next pass adopts it: version 1, and it is not due again for a day.
    p = a_pass(plan, p.status, END + 60)
    model = fl.model_for(p, memo, nodes, horizon_hours=24.0, prior=prior)
    assert model is not None and p.status.prediction is not None
    assert p.status.prediction.model == "Cluster" and p.status.prediction.version == 1
    assert p.status.prediction.trained_at is not None and p.status.prediction.next_training_at is not None
    assert p.events[0][:2] == ("Normal", "FailureModel")
    assert not refits.in_flight(key)
    # A node down long enough that comes back is a new label: retrain (the model stays meanwhile).
    p = a_pass(plan, p.status, END + 120)
    assert (
        fl.model_for(p, memo, [node("n-0", ready=False), *nodes[1:]], horizon_hours=24.0, prior=prior)
        is model
    )
    assert not refits.in_flight(key)
    p = a_pass(plan, p.status, END + 120 + 900)
    assert fl.model_for(p, memo, nodes, horizon_hours=24.0, prior=prior) is model
    assert refits.in_flight(key)
    wait_collectable(refits, key)
    p = a_pass(plan, p.status, END + 1100)
    assert fl.model_for(p, memo, nodes, horizon_hours=24.0, prior=prior) is not model
    assert p.status.prediction is not None and p.status.prediction.version == 2
    # Learning switched off: the prior, said so.
    off = plan_with([{"name": RIPPLE, "query": RIPPLE_QUERY}], learn=False)
    p = a_pass(off, p.status, END + 1200)
    assert fl.model_for(p, memo, nodes, horizon_hours=24.0, prior=prior) is None
    assert p.status.prediction is not None and "learn is false" in p.status.prediction.message
    refits.shutdown()
