"""The soak's invariants, checked over what it recorded from outside the operator (pure, no I/O).

The soak watches the Deployments it created, the resources that manage them and the nodes, and
keeps compact logs: every change of a workload's replicas or requests (`Change`), every decision a
resource's status ever showed (`DecisionRecord`), each loop's spec over time (`Policy` timelines),
every node cordon state (`NodeState`), the spec edits it made and the generations the operator
reported. The functions here judge those logs; `evaluate` joins them into one `Report`.

Knob values are base units keyed `replicas` (count), `cpu` (cores) and `memory` (bytes): the
requests of the workload's first container, as the operator reads them.
"""

from __future__ import annotations

import itertools
import math
from collections import defaultdict
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, Final, Literal

from autoloop.api.common import parse_duration, parse_quantity
from autoloop.api.optimizationloop import OptimizationLoop

KNOBS: Final[tuple[str, ...]] = ("replicas", "cpu", "memory")
ROUNDING: Final[Mapping[str, float]] = {"replicas": 0.0, "cpu": 0.0005, "memory": float(2**20)}
"""What the operator's own rounding may add to a step or push past a bound, per knob. The loop
engine validates unrounded values and the operator then writes CPU in whole millicores, rounded to
the nearest (`format_cpu`: at most 0.5 m), and memory in MiB rounded up (`format_memory`: under
1 MiB); replicas are proposed on an integer grid clipped to integer bounds (no rounding)."""
EPS: Final = 1e-9
HOUR_SECONDS: Final = 3600.0
BUDGET_SLACK_SECONDS: Final = 60.0
"""The trailing hour is counted on apply times, while the operator counts decision (pass) times:
a change applied a little after its decision may fall inside an hour its decision fell outside,
so the window is an hour less this slack."""
COOLDOWN_SLACK_DECIDED: Final = 2.0
"""Decision times in status are whole seconds (rfc3339); a pass may run 0.5 s early."""
COOLDOWN_SLACK_WATCHED: Final = 10.0
"""When a change's decision is unknown its watch time stands in; passes take seconds."""
SPEC_LAG_SECONDS: Final = 30.0
"""A pass may act on a spec read up to this long before its decision (kopf's cache, a slow pass):
a loop's change may follow any spec in effect from this long before its decision to the change."""

Author = Literal["operator", "person", "unknown"]


@dataclass(frozen=True)
class Snapshot:
    """What the soak keeps of a watched workload: its knobs and the two annotations that say who
    wrote last (the operator's decision id; the soak's own edit counter for a person's edit)."""

    knobs: dict[str, float]
    decision: str | None
    edit_marker: str | None


@dataclass(frozen=True)
class Change:
    """One change of a workload's replicas or requests, as the watch saw it."""

    t: float
    workload: str
    """`namespace/name` of the Deployment."""
    before: dict[str, float]
    after: dict[str, float]
    author: Author
    decision: str | None = None
    """The decision annotation after the change."""
    fresh_decision: bool = False
    """The decision annotation changed in this update (every operator patch writes a new id)."""
    listed: bool = False
    """Seen by a list (after the watch's version expired), not a watch event: it may merge several
    updates, so the checks of one step (max step, stale read, applied = recorded) skip it."""

    def changed_knobs(self) -> list[str]:
        return [k for k in KNOBS if not _same(self.before.get(k), self.after.get(k))]


@dataclass(frozen=True)
class DecisionRecord:
    """A decision as its resource's status recorded it (intent is written before acting)."""

    id: str
    t: float
    action: str
    current: dict[str, float]
    proposed: dict[str, float]
    slo_broken: bool = False
    """The decision saw the SLO broken (`observed.slo_met` 0): a change that only adds capacity is
    then a remedy, exempt from the max step, the budgets and (replicas only) the cooldown."""


