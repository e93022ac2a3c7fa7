"""MaintenancePlan handlers: select nodes, predict, schedule into windows, execute step by step, report.

One pass: select nodes → read their metric history → predict (engines.failure) → schedule the nodes
that need it (engines.schedule) → in `Auto`, advance nodes already in maintenance and start those
whose slot is now, within concurrency limits and unless a blocker fires → report.

Progress of every node lives in status and is written before each step acts (intent, act,
confirm), so a restarted operator resumes exactly where it was: every step's action is
idempotent, a Done node is never drained again, and the concurrency count is the count of
progress entries in an active step. A MaintenancePlan is cluster-scoped: draining evicts the pods of
every namespace on a node (as kured does), so only those who may write cluster-scoped objects
declare one; restarts touch Deployments of the one namespace `actions.restartWorkloads` names.
The plan's finalizer uncordons a node this plan cordoned when the plan is deleted mid-maintenance.
Observing and scheduling live in `maintenance_planning`; this module selects, executes and reports.
"""

from __future__ import annotations

import threading
import time
from datetime import datetime, timedelta
from typing import Any, Final

import kopf
from kubernetes.client.exceptions import ApiException

from autoloop.api.common import GROUP, VERSION, Mode, now_utc, parse_duration, parse_time, rfc3339
from autoloop.api.maintenanceplan import (
    Actions,
    MaintenancePlan,
    MaintenancePlanStatus,
    NodeProgress,
    ScheduledSlot,
)
from autoloop.metrics.queries import QueryRefused, check_query, escape_label_value
from autoloop.metrics.source import MetricSource, MetricsUnavailable
from autoloop.operator import crashpoints, draining, failure_learning, kube, routing, telemetry, wiring
from autoloop.operator.maintenance_planning import (
    DEFAULT_HORIZON_HOURS,
    Observation,
    PlanPass,
    plan_schedule,
    predictor,
    risk_entries,
)
from autoloop.operator.settings import OperatorSettings

KIND: Final = MaintenancePlan.KIND
PLURAL: Final = MaintenancePlan.PLURAL
ACTIVE_STEPS: Final = frozenset({"Cordoned", "Draining", "Acting", "Uncordoning"})
TERMINAL_STEPS: Final = frozenset({"Done", "Skipped", "Failed"})
STEP_ORDER: Final[tuple[str, ...]] = ("Cordoned", "Draining", "Acting", "Uncordoning", "Done")

DRAIN_PASS_SECONDS: Final = 20.0
"""How long one pass keeps retrying refused evictions before it yields (the next pass resumes)."""
SAVE_ATTEMPTS: Final = 5
"""Read-compare-write attempts of one progress write while other status fields keep changing."""


def spec_problems(plan: MaintenancePlan, namespace: str) -> list[str]:
    """Semantic errors the schema cannot express: time zones, blocker PromQL.

    A plan is cluster-scoped (`namespace` is ""): its author may read any namespace's metrics, so
    blocker queries are parsed, not pinned to a namespace.
    """
    problems: list[str] = []
    if namespace:
        problems.append(f"a MaintenancePlan is cluster-scoped; found one in namespace {namespace!r}")
    for i, window in enumerate(plan.spec.windows):
        try:
            window.zone()
        except ValueError as exc:
            problems.append(f"windows[{i}]: {exc}")
    for i, blocker in enumerate(plan.spec.blockers):
        if blocker.query is not None:
            try:
                check_query(blocker.query)
            except QueryRefused as exc:
                problems.append(f"blockers[{i}]: {exc}")
    return problems + failure_learning.signal_problems(plan)


def next_window(plan: MaintenancePlan, now: datetime) -> datetime | None:
    """The start of the next (or current) window opening across all windows."""
    openings = [start for w in plan.spec.windows for start, _ in w.openings(now, days=8)]
    return min(openings, default=None)


def window_open(plan: MaintenancePlan, now: datetime) -> bool:
    return any(start <= now < end for w in plan.spec.windows for start, end in w.openings(now, days=1))


# -- pure helpers: limits, steps, slots ------------------------------------------------------------


