"""Types shared by every kind: references, quantities, durations, conditions, decisions."""

from __future__ import annotations

import json
import re
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from enum import StrEnum
from typing import Annotated, Any, ClassVar, Final

from pydantic import AfterValidator, BaseModel, ConfigDict, Field, JsonValue, WithJsonSchema, field_validator
from pydantic.alias_generators import to_camel

GROUP: Final = "autoloop.x0tta6bl4.io"
VERSION: Final = "v1alpha1"
API_VERSION: Final = f"{GROUP}/{VERSION}"

# Go-style durations ("30s", "5m", "1h30m"), the form CEL's duration() accepts.
DURATION_PATTERN: Final = r"^([0-9]+(\.[0-9]+)?(ms|s|m|h))+$"
# Kubernetes resource quantities ("250m", "1.5", "512Mi", "2G").
QUANTITY_PATTERN: Final = r"^[0-9]+(\.[0-9]+)?(m|k|M|G|T|P|E|Ki|Mi|Gi|Ti|Pi|Ei)?$"
# DNS-1123 label names: what Kubernetes accepts for most object names.
NAME_PATTERN: Final = r"^[a-z0-9]([-a-z0-9.]*[a-z0-9])?$"

# Kubernetes qualified names (label and annotation keys): an optional DNS-subdomain prefix and `/`,
# then a name of at most 63 characters; the same rule the apiserver applies to metadata keys.
QUALIFIED_NAME_PATTERN: Final = (
    r"^([a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*/)?"
    r"[A-Za-z0-9]([-A-Za-z0-9_.]{0,61}[A-Za-z0-9])?$"
)
# Prefixes a user may not write on nodes through the operator: Kubernetes' own (kubernetes.io,
# k8s.io and their subdomains) and ours (a forged cordon or maintenance marker would hand a node
# to another plan).
RESERVED_KEY_PATTERN: Final = r"^([^/]*\.)?(kubernetes\.io|k8s\.io|x0tta6bl4\.io)/"
MAX_PREFIX_LENGTH: Final = 253


def qualified_key_problem(key: str) -> str | None:
    """Why `key` may not be used as an annotation key the operator writes, or None."""
    if not re.fullmatch(QUALIFIED_NAME_PATTERN, key) or len(key.partition("/")[0]) > MAX_PREFIX_LENGTH:
        return f"{key!r} is not a qualified name (optional DNS prefix and '/', then at most 63 of [A-Za-z0-9-_.])"
    if re.match(RESERVED_KEY_PATTERN, key):
        return f"{key!r} uses a reserved prefix (kubernetes.io, k8s.io, x0tta6bl4.io and their subdomains)"
    return None


_DURATION_PART = re.compile(r"([0-9]+(?:\.[0-9]+)?)(ms|s|m|h)")
_DURATION_UNIT_SECONDS: Final = {"ms": 0.001, "s": 1.0, "m": 60.0, "h": 3600.0}
_QUANTITY = re.compile(
    r"^((?:[0-9]+\.?[0-9]*|\.[0-9]+)(?:[eE][+-]?[0-9]+)?)(n|u|m|k|M|G|T|P|E|Ki|Mi|Gi|Ti|Pi|Ei)?$"
)
"""Every quantity the apiserver may return (spec input is held to QUANTITY_PATTERN)."""
_QUANTITY_SUFFIX: Final = {
    "": 1.0,
    "n": 1e-9,
    "u": 1e-6,
    "m": 1e-3,
    "k": 1e3,
    "M": 1e6,
    "G": 1e9,
    "T": 1e12,
    "P": 1e15,
    "E": 1e18,
    "Ki": 2.0**10,
    "Mi": 2.0**20,
    "Gi": 2.0**30,
    "Ti": 2.0**40,
    "Pi": 2.0**50,
    "Ei": 2.0**60,
}

Duration = Annotated[str, Field(pattern=DURATION_PATTERN, max_length=32)]
"""A Go-style duration string, e.g. `30s`, `5m`, `1h30m`."""


def _quantity_text(value: str | int | float) -> str | int | float:
    """The apiserver enforces the pattern; library users of the models get the same refusal."""
    if not re.fullmatch(QUANTITY_PATTERN, str(value)) or len(str(value)) > 64:
        raise ValueError(f"{value!r} is not a Kubernetes quantity (e.g. 250m, 1, 512Mi)")
    return value


Quantity = Annotated[
    str | int | float,
    AfterValidator(_quantity_text),
    WithJsonSchema({"x-kubernetes-int-or-string": True, "pattern": QUANTITY_PATTERN, "maxLength": 64}),
]
"""A Kubernetes quantity: `250m`, `1`, `512Mi`. Integers are accepted as YAML writes them."""