@dataclass(frozen=True)
class Judged:
    """One operator change as the per-target checks (cooldown, hourly budget) need it."""

    t: float
    rollback: bool
    slack: float
    policies: list[Policy]
    remedy: bool = False
    restarts_pods: bool = False


@dataclass(frozen=True)
class Policy:
    """What the managing resource allows: bounds per knob, max step, cooldown, hourly budget."""

    bounds: Mapping[str, tuple[float, float]]
    max_step_percent: float
    cooldown_seconds: float
    max_changes_per_hour: int


@dataclass(frozen=True)
class AllocationLimits:
    """What a ResourceAllocation's safety policy is derived from (docs/api.md, ResourceAllocation 4)."""

    min_replicas: int
    node_cpu: float
    node_memory: float
    interval_seconds: float


@dataclass(frozen=True)
class Manager:
    kind: Literal["OptimizationLoop", "ResourceAllocation"]
    key: str
    """`namespace/name` of the loop or allocation."""
    allocation: AllocationLimits | None = None


@dataclass(frozen=True)
class NodeState:
    """A node's cordon state as the watch saw it."""

    t: float
    node: str
    cordoned: bool
    cordoned_by: str | None


@dataclass(frozen=True)
class PlanLimits:
    nodes: frozenset[str]
    max_concurrent: int
    horizon_seconds: float


@dataclass(frozen=True)
class Episode:
    """A stretch of time a node was cordoned by one plan."""

    plan: str
    node: str
    start: float
    end: float | None


@dataclass(frozen=True)
class SpecEdit:
    """A spec edit the soak made ("a person"), with the generation the apiserver answered."""

    t: float
    resource: str
    """`Kind/namespace/name` (`Kind/name` for a cluster-scoped one)."""
    generation: int
    what: str


@dataclass(frozen=True)
class Violation:
    check: str
    subject: str
    t: float
    detail: str

    def line(self) -> str:
        return f"{self.check}: {self.subject} at {self.t:.0f}: {self.detail}"


@dataclass
class Record:
    """Everything the soak recorded, ready to be judged."""

    changes: list[Change] = field(default_factory=list)
    decisions: dict[tuple[str, str], DecisionRecord] = field(default_factory=dict)
    """(namespace, decision id) -> the decision as first seen in a status."""
    managers: dict[str, Manager] = field(default_factory=dict)
    """workload `namespace/name` -> the resource that manages it."""
    loop_timelines: dict[str, list[tuple[float, Policy]]] = field(default_factory=dict)
    """loop `namespace/name` -> (in effect from, policy), oldest first."""
    node_states: list[NodeState] = field(default_factory=list)
    plans: dict[str, PlanLimits] = field(default_factory=dict)
    edits: list[SpecEdit] = field(default_factory=list)
    observed_generations: dict[str, int] = field(default_factory=dict)
    """resource -> the highest status.observedGeneration seen."""
    final_generations: dict[str, tuple[int, int | None]] = field(default_factory=dict)
    """resource -> (metadata.generation, status.observedGeneration) after the settle period."""


@dataclass
class Report:
    safety: list[Violation] = field(default_factory=list)
    double: list[Violation] = field(default_factory=list)
    lost: list[Violation] = field(default_factory=list)
    operator_changes: int = 0
    person_changes: int = 0
    merged_changes: int = 0
    listed_changes: int = 0
    rollbacks: int = 0
    node_maintenances: int = 0


# -- reading objects ---------------------------------------------------------------------------------


def _same(a: float | None, b: float | None) -> bool:
    if a is None or b is None:
        return a is b
    return abs(a - b) <= EPS * max(1.0, abs(a))


def same_knobs(a: Mapping[str, float], b: Mapping[str, float]) -> bool:
    return all(_same(a.get(k), b.get(k)) for k in KNOBS)


