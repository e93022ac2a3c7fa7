"""bench/_maint_fleet_learning: the in-memory Prometheus answers the operator's own queries, and
precision at recall 0.8 is read off the precision-recall curve."""

from __future__ import annotations

import numpy as np
import pytest

from autoloop.api.maintenance_prediction import Prediction
from autoloop.metrics.source import MetricsUnavailable
from autoloop.operator import failure_learning as fl
from autoloop.operator import maintenance_planning
from autoloop.simulation import fleet
from bench import _maint_fleet_learning as bench


@pytest.fixture(scope="module")
def data() -> fleet.Fleet:
    # 12 nodes for 13 days (inside the 14-day lookback) at a failure a node-week: about 20 failures.
    cfg = fleet.FleetConfig(n_nodes=12, days=13.0, step_seconds=bench.STEP_SECONDS, onset_per_node_day=1 / 7)
    return fleet.simulate_fleet(cfg, random_state=5)


def test_the_operator_reads_the_fleet_and_labels_its_failures_from_readiness(data: fleet.Fleet) -> None:
    source = bench.FleetSource(data)
    now = float(data.timestamps[-1])
    job = fl.Job(nodes=data.nodes, spec=Prediction(), horizon_hours=24.0, threshold=0.3, now=now, planned={})
    history, labelled, first = fl.read_history(source, job)
    assert len(history) == len(data.nodes) and first == data.timestamps[0]
    truth = data.failure_times()
    assert sum(map(len, truth.values())) >= 10
    for node, times in truth.items():
        # A failure is dated at its first NotReady sample: the true time rounded up to the 5-min grid.
        # Only a failure in the last 10 min (too short to call) or at the first sample may be missing.
        seen = [t for t in times if data.timestamps[0] < t <= now - 600.0]
        assert len(labelled[node]) == len(seen), node
        assert all(0.0 <= a - t < bench.STEP_SECONDS for a, t in zip(labelled[node], seen, strict=True))


def test_the_source_answers_only_the_operators_queries_and_drops_unsampled_points(data: fleet.Fleet) -> None:
    source = bench.FleetSource(data)
    node, i = data.nodes[0], 0
    query = maintenance_planning.node_queries(node)["node_memory_MemAvailable_bytes"]
    start, end = float(data.timestamps[10]), float(data.timestamps[300])
    series = source.range(query, start=start, end=end, step=bench.STEP_SECONDS)
    sampled = np.isfinite(data.metrics["node_memory_MemAvailable_bytes"][i, 10:301])
    assert len(series) == int(sampled.sum()) and series.timestamps[0] >= start
    with pytest.raises(MetricsUnavailable):
        source.range('up{instance="node-0000"}', start=start, end=end, step=bench.STEP_SECONDS)


@pytest.mark.parametrize(
    ("y", "p", "expected"),
    [
        # Ranked: pos, neg, pos, neg, pos. Recall 0.8 needs 4/5 positives: no threshold gets 4 of 3.
        # With 3 positives, recall >= 0.8 means all 3: at threshold 0.3, 3 of 5 flagged -> 0.6.
        ([1, 0, 1, 0, 1], [0.9, 0.8, 0.7, 0.4, 0.3], 0.6),
        # Perfect ranking: precision 1.0 at every recall.
        ([1, 1, 0, 0], [0.9, 0.8, 0.2, 0.1], 1.0),
    ],
)
def test_precision_at_recall(y: list[int], p: list[float], expected: float) -> None:
    assert bench.precision_at_recall(np.asarray(y, bool), np.asarray(p)) == pytest.approx(expected)


def test_precision_at_recall_without_a_positive_is_nan() -> None:
    assert np.isnan(bench.precision_at_recall(np.zeros(3, bool), np.array([0.1, 0.2, 0.3])))