IntOrString = Annotated[int | str, WithJsonSchema({"x-kubernetes-int-or-string": True})]
"""A value such as a replica count or a quantity string."""


def parse_duration(text: str) -> timedelta:
    """Seconds in a Go-style duration; raises ValueError on anything else."""
    if not re.fullmatch(DURATION_PATTERN, text):
        raise ValueError(f"invalid duration {text!r}: use forms like 30s, 5m, 1h30m")
    seconds = sum(float(n) * _DURATION_UNIT_SECONDS[u] for n, u in _DURATION_PART.findall(text))
    return timedelta(seconds=seconds)


def parse_quantity(value: str | int | float) -> float:
    """The value of a Kubernetes quantity in base units (cores, bytes): `250m`, `1.5`, `512Mi`, `1e3`."""
    match = _QUANTITY.fullmatch(str(value).strip())
    if not match:
        raise ValueError(f"invalid quantity {value!r}: use forms like 250m, 1, 512Mi")
    return float(match.group(1)) * _QUANTITY_SUFFIX[match.group(2) or ""]


def format_cpu(cores: float) -> str:
    """Cores as a quantity string in millicores, the unit Kubernetes shows for CPU."""
    return f"{max(1, round(cores * 1000))}m"


def format_memory(num_bytes: float) -> str:
    """Bytes as a quantity string in MiB (Mi), rounded up so a request never shrinks by rounding."""
    mib = -(-num_bytes // 2**20)
    return f"{max(1, int(mib))}Mi"


def now_utc() -> datetime:
    return datetime.now(UTC)


def rfc3339(moment: datetime) -> str:
    """The timestamp format Kubernetes uses in conditions and Events."""
    return moment.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def parse_time(text: str) -> datetime:
    """The inverse of `rfc3339` (also accepts offsets)."""
    return datetime.fromisoformat(text.replace("Z", "+00:00"))


class ApiModel(BaseModel):
    """Base of every API model: camelCase on the wire, snake_case in Python."""

    model_config = ConfigDict(
        alias_generator=to_camel,
        populate_by_name=True,
        extra="ignore",
        use_enum_values=True,
        validate_default=True,
    )

    def wire(self) -> dict[str, Any]:
        """The JSON-ready dict in the form the apiserver stores (aliases, no Nones)."""
        return self.model_dump(mode="json", by_alias=True, exclude_none=True)


class Mode(StrEnum):
    RECOMMEND = "Recommend"
    AUTO = "Auto"


class Solver(StrEnum):
    AUTO = "Auto"
    CPSAT = "CPSAT"
    ANNEALING = "Annealing"


class ConditionStatus(StrEnum):
    TRUE = "True"
    FALSE = "False"
    UNKNOWN = "Unknown"


class TargetRef(ApiModel):
    """A workload in the same namespace as the resource that names it."""

    model_config = ConfigDict(
        json_schema_extra={
            "x-kubernetes-validations": [
                {
                    "rule": "self.apiVersion == 'apps/v1'",
                    "message": "targetRef.apiVersion must be apps/v1",
                },
                {
                    "rule": "!has(self.namespace)",
                    "message": "targetRef cannot name a namespace: autoloop acts only in the resource's own namespace",
                },
            ]
        }
    )

    api_version: str = Field(default="apps/v1", description="API version of the target; apps/v1.")
    kind: str = Field(
        default="Deployment",
        description="Kind of the target workload.",
        json_schema_extra={"enum": ["Deployment", "StatefulSet"]},
    )
    name: str = Field(
        min_length=1,
        max_length=253,
        pattern=NAME_PATTERN,
        description="Name of the target in the same namespace (cross-namespace targets are refused).",
    )
    namespace: str | None = Field(
        default=None,
        max_length=63,
        description="Must be left out: a target is always in the resource's own namespace.",
    )


LABEL_VALUE_PATTERN: Final = r"^(([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9])?$"
"""A label value: at most 63 characters, alphanumeric at both ends (the apiserver's rule)."""
_LABEL_VALUE: Final[dict[str, JsonValue]] = {
    "type": "string",
    "maxLength": 63,
    "pattern": LABEL_VALUE_PATTERN,
}
LABELS_SCHEMA: Final[dict[str, JsonValue]] = {
    "maxProperties": 64,
    "additionalProperties": _LABEL_VALUE,
    "x-kubernetes-validations": [
        {
            "rule": f"self.all(k, k.matches(r'{QUALIFIED_NAME_PATTERN}'))",
            "message": "label keys must be qualified names (optional DNS prefix and '/', then a name "
            "of at most 63 of [A-Za-z0-9-_.])",
        }
    ],
}
"""Schema of a label map (matchLabels, a node selector): the apiserver's key and value rules."""


def _label_key_problem(key: str) -> str | None:
    if not re.fullmatch(QUALIFIED_NAME_PATTERN, key) or len(key.partition("/")[0]) > MAX_PREFIX_LENGTH:
        return f"label key {key!r} is not a qualified name"
    return None


def _label_value_problem(value: str) -> str | None:
    if len(value) > 63 or not re.fullmatch(LABEL_VALUE_PATTERN, value):
        return f"label value {value!r} is not valid (at most 63 of [A-Za-z0-9-_.], alphanumeric at both ends)"
    return None


def check_labels(labels: dict[str, str]) -> dict[str, str]:
    """The label map, or ValueError naming every key and value the apiserver would refuse."""
    problems = [p for k, v in labels.items() for p in (_label_key_problem(k), _label_value_problem(v)) if p]
    if problems:
        raise ValueError("; ".join(problems))
    return labels


class LabelSelectorRequirement(ApiModel):
    key: str = Field(min_length=1, max_length=317, pattern=QUALIFIED_NAME_PATTERN)
    operator: str = Field(json_schema_extra={"enum": ["In", "NotIn", "Exists", "DoesNotExist"]})
    values: list[str] = Field(default_factory=list, max_length=64, json_schema_extra={"items": _LABEL_VALUE})

    @field_validator("values")
    @classmethod
    def _valid_values(cls, values: list[str]) -> list[str]:
        problems = [p for v in values if (p := _label_value_problem(v))]
        if problems:
            raise ValueError("; ".join(problems))
        return values


class LabelSelector(ApiModel):
    """The usual Kubernetes label selector; keys and values follow the apiserver's label rules, so
    a selector is refused at apply rather than by the list call that would use it."""

    match_labels: dict[str, str] = Field(default_factory=dict, json_schema_extra=LABELS_SCHEMA)
    match_expressions: list[LabelSelectorRequirement] = Field(default_factory=list, max_length=32)

    @field_validator("match_labels")
    @classmethod
    def _valid_labels(cls, labels: dict[str, str]) -> dict[str, str]:
        return check_labels(labels)

    def matches(self, labels: dict[str, str]) -> bool:
        """Whether an object's labels satisfy the selector (the apiserver's semantics)."""
        if any(labels.get(k) != v for k, v in self.match_labels.items()):
            return False
        for req in self.match_expressions:
            present = req.key in labels
            if req.operator == "In" and (not present or labels[req.key] not in req.values):
                return False
            if req.operator == "NotIn" and present and labels[req.key] in req.values:
                return False
            if req.operator == "Exists" and not present:
                return False
            if req.operator == "DoesNotExist" and present:
                return False
        return True

    def to_query(self) -> str:
        """The selector as a `labelSelector=` string for list calls."""
        parts = [f"{k}={v}" for k, v in sorted(self.match_labels.items())]
        for req in self.match_expressions:
            if req.operator in ("In", "NotIn"):
                op = "in" if req.operator == "In" else "notin"
                parts.append(f"{req.key} {op} ({','.join(req.values)})")
            elif req.operator == "Exists":
                parts.append(req.key)
            else:
                parts.append(f"!{req.key}")
        return ",".join(parts)


class Condition(ApiModel):
    """A status condition in the Kubernetes convention (metav1.Condition)."""

    type: str
    status: ConditionStatus
    reason: str = Field(pattern=r"^[A-Za-z]([A-Za-z0-9_,:]*[A-Za-z0-9_])?$", max_length=1024)
    message: str = Field(default="", max_length=32768)
    last_transition_time: str
    observed_generation: int | None = None


def set_condition(
    conditions: list[Condition],
    *,
    type: str,
    status: ConditionStatus | str,
    reason: str,
    message: str,
    generation: int | None,
    now: datetime,
) -> list[Condition]:
    """A new list with one condition set; the transition time moves only when the status does."""
    status = ConditionStatus(status)
    result: list[Condition] = []
    found = False
    for cond in conditions:
        if cond.type != type:
            result.append(cond)
            continue
        found = True
        moved = cond.status != status
        result.append(
            Condition(
                type=type,
                status=status,
                reason=reason,
                message=message[:4000],
                last_transition_time=rfc3339(now) if moved else cond.last_transition_time,
                observed_generation=generation,
            )
        )
    if not found:
        result.append(
            Condition(
                type=type,
                status=status,
                reason=reason,
                message=message[:4000],
                last_transition_time=rfc3339(now),
                observed_generation=generation,
            )
        )
    return result


def find_condition(conditions: list[Condition], type: str) -> Condition | None:
    return next((c for c in conditions if c.type == type), None)


class RuleVerdict(ApiModel):
    """What one safety rule said about one proposed change."""

    rule: str
    passed: bool
    reason: str = ""


class Decision(ApiModel):
    """One entry of a resource's bounded decision history: seen, proposed, validated, done, measured."""

    id: str = Field(description="Decision id; also written on the target in an annotation when applied.")
    time: str
    action: str = Field(
        description="Recommended, Applied, Blocked, RolledBack, Approved, Abandoned (recorded, never reached its target), Skipped, Planned, Executed or Failed."
    )
    target: str = ""
    observed: dict[str, float] = Field(default_factory=dict)
    current: dict[str, IntOrString] = Field(default_factory=dict)
    proposed: dict[str, IntOrString] = Field(default_factory=dict)
    predicted: dict[str, float] = Field(default_factory=dict)
    measured: dict[str, float] = Field(default_factory=dict)
    verdicts: list[RuleVerdict] = Field(default_factory=list)
    passed_rules: list[str] | None = Field(
        default=None,
        description="Rules that passed and whose reasons were cut to fit the status budget: their "
        "names only (a verdict that failed or passed by an exemption keeps its reason in `verdicts`).",
    )
    explanation: str = Field(default="", max_length=4000)


class StatusBase(ApiModel):
    """Fields every status has."""

    HISTORY_LIMIT: ClassVar[int] = 20

    observed_generation: int | None = None
    phase: str | None = None
    conditions: list[Condition] = Field(default_factory=list)
    decisions: list[Decision] = Field(
        default_factory=list,
        description="Bounded history of decisions, newest last.",
        json_schema_extra={"maxItems": 50},
    )
    last_run_time: str | None = Field(default=None, description="When the last reconcile pass ran.")
    message: str | None = Field(default=None, description="One line about the current state.")

    STATUS_BUDGET_BYTES: ClassVar[int | None] = None
    """The largest status JSON a pass writes (every write goes to every watcher of the kind);
    None: unbounded, for kinds whose status holds what the operator acts on."""
    CONDITION_MESSAGE_KEPT: ClassVar[int] = 240
    """A condition message cut to fit the budget keeps this many characters."""

    def record(self, decision: Decision) -> None:
        """Append a decision, keeping only the most recent HISTORY_LIMIT."""
        self.decisions = [*self.decisions, decision][-self.HISTORY_LIMIT :]

    def json_bytes(self) -> int:
        """Size of the status as the apiserver stores and sends it (JSON without spaces, camelCase,
        no nulls)."""
        return len(
            json.dumps(self.model_dump(mode="json", by_alias=True, exclude_none=True), separators=(",", ":"))
        )

    def fit_to_budget(self) -> list[str]:
        """Shrink to STATUS_BUDGET_BYTES, cutting what a reader misses least first (`shrink_steps`);
        what is cut was also sent as an Event. Returns what was cut, for the log. Stops when no step
        can cut more: what the operator acts on is never cut, so a status may stay over budget."""
        budget = self.STATUS_BUDGET_BYTES
        cut: list[str] = []
        if budget is None:
            return cut
        for shrink in self.shrink_steps():
            while self.json_bytes() > budget:
                what = shrink()
                if what is None:
                    break
                cut.append(what)
        return cut

    def shrink_steps(self) -> list[Callable[[], str | None]]:
        """Each step cuts one thing and says what, or returns None when it has nothing left to cut."""
        return [self.drop_oldest_decision, self.shorten_condition_message]

    def drop_oldest_decision(self) -> str | None:
        """The newest decision always stays: it is what the operator did last and why."""
        if len(self.decisions) <= 1:
            return None
        oldest = self.decisions.pop(0)
        return f"decision {oldest.id}"

    def shorten_condition_message(self) -> str | None:
        """The longest condition message over CONDITION_MESSAGE_KEPT characters, cut to that."""
        long = [c for c in self.conditions if len(c.message) > self.CONDITION_MESSAGE_KEPT]
        if not long:
            return None
        c = max(long, key=lambda c: len(c.message))
        c.message = c.message[: self.CONDITION_MESSAGE_KEPT - 1] + "…"
        return f"{c.type} message"

    def set_condition(
        self,
        type: str,
        status: ConditionStatus | str,
        reason: str,
        message: str,
        *,
        generation: int | None,
        now: datetime,
    ) -> bool:
        """Set one condition; True when its status or reason changed (worth an Event)."""
        before = find_condition(self.conditions, type)
        self.conditions = set_condition(
            self.conditions,
            type=type,
            status=status,
            reason=reason,
            message=message,
            generation=generation,
            now=now,
        )
        return before is None or before.status != ConditionStatus(status) or before.reason != reason

    def condition(self, type: str) -> Condition | None:
        return find_condition(self.conditions, type)
