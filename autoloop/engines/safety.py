"""The safety validator: every proposed change of settings passes here before it is applied.

Contract: `validate(change, policy, context) -> SafetyResult` is pure. The validator is a list of
small named rules (`DEFAULT_RULES`), each a function `(change, policy, context) -> RuleVerdict`
with its own test; they are assembled in one place (`DEFAULT_RULES`) and all run, so the status
can show every rule's verdict and reason, not only the first failure. The validator fails closed:
a rule that lacks an input it needs, or raises, rejects with the reason.

The change is generic ("these settings of this target, from these values to those"), so the
OptimizationLoop and the ResourceAllocation share it. Knob values are plain floats in base units:
replicas (count), cpu (cores), memory (bytes).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Final, Literal

from pydantic import BaseModel, ConfigDict, Field

# Knobs whose change makes Kubernetes replace pods (a new ReplicaSet for a Deployment). Replicas
# only removes pods when it goes down, handled in `_restarts_pods`.
POD_RESTARTING_KNOBS: Final[frozenset[str]] = frozenset(
    {"cpu_request", "cpu_limit", "memory_request", "memory_limit", "cpu", "memory"}
)
# The smallest replica step always allowed: a percentage cap on 2 replicas would forbid any step.
MIN_REPLICA_STEP: Final[float] = 1.0
SECONDS_PER_HOUR: Final[float] = 3600.0
SECONDS_PER_DAY: Final[float] = 86_400.0
# Relative tolerance when comparing floats against bounds (quantity rounding is ~1e-3).
BOUND_TOLERANCE: Final[float] = 1e-9
# Why a remedy passes the churn rules, as the status shows it.
REMEDY_REASON: Final[str] = "the SLO is broken now and the change only adds capacity (remedy)"

ChangeKind = Literal["tune", "rollback"]


class Target(BaseModel):
    """The object a change acts on."""

    model_config = ConfigDict(frozen=True)
    namespace: str
    kind: str
    name: str
    api_version: str = "apps/v1"


class ProposedChange(BaseModel):
    """A proposed change of settings of one target: knob name -> value in base units."""

    model_config = ConfigDict(frozen=True)
    target: Target
    current: dict[str, float]
    proposed: dict[str, float]
    kind: ChangeKind = "tune"
    """`rollback` returns to the last good settings: it is exempt from cooldown and max step."""

    def changed_knobs(self) -> list[str]:
        return sorted(k for k, v in self.proposed.items() if k not in self.current or v != self.current[k])


class KnobBounds(BaseModel):
    model_config = ConfigDict(frozen=True)
    min: float
    max: float


class SafetyPolicy(BaseModel):
    """What the loop's spec allows (spec.knobs, spec.safety, spec.targetRef)."""

    model_config = ConfigDict(frozen=True)
    owner_namespace: str
    target: Target
    bounds: dict[str, KnobBounds] = Field(default_factory=dict)
    max_step_percent: float = 50.0
    cooldown_seconds: float = 300.0
    max_changes_per_hour: int = 4
    max_changes_per_day: int | None = None
    """None: only the hourly budget. Bounds churn on days of intermittent bursts."""
    min_confidence: float = 0.5
    slo_guard: bool = True


class PdbStatus(BaseModel):
    """PodDisruptionBudget headroom for the target's pods; `present=False`: no PDB selects them."""

    model_config = ConfigDict(frozen=True)
    present: bool
    disruptions_allowed: int = 0


class SafetyContext(BaseModel):
    """What the validator needs to know about the world now. None means unknown (fails closed)."""

    model_config = ConfigDict(frozen=True)
    now: float
    """Unix seconds."""
    last_change_at: float | None = None
    """Unix seconds of the last applied change; None: never changed (not unknown)."""
    recent_change_times: tuple[float, ...] = ()
    """Unix seconds of the applied changes of (at least) the last 24 h when a daily budget is set,
    of the last hour otherwise."""
    slo_met_now: bool | None = None
    forecast_slo_met: bool | None = None
    """Does the forecast say the proposed settings keep the SLO over the horizon?"""
    confidence: float | None = None
    pdb: PdbStatus | None = None
    anomaly_active: bool | None = False


