"""ResourceAllocation: forecast demand for a set of workloads and allocate under capacity and budget."""

from __future__ import annotations

from typing import Any, ClassVar

from pydantic import ConfigDict, Field, field_validator

from autoloop.api.common import (
    LABELS_SCHEMA,
    ApiModel,
    Duration,
    LabelSelector,
    Mode,
    Quantity,
    Solver,
    StatusBase,
    TargetRef,
    check_labels,
)


class WorkloadSet(ApiModel):
    """Which workloads to allocate: a label selector over Deployments, or an explicit list."""

    model_config = ConfigDict(
        json_schema_extra={
            "x-kubernetes-validations": [
                {
                    "rule": "has(self.selector) || (has(self.targetRefs) && size(self.targetRefs) > 0)",
                    "message": "workloads needs a selector or at least one targetRef",
                }
            ]
        }
    )

    selector: LabelSelector | None = None
    target_refs: list[TargetRef] | None = Field(default=None, max_length=2000)


class Capacity(ApiModel):
    """The node pool the workloads share; read from the cluster's Nodes unless given."""

    node_selector: dict[str, str] = Field(default_factory=dict, json_schema_extra=LABELS_SCHEMA)
    reserve_percent: float = Field(default=10.0, ge=0, le=90, description="Headroom kept free on each node.")
    cpu: Quantity | None = Field(default=None, description="Override of total allocatable CPU.")
    memory: Quantity | None = Field(default=None, description="Override of total allocatable memory.")

    @field_validator("node_selector")
    @classmethod
    def _valid_selector(cls, labels: dict[str, str]) -> dict[str, str]:
        return check_labels(labels)


class Budget(ApiModel):
    max_cost_per_hour: float = Field(gt=0, description="Upper bound of the allocation's cost per hour.")
    cpu_core_hour: float = Field(default=0.0316, ge=0, description="Price of one core for one hour.")
    memory_gib_hour: float = Field(default=0.0042, ge=0, description="Price of one GiB for one hour.")


class SLA(ApiModel):
    quantile: float = Field(
        default=0.95, gt=0.5, lt=1, description="Demand quantile the allocation must meet."
    )
    min_replicas: int = Field(default=1, ge=0, le=1000)
    fairness_floor_percent: float = Field(
        default=50.0,
        ge=0,
        le=100,
        description="No workload gets less than this share of its forecast demand.",
    )
    churn_weight: float = Field(
        default=0.1, ge=0, le=10, description="Penalty for changing today's settings."
    )


class ResourceAllocationSpec(ApiModel):
    model_config = ConfigDict(
        json_schema_extra={
            "x-kubernetes-validations": [
                {
                    "rule": "duration(self.horizon) >= duration('5m')",
                    "message": "horizon must be at least 5m",
                },
                {
                    "rule": "duration(self.interval) >= duration('10s')",
                    "message": "interval must be at least 10s",
                },
                {
                    "rule": "duration(self.timeLimit) >= duration('100ms') && duration(self.timeLimit) <= duration('1m')",
                    "message": "timeLimit must be between 100ms and 1m (a pass waits for the solver)",
                },
            ]
        }
    )

    workloads: WorkloadSet
    capacity: Capacity = Field(default_factory=Capacity)
    budget: Budget
    sla: SLA = Field(default_factory=SLA)
    horizon: Duration = Field(default="1h", description="How far ahead demand is forecast.")
    interval: Duration = Field(default="5m", description="How often the allocation is recomputed.")
    solver: Solver = Solver.AUTO
    time_limit: Duration = Field(default="10s", description="Solver time budget, 100ms to 1m.")
    mode: Mode = Mode.RECOMMEND
    suspend: bool = False


class WorkloadAllocation(ApiModel):
    name: str
    replicas: int
    cpu: str
    memory: str
    current_replicas: int | None = None
    current_cpu: str | None = None
    current_memory: str | None = None
    forecast: dict[str, float] = Field(default_factory=dict)


class SolverReport(ApiModel):
    name: str
    objective: float | None = None
    bound: float | None = None
    gap: float | None = None
    seconds: float | None = None
    annealing_contribution: float | None = None


class ResourceAllocationStatus(StatusBase):
    allocations: list[WorkloadAllocation] = Field(default_factory=list, json_schema_extra={"maxItems": 2000})
    cost_per_hour: float | None = None
    sla_score: float | None = None
    forecast_error: float | None = Field(default=None, description="Pinball loss of the previous horizon.")
    solver: SolverReport | None = None
    workload_count: int | None = None


class ResourceAllocation(ApiModel):
    """Forecast demand of a set of workloads and allocate replicas, CPU and memory across them under node capacity and a budget."""

    KIND: ClassVar[str] = "ResourceAllocation"
    PLURAL: ClassVar[str] = "resourceallocations"
    SINGULAR: ClassVar[str] = "resourceallocation"
    SHORT_NAMES: ClassVar[tuple[str, ...]] = ("ralloc",)
    PRINTER_COLUMNS: ClassVar[tuple[dict[str, Any], ...]] = (
        {"name": "Workloads", "type": "integer", "jsonPath": ".status.workloadCount"},
        {"name": "Mode", "type": "string", "jsonPath": ".spec.mode"},
        {"name": "Ready", "type": "string", "jsonPath": '.status.conditions[?(@.type=="Ready")].status'},
        {"name": "Cost/h", "type": "number", "jsonPath": ".status.costPerHour"},
        {"name": "Budget/h", "type": "number", "jsonPath": ".spec.budget.maxCostPerHour"},
        {"name": "SLA", "type": "number", "jsonPath": ".status.slaScore"},
        {"name": "Solver", "type": "string", "jsonPath": ".status.solver.name"},
        {"name": "Message", "type": "string", "jsonPath": ".status.message", "priority": 1},
        {"name": "Age", "type": "date", "jsonPath": ".metadata.creationTimestamp"},
    )

    spec: ResourceAllocationSpec
    status: ResourceAllocationStatus = Field(default_factory=ResourceAllocationStatus)
