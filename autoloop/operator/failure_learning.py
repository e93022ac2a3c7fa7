"""MaintenancePlan's failure model learned from its own cluster: train in the background, pick, report.

Owns: reading a plan's labelled history from Prometheus (signals and readiness over
`spec.prediction.lookback`), training a cluster model with `engines.failure`, measuring it and the
prior on the newest part of that history (`engines.failure_history`), keeping the chosen model in
memory per plan, deciding when a retraining is due, and `status.prediction`.
Must never: block a pass on a training (it runs on the operator's `BackgroundRefits` worker), put
model weights in status (a restarted operator refits from Prometheus), or decide anything about
maintenance itself (`maintenance_planning`, `maintenanceplan`).
"""

from __future__ import annotations

import dataclasses
import json
import threading
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any, Final

from autoloop.api.common import parse_duration, parse_time, rfc3339
from autoloop.api.maintenance_prediction import (
    ModelKind,
    ModelScore,
    Prediction,
    PredictionStatus,
    signal_query,
)
from autoloop.api.maintenanceplan import MaintenancePlan, MaintenancePlanStatus
from autoloop.engines import failure
from autoloop.engines import failure_history as fh
from autoloop.metrics.queries import QueryRefused, check_query, escape_label_value
from autoloop.metrics.source import MetricSource, MetricsUnavailable
from autoloop.operator import kube, maintenance_planning
from autoloop.operator.refits import BackgroundRefits

MEMO_KEY: Final = "failure_learning"
FORGET_AFTER_SECONDS: Final = 86400.0
"""A plan with no pass for a day was deleted: its model and clocks are dropped."""
"""Where the per-process `Learner` lives in kopf's memo."""
RETRY_SECONDS: Final = 600.0
"""A training that could not read its history is tried again after 10 min, not every pass."""
HISTORY_STEP_SECONDS: Final = maintenance_planning.RANGE_STEP_SECONDS
"""Resolution of the training history (5 min: 4,032 points per series over 14 days)."""
FINISHED_STEPS: Final = frozenset({"Done", "Skipped", "Failed"})
"""Progress steps after which the plan no longer holds the node."""
_CREATING: Final = threading.Lock()
"""Two plans' first passes may run at once: one Learner per memo."""
SAMPLE_NODE: Final = "node-0"
"""A node name put into signal queries to check that they parse."""


def signal_problems(plan: MaintenancePlan) -> list[str]:
    """Signal queries that do not parse once `$node` is filled in (the schema checks the rest)."""
    problems = []
    for i, signal in enumerate(plan.spec.prediction.signals):
        query = signal_query(signal, escape_label_value(SAMPLE_NODE))
        try:
            check_query(query)
        except QueryRefused as exc:
            problems.append(f"prediction.signals[{i}] ({signal.name}): {exc}")
    return problems


# -- one training ------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Job:
    """Everything a training needs, snapshotted from the pass that started it."""

    nodes: tuple[str, ...]
    spec: Prediction
    horizon_hours: float
    threshold: float
    now: float
    planned: Mapping[str, Sequence[tuple[float, float]]]
    """Each node's own maintenance intervals (its reboots are not failures)."""


@dataclass(frozen=True)
class Trained:
    """A finished training: the model to predict with (None: the prior) and what status says."""

    fingerprint: str
    model: failure.FailurePredictor | None
    status: PredictionStatus
    finished: float
    read_history: bool = True
    """False when Prometheus could not be read: retried after RETRY_SECONDS."""


def _score(s: fh.Score) -> ModelScore:
    def r(v: float | None) -> float | None:
        return None if v is None else round(v, 4)

    return ModelScore(precision=r(s.precision), recall=r(s.recall), pr_auc=r(s.average_precision))


def read_history(
    source: MetricSource, job: Job
) -> tuple[list[failure.NodeSeries], dict[str, list[float]], float]:
    """Signal histories, failure times per node (the label rule) and the first sample's time."""
    hours = parse_duration(job.spec.lookback).total_seconds() / 3600.0
    start = job.now - hours * 3600.0
    ready: dict[str, tuple[Any, Any]] = {}
    history = []
    for node in job.nodes:
        try:
            r = source.range(
                maintenance_planning.ready_query(node), start=start, end=job.now, step=HISTORY_STEP_SECONDS
            )
            ready[node] = (r.timestamps, r.values)
        except MetricsUnavailable as exc:
            if exc.reason not in ("NoData", "AmbiguousResult"):
                raise
        series = maintenance_planning.fetch_series(
            source, node, now=job.now, signals=job.spec.signals, hours=hours
        )
        if series is not None:
            history.append(series)
    failures = fh.readiness_failures(
        ready,
        min_down_seconds=parse_duration(job.spec.failure_after).total_seconds(),
        step_seconds=HISTORY_STEP_SECONDS,
        planned=job.planned,
    )
    firsts = [float(s.timestamps[0]) for s in history if len(s.timestamps)]
    return history, failures, min(firsts, default=job.now)


