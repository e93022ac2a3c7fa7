"""MaintenancePlan: predict failures, schedule maintenance into windows, execute it safely."""

from __future__ import annotations

from datetime import datetime, timedelta
from enum import StrEnum
from typing import Any, ClassVar
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from pydantic import ConfigDict, Field, JsonValue, field_validator

from autoloop.api.common import (
    NAME_PATTERN,
    QUALIFIED_NAME_PATTERN,
    RESERVED_KEY_PATTERN,
    ApiModel,
    Duration,
    LabelSelector,
    Mode,
    Solver,
    StatusBase,
    qualified_key_problem,
)
from autoloop.api.maintenance_prediction import Prediction, PredictionStatus
from autoloop.api.maintenance_routing import RouteState, Routing

TIME_OF_DAY_PATTERN = r"^([01][0-9]|2[0-3]):[0-5][0-9]$"


def _key_rules(subject: str) -> list[JsonValue]:
    """CEL twins of `qualified_key_problem` over `subject` (a CEL expression of a list of keys)."""
    return [
        {
            "rule": f"{subject}.all(k, k.matches(r'{QUALIFIED_NAME_PATTERN}'))",
            "message": "annotation keys must be qualified names (optional DNS prefix and '/', "
            "then a name of at most 63 of [A-Za-z0-9-_.])",
        },
        {
            "rule": f"{subject}.all(k, !k.matches(r'{RESERVED_KEY_PATTERN}'))",
            "message": "annotation keys may not use the reserved prefixes kubernetes.io, k8s.io, "
            "x0tta6bl4.io or their subdomains",
        },
    ]


def _duration_rule(op: str, bound: str, message: str) -> dict[str, JsonValue]:
    """A CEL bound on one duration field. On the field, not its object: an object's rules are also
    checked against its `default: {}`, where the field is absent."""
    return {
        "x-kubernetes-validations": [{"rule": f"duration(self) {op} duration('{bound}')", "message": message}]
    }


MAX_CONCURRENT_RULE: dict[str, JsonValue] = {
    "rule": "type(self) == int ? self >= 1 : (self.endsWith('%') ? "
    "int(self.substring(0, size(self) - 1)) >= 1 && int(self.substring(0, size(self) - 1)) <= 100 : "
    "int(self) >= 1)",
    "message": "maxConcurrent must allow at least one node: a count >= 1 or a percent from 1% to 100%",
}


class Weekday(StrEnum):
    MON = "Mon"
    TUE = "Tue"
    WED = "Wed"
    THU = "Thu"
    FRI = "Fri"
    SAT = "Sat"
    SUN = "Sun"


class Window(ApiModel):
    """A recurring maintenance window, e.g. Mon-Fri 02:00-05:00 in Europe/Berlin."""

    model_config = ConfigDict(
        json_schema_extra={
            "x-kubernetes-validations": [
                {
                    "rule": "self.start != self.end",
                    "message": "window start and end must differ (an end before the start runs past midnight)",
                }
            ]
        }
    )

    days: list[Weekday] = Field(
        default_factory=lambda: list(Weekday),
        min_length=1,
        max_length=7,
        json_schema_extra={"x-kubernetes-list-type": "set"},
    )
    start: str = Field(pattern=TIME_OF_DAY_PATTERN, max_length=5, description="HH:MM, inclusive.")
    end: str = Field(
        pattern=TIME_OF_DAY_PATTERN,
        max_length=5,
        description="HH:MM, exclusive; before start means overnight.",
    )
    time_zone: str = Field(default="UTC", max_length=64, description="IANA time zone name.")

    def zone(self) -> ZoneInfo:
        """The window's time zone; ValueError for a name the tz database does not know."""
        try:
            return ZoneInfo(self.time_zone)
        except (ZoneInfoNotFoundError, ValueError) as exc:
            raise ValueError(f"unknown time zone {self.time_zone!r}") from exc

    def openings(self, after: datetime, *, days: int = 8) -> list[tuple[datetime, datetime]]:
        """The (start, end) intervals of this window that end after `after`, over the next `days`."""
        zone = self.zone()
        local = after.astimezone(zone)
        wanted = {list(Weekday).index(Weekday(d)) for d in self.days}
        start_h, start_m = (int(x) for x in self.start.split(":"))
        end_h, end_m = (int(x) for x in self.end.split(":"))
        result: list[tuple[datetime, datetime]] = []
        for offset in range(-1, days + 1):
            day = (local + timedelta(days=offset)).date()
            if day.weekday() not in wanted:
                continue
            begin = datetime(day.year, day.month, day.day, start_h, start_m, tzinfo=zone)
            end = datetime(day.year, day.month, day.day, end_h, end_m, tzinfo=zone)
            if end <= begin:  # an overnight window, e.g. 22:00-06:00, ends the next day
                end += timedelta(days=1)
            if end > after:
                result.append((begin, end))
        return result