def knobs_from_wire(values: Mapping[str, Any]) -> dict[str, float]:
    """Settings as the status writes them (`{"replicas": 3, "cpu": "500m", "memory": "256Mi"}`)."""
    out: dict[str, float] = {}
    for knob in KNOBS:
        value = values.get(knob)
        if value is not None:
            out[knob] = float(value) if knob == "replicas" else parse_quantity(str(value))
    return out


def parse_time(text: str) -> float:
    return datetime.fromisoformat(text.replace("Z", "+00:00")).timestamp()


def decision_from_status(entry: Mapping[str, Any]) -> DecisionRecord:
    return DecisionRecord(
        id=str(entry["id"]),
        t=parse_time(str(entry["time"])),
        action=str(entry.get("action", "")),
        current=knobs_from_wire(entry.get("current") or {}),
        proposed=knobs_from_wire(entry.get("proposed") or {}),
        slo_broken=(entry.get("observed") or {}).get("slo_met") == 0,
    )


def loop_policy(spec: Mapping[str, Any]) -> Policy:
    """The bounds and safety of an OptimizationLoop spec (schema defaults filled in), as the
    operator reads them (a replicas minimum below 1 counts as 1)."""
    loop = OptimizationLoop.model_validate({"spec": dict(spec)})
    knobs, safety = loop.spec.knobs, loop.spec.safety
    bounds: dict[str, tuple[float, float]] = {}
    if knobs.replicas is not None:
        bounds["replicas"] = (float(max(knobs.replicas.min, 1)), float(knobs.replicas.max))
    if knobs.cpu is not None:
        bounds["cpu"] = (parse_quantity(knobs.cpu.min), parse_quantity(knobs.cpu.max))
    if knobs.memory is not None:
        bounds["memory"] = (parse_quantity(knobs.memory.min), parse_quantity(knobs.memory.max))
    return Policy(
        bounds=bounds,
        max_step_percent=float(safety.max_step_percent),
        cooldown_seconds=parse_duration(safety.cooldown).total_seconds(),
        max_changes_per_hour=int(safety.max_changes_per_hour),
    )


ALLOCATION_MAX_STEP_PERCENT: Final = 50.0
ALLOCATION_DEFAULT_MAX_REPLICAS: Final = 10
ALLOCATION_MIN_CPU: Final = 0.01
ALLOCATION_MIN_MEMORY: Final = 64.0 * 2**20
ALLOCATION_COOLDOWN_SLACK: Final = 1.0


def allocation_policy(limits: AllocationLimits, before: Mapping[str, float]) -> Policy:
    """A ResourceAllocation's safety policy for one step, restated from docs/api.md: replicas in
    [max(1, minReplicas), max(10, 2 x today's, minReplicas)], CPU and memory between 10m / 64Mi
    and the largest node, max step 50 %, cooldown = interval - 1 s (so at most one change a pass)."""
    today = before.get("replicas", 0.0)
    usable = max(limits.interval_seconds - ALLOCATION_COOLDOWN_SLACK, 1.0)
    return Policy(
        bounds={
            "replicas": (
                float(max(1, limits.min_replicas)),
                float(max(ALLOCATION_DEFAULT_MAX_REPLICAS, 2 * today, limits.min_replicas)),
            ),
            "cpu": (ALLOCATION_MIN_CPU, limits.node_cpu),
            "memory": (ALLOCATION_MIN_MEMORY, limits.node_memory),
        },
        max_step_percent=ALLOCATION_MAX_STEP_PERCENT,
        cooldown_seconds=max(0.0, limits.interval_seconds - ALLOCATION_COOLDOWN_SLACK),
        max_changes_per_hour=max(1, math.ceil(HOUR_SECONDS / usable)),
    )


