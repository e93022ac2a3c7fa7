"""Failure learning half of bench.maintenance: a model learned from the cluster's own history against
one trained offline on the same fleet with the true failure labels (issue 20's node-fleet target).

Per fleet and seed, the simulator (`autoloop.simulation.fleet`, 5-min samples like the operator's
history step) runs `train_days + test_days`. At `train_days` the cluster holds only what a cluster
has: node signals and kube-state-metrics' Ready condition (0 while a failed node is being
repaired). Three models are then scored on the SAME later `test_days`, with the fleet's true
failures as labels, on the hourly held-out points `engines.failure_history` measures on:

- cluster: what the operator adopts. `failure_learning.train` runs unchanged on an in-memory
  `MetricSource` answering exactly the PromQL the operator builds (`maintenance_planning.node_queries`,
  `ready_query`): it reads the history, labels failures from readiness (`readiness_failures`),
  splits, fits, compares with the prior and keeps the better one (the prior when it loses);
- offline: the same model class (`FailurePredictor`, same horizon and random_state) fit on the same
  history read the same way, with the fleet's true failure times up to `train_days`;
- prior: the simulator-trained model the operator uses before it has learned.

Fleets: the simulator's default mix (the prior's own world, another seed), and "hardware/memory",
a fleet unlike the prior's: no disk-fill or flapping failures, memory leaks, ECC/thermal hardware
failures and sudden ones, on older hardware (three times the prior's share of hot-but-stable nodes
and of nodes with isolated corrected ECC errors). Its weights were set before any run, not tuned.
Limits: both are the project's simulator (no public node-failure fleet is available), and its
readiness says NotReady exactly while a failed node is repaired, so readiness labels differ from
the truth only by the 5-min grid and edge effects; a real cluster's NotReady also has causes that
are not failures (see docs/benchmarks/maintenance.md).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Final

import numpy as np
from sklearn.metrics import precision_recall_curve

from autoloop.api.common import parse_duration
from autoloop.api.maintenance_prediction import Prediction
from autoloop.engines import failure
from autoloop.engines import failure_history as fh
from autoloop.metrics.source import MetricsUnavailable, Series
from autoloop.operator import failure_learning as fl
from autoloop.operator import maintenance_planning
from autoloop.simulation import fleet

HORIZON_HOURS: Final[float] = maintenance_planning.DEFAULT_HORIZON_HOURS
"""A MaintenancePlan's default horizon (24 h): the prior is the shipped model for it."""
RISK_THRESHOLD: Final[float] = 0.3
"""A MaintenancePlan's default spec.riskThreshold (precision and recall in status are at it)."""
STEP_SECONDS: Final[int] = int(maintenance_planning.RANGE_STEP_SECONDS)
"""Fleet sample step: the operator's history step (5 min), so the range queries return every sample."""
FLEETS: Final[dict[str, fleet.FleetConfig]] = {
    "default mix": fleet.FleetConfig(step_seconds=STEP_SECONDS),
    "hardware/memory": fleet.FleetConfig(
        step_seconds=STEP_SECONDS,
        mode_weights=(0.0, 0.4, 0.4, 0.0, 0.2),
        hot_fraction=0.3,
        noisy_edac_fraction=0.3,
    ),
}
"""Fleet name -> simulator config (n_nodes and days are set per run)."""
SEEDS: Final[tuple[int, ...]] = (4101, 4202, 4303, 4404, 4505)
"""Fleet seeds of the full run (disjoint from the prior's and the prediction bench's)."""
QUICK_SEEDS: Final[tuple[int, ...]] = SEEDS[:1]


@dataclass(frozen=True)
class ModelScore:
    pr_auc: float
    precision_at_recall_0_8: float


@dataclass(frozen=True)
class Run:
    """One fleet and seed: what the operator labelled and adopted, and the three models' scores."""

    fleet: str
    seed: int
    true_failures: int
    """Failures before the end of the cluster's history (ground truth)."""
    labelled_failures: int
    """Failures the operator labelled from readiness in the same history."""
    adopted: str
    """Cluster or Prior: what `failure_learning.train` chose."""
    points: int
    positives: int
    cluster: ModelScore
    """The model the operator adopted (the prior when the cluster model lost on the newest history)."""
    cluster_fit: ModelScore
    """The model fit on the cluster's readiness labels, adopted or not."""
    offline: ModelScore
    prior: ModelScore

    @property
    def gap(self) -> float:
        """Adopted model's PR-AUC minus the offline model's (the issue's target: >= -0.05)."""
        return self.cluster.pr_auc - self.offline.pr_auc

    @property
    def fit_gap(self) -> float:
        """The same for the readiness-label fit, like for like with the offline model."""
        return self.cluster_fit.pr_auc - self.offline.pr_auc


