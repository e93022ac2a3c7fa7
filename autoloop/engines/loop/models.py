"""The loop engine's data: its config, one observation, the decision, and the state it carries.

Contract: pydantic models only, no logic beyond (de)serialisation. `LoopState` lives in the CR's
status and is sent to every watcher, so it is kept small (a few hundred bytes, at most ~3 kB):
experience rows are stored as compact arrays of rounded numbers, only the last applied decisions
are kept (the operator records the full decisions in its own `status.decisions`), and an older
state dict (other or missing fields, rows as objects) still loads.
"""

from __future__ import annotations

from typing import Any, Final, Literal

from pydantic import BaseModel, ConfigDict, Field, field_serializer, field_validator

from autoloop.engines import learning, safety

# Experience rows kept (each ~60 bytes once compact): 12 passes of 5 min, the forecast's window
# and two refits' worth (>= 6 points each).
MAX_HISTORY: Final[int] = 12
# Applied decisions kept in the state: the pending one and the last one whose outcome was measured.
MAX_DECISIONS: Final[int] = 2
# Applied changes remembered for the change budgets: the last 24 h, at most the largest daily budget.
MAX_CHANGE_TIMES: Final[int] = 96
# Pod sizes whose learned planning utilisation is remembered.
MAX_SETPOINTS: Final[int] = 4
KNOBS: Final[tuple[str, ...]] = ("replicas", "cpu_request", "memory_request")
GIB: Final[float] = 2.0**30
# An experience row in the state: (field, scale). Bytes are stored in MiB; utilisation is not
# stored (it is cpu_per_pod / cpu_request).
ROW_FIELDS: Final[tuple[tuple[str, float], ...]] = (
    ("t", 1.0),
    ("replicas", 1.0),
    ("cpu_request", 1.0),
    ("memory_request", 2.0**20),
    ("rps", 1.0),
    ("cpu_per_pod", 1.0),
    ("memory_per_pod", 2.0**20),
    ("latency_p95", 1.0),
    ("error_ratio", 1.0),
)

Action = Literal["none", "hold", "change", "rollback"]


def sig(value: float, digits: int = 5) -> float:
    """`value` rounded to `digits` significant digits (what the state needs, a third of the JSON)."""
    return float(f"{value:.{digits}g}")


def rounded(values: dict[str, float]) -> dict[str, float]:
    return {k: sig(v, 6) for k, v in values.items()}


def change_times_after(
    times: list[float], now: float, *, keep_seconds: float = safety.SECONDS_PER_DAY
) -> list[float]:
    """The change times the budgets need after a change at `now`: the last `keep_seconds` (a day
    by default), bounded."""
    return [*[t for t in times if now - t < keep_seconds][-(MAX_CHANGE_TIMES - 1) :], now]


class LoopConfig(BaseModel):
    """The spec of one loop, in base units (seconds, cores, bytes, USD)."""

    model_config = ConfigDict(frozen=True)
    namespace: str
    target: safety.Target
    mode: Literal["Recommend", "Auto"] = "Recommend"
    bounds: dict[str, tuple[float, float]]
    latency_slo_seconds: float = 0.2
    error_slo_ratio: float = 0.01
    weight_cost: float = 1.0
    weight_latency: float = 1.0
    max_step_percent: float = 50.0
    cooldown_seconds: float = 300.0
    max_changes_per_hour: int = 4
    max_changes_per_day: int | None = None
    min_confidence: float = 0.5
    settle_seconds: float = 300.0
    """How long a change must stay healthy, counted from when its rollout finished and every pod
    is ready, before it is judged good (and becomes the last good setting)."""
    hysteresis: float = 0.03
    """A change must improve the cost by this fraction over holding."""
    reverse_hold_seconds: float = 1800.0
    """Damping: no reduction of replicas this soon after an increase unless the SLO is broken."""
    latency_headroom: float = 0.8
    """Plan for p95 <= headroom * SLO."""
    memory_headroom: float = 0.2
    refit_interval_seconds: float = 86_400.0
    inline_refit: bool = True
    """True: `step` runs the strategic refit itself when due (benches, library use). False: the
    caller runs `strategic_refit` off the loop's path and hands the result to `adopt_refit`."""
    cpu_price_per_core_hour: float = 0.0316
    memory_price_per_gib_hour: float = 0.0042
    seed: int = 0

    def policy(self) -> safety.SafetyPolicy:
        return safety.SafetyPolicy(
            owner_namespace=self.namespace,
            target=self.target,
            bounds={k: safety.KnobBounds(min=lo, max=hi) for k, (lo, hi) in self.bounds.items()},
            max_step_percent=self.max_step_percent,
            cooldown_seconds=self.cooldown_seconds,
            max_changes_per_hour=self.max_changes_per_hour,
            max_changes_per_day=self.max_changes_per_day,
            min_confidence=self.min_confidence,
        )

    def cost(self, s: dict[str, float]) -> float:
        per_pod = (
            s["cpu_request"] * self.cpu_price_per_core_hour
            + s["memory_request"] / GIB * self.memory_price_per_gib_hour
        )
        return s["replicas"] * per_pod