def attribute(previous: Snapshot, new: Snapshot) -> tuple[Author, bool] | None:
    """Who made the change from `previous` to `new`, and whether it carried a new decision id;
    None when the knobs did not change. A person's edit bumps the soak's edit marker; an operator
    patch writes a new decision id; both at once means the watch missed an update in between (a
    re-list after an outage merged two changes): `unknown`. Neither: a write that reused the
    decision id already on the target, which only a repeated application does."""
    if same_knobs(previous.knobs, new.knobs):
        return None
    person = new.edit_marker != previous.edit_marker
    fresh = new.decision != previous.decision
    if person and fresh:
        return "unknown", True
    if person:
        return "person", False
    return "operator", fresh


# -- single-change checks ----------------------------------------------------------------------------


def _tolerance(knob: str, scale: float) -> float:
    return ROUNDING.get(knob, 0.0) + EPS * max(1.0, abs(scale))


def _outside(knob: str, value: float | None, bounds: tuple[float, float] | None) -> str | None:
    if bounds is None:
        return f"{knob} changed but the spec declares no bounds for it"
    if value is None:
        return f"{knob} removed"
    low, high = bounds
    tol = _tolerance(knob, high)
    if value < low - tol or value > high + tol:
        return f"{knob}={value:g} outside [{low:g}, {high:g}]"
    return None


def bounds_violation(change: Change, policies: Sequence[Policy]) -> str | None:
    """Every changed knob within its declared bounds under at least one admissible policy (a spec
    edit near the decision makes both the old and the new spec admissible)."""
    reasons: list[str] = []
    for policy in policies:
        bad = [
            r for k in change.changed_knobs() if (r := _outside(k, change.after.get(k), policy.bounds.get(k)))
        ]
        if not bad:
            return None
        reasons.append("; ".join(bad))
    return reasons[-1] if reasons else None


def step_violation(change: Change, policies: Sequence[Policy]) -> str | None:
    """No knob moved by more than maxStepPercent of its value before the change (replicas at least
    one), plus the rounding in `ROUNDING`, under at least one admissible policy."""
    reasons: list[str] = []
    for policy in policies:
        limit = policy.max_step_percent / 100.0
        bad: list[str] = []
        for knob in change.changed_knobs():
            before, after = change.before.get(knob), change.after.get(knob)
            if before is None or after is None:
                bad.append(f"{knob} {before} -> {after}: step unmeasurable")
                continue
            allowed = abs(before) * limit
            if knob == "replicas":
                allowed = max(allowed, 1.0)
            if abs(after - before) > allowed + _tolerance(knob, before):
                pct = 100.0 * abs(after - before) / abs(before) if before else math.inf
                bad.append(f"{knob} {before:g} -> {after:g} is {pct:.1f}% > {policy.max_step_percent:g}%")
        if not bad:
            return None
        reasons.append("; ".join(bad))
    return reasons[-1] if reasons else None


def stale_overwrite(change: Change, decision: DecisionRecord) -> str | None:
    """The decision was made from the settings the target had just before the change. If not, the
    operator wrote over a change it never saw (another writer's update is lost)."""
    for knob, value in decision.current.items():
        seen = change.before.get(knob)
        if seen is None or abs(seen - value) > _tolerance(knob, value):
            return f"decided from {knob}={value:g}, but the target had {seen} just before the change"
    return None


def applied_mismatch(change: Change, decision: DecisionRecord) -> str | None:
    """The change made is the one the decision recorded as proposed."""
    for knob, value in decision.proposed.items():
        got = change.after.get(knob)
        if got is None or abs(got - value) > EPS * max(1.0, abs(value)):
            return f"recorded {knob}={value:g}, applied {got}"
    return None


# -- per-target checks -------------------------------------------------------------------------------


def adds_capacity_only(change: Change) -> bool:
    """Nothing went down and something went up (the safety validator's remedy, judged here from
    what the watch saw, not from what the operator says)."""
    knobs = change.changed_knobs()
    deltas = [(change.after.get(k), change.before.get(k)) for k in knobs]
    if not knobs or any(a is None or b is None for a, b in deltas):
        return False
    return all(a > b for a, b in deltas if a is not None and b is not None)


