"""The reconcile shell every kind shares, and timer registration.

Each kind supplies `spec_problems(resource, namespace)` (semantic checks the schema cannot do)
and `run_pass(pass_, memo)` (its named, timed steps); this module parses, decides whether a pass
is due, handles invalid specs, and writes the status and Events in one place.

kopf adds a finalizer to every object that has a timer, so that it can stop the timer before the
object goes. Our timers undo nothing, and a finalizer left behind by an uninstalled operator
blocks deletion, so timers are registered without one. kopf has no public switch for this; the
handler is re-created with `requires_finalizer=False` (a cluster test checks no finalizer appears).
"""

from __future__ import annotations

import dataclasses
import json
import logging
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any, Final, Generic, TypeVar

import kopf
from kubernetes.client.exceptions import ApiException
from pydantic import ValidationError
from urllib3.exceptions import MaxRetryError, ProtocolError

from autoloop.api.common import (
    GROUP,
    VERSION,
    ApiModel,
    ConditionStatus,
    StatusBase,
    now_utc,
    parse_duration,
    rfc3339,
)
from autoloop.operator import kube, telemetry

logger = logging.getLogger(__name__)
R = TypeVar("R", bound=ApiModel)
S = TypeVar("S", bound=StatusBase)
Handler = Callable[..., Any]


@dataclass
class Pass(Generic[R, S]):
    """What one reconcile pass of one resource knows, and the Events it will post."""

    resource: R
    namespace: str
    """"" for a cluster-scoped kind."""
    name: str
    generation: int
    now: datetime
    status: S
    annotations: dict[str, str] = field(default_factory=dict)
    events: list[tuple[str, str, str]] = field(default_factory=list)
    written: dict[str, Any] = field(default_factory=dict)
    """Status keys already written during the pass (an intent record before acting): the final
    patch is computed against them, or a key cleared after acting would stay set."""
    plural: str = ""
    resource_version: str = ""
    """Of the object the pass was computed from; every status write of the pass is conditional on
    it (and moves it on), so a pass computed from a stale cache writes and does nothing."""
    read_status: dict[str, Any] = field(default_factory=dict)
    """The status the pass was computed from."""

    def write_intent(self, clients: kube.Clients, status: dict[str, Any]) -> None:
        """Record `status` keys before acting on them: kube.Conflict if the resource changed since
        the pass read it (then nothing may be acted on; the next pass starts from fresh data)."""
        self.write_status(clients, status)

    def write_status(self, clients: kube.Clients, status: dict[str, Any]) -> None:
        """Merge-patch `status` onto the status this pass was computed from, and only onto it.

        Conditional on the resourceVersion the pass read. When that moved but the stored status and
        generation are still what the pass expects (a finalizer, a label or an annotation written
        meanwhile), once more on the new version; otherwise kube.Conflict.
        """
        try:
            version = self._patch_status(clients, status, self.resource_version)
        except kube.Conflict:
            fresh = self._read_or_conflict(clients)
            expected = {k: v for k, v in {**self.read_status, **self.written}.items() if v is not None}
            if (fresh.get("status") or {}) != expected or fresh["metadata"].get(
                "generation"
            ) != self.generation:
                raise
            version = self._patch_status(clients, status, str(fresh["metadata"]["resourceVersion"]))
        self.resource_version = version or self.resource_version
        self.written.update(status)

    def _patch_status(self, clients: kube.Clients, status: dict[str, Any], version: str) -> str | None:
        return kube.patch_status(
            clients,
            plural=self.plural,
            namespace=self.namespace,
            name=self.name,
            status=status,
            resource_version=version or None,
        )

    def _read_or_conflict(self, clients: kube.Clients) -> dict[str, Any]:
        try:
            return kube.read_resource(clients, plural=self.plural, namespace=self.namespace, name=self.name)
        except ApiException as exc:
            if exc.status == 404:
                raise kube.Conflict(f"{kube.object_key(self.namespace, self.name)} was deleted") from exc
            raise

    def condition(
        self, type: str, status: str, reason: str, message: str, *, event: str | None = None
    ) -> None:
        """Set a condition; when it changes, queue an Event of type `event` (Normal or Warning)."""
        changed = self.status.set_condition(
            type, status, reason, message, generation=self.generation, now=self.now
        )
        if changed and event:
            self.events.append((event, reason, message))

    def event(self, type: str, reason: str, message: str) -> None:
        self.events.append((type, reason, message))

    def waiting(self, reason: str, message: str) -> None:
        """Not ready for a reason that may pass: say so, act on nothing."""
        self.condition("Ready", "False", reason, message)
        self.status.phase = "Waiting"
        self.status.message = message[:300]


