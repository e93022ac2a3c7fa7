"""OptimizationLoop: a closed, safety-gated loop on one workload."""

from __future__ import annotations

import base64
import json
import zlib
from collections.abc import Callable
from enum import StrEnum
from typing import Any, ClassVar

from pydantic import ConfigDict, Field

from autoloop.api.common import (
    ApiModel,
    Decision,
    Duration,
    Mode,
    Quantity,
    StatusBase,
    TargetRef,
)


class BuiltinMetric(StrEnum):
    """Metrics autoloop knows how to query for a target without user PromQL."""

    LATENCY_P95 = "LatencyP95"
    LATENCY_P99 = "LatencyP99"
    ERROR_RATIO = "ErrorRatio"
    CPU_UTILIZATION = "CPUUtilization"
    MEMORY_UTILIZATION = "MemoryUtilization"
    COST = "Cost"
    THROUGHPUT = "Throughput"


class Direction(StrEnum):
    MINIMIZE = "Minimize"
    MAXIMIZE = "Maximize"


class Objective(ApiModel):
    """One thing the loop optimises: a built-in metric or a PromQL query, with an optional target."""

    model_config = ConfigDict(
        json_schema_extra={
            "x-kubernetes-validations": [
                {
                    "rule": "has(self.metric) != has(self.query)",
                    "message": "an objective sets exactly one of metric (built-in) or query (PromQL)",
                }
            ]
        }
    )

    name: str = Field(min_length=1, max_length=63, pattern=r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$")
    metric: BuiltinMetric | None = Field(default=None, description="A built-in metric of the target.")
    query: str | None = Field(
        default=None,
        max_length=4096,
        description=(
            "PromQL returning one series. Every selector is scoped to the loop's namespace; "
            "a selector naming another namespace is refused."
        ),
    )
    target: float | None = Field(
        default=None,
        description=(
            "The SLO for this objective (for Minimize: the value must stay at or below it; for "
            "Maximize: at or above). Objectives with a target feed the SLO guard."
        ),
    )
    weight: float = Field(default=1.0, ge=0, le=100, description="Relative weight in the score.")
    direction: Direction = Direction.MINIMIZE


class ReplicasKnob(ApiModel):
    model_config = ConfigDict(
        json_schema_extra={
            "x-kubernetes-validations": [
                {"rule": "self.min <= self.max", "message": "knobs.replicas: min must be <= max"}
            ]
        }
    )

    min: int = Field(ge=0, le=10000)
    max: int = Field(ge=1, le=10000)


class ResourceKnob(ApiModel):
    """Bounds of a container resource request; the limit keeps its ratio to the request."""

    model_config = ConfigDict(
        json_schema_extra={
            "x-kubernetes-validations": [
                {
                    "rule": "quantity(string(self.min)).compareTo(quantity(string(self.max))) <= 0",
                    "message": "min must be <= max",
                }
            ]
        }
    )

    min: Quantity
    max: Quantity


class Knobs(ApiModel):
    """What the loop may change. At least one knob."""

    model_config = ConfigDict(
        json_schema_extra={
            "x-kubernetes-validations": [
                {
                    "rule": "has(self.replicas) || has(self.cpu) || has(self.memory)",
                    "message": "declare at least one knob: replicas, cpu or memory",
                }
            ]
        }
    )

    replicas: ReplicasKnob | None = None
    cpu: ResourceKnob | None = None
    memory: ResourceKnob | None = None
    container: str | None = Field(
        default=None, max_length=63, description="Container whose resources change; default the first."
    )


class SLOGuard(ApiModel):
    enabled: bool = True
    tolerance_percent: float = Field(
        default=5.0, ge=0, le=100, description="Slack above an objective's target before a rollback."
    )


class Rollback(ApiModel):
    enabled: bool = True
    settle_window: Duration = Field(
        default="2m", description="How long after a change the outcome is measured before it is judged."
    )


class Safety(ApiModel):
    max_step_percent: float = Field(
        default=50.0,
        gt=0,
        le=1000,
        description="Largest change of a knob in one step, in percent. Rollbacks, and changes that only "
        "add capacity while the SLO is measured broken (remedies), are exempt.",
    )
    cooldown: Duration = Field(
        default="5m",
        description="Minimum time between two applied changes. Rollbacks, and remedies that only add "
        "replicas (no pod restarted), are exempt.",
    )
    max_changes_per_hour: int = Field(
        default=4,
        ge=0,
        le=60,
        description="At most this many applied changes in any hour. Remedies are exempt (they still count).",
    )
    max_changes_per_day: int | None = Field(
        default=None,
        ge=1,
        le=96,
        description=(
            "At most this many applied changes in any 24 h (unset: only maxChangesPerHour). "
            "Rollbacks, and changes that add capacity while the SLO is broken, are exempt."
        ),
    )
    min_confidence: float = Field(default=0.6, ge=0, le=1)
    slo_guard: SLOGuard = Field(default_factory=SLOGuard)
    rollback: Rollback = Field(default_factory=Rollback)
    require_pdb_headroom: bool = Field(
        default=True, description="Refuse changes that restart pods when a PDB allows no disruption."
    )
    freeze_on_anomaly: bool = Field(
        default=True, description="No change while an anomaly without an explanation is active."
    )


class LearningStrategy(StrEnum):
    AUTO = "Auto"
    BAYESIAN = "Bayesian"
    THOMPSON = "Thompson"
    RULES = "Rules"


class Learning(ApiModel):
    enabled: bool = True
    strategy: LearningStrategy = LearningStrategy.AUTO
    refit_interval: Duration = Field(
        default="24h", description="How often the strategic refit of forecast and learned models runs."
    )
    risk_level: float = Field(
        default=0.05, gt=0, lt=0.5, description="Accepted probability that demand exceeds a recommendation."
    )


class Pricing(ApiModel):
    """Prices used by the built-in Cost objective (currency units per hour)."""

    cpu_core_hour: float = Field(default=0.0316, ge=0)
    memory_gib_hour: float = Field(default=0.0042, ge=0)


class OptimizationLoopSpec(ApiModel):
    target_ref: TargetRef
    mode: Mode = Field(default=Mode.RECOMMEND, description="Recommend records decisions; Auto applies them.")
    suspend: bool = Field(default=False, description="Stop all actions; status keeps updating.")
    interval: Duration = Field(default="1m", description="Time between two iterations of the loop.")
    objectives: list[Objective] = Field(min_length=1, max_length=16)
    knobs: Knobs
    safety: Safety = Field(default_factory=Safety)
    learning: Learning = Field(default_factory=Learning)
    pricing: Pricing = Field(default_factory=Pricing)
    dependencies: list[str] = Field(
        default_factory=list,
        max_length=64,
        description="Names of workloads this one calls, used by root-cause analysis.",
    )

    model_config = ConfigDict(
        json_schema_extra={
            "x-kubernetes-validations": [
                {
                    "rule": "duration(self.interval) >= duration('5s')",
                    "message": "interval must be at least 5s",
                },
                {
                    "rule": "self.objectives.all(o, self.objectives.exists_one(p, p.name == o.name))",
                    "message": "objective names must be unique",
                },
            ]
        }
    )


class Settings(ApiModel):
    """Workload settings as autoloop reads and writes them."""

    replicas: int | None = None
    cpu: str | None = None
    memory: str | None = None


class Recommendation(ApiModel):
    decision_id: str
    settings: Settings
    score: float | None = None
    confidence: float | None = None
    lower: Settings | None = None
    upper: Settings | None = None
    approved: bool = False


class OptimizationLoopStatus(StatusBase):
    DECISIONS_BUDGET_BYTES: ClassVar[int] = 2500
    """Every status write goes to every watcher of the kind: the history in status is bounded by
    size. The newest decision is kept whole; older ones keep what changed, what was measured after
    and the rules that failed. The whole trail is in the Events (one per decision) and /metrics."""
    ANOMALIES_KEPT: ClassVar[int] = 5

    current: Settings | None = None
    baseline: Settings | None = Field(default=None, description="Settings when the loop first ran.")
    baseline_observed: dict[str, float] = Field(
        default_factory=dict, description="Objective values when the loop first ran: the starting point."
    )
    recommendation: Recommendation | None = None
    pending_decision: str | None = Field(
        default=None, description="Decision id recorded before apply; cleared once confirmed."
    )
    improvement: dict[str, float] = Field(
        default_factory=dict, description="Measured change of each objective against the baseline, percent."
    )
    observed: dict[str, float] = Field(default_factory=dict, description="Latest objective values.")
    model_version: str | None = None
    last_change_time: str | None = None
    recent_change_times: list[str] = Field(
        default_factory=list,
        description="Applied changes of the last 24 h (RFC 3339, at most 96), for the change budgets.",
        json_schema_extra={"maxItems": 100},
    )
    anomalies: list[dict[str, Any]] = Field(
        default_factory=list, description="Anomalies active now (bounded)", json_schema_extra={"maxItems": 20}
    )
    analysis: dict[str, Any] | None = Field(
        default=None, json_schema_extra={"x-kubernetes-preserve-unknown-fields": True}
    )
    engine_state: dict[str, Any] | None = Field(
        default=None,
        description="The loop engine's bounded state (history, learned estimates, clocks): `z` holds "
        "its JSON, zlib-compressed, in base64.",
        json_schema_extra={"x-kubernetes-preserve-unknown-fields": True},
    )

    STATUS_BUDGET_BYTES: ClassVar[int | None] = 4800
    """Under the 5 kB a loop's status may take (issue 19), as the apiserver stores it."""
    ANALYSIS_EVIDENCE_KEPT: ClassVar[int] = 1

    def shrink_steps(self) -> list[Callable[[], str | None]]:
        """Ended anomalies, root-cause evidence and detail, anomaly prose and detail, long condition
        messages, the reasons of the newest decision's passing rules, and only then older decisions (the trail a
        person reads: applied, rolled back, approved); never the engine state, the change times or
        the active anomalies' starts, which the next pass acts on."""
        return [
            self.drop_ended_anomaly,
            self.shorten_analysis,
            self.drop_anomaly_explanation,
            self.drop_anomaly_detail,
            self.shorten_condition_message,
            self.drop_passing_reasons,
            self.drop_oldest_decision,
        ]

    ANOMALY_FIELDS_KEPT: ClassVar[frozenset[str]] = frozenset(
        {
            "service",
            "metric",
            "direction",
            "shape",
            "severity",
            "peak_z",
            "relative_change",
            "start",
            "end",
            "explained_by_load",
            "low_confidence",
            "benign",
        }
    )
    """What an anomaly keeps when cut: what it is, how strong and how large, since when (the next pass keeps the
    reference clean from `start`), and whether it freezes the loop (not demand, not low confidence,
    not benign)."""

    def drop_anomaly_detail(self) -> str | None:
        """An anomaly keeps ANOMALY_FIELDS_KEPT, its flags only when set (a missing flag is false, a
        missing `end` an anomaly still active)."""
        for i, a in enumerate(self.anomalies):
            kept = {
                k: v
                for k, v in a.items()
                if k in self.ANOMALY_FIELDS_KEPT and v is not None and v is not False
            }
            if kept != a:
                self.anomalies[i] = kept
                return f"detail of anomaly {a.get('service', '')}/{a.get('metric', '')}"
        return None

    def drop_passing_reasons(self) -> str | None:
        """The newest decision keeps every rule's verdict: the rules that failed or passed only by
        an exemption (a rollback's, a remedy's: why an unusual change went through) with their
        reasons; the others, which pass on every ordinary proposal, by name in `passedRules`."""
        newest = self.decisions[-1] if self.decisions else None
        if newest is None:
            return None
        cut = [v.passed and "exempt" not in v.reason for v in newest.verdicts]
        if not any(cut):
            return None
        self.decisions[-1] = newest.model_copy(
            update={
                "verdicts": [v for v, c in zip(newest.verdicts, cut, strict=True) if not c],
                "passed_rules": [
                    *(newest.passed_rules or []),
                    *(v.rule for v, c in zip(newest.verdicts, cut, strict=True) if c),
                ],
            }
        )
        return f"reasons of the rules decision {newest.id} passed"

    def drop_ended_anomaly(self) -> str | None:
        ended = [a for a in self.anomalies if a.get("end") is not None]
        if not ended:
            return None
        self.anomalies.remove(ended[-1])
        return f"ended anomaly {ended[-1].get('service', '')}/{ended[-1].get('metric', '')}"

    def shorten_analysis(self) -> str | None:
        """Each cause keeps its strongest evidence; then only the top cause stays, with its own
        explanation."""
        causes = list((self.analysis or {}).get("causes") or [])
        if any(len(c.get("evidence") or []) > self.ANALYSIS_EVIDENCE_KEPT for c in causes):
            causes = [
                {**c, "evidence": list(c.get("evidence") or [])[: self.ANALYSIS_EVIDENCE_KEPT]}
                for c in causes
            ]
            self.analysis = {**(self.analysis or {}), "causes": causes}
            return "root-cause evidence"
        if len(causes) > 1:
            self.analysis = {**(self.analysis or {}), "causes": causes[:1]}
            return "root causes but the top one"
        if causes and (self.analysis or {}).get("explanation"):
            # The analysis' own explanation is its top cause's, led by a count of services.
            self.analysis = {k: v for k, v in (self.analysis or {}).items() if k != "explanation"}
            return "root-cause explanation (the top cause keeps its own)"
        analysis = self.analysis or {}
        if causes and (set(analysis) - {"causes", "confident"} or set(causes[0]) - self.CAUSE_FIELDS_KEPT):
            top = {k: v for k, v in causes[0].items() if k in self.CAUSE_FIELDS_KEPT}
            self.analysis = {
                "causes": [top],
                **({"confident": analysis["confident"]} if "confident" in analysis else {}),
            }
            return "root-cause detail"
        return None

    CAUSE_FIELDS_KEPT: ClassVar[frozenset[str]] = frozenset(
        {"service", "metric", "fault_type", "action", "confidence", "explanation", "evidence"}
    )
    """What the top root cause keeps when cut: who, what kind of fault, what to do, why, and its
    strongest evidence."""

    def drop_anomaly_explanation(self) -> str | None:
        """Its prose is the `AnomalyDetected` condition's and the Events'; the fields stay."""
        for a in self.anomalies:
            if a.get("explanation"):
                a.pop("explanation")
                return f"explanation of anomaly {a.get('service', '')}/{a.get('metric', '')}"
        return None

    def record(self, decision: Decision) -> None:
        """Append a decision; older ones are compacted, and dropped oldest first past the budget."""
        kept = [*(compact_decision(d) for d in self.decisions), decision][-self.HISTORY_LIMIT :]
        while len(kept) > 1 and len(json.dumps([d.wire() for d in kept])) > self.DECISIONS_BUDGET_BYTES:
            kept.pop(0)
        self.decisions = kept


def compact_decision(d: Decision) -> Decision:
    """A decision as history keeps it: what changed (current, proposed), what was measured after,
    the rules that failed (passing ones go without saying) and the first 200 characters of why;
    what it saw and predicted stays with the newest decision only."""
    return d.model_copy(
        update={
            "verdicts": [v for v in d.verdicts if not v.passed],
            "passed_rules": None,
            "explanation": d.explanation[:200],
            "observed": {},
            "predicted": {},
        }
    )


def pack_engine_state(state: dict[str, Any]) -> dict[str, Any]:
    """The engine state as status stores it: its JSON zlib-compressed, base64, under `z`."""
    raw = json.dumps(state, separators=(",", ":")).encode()
    return {"z": base64.b64encode(zlib.compress(raw, 9)).decode()}


def unpack_engine_state(stored: dict[str, Any] | None) -> dict[str, Any]:
    """The engine state from status (ValueError if `z` is not what pack_engine_state wrote); a
    state written uncompressed by an older operator is read as it is."""
    if not stored:
        return {}
    if "z" not in stored:
        return stored
    try:
        state = json.loads(zlib.decompress(base64.b64decode(str(stored["z"]), validate=True)))
    except (zlib.error, ValueError) as exc:
        raise ValueError(f"engineState.z is not a compressed engine state: {exc}") from exc
    if not isinstance(state, dict):
        raise ValueError("engineState.z does not hold an object")
    return state


class OptimizationLoop(ApiModel):
    """A closed, safety-gated optimisation loop on one workload: observe, forecast, propose, validate, apply or recommend, measure, learn, roll back."""

    KIND: ClassVar[str] = "OptimizationLoop"
    PLURAL: ClassVar[str] = "optimizationloops"
    SINGULAR: ClassVar[str] = "optimizationloop"
    SHORT_NAMES: ClassVar[tuple[str, ...]] = ("oloop",)
    PRINTER_COLUMNS: ClassVar[tuple[dict[str, Any], ...]] = (
        {"name": "Target", "type": "string", "jsonPath": ".spec.targetRef.name"},
        {"name": "Mode", "type": "string", "jsonPath": ".spec.mode"},
        {"name": "Ready", "type": "string", "jsonPath": '.status.conditions[?(@.type=="Ready")].status'},
        {"name": "Phase", "type": "string", "jsonPath": ".status.phase"},
        {"name": "Replicas", "type": "integer", "jsonPath": ".status.current.replicas"},
        {"name": "CPU", "type": "string", "jsonPath": ".status.current.cpu", "priority": 1},
        {"name": "Memory", "type": "string", "jsonPath": ".status.current.memory", "priority": 1},
        {"name": "Message", "type": "string", "jsonPath": ".status.message", "priority": 1},
        {"name": "Age", "type": "date", "jsonPath": ".metadata.creationTimestamp"},
    )

    spec: OptimizationLoopSpec
    status: OptimizationLoopStatus = Field(default_factory=OptimizationLoopStatus)
