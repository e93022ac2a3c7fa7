"""MaintenancePlan learning its failure model from the cluster: reading, training, choosing, cadence.

`precursor_fleet` is a small fleet whose failures the simulator prior does not know: a PSU ripple
signal (a user's `spec.prediction.signals` entry) rises for ~24 h before each failure, while the
built-in node metrics stay healthy. The cluster test backfills the same fleet into Prometheus.
"""

from __future__ import annotations

import re
import time
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, ClassVar

import kopf
import numpy as np
import pytest
from pydantic import ValidationError

from autoloop.api.maintenance_prediction import ModelKind, Prediction, PredictionStatus, Signal
from autoloop.api.maintenanceplan import MaintenancePlan, MaintenancePlanStatus
from autoloop.engines import failure
from autoloop.metrics.source import MetricsUnavailable, Series
from autoloop.operator import failure_learning as fl
from autoloop.operator import kube, maintenance_planning, wiring
from autoloop.operator.refits import BackgroundRefits
from autoloop.simulation import fleet as sim

RIPPLE = "node_psu_ripple_millivolts"
RIPPLE_QUERY = 'max(node_psu_ripple_millivolts{instance="$node"})'
STEP = 300.0
HOUR = 3600.0
PRECURSOR_HOURS = 24.0
"""The ripple rises over the whole default horizon before a failure."""


@dataclass(frozen=True)
class PrecursorFleet:
    """Per node: samples (name -> values, NaN while down), Ready (1/0), failure times; one clock."""

    timestamps: np.ndarray
    metrics: dict[str, dict[str, np.ndarray]]
    ready: dict[str, np.ndarray]
    failures: dict[str, list[float]]


def precursor_fleet(
    nodes: tuple[str, ...],
    *,
    end: float,
    days: float,
    every_hours: float = 48.0,
    about_to_fail: str | None = None,
    seed: int = 7,
) -> PrecursorFleet:
    """Healthy built-in metrics; each node fails 16 h + an exponential gap of mean `every_hours` (NotReady 30 min, no node
    metrics meanwhile) after its ripple rose from ~10 mV towards ~40 mV over the 24 h before.
    `about_to_fail` has its ripple rising over the last 8 h and no failure yet."""
    rng = np.random.default_rng(seed)
    ts = np.arange(end - days * 24 * HOUR, end + 1e-6, STEP)
    n = len(ts)
    out = PrecursorFleet(ts, {}, {}, {})
    for i, node in enumerate(nodes):
        ripple = 10.0 + rng.normal(0.0, 1.0, n)
        down = np.zeros(n, dtype=bool)
        fails: list[float] = []
        t = ts[0] + (30.0 + 10.0 * i + rng.uniform(0, 12)) * HOUR
        while t < ts[-1] - 14 * HOUR:
            k = int(np.searchsorted(ts, t))
            pre = slice(max(0, k - int(PRECURSOR_HOURS * HOUR / STEP)), k)
            ripple[pre] += np.linspace(0.0, 30.0, pre.stop - pre.start)
            down[k : k + int(30 * 60 / STEP)] = True
            fails.append(float(ts[k]))
            # Memoryless gaps: time since the last repair says nothing, only the ripple does.
            t += (16.0 + rng.exponential(every_hours)) * HOUR
        if node == about_to_fail:
            last = int(8 * HOUR / STEP)
            ripple[-last:] += np.linspace(0.0, 22.0, last)
        size = 100e9
        values = {
            failure.DISK_SIZE: np.full(n, size),
            failure.DISK_AVAIL: size * (0.55 + rng.normal(0, 0.005, n)),
            failure.MEM_TOTAL: np.full(n, 16e9),
            failure.MEM_AVAIL: 16e9 * (0.6 + rng.normal(0, 0.01, n)),
            failure.TEMP: 50.0 + rng.normal(0, 1.0, n),
            RIPPLE: ripple,
        }
        out.metrics[node] = {k: np.where(down, np.nan, v) for k, v in values.items()}
        out.ready[node] = np.where(down, 0.0, 1.0)
        out.failures[node] = fails
    return out