WAITING_RETRY: Final = timedelta(seconds=15)
"""A resource waiting for something (metrics, a target, a failed pass) is retried this soon,
not only after its full interval."""


def due_at(status: StatusBase, *, interval: str, generation: int) -> datetime | None:
    """When the next periodic pass is due; None when one is due at once (a new spec, or never run)."""
    if status.observed_generation != generation or status.last_run_time is None:
        return None
    last = datetime.fromisoformat(status.last_run_time.replace("Z", "+00:00"))
    period = parse_duration(interval)
    if status.phase in ("Waiting", "Error"):
        period = min(period, WAITING_RETRY)
    return last + period - timedelta(milliseconds=500)


def is_due(status: StatusBase, *, interval: str, generation: int, now: datetime) -> bool:
    """A pass runs when the spec changed since the last one, or when the interval has elapsed
    (sooner while the resource is waiting or its last pass failed)."""
    at = due_at(status, interval=interval, generation=generation)
    return at is None or now >= at


def status_patch(status: StatusBase, previous: dict[str, Any]) -> dict[str, Any]:
    """The merge patch from the previous status to this one; keys we no longer set become null."""
    new = status.model_dump(mode="json", by_alias=True, exclude_none=True)
    patch: dict[str, Any] = {key: None for key in previous if key not in new}
    patch.update({key: value for key, value in new.items() if previous.get(key) != value})
    return patch


def api_message(exc: ApiException) -> str:
    """The `message` of the apiserver's Status body, else the raw body."""
    try:
        return str(json.loads(exc.body or "{}").get("message") or exc.body)
    except (ValueError, AttributeError):
        return str(exc.body)


def _reason(exc: Exception) -> str:
    """The innermost cause of a connection failure, in one line."""
    return str(getattr(exc, "reason", None) or exc).splitlines()[0][:300]


def _validation_messages(exc: ValidationError) -> list[str]:
    return [f"{'.'.join(str(x) for x in e['loc'])}: {e['msg']}" for e in exc.errors()]