def budget_violations(
    times: Sequence[float],
    max_per_hour: int,
    *,
    slack: float = BUDGET_SLACK_SECONDS,
    exempt: Sequence[float] = (),
) -> list[float]:
    """Times of the changes that made more than `max_per_hour` within a trailing hour (less
    `slack`, see BUDGET_SLACK_SECONDS). Changes at `exempt` times (remedies) count, but are not
    violations themselves."""
    ordered = sorted(times)
    out: list[float] = []
    first = 0
    for i, t in enumerate(ordered):
        while ordered[first] <= t - (HOUR_SECONDS - slack):
            first += 1
        if i - first + 1 > max_per_hour and t not in exempt:
            out.append(t)
    return out


def cooldown_violations(
    changes: Sequence[tuple[float, bool]], cooldown: float, *, slack: float
) -> list[tuple[float, float]]:
    """(time, exempt) of one target's applied changes: each change that is not exempt (a rollback,
    a remedy adding replicas) comes at least `cooldown` (less `slack`) after the previous change of
    any kind (an exempt one counts as a change). Returns (time, gap) of each violation."""
    ordered = sorted(changes)
    out: list[tuple[float, float]] = []
    for (t0, _), (t1, rollback) in itertools.pairwise(ordered):
        if not rollback and t1 - t0 < cooldown - slack:
            out.append((t1, t1 - t0))
    return out


def double_applications(changes: Sequence[Change]) -> list[Violation]:
    """One decision id in two separate changes of a workload, or an operator change that carries
    no decision id at all."""
    seen: dict[tuple[str, str], float] = {}
    out: list[Violation] = []
    for c in sorted(changes, key=lambda c: c.t):
        if c.author != "operator":
            continue
        if c.decision is None:
            out.append(
                Violation("noDecisionId", c.workload, c.t, f"{c.before} -> {c.after} without a decision id")
            )
            continue
        key = (c.workload, c.decision)
        if key in seen:
            out.append(
                Violation(
                    "doubleApply",
                    c.workload,
                    c.t,
                    f"decision {c.decision} applied again ({c.before} -> {c.after}); first at {seen[key]:.0f}",
                )
            )
        else:
            seen[key] = c.t
    return out


def policies_between(timeline: Sequence[tuple[float, Policy]], start: float, end: float) -> list[Policy]:
    """The policies in effect at any moment of [start, end]: the one in effect at `start` (the
    oldest known if none was yet) and every one that took effect up to `end`."""
    if not timeline:
        return []
    ordered = sorted(timeline, key=lambda e: e[0])
    at_start = [p for t, p in ordered if t <= start]
    current = at_start[-1] if at_start else ordered[0][1]
    return [current, *(p for t, p in ordered if start < t <= end)]


# -- nodes -------------------------------------------------------------------------------------------


def cordon_episodes(states: Sequence[NodeState]) -> list[Episode]:
    """Stretches of time each node was cordoned with `cordoned-by` naming one plan."""
    open_: dict[str, tuple[str, float]] = {}
    out: list[Episode] = []
    for s in sorted(states, key=lambda s: s.t):
        holder = s.cordoned_by if s.cordoned and s.cordoned_by else None
        current = open_.get(s.node)
        if current is not None and current[0] != holder:
            out.append(Episode(plan=current[0], node=s.node, start=current[1], end=s.t))
            del open_[s.node]
            current = None
        if holder is not None and current is None:
            open_[s.node] = (holder, s.t)
    out.extend(Episode(plan=p, node=n, start=t, end=None) for n, (p, t) in open_.items())
    return sorted(out, key=lambda e: e.start)