class RuleVerdict(BaseModel):
    model_config = ConfigDict(frozen=True)
    rule: str
    passed: bool
    reason: str


class SafetyResult(BaseModel):
    model_config = ConfigDict(frozen=True)
    accepted: bool
    verdicts: tuple[RuleVerdict, ...]

    def reasons(self) -> list[str]:
        """The reasons of the rules that rejected, for the status message."""
        return [f"{v.rule}: {v.reason}" for v in self.verdicts if not v.passed]

    def remedy_exemptions(self) -> list[str]:
        """The rules that passed the change only because it is a remedy (`remedy_now`)."""
        return [v.rule for v in self.verdicts if v.passed and REMEDY_REASON in v.reason]


Rule = Callable[[ProposedChange, SafetyPolicy, SafetyContext], RuleVerdict]


def _ok(rule: str, reason: str) -> RuleVerdict:
    return RuleVerdict(rule=rule, passed=True, reason=reason)


def _no(rule: str, reason: str) -> RuleVerdict:
    return RuleVerdict(rule=rule, passed=False, reason=reason)


def ownership(change: ProposedChange, policy: SafetyPolicy, _: SafetyContext) -> RuleVerdict:
    """Only the target named in spec.targetRef, in the loop's own namespace."""
    t, want = change.target, policy.target
    if t.namespace != policy.owner_namespace:
        return _no(
            "ownership", f"target namespace {t.namespace!r} is not the loop's {policy.owner_namespace!r}"
        )
    if (t.kind, t.name, t.api_version) != (want.kind, want.name, want.api_version):
        return _no("ownership", f"target {t.kind}/{t.name} is not spec.targetRef {want.kind}/{want.name}")
    return _ok("ownership", f"{t.kind}/{t.name} in {t.namespace} is the loop's own target")


def knob_bounds(change: ProposedChange, policy: SafetyPolicy, _: SafetyContext) -> RuleVerdict:
    """Every changed knob lies within its declared [min, max]; changing an undeclared knob rejects.

    A knob the spec does not declare may ride along unchanged (the loop proposes whole settings)."""
    for knob in change.changed_knobs():
        value = change.proposed[knob]
        bounds = policy.bounds.get(knob)
        if bounds is None:
            return _no("bounds", f"{knob} has no declared bounds")
        tol = BOUND_TOLERANCE * max(1.0, abs(bounds.max))
        if not (bounds.min - tol <= value <= bounds.max + tol):
            return _no("bounds", f"{knob}={value:g} outside [{bounds.min:g}, {bounds.max:g}]")
    return _ok("bounds", "all knobs within bounds")


def max_step(change: ProposedChange, policy: SafetyPolicy, ctx: SafetyContext) -> RuleVerdict:
    """No knob moves by more than maxStepPercent of its current value (replicas: at least ±1).

    A rollback is exempt, and so is a remedy (`remedy_now`): while the SLO is broken, capacity
    added in 50 % steps arrives a pass too late each time, and a change that only adds can
    overshoot the need but not break what works."""
    if change.kind == "rollback":
        return _ok("maxStep", "rollback to last good settings is exempt")
    if remedy_now(change, ctx):
        return _ok("maxStep", f"exempt: {REMEDY_REASON}")
    limit = policy.max_step_percent / 100.0
    for knob, value in sorted(change.proposed.items()):
        current = change.current.get(knob)
        if current is None:
            return _no("maxStep", f"current value of {knob} unknown")
        allowed = abs(current) * limit
        if knob == "replicas":
            allowed = max(allowed, MIN_REPLICA_STEP)
        if abs(value - current) > allowed + BOUND_TOLERANCE * max(1.0, abs(current)):
            pct = 100.0 * abs(value - current) / abs(current) if current else float("inf")
            return _no("maxStep", f"{knob} step {pct:.0f}% exceeds {policy.max_step_percent:g}%")
    return _ok("maxStep", f"every step within {policy.max_step_percent:g}%")


