"""MaintenancePlan routing: move route weights off nodes before their drain, and back after.

Reads the routes a plan names (`spec.routing.routes`: Gateway API HTTPRoutes, Istio
VirtualServices) and the ready endpoints of their backend Services per node (the Services' pods:
the shipped role reads pods and Services, not EndpointSlices); `engines.routing` decides the
weights. Every weight change is a decision: the intent (`status.routes[].pending`) is written
before the route is patched, the JSON patch carries the route's resourceVersion (409 if it changed
since it was read), an Event and a decision record follow. A route whose weights are neither the
ones the plan last wrote nor the ones it was writing was changed by someone else: the plan backs
off (condition `Routed=False`, reason `RouteChangedElsewhere`) and never touches it again in that
shift. After a crash the stored intent tells whether the last write landed: the route holds either
`pending` (it did) or `applied` (it did not). This module never drains, cordons or schedules.
"""

from __future__ import annotations

import zlib
from datetime import datetime, timedelta
from typing import Any, Final, cast

from kubernetes.client.exceptions import ApiException

from autoloop.api.common import Decision, parse_duration, parse_time, rfc3339
from autoloop.api.maintenance_routing import BackendWeight, RouteKind, RouteRef, RouteState
from autoloop.api.maintenanceplan import MaintenancePlan, MaintenancePlanStatus
from autoloop.engines import routing as engine
from autoloop.operator import kube, wiring

PlanPass = wiring.Pass[MaintenancePlan, MaintenancePlanStatus]

API: Final[dict[str, tuple[str, str, str, str]]] = {
    RouteKind.HTTP_ROUTE: ("gateway.networking.k8s.io", "v1", "httproutes", "rules"),
    RouteKind.VIRTUAL_SERVICE: ("networking.istio.io", "v1", "virtualservices", "http"),
}
"""kind -> (group, version, plural, the spec list holding the rules)."""
BACKENDS: Final[dict[str, str]] = {RouteKind.HTTP_ROUTE: "backendRefs", RouteKind.VIRTUAL_SERVICE: "route"}
ACTIVE: Final = frozenset({"Shifting", "Shifted", "Restoring"})
"""Phases in which the plan owns the route's weights (it wrote them and will restore them)."""


class RouteMissing(Exception):
    """The route (or its kind: the CRD is not installed) does not exist."""


# -- reading -----------------------------------------------------------------------------------------


def read_route(clients: kube.Clients, ref: RouteRef) -> dict[str, Any]:
    group, version, plural, _ = API[ref.kind]
    try:
        obj = cast(
            dict[str, Any],
            clients.custom.get_namespaced_custom_object(group, version, ref.namespace, plural, ref.name),
        )
    except ApiException as exc:
        if exc.status == 404:
            raise RouteMissing(f"{ref.key} not found (is its CRD installed?)") from exc
        raise
    return obj


def _service(kind: str, namespace: str, backend: dict[str, Any]) -> str:
    """The backend's Service as namespace/name ("" for a backend that is not a Service)."""
    if kind == RouteKind.HTTP_ROUTE:
        if backend.get("group", "") != "" or backend.get("kind", "Service") != "Service":
            return ""
        return f"{backend.get('namespace') or namespace}/{backend.get('name', '')}"
    host = str((backend.get("destination") or {}).get("host", ""))
    parts = host.split(".")  # name, name.ns, or name.ns.svc.<cluster domain>
    if len(parts) == 1 or (len(parts) >= 3 and parts[2] == "svc"):
        return f"{parts[1] if len(parts) > 1 else namespace}/{parts[0]}"
    if len(parts) == 2:
        return f"{parts[1]}/{parts[0]}"
    return ""  # an external host (ServiceEntry): no endpoints of ours


def backends(kind: str, obj: dict[str, Any]) -> list[engine.Backend]:
    """Every weighted backend of the route, with its default weight made explicit."""
    namespace = obj["metadata"]["namespace"]
    rules = (obj.get("spec") or {}).get(API[kind][3]) or []
    found: list[engine.Backend] = []
    for r, rule in enumerate(rules):
        refs = rule.get(BACKENDS[kind]) or []
        # Defaults: a Gateway API backendRef weighs 1; an Istio route alone in its rule takes all.
        default = 1 if kind == RouteKind.HTTP_ROUTE else (100 if len(refs) == 1 else 0)
        for i, ref in enumerate(refs):
            weight = int(ref.get("weight", default))
            found.append(engine.Backend(r, i, _service(kind, namespace, ref), weight))
    return found