class Observation(BaseModel):
    """The windows the operator fetched for one interval, and the target's current settings.

    The operator fills the rollout fields from the Deployment's status (`rollout_complete`: the
    status' `observedGeneration` equals the metadata generation and `updatedReplicas` ==
    `readyReplicas` == `replicas`; `ready_fraction` = `readyReplicas` of the current revision /
    `spec.replicas`) and `restarts` from the increase of the pods' container `restartCount` over
    the window; `oom_kills` counts terminations with reason `OOMKilled`. The defaults (a finished
    rollout, no restarts) are what an older operator that does not fill them implies."""

    model_config = ConfigDict(frozen=True)
    settings: dict[str, float]
    """replicas, cpu_request (cores), memory_request (bytes); optional cpu_limit, memory_limit."""
    rps: list[float]
    latency_p95: list[float]
    error_ratio: list[float]
    cpu_per_pod: list[float]
    memory_per_pod: list[float]
    """Working set per pod; the engine takes the window's maximum."""
    oom_kills: int = 0
    restarts: int = 0
    """Container restarts in the window (any cause: OOM, crash loop, failed probes)."""
    rollout_complete: bool = True
    ready_fraction: float = 1.0
    anomaly_active: bool | None = False
    pdb: safety.PdbStatus | None = None


class Pending(BaseModel):
    decision_id: str
    applied_at: float
    previous: dict[str, float]
    settings: dict[str, float]
    predicted_latency: float = 0.0
    strategy: str = ""
    kind: Literal["tune", "rollback"] = "tune"
    ready_at: float | None = None
    """When its rollout was first seen finished with every pod ready; the settle window runs from here."""
    unhealthy: bool = False
    """The SLO broke, or a pod was OOM-killed or restarted, since `ready_at`."""
    remedy: bool = False
    """The change only added capacity: never rolled back."""
    restarts: bool = False
    """The change alters the pod template (a rolling restart)."""
    severity: float | None = None
    """The SLO breach's severity (p95 or errors over their SLO) at the last pass."""


class Explanation(BaseModel):
    saw: dict[str, float]
    proposed: str
    validator: list[str] = Field(default_factory=list)
    predicted: dict[str, float] = Field(default_factory=dict)
    measured: dict[str, float] | None = None
    direction: str | None = None
    """up / down / mixed for a change: the label the distilled policy learns."""
    policy_rule: str | None = None


class Decision(BaseModel):
    id: str
    t: float
    action: Action
    settings: dict[str, float] | None = None
    accepted: bool = False
    applied: bool = False
    verdicts: list[safety.RuleVerdict] = Field(default_factory=list)
    explanation: Explanation
    breaker: str | None = None
    """Set while the circuit breaker holds the loop frozen: why (too many rollbacks or OOM kills
    in the last hour, or the SLO broken with no action helping). The operator raises a condition
    (e.g. `CircuitOpen=True`, reason `CircuitBreakerOpen`, this text as message) and a Warning
    Event when it first appears, and clears the condition when it is None again."""
    restarts_pods: bool = False
    """The change alters the pod template (CPU or memory): every pod is replaced by a rollout."""