def cooldown(change: ProposedChange, policy: SafetyPolicy, ctx: SafetyContext) -> RuleVerdict:
    """No change sooner than `cooldown` after the previous one. A rollback is exempt, and so is a
    remedy that restarts no pod (`remedy_now`, replicas only up): the cooldown spaces rollouts and
    churn, and new replicas are neither."""
    if change.kind == "rollback":
        return _ok("cooldown", "rollback is exempt")
    if remedy_now(change, ctx) and not _restarts_pods(change):
        return _ok("cooldown", f"exempt: {REMEDY_REASON}, restarting no pod")
    if ctx.last_change_at is None:
        return _ok("cooldown", "no previous change")
    elapsed = ctx.now - ctx.last_change_at
    if elapsed < policy.cooldown_seconds:
        return _no("cooldown", f"{elapsed:.0f}s since last change < cooldown {policy.cooldown_seconds:.0f}s")
    return _ok("cooldown", f"{elapsed:.0f}s since last change")


def change_budget(change: ProposedChange, policy: SafetyPolicy, ctx: SafetyContext) -> RuleVerdict:
    """At most maxChangesPerHour applied changes in the trailing hour and, when set,
    maxChangesPerDay in the trailing 24 h. A remedy (`remedy_now`) is exempt from both: a churn
    limit must not leave a workload starved for the rest of the hour or until tomorrow (a spent
    daily budget does not hold back a rollback either). Remedies still count as changes."""
    hour = sum(1 for t in ctx.recent_change_times if 0 <= ctx.now - t < SECONDS_PER_HOUR)
    reason = f"{hour}/{policy.max_changes_per_hour} changes in the last hour"
    if hour >= policy.max_changes_per_hour:
        if remedy_now(change, ctx):
            return _ok("changeBudget", f"hourly budget spent ({hour}), but exempt: {REMEDY_REASON}")
        return _no("changeBudget", f"{hour} changes in the last hour (max {policy.max_changes_per_hour})")
    if policy.max_changes_per_day is None:
        return _ok("changeBudget", reason)
    day = sum(1 for t in ctx.recent_change_times if 0 <= ctx.now - t < SECONDS_PER_DAY)
    if day < policy.max_changes_per_day:
        return _ok("changeBudget", f"{reason}, {day}/{policy.max_changes_per_day} in the last 24h")
    if change.kind == "rollback" or remedy_now(change, ctx):
        return _ok("changeBudget", f"{reason}; daily budget spent ({day}), but a remedy is exempt")
    return _no("changeBudget", f"{day} changes in the last 24h (max {policy.max_changes_per_day})")


def adds_capacity_only(change: ProposedChange) -> bool:
    """Nothing decreases and something increases. A proposed knob whose current value is unknown
    is not known to add anything: such a change is not capacity-only (fail closed)."""
    if any(k not in change.current for k in change.proposed):
        return False
    deltas = [v - change.current[k] for k, v in change.proposed.items()]
    return all(d >= 0 for d in deltas) and any(d > 0 for d in deltas)


def is_remedy(change: ProposedChange) -> bool:
    """A change that only adds capacity (nothing decreases, something increases), or a rollback."""
    return change.kind == "rollback" or adds_capacity_only(change)


def remedy_now(change: ProposedChange, ctx: SafetyContext) -> bool:
    """The SLO is measured broken now and the change only adds capacity: the case in which the
    max step, the hourly and daily budgets and (for replicas) the cooldown do not hold it back.
    Bounds, ownership, the PDB, the anomaly freeze and the SLO guard still apply."""
    return ctx.slo_met_now is False and adds_capacity_only(change)


def slo_guard(change: ProposedChange, policy: SafetyPolicy, ctx: SafetyContext) -> RuleVerdict:
    """No change the forecast says breaks the SLO; freeze while it is broken unless this is the remedy."""
    if not policy.slo_guard:
        return _ok("sloGuard", "disabled by spec")
    if ctx.slo_met_now is None:
        return _no("sloGuard", "current SLO state unknown")
    if not ctx.slo_met_now:
        if is_remedy(change):
            return _ok("sloGuard", "SLO broken; change adds capacity (remedy)")
        return _no("sloGuard", "SLO broken now: frozen except for remedies")
    if ctx.forecast_slo_met is None:
        return _no("sloGuard", "no forecast for the proposed settings")
    if not ctx.forecast_slo_met:
        return _no("sloGuard", "forecast says the proposed settings break the SLO")
    return _ok("sloGuard", "SLO met now and forecast to hold")