def endpoints(clients: kube.Clients, services: set[str]) -> dict[str, dict[str, int]]:
    """Ready pods of each Service per node: the endpoints kube-proxy and gateways send traffic to."""
    result: dict[str, dict[str, int]] = {}
    for key in sorted(s for s in services if s):
        namespace, name = key.split("/", 1)
        try:
            svc: Any = clients.core.read_namespaced_service(name, namespace)
        except ApiException as exc:
            if exc.status == 404:
                result[key] = {}
                continue
            raise
        selector = dict(svc.spec.selector or {})
        counts: dict[str, int] = {}
        if selector:
            query = ",".join(f"{k}={v}" for k, v in sorted(selector.items()))
            pod: Any
            for pod in clients.core.list_namespaced_pod(namespace, label_selector=query).items:
                if pod.metadata.deletion_timestamp is None and pod.spec.node_name and _ready(pod):
                    counts[pod.spec.node_name] = counts.get(pod.spec.node_name, 0) + 1
        result[key] = counts
    return result


def _ready(pod: Any) -> bool:
    conditions = (pod.status.conditions or []) if pod.status else []
    return any(c.type == "Ready" and c.status == "True" for c in conditions)


def scheduled_now(p: PlanPass, now: datetime) -> frozenset[str]:
    """Nodes whose slot starts before the window open now closes: the plan will drain them soon."""
    ends = [
        end for w in p.resource.spec.windows for start, end in w.openings(now, days=1) if start <= now < end
    ]
    if not ends:
        return frozenset()
    return frozenset(s.node for s in p.status.schedule if parse_time(s.start) < max(ends))


def about_to_drain(
    p: PlanPass, clients: kube.Clients, active: frozenset[str], *, now: datetime
) -> frozenset[str]:
    """The nodes a shift moves traffic off: those in maintenance and, with `routing.groupBy`, the
    nodes of their group (zone) that the plan will maintain before the window closes."""
    key = p.resource.spec.routing.group_by
    soon = scheduled_now(p, now) - active
    if not key or not soon:
        return active
    values = {v for n in active if (node := kube.read_node(clients, n)) and (v := node.labels.get(key))}
    same = {n for n in soon if (node := kube.read_node(clients, n)) and node.labels.get(key) in values}
    return active | same


def shifted_at(status: MaintenancePlanStatus, node: str) -> list[datetime]:
    """When the shifts covering `node` wrote their last step: its drain timeout counts from there."""
    return [
        parse_time(s.updated_at)
        for s in status.routes
        if s.phase == "Shifted" and node in s.nodes and s.updated_at is not None
    ]


# -- writing -----------------------------------------------------------------------------------------


def patch_weights(
    clients: kube.Clients, ref: RouteRef, weights: list[engine.Backend], *, resource_version: str
) -> None:
    """Set the weights with a JSON patch that carries the route's resourceVersion: kube.Conflict if
    anyone changed the route since it was read (the apiserver answers 409)."""
    group, version, plural, rules = API[ref.kind]
    ops: list[dict[str, Any]] = [
        {"op": "replace", "path": "/metadata/resourceVersion", "value": resource_version}
    ]
    ops += [
        {
            "op": "add",
            "path": f"/spec/{rules}/{b.rule}/{BACKENDS[ref.kind]}/{b.index}/weight",
            "value": b.weight,
        }
        for b in weights
    ]
    try:
        clients.custom.patch_namespaced_custom_object(
            group, version, ref.namespace, plural, ref.name, ops, _content_type="application/json-patch+json"
        )
    except ApiException as exc:
        if exc.status == 409:
            raise kube.Conflict(f"{ref.key} changed since resourceVersion {resource_version}") from exc
        raise


def _wire(weights: list[engine.Backend]) -> list[BackendWeight]:
    return [BackendWeight(rule=b.rule, index=b.index, service=b.service, weight=b.weight) for b in weights]


def _plain(weights: list[BackendWeight]) -> list[engine.Backend]:
    return [engine.Backend(b.rule, b.index, b.service, b.weight) for b in weights]


def _summary(weights: list[engine.Backend]) -> dict[str, int | str]:
    return {f"{b.rule}/{b.service or b.index}": b.weight for b in weights}