class ConcurrencyGroup(ApiModel):
    """A per-group limit, e.g. at most one node per zone."""

    label_key: str = Field(default="topology.kubernetes.io/zone", max_length=317)
    max_concurrent: int = Field(default=1, ge=1, le=1000)


class Drain(ApiModel):
    timeout: Duration = Field(
        default="10m",
        description="Give up draining a node after this long.",
        json_schema_extra=_duration_rule(">", "0s", "drain.timeout must be above 0s"),
    )
    grace_period_seconds: int | None = Field(default=None, ge=0, le=3600)
    pod_selector: LabelSelector | None = Field(default=None, description="Only evict pods that match.")
    retry_interval: Duration = Field(
        default="5s",
        description="Backoff after a PDB refuses an eviction.",
        json_schema_extra=_duration_rule(">=", "1s", "drain.retryInterval must be at least 1s"),
    )


class WorkloadRestart(ApiModel):
    """Deployments of one namespace to roll on a node's turn (a MaintenancePlan is cluster-wide,
    so the namespace is named, never implied)."""

    namespace: str = Field(min_length=1, max_length=63, pattern=r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$")
    selector: LabelSelector


class Actions(ApiModel):
    """What maintenance does to a node, in order: cordon, drain, act, wait, uncordon."""

    cordon: bool = True
    drain: bool = True
    restart_workloads: WorkloadRestart | None = Field(
        default=None,
        description="Deployments to restart on the node's turn: a namespace and a label selector.",
    )
    annotate: dict[str, str] = Field(
        default_factory=dict,
        description="Annotations set on the node for an external agent to act on. Keys are qualified names "
        "outside the reserved prefixes (kubernetes.io, k8s.io, x0tta6bl4.io and their subdomains).",
        json_schema_extra={
            "maxProperties": 32,
            "additionalProperties": {"type": "string", "maxLength": 4096},
            "x-kubernetes-validations": _key_rules("self"),
        },
    )
    ready_annotation: str | None = Field(
        default=None,
        max_length=317,
        description="The node annotation an external agent sets when its work is done (a qualified name "
        "outside the reserved prefixes).",
        json_schema_extra={"x-kubernetes-validations": _key_rules("[self]")},
    )
    ready_timeout: Duration = Field(
        default="30m", json_schema_extra=_duration_rule(">", "0s", "actions.readyTimeout must be above 0s")
    )
    uncordon: bool = True

    @field_validator("annotate")
    @classmethod
    def _annotation_keys(cls, value: dict[str, str]) -> dict[str, str]:
        problems = [p for key in value if (p := qualified_key_problem(key))]
        if problems:
            raise ValueError("; ".join(problems))
        return value

    @field_validator("ready_annotation")
    @classmethod
    def _ready_key(cls, value: str | None) -> str | None:
        if value is not None and (problem := qualified_key_problem(value)):
            raise ValueError(problem)
        return value


class Blocker(ApiModel):
    """Maintenance pauses while a query returns any series (or an alert fires); a failed query blocks."""

    model_config = ConfigDict(
        json_schema_extra={
            "x-kubernetes-validations": [
                {
                    "rule": "has(self.query) != has(self.alert)",
                    "message": "a blocker sets exactly one of query or alert",
                }
            ]
        }
    )

    query: str | None = Field(default=None, max_length=4096)
    alert: str | None = Field(default=None, max_length=253, description="Shortcut for ALERTS{alertname=...}.")


class MaintenancePlanSpec(ApiModel):
    model_config = ConfigDict(
        json_schema_extra={
            "x-kubernetes-validations": [
                {
                    "rule": "has(self.nodeSelector) || size(self.nodes) > 0",
                    "message": "select nodes: nodeSelector or nodes",
                },
                {
                    "rule": "duration(self.interval) >= duration('1s')",
                    "message": "interval must be at least 1s",
                },
                {
                    "rule": "duration(self.horizon) >= duration('1h')",
                    "message": "horizon must be at least 1h",
                },
            ]
        }
    )

    node_selector: LabelSelector | None = None
    nodes: list[str] = Field(
        default_factory=list,
        max_length=1000,
        description="Nodes to maintain regardless of predicted risk.",
        json_schema_extra={"items": {"type": "string", "maxLength": 253, "pattern": NAME_PATTERN}},
    )
    horizon: Duration = Field(default="24h", description="Failure prediction horizon.")
    risk_threshold: float = Field(
        default=0.3, gt=0, le=1, description="Maintain nodes whose risk exceeds this."
    )
    windows: list[Window] = Field(min_length=1, max_length=32)
    max_concurrent: int | str = Field(
        default=1,
        description="Nodes in maintenance at once: a count or a percent like 10%.",
        json_schema_extra={
            "x-kubernetes-int-or-string": True,
            "pattern": r"^([0-9]{1,6}%?)$",
            "x-kubernetes-validations": [MAX_CONCURRENT_RULE],
        },
    )
    groups: list[ConcurrencyGroup] = Field(default_factory=list, max_length=8)
    min_spacing: Duration = Field(default="0s", description="Minimum time between two nodes' starts.")
    actions: Actions = Field(default_factory=Actions)
    drain: Drain = Field(default_factory=Drain)
    blockers: list[Blocker] = Field(default_factory=list, max_length=32)
    solver: Solver = Solver.AUTO
    mode: Mode = Mode.RECOMMEND
    suspend: bool = False
    force: bool = Field(
        default=False, description="Delete pods whose eviction a PDB keeps refusing after the drain timeout."
    )
    interval: Duration = Field(default="1m", description="How often the plan is re-evaluated (at least 1s).")
    routing: Routing = Field(
        default_factory=Routing,
        description="HTTPRoutes and VirtualServices whose weights move off a node before its drain.",
    )
    prediction: Prediction = Field(
        default_factory=Prediction,
        description="Extra node signals, and learning the failure model from the cluster's own history.",
    )

    @field_validator("max_concurrent")
    @classmethod
    def _at_least_one(cls, value: int | str) -> int | str:
        text = str(value)
        number = int(text.removesuffix("%")) if text.removesuffix("%").isdigit() else -1
        if number < 1 or (text.endswith("%") and number > 100):
            raise ValueError("maxConcurrent must allow at least one node: a count >= 1 or 1% to 100%")
        return value


class NodeRisk(ApiModel):
    node: str
    probability: float
    expected_hours_to_failure: float | None = None
    reasons: list[str] = Field(default_factory=list)


class ScheduledSlot(ApiModel):
    node: str
    start: str
    end: str
    reason: str = ""


class NodeProgress(ApiModel):
    node: str
    step: str = Field(
        description="Pending, Cordoned, Draining, Acting, Uncordoning, Done, Skipped or Failed."
    )
    started_at: str | None = None
    updated_at: str | None = None
    message: str = ""
    evicted: int = Field(default=0, description="Pods whose eviction the Eviction API accepted.")
    evicting: list[str] = Field(
        default_factory=list,
        description="UIDs of the pods a drain round is about to evict, written before it evicts them: "
        "after an operator crash the resumed drain counts those already gone or terminating as evicted.",
        json_schema_extra={"maxItems": 1000},
    )


class MaintenancePlanStatus(StatusBase):
    predictions: list[NodeRisk] = Field(default_factory=list, json_schema_extra={"maxItems": 1000})
    schedule: list[ScheduledSlot] = Field(default_factory=list, json_schema_extra={"maxItems": 1000})
    progress: list[NodeProgress] = Field(default_factory=list, json_schema_extra={"maxItems": 1000})
    next_window: str | None = None
    nodes_at_risk: int | None = None
    in_progress: int | None = None
    solver: str | None = None
    routes: list[RouteState] = Field(
        default_factory=list,
        description="Routes the plan shifted (with the weights to restore), or would shift in Recommend.",
        json_schema_extra={"maxItems": 32},
    )
    prediction: PredictionStatus | None = Field(
        default=None, description="The failure model in use and its measured precision on the cluster's past."
    )


class MaintenancePlan(ApiModel):
    """Predict node failures, schedule maintenance (cordon, drain, act, uncordon) into allowed windows, and execute it within disruption limits."""

    KIND: ClassVar[str] = "MaintenancePlan"
    SCOPE: ClassVar[str] = "Cluster"
    """Maintenance cordons and drains nodes, evicting pods of every namespace: cluster-wide power,
    so only those who may write cluster-scoped objects (cluster administrators) declare it."""
    PLURAL: ClassVar[str] = "maintenanceplans"
    SINGULAR: ClassVar[str] = "maintenanceplan"
    SHORT_NAMES: ClassVar[tuple[str, ...]] = ("mplan",)
    PRINTER_COLUMNS: ClassVar[tuple[dict[str, Any], ...]] = (
        {"name": "Mode", "type": "string", "jsonPath": ".spec.mode"},
        {"name": "Ready", "type": "string", "jsonPath": '.status.conditions[?(@.type=="Ready")].status'},
        {"name": "Next Window", "type": "string", "jsonPath": ".status.nextWindow"},
        {"name": "At Risk", "type": "integer", "jsonPath": ".status.nodesAtRisk"},
        {"name": "In Progress", "type": "integer", "jsonPath": ".status.inProgress"},
        {"name": "Phase", "type": "string", "jsonPath": ".status.phase"},
        {"name": "Message", "type": "string", "jsonPath": ".status.message", "priority": 1},
        {"name": "Age", "type": "date", "jsonPath": ".metadata.creationTimestamp"},
    )

    spec: MaintenancePlanSpec
    status: MaintenancePlanStatus = Field(default_factory=MaintenancePlanStatus)
