"""MaintenancePlan `spec.routing` and `status.routes`: the traffic routes a plan steers around drains.

A plan names HTTPRoutes (gateway.networking.k8s.io) and Istio VirtualServices
(networking.istio.io). Before a node's drain the weights of backends with ready endpoints on it
move to the other backends of the same rule, in steps; after the node is back they return to the
weights kept in `status.routes[].original`, so a restarted operator restores them too.
"""

from __future__ import annotations

from enum import StrEnum

from pydantic import Field

from autoloop.api.common import NAME_PATTERN, QUALIFIED_NAME_PATTERN, ApiModel, Duration

NAMESPACE_PATTERN = r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$"


class RouteKind(StrEnum):
    HTTP_ROUTE = "HTTPRoute"
    VIRTUAL_SERVICE = "VirtualService"


class RouteRef(ApiModel):
    """One route in a named namespace (a plan is cluster-scoped, so the namespace is explicit)."""

    kind: RouteKind = Field(
        default=RouteKind.HTTP_ROUTE,
        description="HTTPRoute (gateway.networking.k8s.io/v1) or VirtualService (networking.istio.io/v1).",
    )
    namespace: str = Field(min_length=1, max_length=63, pattern=NAMESPACE_PATTERN)
    name: str = Field(min_length=1, max_length=253, pattern=NAME_PATTERN)

    @property
    def key(self) -> str:
        return f"{self.kind}/{self.namespace}/{self.name}"


class Routing(ApiModel):
    """Routes whose backend weights move away from nodes before they are drained."""

    routes: list[RouteRef] = Field(default_factory=list, max_length=32)
    steps: int = Field(
        default=3,
        ge=1,
        le=20,
        description="Weight changes per shift (and per restore): traffic moves a 1/steps share at a time.",
    )
    pace: Duration = Field(
        default="10s",
        description="Wait between two steps, so clients and proxies follow each change.",
    )
    group_by: str | None = Field(
        default=None,
        max_length=317,
        description="A node label (e.g. topology.kubernetes.io/zone): the schedule maintains the nodes "
        "sharing a value of it as one group, in one window and in a turn no other group overlaps (a group "
        "no window holds within the limits is split over as few windows as possible, condition Scheduled "
        "reason GroupSplit); when a node's turn comes, traffic also moves off the nodes with its value "
        "that the plan will maintain in the same window, and returns after the last of them (one shift "
        "per zone instead of one per node).",
        pattern=QUALIFIED_NAME_PATTERN,
    )
    restore_timeout: Duration = Field(
        default="5m",
        description="After a node is back, wait this long at most for the shifted backends to have ready "
        "endpoints again before the original weights are restored anyway.",
    )


class BackendWeight(ApiModel):
    """One weighted backend of a route: its rule and position, the Service, the weight."""

    rule: int = Field(ge=0)
    index: int = Field(ge=0)
    service: str = Field(description="namespace/name of the backend Service.")
    weight: int = Field(ge=0)


class RouteState(ApiModel):
    """What the plan did to one route: kept so a restarted operator finishes or undoes it."""

    route: str = Field(description="Kind/namespace/name.")
    phase: str = Field(
        description="Shifting, Shifted, Restoring, Restored, Recommended, BackedOff or Unchanged."
    )
    nodes: list[str] = Field(default_factory=list, description="The nodes the shift moves traffic from.")
    original: list[BackendWeight] = Field(
        default_factory=list, description="The weights before the plan touched the route (restored after)."
    )
    target: list[BackendWeight] = Field(default_factory=list, description="Where the steps lead.")
    applied: list[BackendWeight] = Field(
        default_factory=list, description="The weights of the plan's last confirmed write."
    )
    pending: list[BackendWeight] = Field(
        default_factory=list, description="The weights being written (intent), until confirmed."
    )
    step: int = 0
    steps: int = 1
    updated_at: str | None = None
    message: str = ""