class Router:
    """One pass's view of a plan's routes; every weight change goes through `_step` (intent, act, record)."""

    def __init__(self, p: PlanPass, clients: kube.Clients, *, now: datetime) -> None:
        self.p = p
        self.clients = clients
        self.now = now
        self.spec = p.resource.spec.routing

    def state(self, ref: RouteRef) -> RouteState | None:
        return next((s for s in self.p.status.routes if s.route == ref.key), None)

    def _put(self, state: RouteState) -> None:
        self.p.status.routes = [s for s in self.p.status.routes if s.route != state.route] + [state]

    def _save(self) -> None:
        self.p.write_intent(self.clients, {"routes": [s.wire() for s in self.p.status.routes]})

    def _current(
        self, ref: RouteRef, state: RouteState | None
    ) -> tuple[dict[str, Any], list[engine.Backend]] | None:
        """The route and its weights; None (and BackedOff) when someone else changed them."""
        obj = read_route(self.clients, ref)
        weights = backends(ref.kind, obj)
        if state is None or state.phase not in ACTIVE:
            return obj, weights
        if state.pending and engine.unchanged_except_by_us(weights, _plain(state.pending)):
            state.applied, state.pending = state.pending, []  # the write before a crash landed
        if engine.unchanged_except_by_us(weights, _plain(state.applied)):
            return obj, weights
        state.phase, state.pending = "BackedOff", []
        state.message = "the route's weights were changed by someone else: left as they are"
        self._put(state)
        self._save()
        self.p.condition(
            "Routed", "False", "RouteChangedElsewhere", f"{ref.key}: {state.message}", event="Warning"
        )
        return None

    def _due(self, state: RouteState) -> float:
        """Seconds until the next step may be written (pace after the previous one)."""
        if state.step == 0 or not state.updated_at:
            return 0.0
        pace = parse_duration(self.spec.pace)
        return max(0.0, (parse_time(state.updated_at) + pace - self.now).total_seconds())

    def _step(self, ref: RouteRef, state: RouteState, obj: dict[str, Any], *, verb: str) -> None:
        """Write the next step's weights: intent in status, then the patch, then Event and decision."""
        start = _plain(state.applied)
        weights = engine.step_weights(start, _plain(state.target), step=1, steps=state.steps - state.step)
        state.pending, state.step, state.updated_at = _wire(weights), state.step + 1, rfc3339(self.now)
        done = state.step >= state.steps
        self._put(state)
        self._save()
        patch_weights(self.clients, ref, weights, resource_version=str(obj["metadata"]["resourceVersion"]))
        state.applied, state.pending = state.pending, []
        if done:
            state.phase = "Shifted" if verb == "shift" else "Restored"
        self._put(state)
        text = f"{ref.key}: {verb} step {state.step}/{state.steps}: " + ", ".join(
            f"{k}={v}" for k, v in _summary(weights).items()
        )
        self.p.event("Normal", "RouteShifted" if verb == "shift" else "RouteRestored", text[:1000])
        self.p.status.record(
            Decision(
                id=f"route-{self.p.name}-{zlib.crc32(ref.key.encode()):08x}-{int(self.now.timestamp())}-{state.step}",
                time=rfc3339(self.now),
                action="Applied",
                target=ref.key,
                current=_summary(start),
                proposed=_summary(weights),
                explanation=f"{verb} for {', '.join(state.nodes) or 'no node'}: {state.message}"[:4000],
            )
        )
        self.p.condition("Routed", "True", "Shifted" if verb == "shift" else "Restored", text[:1000])

    # -- the three things a plan asks -------------------------------------------------------------

    def shift(self, draining: frozenset[str]) -> float | None:
        """One round toward weights that keep traffic off `draining`: None when every route is
        there (or cannot be shifted), else seconds until the next step is due."""
        waits: list[float] = []
        for ref in self.spec.routes:
            try:
                wait = self._shift_one(ref, draining)
            except RouteMissing as exc:
                self.p.condition("Routed", "False", "RouteNotFound", str(exc), event="Warning")
                continue
            if wait is not None:
                waits.append(wait)
        return min(waits) if waits else None

    def _shift_one(self, ref: RouteRef, draining: frozenset[str]) -> float | None:
        state = self.state(ref)
        found = self._current(ref, state)
        if found is None:
            return None
        obj, weights = found
        if state is not None and state.phase == "BackedOff" and draining <= set(state.nodes):
            return None  # changed by someone else during this turn: theirs until the turn is over
        if state is None or state.phase not in ("Shifting", "Shifted") or not draining <= set(state.nodes):
            state = self._begin(ref, state, weights, draining)
            if state is None:
                return None
        if state.phase == "Shifted":
            return None
        wait = self._due(state)
        if wait > 0:
            return wait
        self._step(ref, state, obj, verb="shift")
        return None if state.phase == "Shifted" else self._due(state)

    def _begin(
        self, ref: RouteRef, state: RouteState | None, weights: list[engine.Backend], draining: frozenset[str]
    ) -> RouteState | None:
        """A new shift toward the engine's target; None when the route needs no change."""
        owned = state is not None and state.phase in ACTIVE
        original = _plain(state.original) if owned and state is not None else weights
        shift = engine.plan_shift(original, endpoints(self.clients, {b.service for b in original}), draining)
        stuck = (
            f"; rules {list(shift.stuck_rules)} keep no ready backend, left alone"
            if shift.stuck_rules
            else ""
        )
        if not shift.changes and not owned:
            self._put(RouteState(route=ref.key, phase="Unchanged", nodes=sorted(draining), message=stuck[2:]))
            return None
        new = RouteState(
            route=ref.key,
            phase="Shifting",
            nodes=sorted(draining),
            original=_wire(original),
            target=_wire(list(shift.target)),
            applied=_wire(weights),
            steps=self.spec.steps,
            message=f"moves {shift.moved * 100:.0f} % of the traffic off {', '.join(sorted(draining))}{stuck}",
        )
        self._put(new)
        return new

    def settle(self, busy: frozenset[str], *, ready: set[str], everything: bool = False) -> None:
        """Restore routes whose nodes are done and `ready` (all of them with `everything`: abort,
        blocker), one step per route when its pace allows."""
        for ref in self.spec.routes:
            state = self.state(ref)
            if state is None or state.phase not in ACTIVE:
                continue
            if not everything and (set(state.nodes) & busy or not set(state.nodes) <= ready):
                continue
            try:
                self._restore_one(ref, state)
            except RouteMissing as exc:
                self.p.condition("Routed", "False", "RouteNotFound", str(exc), event="Warning")

    def _restore_one(self, ref: RouteRef, state: RouteState) -> None:
        found = self._current(ref, state)
        if found is None:
            return
        obj, _ = found
        if state.phase != "Restoring":
            original = _plain(state.original)
            missing = engine.restorable(original, endpoints(self.clients, {b.service for b in original}))
            if missing and not state.message.startswith("waiting"):
                state.message = f"waiting for ready endpoints of {', '.join(missing)} before restoring"
                state.updated_at = rfc3339(self.now)  # the restore timeout counts from here
                self._put(state)
                return
            waited = self.now - parse_time(state.updated_at or rfc3339(self.now))
            if missing and waited < parse_duration(self.spec.restore_timeout):
                return
            state.phase, state.target, state.step = "Restoring", state.original, 0
            state.message = "restoring the original weights"
        if self._due(state) > 0:
            return
        self._step(ref, state, obj, verb="restore")