class FleetSource:
    """A `MetricSource` over a simulated fleet: answers the exact PromQL the operator builds for its
    nodes (and nothing else), like a Prometheus holding the fleet's series (no sample while down)."""

    def __init__(self, data: fleet.Fleet) -> None:
        self._series: dict[str, tuple[np.ndarray, np.ndarray]] = {}
        for i, node in enumerate(data.nodes):
            for name, query in maintenance_planning.node_queries(node).items():
                self._series[query] = (data.timestamps, np.asarray(data.metrics[name][i], dtype=float))
            ready = np.where(data.down[i], 0.0, 1.0)
            self._series[maintenance_planning.ready_query(node)] = (data.timestamps, ready)

    def instant(self, query: str, *, at: float | None = None) -> float:
        raise MetricsUnavailable("NoData", f"instant queries are not served here: {query}")

    def range(self, query: str, *, start: float, end: float, step: float) -> Series:
        if query not in self._series:
            raise MetricsUnavailable("NoData", f"query returned no series: {query}")
        ts, values = self._series[query]
        keep = (ts >= start) & (ts <= end) & np.isfinite(values)
        if not keep.any():
            raise MetricsUnavailable("NoData", f"query returned no series: {query}")
        return Series(timestamps=ts[keep], values=values[keep])


def precision_at_recall(y: np.ndarray, p: np.ndarray, recall: float = 0.8) -> float:
    """Highest precision at any threshold whose recall reaches `recall` (NaN without a positive)."""
    if not y.any():
        return float("nan")
    precision, reached, _ = precision_recall_curve(y, p)
    return float(precision[reached >= recall].max())


def _score(
    model: failure.FailurePredictor,
    history: list[failure.NodeSeries],
    truth: Mapping[str, list[float]],
    *,
    since: float,
    end: float,
) -> tuple[ModelScore, int, int]:
    """`model` on the hourly points of [since, end], through `failure_history`'s held-out rows."""
    x, y = fh.heldout_rows(
        history, truth, since=since, end=end, horizon_hours=model.horizon_hours, extras=model.extras_
    )
    p = model.predict_proba_features(x)
    s = fh.score(p, y, threshold=RISK_THRESHOLD)
    ap = float("nan") if s.average_precision is None else s.average_precision
    return ModelScore(ap, precision_at_recall(y, p)), s.points, s.positives


def run(
    *,
    name: str,
    seed: int,
    n_nodes: int,
    train_days: float,
    test_days: float,
    prior: failure.FailurePredictor,
) -> Run:
    """Simulate one fleet, let the operator learn from its first `train_days`, score on the rest."""
    cfg = FLEETS[name]
    data = fleet.simulate_fleet(
        dataclasses.replace(cfg, n_nodes=n_nodes, days=train_days + test_days),
        random_state=seed,
    )
    source = FleetSource(data)
    now = float(data.timestamps[0] + train_days * 86400.0)
    end = float(data.timestamps[-1])
    job = fl.Job(
        nodes=data.nodes,
        spec=Prediction(),
        horizon_hours=HORIZON_HOURS,
        threshold=RISK_THRESHOLD,
        now=now,
        planned={},
    )
    # The operator's own path: read, label from readiness, split, fit, compare, adopt.
    trained = fl.train(source, prior, job, f"bench/{name}/{seed}")
    history, labelled, _ = fl.read_history(source, job)
    truth = data.failure_times()
    known = {node: [t for t in ts if t <= now] for node, ts in truth.items()}
    offline = _model().fit(history, known)
    # What `train` refits on the whole history when it adopts; fit here too when it kept the prior.
    fitted = trained.model or _model().fit(history, labelled)
    # Scored on the later period, with what came before it as look-back.
    hours = (end - float(data.timestamps[0])) / 3600.0
    whole = [maintenance_planning.fetch_series(source, node, now=end, hours=hours) for node in data.nodes]
    history_all = [s for s in whole if s is not None]

    def scored(model: failure.FailurePredictor) -> tuple[ModelScore, int, int]:
        return _score(model, history_all, truth, since=now, end=end)

    cluster, points, positives = scored(trained.model or prior)
    return Run(
        fleet=name,
        seed=seed,
        true_failures=sum(len(v) for v in known.values()),
        labelled_failures=sum(len(v) for v in labelled.values()),
        adopted=str(trained.status.model),
        points=points,
        positives=positives,
        cluster=cluster,
        cluster_fit=scored(fitted)[0],
        offline=scored(offline)[0],
        prior=scored(prior)[0],
    )