class FleetSource:
    """A MetricSource answering the operator's node queries from a PrecursorFleet."""

    METRICS: ClassVar[dict[str, str]] = {
        "node_filesystem_avail_bytes": failure.DISK_AVAIL,
        "node_filesystem_size_bytes": failure.DISK_SIZE,
        "node_memory_MemAvailable_bytes": failure.MEM_AVAIL,
        "node_memory_MemTotal_bytes": failure.MEM_TOTAL,
        "node_hwmon_temp_celsius": failure.TEMP,
        RIPPLE: RIPPLE,
    }

    def __init__(self, data: PrecursorFleet, *, down: bool = False) -> None:
        self.data, self.down = data, down
        self.queries: list[str] = []

    def instant(self, query: str, *, at: float | None = None) -> float:
        if self.down:
            raise MetricsUnavailable("PrometheusUnreachable", "down")
        if query == maintenance_planning.HEALTH_QUERY:
            return 1.0
        raise MetricsUnavailable("NoData", query)

    def range(self, query: str, *, start: float, end: float, step: float) -> Series:
        self.queries.append(query)
        if self.down:
            raise MetricsUnavailable("PrometheusUnreachable", "down")
        found = re.search(r'(?:instance|node)="([^"]+)"', query)
        node = found.group(1) if found else ""
        if node not in self.data.ready:
            raise MetricsUnavailable("NoData", query)
        ts = self.data.timestamps
        if 'condition="Ready"' in query:
            values = self.data.ready[node]
        else:
            name = next((v for k, v in self.METRICS.items() if k in query), None)
            if name is None:
                raise MetricsUnavailable("NoData", query)
            values = self.data.metrics[node][name]
        keep = (ts >= start) & (ts <= end) & np.isfinite(values)
        if not keep.any():
            raise MetricsUnavailable("NoData", query)
        return Series(ts[keep], values[keep])


NODES = ("n-0", "n-1", "n-2", "n-3")
END = 1_790_000_000.0


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
    return precursor_fleet(NODES, end=END, days=12.0, about_to_fail="n-2")


def job(spec: dict[str, Any] | None = None, *, now: float = END) -> fl.Job:
    prediction = Prediction.model_validate(spec or {"signals": [{"name": RIPPLE, "query": RIPPLE_QUERY}]})
    return fl.Job(nodes=NODES, spec=prediction, horizon_hours=24.0, threshold=0.3, now=now, planned={})


def test_labels_from_readiness_match_the_generated_failures(fleet_data: PrecursorFleet) -> None:
    history, failures, first = fl.read_history(FleetSource(fleet_data), job())
    assert failures == fleet_data.failures
    assert sum(len(v) for v in failures.values()) >= 12
    assert {s.name for s in history} == set(NODES) and first == fleet_data.timestamps[0]
    assert all(RIPPLE in s.metrics for s in history)


def test_the_cluster_model_wins_where_the_prior_is_blind(
    fleet_data: PrecursorFleet, prior: failure.FailurePredictor
) -> None:
    trained = fl.train(FleetSource(fleet_data), prior, job(), "fp")
    s = trained.status
    assert trained.model is not None and s.model == "Cluster", s.message
    assert s.failures == sum(len(v) for v in fleet_data.failures.values())
    assert s.prior is not None and s.cluster is not None
    assert s.cluster.pr_auc is not None and s.prior.pr_auc is not None
    assert s.cluster.pr_auc > s.prior.pr_auc + 0.3, s.message
    assert s.cluster.precision is not None and s.cluster.precision >= 0.7
    # Now: n-2's ripple has been rising for 8 h, nobody else's: it ranks first with the cluster model.
    series = [failure.NodeSeries(n, fleet_data.timestamps, fleet_data.metrics[n]) for n in NODES]
    ranked = sorted(trained.model.predict(series, now=END), key=lambda p: -p.probability)
    assert ranked[0].node == "n-2" and ranked[0].probability > 2 * ranked[1].probability
    assert any(RIPPLE in r for r in ranked[0].reasons)


