"""MaintenancePlan `spec.prediction` and `status.prediction`: failure prediction that learns from the cluster.

A plan predicts with the simulator-trained model (the prior) until its nodes' own history in
Prometheus holds enough labelled failures; then it trains a cluster model in the background,
measures both on the newest part of that history, and predicts with the better one. Users may add
numeric node signals (`signals`) as extra inputs. Status keeps only the model's identity and
measured quality, never its weights: a restarted operator refits it from Prometheus.
"""

from __future__ import annotations

from enum import StrEnum

from pydantic import ConfigDict, Field, JsonValue, field_validator

from autoloop.api.common import ApiModel, Duration

NODE_PLACEHOLDER = "$node"
"""Replaced in a signal's query by the node's name, escaped as a PromQL string."""
SIGNAL_NAME_PATTERN = r"^[a-zA-Z_:][a-zA-Z0-9_:]*$"
"""A Prometheus metric name: the signal's name in the model (a `_total` suffix marks a counter)."""


def _bounded(field: str, low: str, high: str) -> dict[str, JsonValue]:
    """CEL bounds on one duration field (on the field: an object's rules also meet its defaults)."""
    return {
        "x-kubernetes-validations": [
            {
                "rule": f"duration(self) >= duration('{low}') && duration(self) <= duration('{high}')",
                "message": f"prediction.{field} must be between {low} and {high}",
            }
        ]
    }


class Signal(ApiModel):
    """One extra numeric node signal: PromQL returning one series per node, `$node` naming the node."""

    model_config = ConfigDict(
        json_schema_extra={
            "x-kubernetes-validations": [
                {
                    "rule": "self.query.contains('$node')",
                    "message": "a signal's query must select the node with the $node placeholder",
                }
            ]
        }
    )

    name: str = Field(
        min_length=1,
        max_length=128,
        pattern=SIGNAL_NAME_PATTERN,
        description="Feature name (a metric name; ending in _total marks a counter, whose increases count). "
        "A built-in input's name (e.g. node_hwmon_temp_celsius) replaces its query.",
    )
    query: str = Field(
        min_length=1,
        max_length=4096,
        description='PromQL with $node where the node name goes, e.g. max(ipmi_fan_speed_rpm{node="$node"}).',
    )

    @field_validator("query")
    @classmethod
    def _has_node(cls, value: str) -> str:
        if NODE_PLACEHOLDER not in value:
            raise ValueError("a signal's query must select the node with the $node placeholder")
        return value


class Prediction(ApiModel):
    """How the plan predicts failures: extra signals, and learning from the cluster's own history."""

    signals: list[Signal] = Field(
        default_factory=list,
        max_length=32,
        description="Extra numeric node signals, fed to the model beside the built-in node metrics.",
        json_schema_extra={"x-kubernetes-list-type": "map", "x-kubernetes-list-map-keys": ["name"]},
    )
    learn: bool = Field(
        default=True, description="Train a model on the nodes' own history; false keeps the prior."
    )
    failure_after: Duration = Field(
        default="10m",
        description="A node NotReady (or gone from kube-state-metrics) at least this long has failed.",
        json_schema_extra=_bounded("failureAfter", "1m", "24h"),
    )
    lookback: Duration = Field(
        default="336h",
        description="History read from Prometheus to train and measure on (14 days).",
        json_schema_extra=_bounded("lookback", "24h", "2160h"),
    )
    retrain_every: Duration = Field(
        default="24h",
        description="Retrain this often (and when a node comes back from a failure).",
        json_schema_extra=_bounded("retrainEvery", "10m", "720h"),
    )
    min_failures: int = Field(
        default=3, ge=1, le=1000, description="Labelled failures needed before a cluster model is trained."
    )
    min_history: Duration = Field(
        default="72h",
        description="History needed before a cluster model is trained.",
        json_schema_extra=_bounded("minHistory", "1h", "2160h"),
    )

    @field_validator("signals")
    @classmethod
    def _unique(cls, value: list[Signal]) -> list[Signal]:
        names = [s.name for s in value]
        twice = sorted({n for n in names if names.count(n) > 1})
        if twice:
            raise ValueError(f"signal names must be unique: {', '.join(twice)}")
        return value


def signal_query(signal: Signal, escaped_node: str) -> str:
    """The signal's query for one node; `escaped_node` must already be escaped for a PromQL string."""
    return signal.query.replace(NODE_PLACEHOLDER, escaped_node)


class ModelKind(StrEnum):
    PRIOR = "Prior"
    CLUSTER = "Cluster"


class ModelScore(ApiModel):
    """A model's quality on the newest part of the cluster's history (neither model trained on it)."""

    precision: float | None = Field(
        default=None, description="At spec.riskThreshold; none when nothing was flagged."
    )
    recall: float | None = Field(default=None, description="At spec.riskThreshold.")
    pr_auc: float | None = Field(default=None, description="Average precision over every threshold.")


class PredictionStatus(ApiModel):
    """Which failure model the predictions come from, and how each did on the cluster's past."""

    model: ModelKind = Field(default=ModelKind.PRIOR, description="Prior (simulator) or Cluster.")
    version: int = Field(default=0, ge=0, description="Cluster models adopted so far (0: never).")
    trained_at: str | None = Field(
        default=None, description="Start of the last training: its history ends here."
    )
    next_training_at: str | None = None
    failures: int = Field(default=0, ge=0, description="Labelled failures in the lookback.")
    last_failure_at: str | None = None
    history_hours: float | None = Field(default=None, description="Span of the history read.")
    measured_since: str | None = Field(default=None, description="Start of the held-out newest part.")
    prior: ModelScore | None = None
    cluster: ModelScore | None = None
    message: str = Field(default="", max_length=1000, description="Why this model is in use.")
    missing_signals: list[str] = Field(
        default_factory=list,
        description="spec.prediction.signals with no data on any node in the lookback.",
        json_schema_extra={"maxItems": 32},
    )