def train(source: MetricSource, prior: failure.FailurePredictor, job: Job, fingerprint: str) -> Trained:
    """Read the history, and when it is enough, fit a cluster model on its older part, measure it and
    the prior on the newest part, and keep the better (refit on the whole history when it is ours)."""
    spec = job.spec
    try:
        history, failures, first = read_history(source, job)
    except MetricsUnavailable as exc:
        status = PredictionStatus(message=f"history unreadable, retrying: {exc.reason}: {exc.message}"[:1000])
        return Trained(fingerprint, None, status, job.now, read_history=False)
    seen = sorted(t for ts in failures.values() for t in ts)
    span_hours = (job.now - first) / 3600.0
    present = {name for s in history for name in s.metrics}
    status = PredictionStatus(
        failures=len(seen),
        last_failure_at=rfc3339(datetime.fromtimestamp(seen[-1], UTC)) if seen else None,
        history_hours=round(span_hours, 1),
        missing_signals=[s.name for s in spec.signals if s.name not in present],
    )
    need_hours = parse_duration(spec.min_history).total_seconds() / 3600.0
    if len(seen) < spec.min_failures or span_hours < need_hours:
        status.message = (
            f"prior in use: {len(seen)} labelled failures in {span_hours:.0f}h of history; a cluster model "
            f"needs {spec.min_failures} and {need_hours:.0f}h"
        )
        return Trained(fingerprint, None, status, job.now)
    split = fh.split_time(failures, start=first, end=job.now, horizon_hours=job.horizon_hours)
    older = {node: [t for t in ts if t <= split] for node, ts in failures.items()}
    candidate = _predictor(job).fit(fh.truncated(history, split), older)
    measure = {"since": split, "end": job.now, "threshold": job.threshold}
    prior_score = fh.score_model(prior, history, failures, **measure)
    cluster_score = fh.score_model(candidate, history, failures, **measure)
    status.measured_since = rfc3339(datetime.fromtimestamp(split, UTC))
    status.prior, status.cluster = _score(prior_score), _score(cluster_score)
    tested = f"{prior_score.positives} failing of {prior_score.points} held-out points"
    if not fh.better(cluster_score, prior_score):
        status.message = (
            f"prior in use: the cluster model did not rank the newest failures better (PR-AUC "
            f"{_text(cluster_score.average_precision)} vs {_text(prior_score.average_precision)}, {tested})"
        )
        return Trained(fingerprint, None, status, job.now)
    status.model = ModelKind.CLUSTER
    status.message = (
        f"cluster model in use: PR-AUC {_text(cluster_score.average_precision)} vs the prior's "
        f"{_text(prior_score.average_precision)} on the newest history ({tested}); refit on all of it"
    )
    return Trained(fingerprint, _predictor(job).fit(history, failures), status, job.now)


def _predictor(job: Job) -> failure.FailurePredictor:
    return failure.FailurePredictor(horizon_hours=job.horizon_hours, random_state=0)


def _text(value: float | None) -> str:
    return "n/a" if value is None else f"{value:.2f}"


# -- per plan: cadence, adoption, status ------------------------------------------------------------


@dataclass
class Learner:
    """The cluster models of this process, per plan, and the readiness seen across passes."""

    refits: BackgroundRefits[Trained]
    models: dict[str, Trained] = field(default_factory=dict)
    down_since: dict[str, dict[str, float]] = field(default_factory=dict)
    relabel: set[str] = field(default_factory=set)
    """Plans with a label newer than their last training's start (a node came back)."""
    seen: dict[str, float] = field(default_factory=dict)
    """When each plan last had a pass: a plan without one for FORGET_AFTER_SECONDS is gone."""
    lock: threading.Lock = field(default_factory=threading.Lock)

    def touch(self, key: str, now: float) -> None:
        """Record a pass of `key` and forget the plans that had none for FORGET_AFTER_SECONDS
        (deleted: their model and readiness clocks would stay for the life of the process)."""
        with self.lock:
            self.seen[key] = now
            for gone in [k for k, t in self.seen.items() if now - t > FORGET_AFTER_SECONDS]:
                del self.seen[gone]
                self.models.pop(gone, None)
                self.down_since.pop(gone, None)
                self.relabel.discard(gone)

    def came_back(self, key: str, nodes: Sequence[kube.Node], *, now: float, after_seconds: float) -> bool:
        """True when a node that was NotReady at least `after_seconds` is Ready again: a new label."""
        with self.lock:
            down = self.down_since.setdefault(key, {})
            back = False
            for node in nodes:
                if not node.ready:
                    down.setdefault(node.name, now)
                elif node.name in down:
                    back |= now - down.pop(node.name) >= after_seconds
            return back