def _model() -> failure.FailurePredictor:
    """The model class and settings `failure_learning.train` fits."""
    return failure.FailurePredictor(horizon_hours=HORIZON_HOURS, random_state=0)


def run_all(*, seeds: tuple[int, ...], n_nodes: int, train_days: float, test_days: float) -> list[Run]:
    """Every fleet and seed, against the prior a plan with the default horizon starts from."""
    prior = maintenance_planning.predictor(HORIZON_HOURS)
    return [
        run(name=name, seed=seed, n_nodes=n_nodes, train_days=train_days, test_days=test_days, prior=prior)
        for name in FLEETS
        for seed in seeds
    ]


def lookback_days() -> float:
    """The history a plan reads by default (spec.prediction.lookback: 14 days)."""
    return parse_duration(Prediction().lookback).total_seconds() / 86400.0


def report(runs: list[Run]) -> dict[str, float]:
    """Print one row per fleet and seed, then the means; return the headline keys."""
    print(
        f"Failure learning: cluster history (readiness labels, the operator's train) vs offline (true "
        f"labels), same later period; horizon {HORIZON_HOURS:.0f} h"
    )
    print(
        f"{'fleet':<17}{'seed':>6}{'fail':>6}{'lab':>5}{'adopted':>9}{'pos':>6}{'cluster':>9}{'fit':>7}"
        f"{'offline':>9}{'prior':>7}{'gap':>8}{'P@R.8 cl/off':>14}"
    )
    for r in runs:
        print(
            f"{r.fleet:<17}{r.seed:>6}{r.true_failures:>6}{r.labelled_failures:>5}{r.adopted:>9}"
            f"{r.positives:>6}{r.cluster.pr_auc:>9.3f}{r.cluster_fit.pr_auc:>7.3f}{r.offline.pr_auc:>9.3f}"
            f"{r.prior.pr_auc:>7.3f}{r.gap:>+8.3f}"
            f"{r.cluster.precision_at_recall_0_8:>8.3f}/{r.offline.precision_at_recall_0_8:.3f}"
        )
    gaps = [r.gap for r in runs]
    headline = {
        "fleet_cluster_pr_auc": _mean(r.cluster.pr_auc for r in runs),
        "fleet_cluster_fit_pr_auc": _mean(r.cluster_fit.pr_auc for r in runs),
        "fleet_offline_pr_auc": _mean(r.offline.pr_auc for r in runs),
        "fleet_prior_pr_auc": _mean(r.prior.pr_auc for r in runs),
        "fleet_pr_auc_gap": _mean(gaps),
        "fleet_pr_auc_gap_min": float(np.nanmin(gaps)),
        "fleet_cluster_fit_pr_auc_gap": _mean(r.fit_gap for r in runs),
        "fleet_cluster_precision_at_recall_0_8": _mean(r.cluster.precision_at_recall_0_8 for r in runs),
        "fleet_offline_precision_at_recall_0_8": _mean(r.offline.precision_at_recall_0_8 for r in runs),
    }
    for name in FLEETS:
        mine = [r.gap for r in runs if r.fleet == name]
        print(f"  {name}: mean gap {_mean(mine):+.3f}, worst {min(mine):+.3f} over {len(mine)} seeds")
    print(
        f"  all: cluster {headline['fleet_cluster_pr_auc']:.3f}, offline {headline['fleet_offline_pr_auc']:.3f},"
        f" mean gap {headline['fleet_pr_auc_gap']:+.3f} (target >= -0.05), readiness-label fit gap "
        f"{headline['fleet_cluster_fit_pr_auc_gap']:+.3f}\n"
    )
    return {k: round(v, 4) for k, v in headline.items()}


def _mean(values: Iterable[float]) -> float:
    return float(np.nanmean(list(values)))