def concurrency_violations(states: Sequence[NodeState], plans: Mapping[str, PlanLimits]) -> list[Violation]:
    """More nodes cordoned by one plan at once than its maxConcurrent (counted after every
    observed node update; reported once each time the count rises above the limit)."""
    held: dict[str, str | None] = {}
    over: dict[str, bool] = defaultdict(bool)
    out: list[Violation] = []
    for s in sorted(states, key=lambda s: s.t):
        held[s.node] = s.cordoned_by if s.cordoned and s.cordoned_by else None
        for plan, limits in plans.items():
            count = sum(1 for p in held.values() if p == plan)
            if count > limits.max_concurrent and not over[plan]:
                nodes = sorted(n for n, p in held.items() if p == plan)
                out.append(
                    Violation(
                        "maxConcurrent",
                        plan,
                        s.t,
                        f"{count} nodes cordoned at once {nodes} > {limits.max_concurrent}",
                    )
                )
            over[plan] = count > limits.max_concurrent
    return out


def foreign_cordons(episodes: Sequence[Episode], plans: Mapping[str, PlanLimits]) -> list[Violation]:
    """A plan cordoned a node it does not select."""
    return [
        Violation(
            "foreignNode", e.plan, e.start, f"cordoned {e.node}, not one of {sorted(plans[e.plan].nodes)}"
        )
        for e in episodes
        if e.plan in plans and e.node not in plans[e.plan].nodes
    ]


def double_drains(episodes: Sequence[Episode], plans: Mapping[str, PlanLimits]) -> list[Violation]:
    """A node maintained (cordoned) twice by the same plan within the plan's horizon: a finished
    node rests for the horizon, and a resumed one stays cordoned (one episode)."""
    last: dict[tuple[str, str], float] = {}
    out: list[Violation] = []
    for e in sorted(episodes, key=lambda e: e.start):
        if e.plan not in plans:
            continue
        key = (e.plan, e.node)
        previous = last.get(key)
        if previous is not None and e.start - previous < plans[e.plan].horizon_seconds:
            out.append(
                Violation(
                    "doubleDrain",
                    e.plan,
                    e.start,
                    f"{e.node} cordoned again {e.start - previous:.0f} s after the previous start "
                    f"(horizon {plans[e.plan].horizon_seconds:.0f} s)",
                )
            )
        last[key] = e.start
    return out


# -- generations -------------------------------------------------------------------------------------


def generation_lags(final: Mapping[str, tuple[int, int | None]]) -> list[Violation]:
    """After the settle period every resource's status describes its current spec."""
    return [
        Violation("observedGeneration", key, 0.0, f"observedGeneration {seen} behind generation {gen}")
        for key, (gen, seen) in sorted(final.items())
        if seen is None or seen < gen
    ]


def unobserved_edits(edits: Sequence[SpecEdit], observed: Mapping[str, int]) -> list[Violation]:
    """Every spec edit was observed: the status reached its generation at some point."""
    return [
        Violation("unobservedEdit", e.resource, e.t, f"{e.what} (generation {e.generation}) never observed")
        for e in edits
        if observed.get(e.resource, 0) < e.generation
    ]


# -- the whole record --------------------------------------------------------------------------------


def _policies_for(record: Record, manager: Manager, change: Change, decided: float | None) -> list[Policy]:
    if manager.allocation is not None:
        return [allocation_policy(manager.allocation, change.before)]
    start = (decided if decided is not None else change.t) - SPEC_LAG_SECONDS
    return policies_between(record.loop_timelines.get(manager.key, []), start, change.t)


def _namespace(workload: str) -> str:
    return workload.split("/", 1)[0]