def min_confidence(change: ProposedChange, policy: SafetyPolicy, ctx: SafetyContext) -> RuleVerdict:
    """The prediction behind the change is at least as confident as the spec requires."""
    if change.kind == "rollback":
        return _ok("confidence", "rollback to measured-good settings")
    if ctx.slo_met_now is False and is_remedy(change):
        return _ok("confidence", "SLO broken: a capacity-adding remedy needs no model confidence")
    if ctx.confidence is None or ctx.confidence != ctx.confidence:
        return _no("confidence", "confidence unknown")
    if ctx.confidence < policy.min_confidence:
        return _no("confidence", f"confidence {ctx.confidence:.2f} < {policy.min_confidence:.2f}")
    return _ok("confidence", f"confidence {ctx.confidence:.2f}")


def _restarts_pods(change: ProposedChange) -> bool:
    for knob in change.changed_knobs():
        if knob in POD_RESTARTING_KNOBS:
            return True
        if knob == "replicas" and change.proposed[knob] < change.current.get(knob, 0.0):
            return True
    return False


def pdb_headroom(change: ProposedChange, _: SafetyPolicy, ctx: SafetyContext) -> RuleVerdict:
    """A change that restarts or removes pods needs a PodDisruptionBudget with headroom."""
    if not _restarts_pods(change):
        return _ok("pdbHeadroom", "change restarts no pods")
    if ctx.pdb is None:
        return _no("pdbHeadroom", "PodDisruptionBudget state unknown")
    if not ctx.pdb.present:
        return _ok("pdbHeadroom", "no PodDisruptionBudget selects the target")
    if ctx.pdb.disruptions_allowed < 1:
        return _no("pdbHeadroom", "PodDisruptionBudget allows no disruption now")
    return _ok("pdbHeadroom", f"{ctx.pdb.disruptions_allowed} disruption(s) allowed")


def anomaly_freeze(change: ProposedChange, _: SafetyPolicy, ctx: SafetyContext) -> RuleVerdict:
    """Freeze while an unexplained anomaly is active (rollbacks still go through)."""
    if ctx.anomaly_active is None:
        return _no("anomalyFreeze", "anomaly state unknown")
    if ctx.anomaly_active and change.kind != "rollback":
        return _no("anomalyFreeze", "unexplained anomaly active")
    return _ok("anomalyFreeze", "no unexplained anomaly" if not ctx.anomaly_active else "rollback allowed")


def not_empty(change: ProposedChange, _: SafetyPolicy, __: SafetyContext) -> RuleVerdict:
    """A change that changes nothing is not a change."""
    if not change.changed_knobs():
        return _no("nonEmpty", "proposed settings equal current settings")
    return _ok("nonEmpty", f"changes {', '.join(change.changed_knobs())}")


# The one place the rules are assembled. Order is the order shown in status.
DEFAULT_RULES: Final[tuple[Rule, ...]] = (
    ownership,
    not_empty,
    knob_bounds,
    max_step,
    cooldown,
    change_budget,
    slo_guard,
    min_confidence,
    pdb_headroom,
    anomaly_freeze,
)


def validate(
    change: ProposedChange,
    policy: SafetyPolicy,
    context: SafetyContext,
    *,
    rules: Sequence[Rule] = DEFAULT_RULES,
) -> SafetyResult:
    """Run every rule; accepted only if all pass. A rule that raises rejects (fail closed)."""
    verdicts: list[RuleVerdict] = []
    for rule in rules:
        try:
            verdicts.append(rule(change, policy, context))
        except Exception as exc:  # fail closed on any rule error, with the reason visible
            verdicts.append(_no(getattr(rule, "__name__", "rule"), f"could not evaluate: {exc}"))
    return SafetyResult(accepted=bool(verdicts) and all(v.passed for v in verdicts), verdicts=tuple(verdicts))