def concurrency_limit(value: int | str, total: int) -> int:
    """A count, or a percent of `total` rounded down, never below 1 (the scheduler's rule)."""
    if isinstance(value, str) and value.endswith("%"):
        return max(1, int(value[:-1]) * total // 100)
    return max(1, int(value))


def active(progress: list[NodeProgress]) -> list[NodeProgress]:
    return [e for e in progress if e.step in ACTIVE_STEPS]


def room_for(
    node: str,
    *,
    progress: list[NodeProgress],
    labels: dict[str, dict[str, str]],
    limit: int,
    group_limits: dict[str, int],
) -> str | None:
    """Why `node` cannot start now without exceeding a limit, or None when it can."""
    running = active(progress)
    if len(running) >= limit:
        return f"{len(running)} of {limit} nodes already in maintenance"
    mine = labels.get(node, {})
    for key, cap in group_limits.items():
        if key not in mine:
            continue
        same = [e.node for e in running if labels.get(e.node, {}).get(key) == mine[key]]
        if len(same) >= cap:
            return f"{len(same)} of {cap} nodes with {key}={mine[key]} already in maintenance"
    return None


def spacing_wait(progress: list[NodeProgress], *, min_spacing: timedelta, now: datetime) -> timedelta:
    """How long until another node may start, given the latest start in progress."""
    starts = [parse_time(e.started_at) for e in progress if e.started_at]
    if not starts or min_spacing <= timedelta(0):
        return timedelta(0)
    return max(timedelta(0), max(starts) + min_spacing - now)


def steps_for(actions: Actions) -> tuple[str, ...]:
    """The active steps this plan's actions use, in order, followed by Done."""
    acting = bool(actions.restart_workloads or actions.annotate or actions.ready_annotation)
    wanted = {
        "Cordoned": actions.cordon,
        "Draining": actions.drain,
        "Acting": acting,
        "Uncordoning": actions.uncordon and actions.cordon,
        "Done": True,
    }
    return tuple(s for s in STEP_ORDER if wanted[s])


def next_step(step: str, actions: Actions) -> str:
    """The step after `step` (a new node starts at next_step("Pending", ...))."""
    order = steps_for(actions)
    if step == "Pending":
        return order[0]
    later = STEP_ORDER[STEP_ORDER.index(step) + 1 :]
    return next(s for s in later if s in order)


def in_slot(slot: ScheduledSlot, now: datetime) -> bool:
    return parse_time(slot.start) <= now < parse_time(slot.end)


def due(schedule: list[ScheduledSlot], now: datetime) -> list[str]:
    """Nodes whose scheduled slot contains now, in start order."""
    return [s.node for s in sorted(schedule, key=lambda s: s.start) if in_slot(s, now)]


def resting(progress: list[NodeProgress], *, cooldown: timedelta, now: datetime) -> set[str]:
    """Nodes not to schedule: in maintenance, or finished less than `cooldown` ago."""
    recent = {
        e.node
        for e in progress
        if e.step in TERMINAL_STEPS and e.updated_at and now - parse_time(e.updated_at) < cooldown
    }
    return recent | {e.node for e in active(progress)}


def blocker_queries(plan: MaintenancePlan) -> list[str]:
    """Blocker PromQL: user queries as parsed; alerts as ALERTS{...} with the name escaped."""
    queries: list[str] = []
    for blocker in plan.spec.blockers:
        if blocker.query is not None:
            queries.append(check_query(blocker.query))
        elif blocker.alert is not None:
            queries.append(f'ALERTS{{alertname="{escape_label_value(blocker.alert)}",alertstate="firing"}}')
    return queries


# -- execute ----------------------------------------------------------------------------------------


class Executor:
    """Moves nodes through their steps; every step change is written to status before it acts."""

    def __init__(self, p: PlanPass, clients: kube.Clients) -> None:
        self.p = p
        self.clients = clients
        self.plan = p.resource
        self.owner = kube.object_key(p.namespace, p.name)
        self.stored = [e.wire() for e in p.status.progress]
        """The progress as stored after our last write: anything else there means another writer."""
        self._t0 = time.monotonic()

    def save(self) -> None:
        """Write progress durably; kube.Conflict if another writer changed it since our last write.

        Other status fields may change meanwhile (another replica's pass writes them); only a
        change of progress is a conflict. The resourceVersion read with it makes the check and
        the write one atomic step (a 409 in between is retried).
        """
        self.p.status.in_progress = len(active(self.p.status.progress))
        wanted = [e.wire() for e in self.p.status.progress]
        for _ in range(SAVE_ATTEMPTS):
            version, stored = fresh_progress(self.p, self.clients)
            if [e.wire() for e in stored] != self.stored:
                raise kube.Conflict("progress was changed by another writer")
            written = {"progress": wanted, "inProgress": self.p.status.in_progress}
            try:
                new_version = kube.patch_status(
                    self.clients,
                    plural=PLURAL,
                    namespace=self.p.namespace,
                    name=self.p.name,
                    status=written,
                    resource_version=version,
                )
            except kube.Conflict:
                continue
            self.stored = wanted
            self.p.resource_version = new_version or version
            self.p.written.update(written)
            return
        raise kube.Conflict(f"status kept changing over {SAVE_ATTEMPTS} attempts")

    def enter(self, entry: NodeProgress, step: str, message: str, *, warning: bool = False) -> None:
        entry.step = step
        entry.updated_at = rfc3339(self.now())
        entry.message = message[:1000]
        self.save()
        self.p.event("Warning" if warning else "Normal", step, f"{entry.node}: {message}"[:1000])

    def now(self) -> datetime:
        # Steps can take a while (drain retries): time them on the clock, not at the pass start.
        return self.p.now + timedelta(seconds=time.monotonic() - self._t0)

    def start(self, node: str) -> None:
        entry = NodeProgress(node=node, step="Pending", started_at=rfc3339(self.now()))
        self.p.status.progress = [e for e in self.p.status.progress if e.node != node] + [entry]
        self.enter(entry, next_step("Pending", self.plan.spec.actions), "maintenance started")
        self.advance(entry)

    def advance(self, entry: NodeProgress) -> None:
        actions = self.plan.spec.actions
        while entry.step in ACTIVE_STEPS:
            if not self.perform(entry):
                if entry.step in TERMINAL_STEPS:  # skipped or failed inside the step
                    self.release(entry)
                return
            following = next_step(entry.step, actions)
            messages = {
                "Draining": "cordoned; draining",
                "Acting": "drained; acting",
                "Uncordoning": "uncordoning",
                "Done": "maintenance done",
            }
            self.enter(entry, following, messages[following])
        self.release(entry)

    def perform(self, entry: NodeProgress) -> bool:
        """Do one step's (idempotent) action; True when it is complete."""
        if entry.step == "Cordoned":
            draining.cordon(self.clients, entry.node, owner=self.owner)
            crashpoints.reached("plan-after-cordon")
            return True
        if entry.step == "Draining":
            return self.drain(entry)
        if entry.step == "Acting":
            return self.act(entry)
        draining.uncordon(self.clients, entry.node, owner=self.owner)
        crashpoints.reached("plan-after-uncordon")
        return True

    def route_away(self) -> bool:
        """Move routed traffic off the nodes in maintenance before their pods go; True when done."""
        end = time.monotonic() + DRAIN_PASS_SECONDS
        running = frozenset(e.node for e in active(self.p.status.progress))
        busy = routing.about_to_drain(self.p, self.clients, running, now=self.now())
        while (wait := routing.Router(self.p, self.clients, now=self.now()).shift(busy)) is not None:
            if time.monotonic() + wait > end:
                return False
            time.sleep(wait)
        return True

    def drain(self, entry: NodeProgress) -> bool:
        spec = self.plan.spec
        if spec.routing.routes and not self.route_away():
            self.save()
            return False
        since = parse_time(entry.updated_at or rfc3339(self.now()))
        # A routed node's drain (and its timeout) starts when its traffic has moved.
        since = max([since, *routing.shifted_at(self.p.status, entry.node)])
        timeout = parse_duration(spec.drain.timeout)
        retry = parse_duration(spec.drain.retry_interval).total_seconds()
        budget_end = time.monotonic() + DRAIN_PASS_SECONDS
        while True:
            pods = draining.to_evict(draining.node_pods(self.clients, entry.node), spec.drain.pod_selector)
            self.count_interrupted_evictions(entry, pods)
            if not pods:
                return True
            refused: list[str] = []
            due = [pod for pod in pods if not pod.terminating]
            if sorted(pod.uid for pod in due) != sorted(entry.evicting):
                # Intent first: a crash after an eviction and before the count is saved is
                # counted by the resumed drain (`count_interrupted_evictions`).
                entry.evicting = [pod.uid for pod in due]
                self.save()
            for pod in due:
                outcome, message = draining.evict(
                    self.clients, pod, grace_period_seconds=spec.drain.grace_period_seconds
                )
                if outcome is draining.Eviction.EVICTED:
                    entry.evicted += 1
                    entry.evicting = [uid for uid in entry.evicting if uid != pod.uid]
                    crashpoints.reached("plan-after-evict")
                elif outcome is draining.Eviction.REFUSED:
                    refused.append(f"{pod.key}: {message}")
            if refused:
                entry.message = f"eviction refused, retrying every {spec.drain.retry_interval}: {refused[0]}"[
                    :1000
                ]
            if self.now() - since >= timeout:
                return self.give_up(entry, refused, pods)
            if time.monotonic() + retry > budget_end:
                self.save()
                return False
            time.sleep(retry)

    @staticmethod
    def count_interrupted_evictions(entry: NodeProgress, pods: list[draining.Pod]) -> None:
        """Pods a round meant to evict (`evicting`, saved before it evicted them) that are now gone
        or terminating were evicted by it before a crash cut the round short: count them once."""
        if not entry.evicting:
            return
        still_running = {pod.uid for pod in pods if not pod.terminating}
        done = [uid for uid in entry.evicting if uid not in still_running]
        entry.evicted += len(done)
        entry.evicting = [uid for uid in entry.evicting if uid in still_running]

    def give_up(self, entry: NodeProgress, refused: list[str], pods: list[draining.Pod]) -> bool:
        spec = self.plan.spec
        blocking = refused[0] if refused else f"{len(pods)} pods still terminating"
        if spec.force:
            try:
                for pod in pods:
                    draining.delete_pod(
                        self.clients, pod, grace_period_seconds=spec.drain.grace_period_seconds
                    )
            except ApiException as exc:  # e.g. 403: the shipped RBAC grants no pod delete
                self.enter(
                    entry,
                    "Failed",
                    f"force delete refused ({exc.status} {exc.reason}); {blocking}",
                    warning=True,
                )
                return False
            entry.message = f"drain timed out after {spec.drain.timeout}; deleted {len(pods)} pods (force)"
            self.p.event(
                "Warning",
                "ForceDeleted",
                f"{entry.node}: drain timed out ({blocking}); deleted "
                f"{', '.join(pod.key for pod in pods)} bypassing their PodDisruptionBudgets (spec.force)"[
                    :1000
                ],
            )
            return True
        self.enter(
            entry,
            "Skipped",
            f"drain timed out after {spec.drain.timeout}, blocked by {blocking}",
            warning=True,
        )
        return False

    def act(self, entry: NodeProgress) -> bool:
        actions = self.plan.spec.actions
        stamp = entry.started_at or rfc3339(self.now())
        marker = f"{self.owner}@{stamp}"
        node = kube.read_node(self.clients, entry.node)
        if node is None:
            return False
        if node.annotations.get(draining.MAINTENANCE_ANNOTATION) != marker:
            restart = actions.restart_workloads
            if restart is not None:
                names = draining.restart_deployments(
                    self.clients, restart.namespace, restart.selector, stamp=stamp
                )
                if names:
                    restarted = ", ".join(f"{restart.namespace}/{n}" for n in names)
                    self.p.event("Normal", "Restarted", f"{entry.node}: restarted {restarted}"[:1000])
            annotations: dict[str, str | None] = {**actions.annotate, draining.MAINTENANCE_ANNOTATION: marker}
            if actions.ready_annotation:
                annotations[actions.ready_annotation] = None  # a stale "ready" from an earlier turn
            draining.annotate_node(self.clients, entry.node, annotations)
            crashpoints.reached("plan-after-act")
            return not actions.ready_annotation
        if not actions.ready_annotation or node.annotations.get(actions.ready_annotation):
            return True
        since = parse_time(entry.updated_at or stamp)
        if self.now() - since >= parse_duration(actions.ready_timeout):
            self.enter(
                entry,
                "Failed",
                f"node annotation {actions.ready_annotation} not set within {actions.ready_timeout}",
                warning=True,
            )
        return False

    def release(self, entry: NodeProgress) -> None:
        """A finished node is uncordoned if we still hold it (Done keeps it only when uncordon=false)."""
        if entry.step == "Done" and not (self.plan.spec.actions.uncordon and self.plan.spec.actions.cordon):
            return
        if draining.uncordon(self.clients, entry.node, owner=self.owner) and entry.step != "Done":
            self.p.event("Normal", "Uncordoned", f"{entry.node}: uncordoned after {entry.step.lower()}")


def drop_missing(p: PlanPass, clients: kube.Clients, selected: set[str]) -> None:
    """Progress entries of nodes that no longer exist are reported and dropped."""
    kept = []
    for entry in p.status.progress:
        if entry.node not in selected and kube.read_node(clients, entry.node) is None:
            p.event("Warning", "NodeGone", f"{entry.node} disappeared during step {entry.step}; dropped")
            continue
        kept.append(entry)
    p.status.progress = kept


def check_blockers(p: PlanPass, source: MetricSource) -> bool:
    """True (and condition Blocked) when a blocker returns a series or cannot be evaluated."""
    for query in blocker_queries(p.resource):
        try:
            source.instant(query)
        except MetricsUnavailable as exc:
            if exc.reason == "NoData":
                continue
            if exc.reason in ("AmbiguousResult", "NaN"):
                p.condition("Blocked", "True", "BlockerFiring", f"{query} returns series", event="Warning")
            else:
                p.condition("Blocked", "True", "BlockerFailed", f"{query}: {exc.message}", event="Warning")
            return True
        p.condition("Blocked", "True", "BlockerFiring", f"{query} returns a series", event="Warning")
        return True
    p.condition("Blocked", "False", "Clear", "no blocker fires", event="Normal")
    return False


def fresh_progress(p: PlanPass, clients: kube.Clients) -> tuple[str, list[NodeProgress]]:
    version, status = draining.read_plan_status(clients, plural=PLURAL, namespace=p.namespace, name=p.name)
    return version, MaintenancePlanStatus.model_validate(status).progress


def execute(p: PlanPass, clients: kube.Clients, nodes: list[kube.Node], obs: Observation) -> None:
    """Act only if the progress we planned from is still the stored one; stop at the first conflict."""
    stored = fresh_progress(p, clients)[1]
    if [e.wire() for e in stored] != [e.wire() for e in p.status.progress]:
        p.status.progress = stored
        p.event("Normal", "ProgressChanged", "progress changed since the pass began; acting next pass")
        return
    try:
        advance_and_start(p, Executor(p, clients), nodes, obs)
    except kube.Conflict as exc:
        # Another writer (a second operator replica) moved first: keep its progress, not ours.
        p.status.progress = fresh_progress(p, clients)[1]
        p.event("Warning", "Conflict", f"{exc}; not acting this pass")


def advance_and_start(p: PlanPass, run: Executor, nodes: list[kube.Node], obs: Observation) -> None:
    """Advance nodes in maintenance, then start the nodes whose slot is now, within the limits."""
    spec = p.resource.spec
    for entry in active(p.status.progress):
        run.advance(entry)
    # A crash between a terminal step's write and its uncordon leaves the node cordoned by us.
    held = {n.name for n in nodes if n.annotations.get(kube.CORDONED_BY_ANNOTATION) == run.owner}
    for entry in p.status.progress:
        if entry.step in TERMINAL_STEPS and entry.node in held:
            run.release(entry)
    if spec.routing.routes:  # routes return once their nodes are done, uncordoned and Ready
        ready = {n.name for n in nodes if n.ready and not n.unschedulable}
        busy = frozenset(e.node for e in active(p.status.progress)) | routing.scheduled_now(p, run.now())
        routing.Router(p, run.clients, now=run.now()).settle(busy, ready=ready)
    labels = {n.name: n.labels for n in nodes}
    limit = concurrency_limit(spec.max_concurrent, len(nodes))
    groups = {
        g.label_key: concurrency_limit(g.max_concurrent, sum(1 for n in nodes if g.label_key in n.labels))
        for g in spec.groups
    }
    waiting: list[str] = []
    known = {n.name for n in nodes}
    for node in due(p.status.schedule, p.now):
        if node not in known:
            continue
        if obs.down is not None:
            waiting.append(f"{node}: metrics unavailable")
            break
        if not window_open(p.resource, run.now()):
            waiting.append(f"{node}: window closed")
            break
        reason = room_for(node, progress=p.status.progress, labels=labels, limit=limit, group_limits=groups)
        wait = spacing_wait(p.status.progress, min_spacing=parse_duration(spec.min_spacing), now=p.now)
        if reason is None and wait > timedelta(0):
            reason = f"minSpacing: next start in {int(wait.total_seconds())}s"
        if reason is not None:
            waiting.append(f"{node}: {reason}")
            continue
        run.start(node)
        p.status.schedule = [s for s in p.status.schedule if s.node != node]
    if waiting:
        p.status.message = f"waiting: {'; '.join(waiting)}"[:300]


def report(p: PlanPass) -> None:
    running = active(p.status.progress)
    p.status.in_progress = len(running)
    telemetry.maintenance_progress(
        p.name, scheduled=len(p.status.schedule), steps=[e.step for e in p.status.progress]
    )
    if running:
        text = ", ".join(f"{e.node} {e.step}" for e in running)
        p.condition("InProgress", "True", "Maintaining", text, event="Normal")
    elif p.resource.spec.mode == Mode.AUTO:
        p.condition("InProgress", "False", "Idle", "no node in maintenance")
    else:
        p.condition(
            "InProgress", "False", "RecommendOnly", "mode Recommend: the plan is published, nothing runs"
        )
    finished = [e for e in p.status.progress if e.step in TERMINAL_STEPS]
    if finished and not running and not p.status.schedule:
        outcome = ", ".join(f"{e.node} {e.step}" for e in finished)
        p.condition("Completed", "True", "AllFinished", outcome[:4000], event="Normal")
    else:
        p.condition(
            "Completed", "False", "Pending", f"{len(running)} running, {len(p.status.schedule)} scheduled"
        )


def run_pass(p: PlanPass, memo: kopf.Memo) -> None:
    clients: kube.Clients = memo.clients
    source: MetricSource = memo.metrics
    plan = p.resource
    with telemetry.timed_step(KIND, "select_nodes"):
        nodes = select_nodes(p, clients)
    drop_missing(p, clients, {n.name for n in nodes})
    upcoming = next_window(plan, p.now)
    p.status.next_window = rfc3339(upcoming) if upcoming is not None else None
    p.status.in_progress = len(active(p.status.progress))
    if not nodes:
        p.waiting("NoNodes", "no node matches the plan")
        return
    if upcoming is None:
        p.condition(
            "WindowsOpen", "False", "NeverOpens", "no window opens in the next 8 days", event="Warning"
        )
    else:
        p.condition("WindowsOpen", "True", "Scheduled", f"next window starts {rfc3339(upcoming)}")
    horizon_hours = parse_duration(plan.spec.horizon).total_seconds() / 3600.0
    with telemetry.timed_step(KIND, "predict"):
        obs = failure_learning.observe(p, memo, nodes, horizon_hours=horizon_hours)
    p.status.predictions = risk_entries(obs.predictions)
    telemetry.failure_risk(p.name, {r.node: r.probability for r in p.status.predictions})
    p.status.nodes_at_risk = sum(
        1 for r in obs.predictions.values() if r.probability >= plan.spec.risk_threshold
    )
    if obs.down is not None:
        p.condition(
            "MetricsAvailable",
            "False",
            "PrometheusUnavailable",
            f"no new maintenance starts: {obs.down}",
            event="Warning",
        )
    elif obs.unknown:
        unknown = ", ".join(obs.unknown)
        p.condition(
            "MetricsAvailable",
            "False",
            "NoData",
            f"risk unknown (no recent samples): {unknown}"[:4000],
            event="Warning",
        )
    else:
        p.condition("MetricsAvailable", "True", "Available", f"predicted {len(obs.predictions)} nodes")
    with telemetry.timed_step(KIND, "schedule"):
        horizon = parse_duration(p.resource.spec.horizon)
        skip = resting(p.status.progress, cooldown=horizon, now=p.now)
        plan_schedule(p, clients, nodes, obs, skip=skip)
    if plan.spec.suspend:
        p.condition("Ready", "True", "Suspended", "suspended: planning only, no maintenance runs")
        p.status.phase = "Suspended"
        p.status.message = "suspended"
        report(p)
        return
    p.condition("Ready", "True", "Planning", f"{len(nodes)} nodes under watch")
    p.status.phase = "Planning"
    p.status.message = (
        f"{len(nodes)} nodes, {p.status.nodes_at_risk} at risk, {len(p.status.schedule)} scheduled; "
        f"next window {p.status.next_window or 'never'}"
    )
    if plan.spec.mode == Mode.AUTO:
        if check_blockers(p, source):
            restore_routes(p, clients)
            p.status.phase = "Blocked"
            p.status.message = "blocked: no step starts while a blocker fires"
        else:
            with telemetry.timed_step(KIND, "execute"):
                execute(p, clients, nodes, obs)
            p.status.phase = "Maintaining" if active(p.status.progress) else "Planning"
    elif plan.spec.routing.routes and p.status.schedule:
        routing.recommend(p, clients, min(p.status.schedule, key=lambda s: s.start).node)
    report(p)


def restore_routes(p: PlanPass, clients: kube.Clients) -> None:
    """While a blocker fires no step runs: routed traffic goes back to where it was meanwhile."""
    if any(s.phase in routing.ACTIVE for s in p.status.routes):
        try:
            routing.Router(p, clients, now=p.now).settle(frozenset(), ready=set(), everything=True)
        except kube.Conflict as exc:
            p.event("Warning", "Conflict", f"{exc}; routes restored next pass")


def select_nodes(p: PlanPass, clients: kube.Clients) -> list[kube.Node]:
    """Nodes the plan covers: the selector's and the explicitly named ones; missing names reported."""
    plan = p.resource
    nodes: dict[str, kube.Node] = {}
    if plan.spec.node_selector is not None:
        for node in kube.list_nodes(clients, plan.spec.node_selector.to_query()):
            nodes[node.name] = node
    missing: list[str] = []
    for name in plan.spec.nodes:
        if name not in nodes:
            found = kube.read_node(clients, name)
            if found is None:
                missing.append(name)
            else:
                nodes[name] = found
    if missing:
        p.condition("NodesFound", "False", "NodeMissing", f"not found: {', '.join(missing)}", event="Warning")
    else:
        p.condition("NodesFound", "True", "Found", f"{len(nodes)} nodes selected")
    return sorted(nodes.values(), key=lambda n: n.name)


reconcile = wiring.make_reconciler(
    kind=MaintenancePlan, status_type=MaintenancePlanStatus, spec_problems=spec_problems, run_pass=run_pass
)


def release_nodes(
    *,
    spec: kopf.Spec,
    status: kopf.Status,
    namespace: str | None,
    name: str,
    memo: Any,
    logger: kopf.Logger,
    **_: Any,
) -> None:
    """On deletion, uncordon every node this plan cordoned and did not finish; restore its routes."""
    clients: kube.Clients = memo.clients
    owner = kube.object_key(namespace or "", name)
    progress: list[dict[str, Any]] = list(dict(status or {}).get("progress") or [])
    for entry in progress:
        if entry.get("step") not in ACTIVE_STEPS:
            continue
        if draining.uncordon(clients, entry["node"], owner=owner):
            logger.info(f"uncordoned {entry['node']}: plan {owner} deleted mid-maintenance")
    routes = [r for r in dict(status or {}).get("routes") or [] if r.get("phase") in routing.ACTIVE]
    if routes:
        plan = MaintenancePlan.model_validate({"spec": dict(spec)})
        kept = MaintenancePlanStatus.model_validate(dict(status or {}))
        restored = routing.release(plan=plan, status=kept, name=name, clients=clients, now=now_utc())
        logger.info(f"restored routes {', '.join(restored) or 'none'}: plan {owner} deleted")


def warm_predictor(**_: Any) -> None:
    """Train the default predictor in the background at startup, so the first pass does not wait."""
    threading.Thread(
        target=predictor, args=(DEFAULT_HORIZON_HOURS,), name="warm-predictor", daemon=True
    ).start()


def register(registry: kopf.OperatorRegistry, settings: OperatorSettings) -> None:
    wiring.register_timer(registry, PLURAL, reconcile, interval=settings.tick_seconds, id="reconcile")
    kopf.on.delete(GROUP, VERSION, PLURAL, id="release-nodes", registry=registry)(release_nodes)
    kopf.on.startup(id="warm-predictor", registry=registry)(warm_predictor)
    telemetry.register_cleanup(registry, PLURAL, KIND)