def make_reconciler(
    *,
    kind: type[R],
    status_type: type[S],
    spec_problems: Callable[[R, str], list[str]],
    run_pass: Callable[[Pass[R, S], kopf.Memo], None],
) -> Handler:
    """The periodic handler of one kind: parse, check, run a pass when due, write status and Events."""
    kind_name: str = kind.KIND  # type: ignore[attr-defined]

    def reconcile(
        body: kopf.Body,
        spec: kopf.Spec,
        status: kopf.Status,
        meta: kopf.Meta,
        namespace: str | None,
        name: str,
        memo: kopf.Memo,
        **_: Any,
    ) -> None:
        leader = memo.get("leader")
        if leader is not None and not leader.is_leader():
            return  # a standby replica watches, the one holding the Lease acts (operator.leader)
        if meta.get("deletionTimestamp"):
            # Being deleted: no new work starts (a plan's pass can take most of a minute, and kopf
            # runs the delete handler, which releases what the resource holds, only after it).
            return
        namespace = namespace or ""  # kopf gives None for a cluster-scoped kind
        now = now_utc()
        generation = int(meta.get("generation") or 0)
        previous = dict(status or {})
        try:
            current = status_type.model_validate(previous)
        except ValidationError:
            current = status_type()  # An unreadable status is rebuilt, never trusted.
        resource: R | None
        try:
            resource = kind.model_validate({"spec": dict(spec)})
        except ValidationError as exc:
            resource, problems = None, _validation_messages(exc)
        else:
            problems = spec_problems(resource, namespace)
        interval = getattr(resource.spec, "interval", "1m") if resource is not None else "1m"  # type: ignore[attr-defined]
        due = due_at(current, interval=interval, generation=generation)
        if due is not None and now < due:
            return
        if due is not None:
            telemetry.PASS_LAG.labels(kind=kind_name).observe((now - due).total_seconds())
        p: Pass[R, S] = Pass(
            resource=resource if resource is not None else kind.model_construct(),  # type: ignore[arg-type]
            namespace=namespace,
            name=name,
            generation=generation,
            now=now,
            status=current,
            annotations=dict(meta.get("annotations") or {}),
            plural=kind.PLURAL,  # type: ignore[attr-defined]
            resource_version=str(meta.get("resourceVersion") or ""),
            read_status=previous,
        )
        if resource is None or problems:
            message = "; ".join(problems)
            p.condition("Invalid", "True", "InvalidSpec", message, event="Warning")
            p.condition("Ready", "False", "InvalidSpec", message)
            p.status.phase = "Invalid"
            p.status.message = message[:300]
            result = "invalid"
        else:
            p.condition("Invalid", "False", "Valid", "spec is valid")
            before = p.status.condition("Ready")
            try:
                with telemetry.timed_step(kind_name, "pass"):
                    run_pass(p, memo)
            except (kopf.TemporaryError, kopf.PermanentError):
                raise
            except (MaxRetryError, ProtocolError, ConnectionError) as exc:
                # The apiserver is unreachable (a restart, a network fault): nothing can be read or
                # written, so nothing is reported; kopf retries the timer soon, without a traceback.
                raise kopf.TemporaryError(f"the apiserver is unreachable: {_reason(exc)}", delay=15) from exc
            except ApiException as exc:
                # The apiserver refused a call (403 from RBAC, 400 on a request built from the
                # spec): not a bug to trace, a state to report, retried next pass.
                if exc.status is None or exc.status >= 500:
                    raise
                text = f"the apiserver answered {exc.status} {exc.reason}: {api_message(exc)}"[:1000]
                logger.warning("pass of %s: %s", kube.object_key(namespace, name), text)
                # 429: throttled (API priority and fairness, an admission webhook); the pass is
                # retried soon like any failed one, from what it recorded before the refusal.
                reason = "Throttled" if exc.status == 429 else "ApiError"
                p.condition("Ready", "False", reason, text, event="Warning")
                p.status.phase = "Error"
                p.status.message = text[:300]
            except Exception as exc:
                # A bug or an unexpected API error: act on nothing more, say so, try next pass.
                logger.exception("pass of %s failed", kube.object_key(namespace, name))
                p.condition(
                    "Ready", "False", "InternalError", f"{type(exc).__name__}: {exc}"[:1000], event="Warning"
                )
                p.status.phase = "Error"
                p.status.message = f"pass failed: {type(exc).__name__}: {exc}"[:300]
            after = p.status.condition("Ready")
            if (
                after is not None
                and after.status == ConditionStatus.TRUE
                and (before is None or before.status != ConditionStatus.TRUE)
            ):
                p.event("Normal", after.reason, after.message)
            result = "ok"
        p.status.observed_generation = generation
        p.status.last_run_time = rfc3339(now)
        ready = p.status.condition("Ready")
        telemetry.READY.labels(kind=kind_name, namespace=namespace, name=name).set(
            1.0 if ready is not None and ready.status == ConditionStatus.TRUE else 0.0
        )
        # The status is written here rather than through kopf's patch: kopf applies that patch
        # after the handler, and a refused patch there stops the object's timer for good.
        cut = p.status.fit_to_budget()
        if cut:
            logger.debug(
                "status of %s cut to its budget: %s", kube.object_key(namespace, name), "; ".join(cut)
            )
        try:
            p.write_status(memo.clients, status_patch(p.status, {**previous, **p.written}))
        except (MaxRetryError, ProtocolError, ConnectionError) as exc:
            telemetry.RECONCILES.labels(kind=kind_name, result="unreachable").inc()
            raise kopf.TemporaryError(f"the apiserver is unreachable: {_reason(exc)}", delay=15) from exc
        except ApiException as exc:
            if exc.status != 429:
                raise
            telemetry.RECONCILES.labels(kind=kind_name, result="throttled").inc()
            raise kopf.TemporaryError(f"status write throttled: {api_message(exc)}", delay=15) from exc
        except kube.StatusRejected as exc:
            telemetry.RECONCILES.labels(kind=kind_name, result="status-rejected").inc()
            kopf.event(body, type="Warning", reason="StatusRejected", message=str(exc)[:1000])
            raise kopf.TemporaryError(f"status write refused: {exc}", delay=60) from exc
        except kube.Conflict as exc:
            # Computed from a status that is no longer the stored one (kopf's cache behind the
            # apiserver, or someone wrote meanwhile): dropped, the next tick starts from the new
            # one. Events are still posted when the pass acted (its intent was written).
            logger.info(
                "status of %s not written: %s; the next pass re-reads", kube.object_key(namespace, name), exc
            )
            result = "conflict"
            if not p.written:
                p.events.clear()
        for type_, reason, message in p.events:
            kopf.event(body, type=type_, reason=reason, message=message)
        telemetry.RECONCILES.labels(kind=kind_name, result=result).inc()

    return reconcile


def register_timer(
    registry: kopf.OperatorRegistry, plural: str, fn: Handler, *, interval: float, id: str
) -> None:
    """A periodic handler for one kind, without a finalizer on the objects."""
    kopf.timer(GROUP, VERSION, plural, interval=interval, id=id, registry=registry)(fn)
    spawning = registry._spawning
    spawning._handlers = [
        dataclasses.replace(h, requires_finalizer=False) if h.id == id else h for h in spawning._handlers
    ]