def learner(memo: Any) -> Learner:
    """The memo's Learner (made on first use), sharing the operator's refit worker when it has one."""
    with _CREATING:
        found: Learner | None = getattr(memo, MEMO_KEY, None)
        if found is None:
            found = Learner(getattr(memo, "refits", None) or BackgroundRefits())
            setattr(memo, MEMO_KEY, found)
        return found


def fingerprint(plan: MaintenancePlan, nodes: Sequence[kube.Node]) -> str:
    """What a trained model depends on: a change means a retraining is due."""
    spec = plan.spec
    return json.dumps(
        [spec.prediction.wire(), spec.horizon, spec.risk_threshold, sorted(n.name for n in nodes)],
        sort_keys=True,
    )


def planned_intervals(plan_status: MaintenancePlanStatus, now: float) -> dict[str, list[tuple[float, float]]]:
    """The plan's own maintenance of each node (start to last step, or now while it runs)."""
    out: dict[str, list[tuple[float, float]]] = {}
    for e in plan_status.progress:
        if not e.started_at:
            continue
        finished = e.step in FINISHED_STEPS and e.updated_at
        end = parse_time(e.updated_at).timestamp() if finished and e.updated_at else now
        out.setdefault(e.node, []).append((parse_time(e.started_at).timestamp(), end))
    return out


def adopt(old: Trained | None, new: Trained, *, version: int) -> Trained:
    """The training to use from now on: `new`, numbered (a cluster model is the next version), or
    `old` kept when `new` could not read its history (retried after RETRY_SECONDS)."""
    if not new.read_history and old is not None:
        status = old.status.model_copy(
            update={"message": f"{new.status.message}; keeping the last model"[:1000]}
        )
        return dataclasses.replace(old, status=status, finished=new.finished, read_history=False)
    new.status.version = version + 1 if new.model is not None else version
    new.status.trained_at = rfc3339(datetime.fromtimestamp(new.finished, UTC))
    return new


def model_for(
    p: maintenance_planning.PlanPass,
    memo: Any,
    nodes: Sequence[kube.Node],
    *,
    horizon_hours: float,
    prior: failure.FailurePredictor | None = None,
) -> failure.FailurePredictor | None:
    """The model this pass predicts with (None: the prior); adopts a finished training, starts a due
    one in the background, and keeps `status.prediction` in step. A training measures the cluster
    model against `prior` (default: the simulator prior for the horizon, made on the worker)."""
    plan, now = p.resource, p.now.timestamp()
    spec = plan.spec.prediction
    key = f"{plan.KIND}/{p.name}"
    state = learner(memo)
    state.touch(key, now)
    previous = p.status.prediction or PredictionStatus()
    if not spec.learn:
        p.status.prediction = PredictionStatus(message="spec.prediction.learn is false: the prior is in use")
        return None
    finished = state.refits.collect(key)
    if finished is not None:
        adopted = adopt(state.models.get(key), finished, version=previous.version)
        state.models[key] = adopted
        p.event("Normal" if adopted.read_history else "Warning", "FailureModel", adopted.status.message)
    current = state.models.get(key)
    fp = fingerprint(plan, nodes)
    every = (
        parse_duration(spec.retrain_every).total_seconds()
        if current is None or current.read_history
        else RETRY_SECONDS
    )
    back = state.came_back(
        key, nodes, now=now, after_seconds=parse_duration(spec.failure_after).total_seconds()
    )
    if back:
        state.relabel.add(key)
    due = current is None or current.fingerprint != fp or now >= current.finished + every
    if (due or key in state.relabel) and not state.refits.in_flight(key):
        state.relabel.discard(key)
        job = Job(
            nodes=tuple(n.name for n in nodes),
            spec=spec,
            horizon_hours=horizon_hours,
            threshold=plan.spec.risk_threshold,
            now=now,
            planned=planned_intervals(p.status, now),
        )
        source: MetricSource = memo.metrics
        state.refits.submit(
            key,
            lambda: train(
                source,
                prior if prior is not None else maintenance_planning.predictor(job.horizon_hours),
                job,
                fp,
            ),
        )
    if current is None:
        waiting = previous.model_copy(update={"model": ModelKind.PRIOR})
        waiting.message = "training on the cluster's history; the prior is in use meanwhile"
        p.status.prediction = waiting
        return None
    status = current.status.model_copy()
    status.next_training_at = rfc3339(datetime.fromtimestamp(current.finished + every, UTC))
    p.status.prediction = status
    return current.model


def observe(
    p: maintenance_planning.PlanPass, memo: Any, nodes: list[kube.Node], *, horizon_hours: float
) -> maintenance_planning.Observation:
    """`maintenance_planning.observe` with the plan's signals and its learned model when it has one."""
    model = model_for(p, memo, nodes, horizon_hours=horizon_hours)
    return maintenance_planning.observe(
        memo.metrics,
        nodes,
        horizon_hours=horizon_hours,
        now=p.now.timestamp(),
        model=model,
        signals=p.resource.spec.prediction.signals,
    )