class LoopState(BaseModel):
    """Everything carried between iterations; bounded, JSON-serialisable, compact."""

    model_config = ConfigDict(extra="ignore")
    iteration: int = 0
    since: float | None = None
    """When the engine first saw the target (memory is not shrunk before a day-part is seen)."""
    history: list[learning.Experience] = Field(default_factory=list)
    decisions: list[Decision] = Field(default_factory=list)
    """The last applied decisions, lean (the operator reads `explanation.measured` from here)."""
    pending: Pending | None = None
    last_good: dict[str, float] | None = None
    last_good_at: float | None = None
    last_good_rps: float | None = None
    change_times: list[float] = Field(default_factory=list)
    last_up_at: float | None = None
    last_resize_at: float | None = None
    model: learning.ResponseModel = Field(default_factory=learning.ResponseModel)
    last_refit_at: float | None = None
    rules: list[learning.Rule] = Field(default_factory=list)
    rollbacks: int = 0
    capacity_floor: float = 0.0
    """Cores per request/s below which a rollback showed the SLO breaks; expires (see guard)."""
    floor_at: float | None = None
    setpoints: dict[str, float] = Field(default_factory=dict)
    """Pod CPU size -> learned planning utilisation (CPU used / requested at which p95 stays
    within the planning target)."""
    small_pods_at: float | None = None
    """When the SLO broke at low utilisation: the pods are too small, not too few."""
    memory_floor: float = 0.0
    """Bytes: the peak working set plus margin, or an OOM kill's bump; expires after a day."""
    memory_floor_at: float | None = None
    healthy_peak: float = 0.0
    """Bytes: the largest working set of the last kept hour's passes that met the SLO, remembered
    for a day so that an OOM kill in a breach longer than the hour can still be told apart."""
    healthy_peak_at: float | None = None
    breaker_events: list[float] = Field(default_factory=list)
    """Times of rollbacks and of passes with OOM kills or restarts, in the last hour."""
    frozen_until: float | None = None
    frozen_reason: str | None = None
    broken_since: float | None = None
    broken_severity: float | None = None
    remedies_unhelpful: int = 0
    healthy_since: float | None = None
    """Start of the current run of healthy passes on unchanged settings: a setting becomes the last
    good one only after a whole settle window of them."""

    @field_serializer("history")
    def _rows(self, history: list[learning.Experience]) -> list[list[float]]:
        return [
            [sig(getattr(h, f) / scale, 4) if f != "t" else round(h.t) for f, scale in ROW_FIELDS]
            for h in history
        ]

    @field_validator("history", mode="before")
    @classmethod
    def _from_rows(cls, value: Any) -> Any:
        if not isinstance(value, list):
            return value
        out = []
        for row in value:
            if isinstance(row, list):
                row = {f: v * scale for (f, scale), v in zip(ROW_FIELDS, row, strict=False)}
                row["utilisation"] = row["cpu_per_pod"] / max(row["cpu_request"], 1e-9)
            out.append(row)
        return out

    @field_serializer("decisions")
    def _lean_decisions(self, decisions: list[Decision]) -> list[dict[str, Any]]:
        return [d.model_dump(mode="json", exclude_defaults=True) for d in decisions]

    @field_serializer("model")
    def _rounded_model(self, model: learning.ResponseModel) -> dict[str, Any]:
        return {k: sig(v, 5) if isinstance(v, float) else v for k, v in model.model_dump().items()}

    @field_serializer("pending")
    def _lean_pending(self, pending: Pending | None) -> dict[str, Any] | None:
        return None if pending is None else pending.model_dump(mode="json", exclude_defaults=True)