def test_too_little_history_keeps_the_prior(
    fleet_data: PrecursorFleet, prior: failure.FailurePredictor
) -> None:
    trained = fl.train(FleetSource(fleet_data), prior, job({"minFailures": 100}), "fp")
    assert trained.model is None and trained.status.model == "Prior"
    assert "needs 100" in trained.status.message and trained.status.failures >= 12
    short = fl.train(FleetSource(fleet_data), prior, job({"lookback": "48h"}), "fp")
    assert short.model is None and short.status.history_hours is not None and short.status.history_hours <= 48


def test_a_signal_without_data_is_missing_not_a_crash(
    fleet_data: PrecursorFleet, prior: failure.FailurePredictor
) -> None:
    spec = {"signals": [{"name": "gpu_xid_errors_total", "query": 'sum(gpu_xid_errors_total{node="$node"})'}]}
    trained = fl.train(FleetSource(fleet_data), prior, job(spec), "fp")
    assert trained.status.missing_signals == ["gpu_xid_errors_total"]
    # Without the ripple nothing predicts these failures: the prior stays, measured.
    assert trained.model is None and trained.status.prior is not None


def test_prometheus_down_is_retried_later(
    fleet_data: PrecursorFleet, prior: failure.FailurePredictor
) -> None:
    trained = fl.train(FleetSource(fleet_data, down=True), prior, job(), "fp")
    assert not trained.read_history and trained.model is None
    assert "PrometheusUnreachable" in trained.status.message


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


def node(name: str, *, ready: bool = True) -> kube.Node:
    return kube.Node(name, {}, {}, 1.0, 1.0, 10, False, ready)


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
    deadline = time.monotonic() + 120
    while not refits._futures[key].done():  # the test waits for the worker itself
        assert time.monotonic() < deadline, "training did not finish"
        time.sleep(0.1)


def test_passes_train_in_the_background_adopt_and_retrain_when_due(
    fleet_data: PrecursorFleet, prior: failure.FailurePredictor, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(maintenance_planning, "predictor", lambda hours: prior)
    plan = plan_with([{"name": RIPPLE, "query": RIPPLE_QUERY}])
    refits: BackgroundRefits[Any] = BackgroundRefits()
    memo = kopf.Memo(metrics=FleetSource(fleet_data), refits=refits)
    nodes = [node(n) for n in NODES]
    key = "MaintenancePlan/p"
    status = MaintenancePlanStatus()
    # First pass: nothing trained yet, so it predicts with the prior and starts a training.
    p = a_pass(plan, status, END)
    assert fl.model_for(p, memo, nodes, horizon_hours=24.0) is None
    assert p.status.prediction is not None and p.status.prediction.model == "Prior"
    assert refits.in_flight(key)
    wait_collectable(refits, key)
    # The next pass adopts it: version 1, and it is not due again for a day.
    p = a_pass(plan, p.status, END + 60)
    model = fl.model_for(p, memo, nodes, horizon_hours=24.0)
    assert model is not None and p.status.prediction is not None
    assert p.status.prediction.model == "Cluster" and p.status.prediction.version == 1
    assert p.status.prediction.trained_at is not None and p.status.prediction.next_training_at is not None
    assert p.events[0][:2] == ("Normal", "FailureModel")
    assert not refits.in_flight(key)
    # A node down long enough that comes back is a new label: retrain (the model stays meanwhile).
    p = a_pass(plan, p.status, END + 120)
    assert fl.model_for(p, memo, [node("n-0", ready=False), *nodes[1:]], horizon_hours=24.0) is model
    assert not refits.in_flight(key)
    p = a_pass(plan, p.status, END + 120 + 900)
    assert fl.model_for(p, memo, nodes, horizon_hours=24.0) is model
    assert refits.in_flight(key)
    wait_collectable(refits, key)
    p = a_pass(plan, p.status, END + 1100)
    assert fl.model_for(p, memo, nodes, horizon_hours=24.0) is not model
    assert p.status.prediction is not None and p.status.prediction.version == 2
    # Learning switched off: the prior, said so.
    off = plan_with([{"name": RIPPLE, "query": RIPPLE_QUERY}], learn=False)
    p = a_pass(off, p.status, END + 1200)
    assert fl.model_for(p, memo, nodes, horizon_hours=24.0) is None
    assert p.status.prediction is not None and "learn is false" in p.status.prediction.message
    refits.shutdown()


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