def restore_now(p: PlanPass, clients: kube.Clients, *, now: datetime) -> None:
    """Put every owned route back at once (the plan is going away): no pace, no readiness wait."""
    router = Router(p, clients, now=now)
    for state in list(p.status.routes):
        if state.phase in ACTIVE:
            state.phase, state.target, state.steps, state.step = "Restoring", state.original, 1, 0
            state.updated_at = rfc3339(now - timedelta(days=1))
    router.settle(frozenset(), ready=set(), everything=True)


def recommend(p: PlanPass, clients: kube.Clients, node: str) -> None:
    """Recommend mode: record the shift `node`'s turn would make, apply nothing."""
    for ref in p.resource.spec.routing.routes:
        try:
            weights = backends(ref.kind, read_route(clients, ref))
        except RouteMissing as exc:
            p.condition("Routed", "False", "RouteNotFound", str(exc), event="Warning")
            continue
        shift = engine.plan_shift(
            weights, endpoints(clients, {b.service for b in weights}), frozenset({node})
        )
        previous = next((s for s in p.status.routes if s.route == ref.key), None)
        state = RouteState(
            route=ref.key,
            phase="Recommended",
            nodes=[node],
            original=_wire(weights),
            target=_wire(list(shift.target)),
            message=f"would move {shift.moved * 100:.0f} % of the traffic off {node} (mode Recommend)",
        )
        p.status.routes = [s for s in p.status.routes if s.route != ref.key] + [state]
        if previous is None or previous.target != state.target or previous.nodes != state.nodes:
            p.status.record(
                Decision(
                    id=f"route-{p.name}-{int(p.now.timestamp())}",
                    time=rfc3339(p.now),
                    action="Recommended",
                    target=ref.key,
                    current=_summary(weights),
                    proposed=_summary(list(shift.target)),
                    explanation=state.message,
                )
            )


def release(
    *, plan: MaintenancePlan, status: MaintenancePlanStatus, name: str, clients: kube.Clients, now: datetime
) -> list[str]:
    """On the plan's deletion: restore every route it still holds; the routes restored."""
    p: PlanPass = wiring.Pass(
        resource=plan,
        namespace="",
        name=name,
        generation=0,
        now=now,
        status=status,
        plural="maintenanceplans",
    )
    restore_now(p, clients, now=now)
    return [s.route for s in p.status.routes if s.phase == "Restored"]