def _judge_change(record: Record, report: Report, change: Change) -> Judged:
    """The checks of one operator change; returns what the per-target checks need."""
    manager = record.managers.get(change.workload)
    decision = record.decisions.get((_namespace(change.workload), change.decision or ""))
    rollback = decision is not None and decision.action == "RolledBack"
    remedy = decision is not None and decision.slo_broken and adds_capacity_only(change)
    restarts = any(k != "replicas" for k in change.changed_knobs())
    if manager is None:
        report.safety.append(
            Violation("unmanaged", change.workload, change.t, "changed, but nothing manages it")
        )
        return Judged(change.t, rollback, COOLDOWN_SLACK_WATCHED, [], remedy, restarts)
    policies = _policies_for(record, manager, change, decision.t if decision else None)
    if (reason := bounds_violation(change, policies)) is not None:
        report.safety.append(Violation("bounds", change.workload, change.t, f"{change.decision}: {reason}"))
    stepped = not (rollback or remedy or change.listed)
    if stepped and (reason := step_violation(change, policies)) is not None:
        report.safety.append(Violation("maxStep", change.workload, change.t, f"{change.decision}: {reason}"))
    if decision is None:
        if change.decision is not None:
            report.safety.append(
                Violation(
                    "noIntent", change.workload, change.t, f"{change.decision} applied, never in a status"
                )
            )
        return Judged(change.t, rollback, COOLDOWN_SLACK_WATCHED, policies, remedy, restarts)
    if change.listed:
        report.listed_changes += 1
        return Judged(decision.t, rollback, COOLDOWN_SLACK_DECIDED, policies, remedy, restarts)
    if (reason := applied_mismatch(change, decision)) is not None:
        report.safety.append(
            Violation("appliedMismatch", change.workload, change.t, f"{decision.id}: {reason}")
        )
    if (reason := stale_overwrite(change, decision)) is not None:
        report.lost.append(Violation("staleOverwrite", change.workload, change.t, f"{decision.id}: {reason}"))
    return Judged(decision.t, rollback, COOLDOWN_SLACK_DECIDED, policies, remedy, restarts)


def _judge_target(report: Report, workload: str, judged: list[Judged]) -> None:
    """Cooldown and hourly budget over one workload's operator changes (remedies exempt from the
    budget, and from the cooldown when they restart no pod, as rollbacks are from the cooldown)."""
    policies = [p for j in judged for p in j.policies]
    if not policies:
        return
    limit = max(p.max_changes_per_hour for p in policies)
    remedies = [j.t for j in judged if j.remedy]
    for t in budget_violations([j.t for j in judged], limit, exempt=remedies):
        report.safety.append(
            Violation("changeBudget", workload, t, f"more than {limit} changes within an hour")
        )
    cooldown = min(p.cooldown_seconds for p in policies)
    slack = max(j.slack for j in judged)
    exempt = [(j.t, j.rollback or (j.remedy and not j.restarts_pods)) for j in judged]
    for t, gap in cooldown_violations(exempt, cooldown, slack=slack):
        report.safety.append(
            Violation("cooldown", workload, t, f"{gap:.1f} s after the previous change < {cooldown:g} s")
        )


def evaluate(record: Record) -> Report:
    report = Report()
    per_target: dict[str, list[Judged]] = defaultdict(list)
    for change in sorted(record.changes, key=lambda c: c.t):
        if change.author == "person":
            report.person_changes += 1
            continue
        if change.author == "unknown":
            report.merged_changes += 1
            continue
        report.operator_changes += 1
        one = _judge_change(record, report, change)
        report.rollbacks += int(one.rollback)
        per_target[change.workload].append(one)
    for workload, judged in sorted(per_target.items()):
        _judge_target(report, workload, judged)
    report.double.extend(v for v in double_applications(record.changes) if v.check == "doubleApply")
    report.safety.extend(v for v in double_applications(record.changes) if v.check == "noDecisionId")
    episodes = cordon_episodes(record.node_states)
    report.node_maintenances = sum(1 for e in episodes if e.plan in record.plans)
    report.safety.extend(concurrency_violations(record.node_states, record.plans))
    report.safety.extend(foreign_cordons(episodes, record.plans))
    report.double.extend(double_drains(episodes, record.plans))
    report.lost.extend(generation_lags(record.final_generations))
    report.lost.extend(unobserved_edits(record.edits, record.observed_generations))
    return report
