"""Leader election over a `coordination.k8s.io/v1` Lease, as client-go's leaderelection does.

kopf has no leader election (its peering only pauses lower-priority operators and freezes equal
ones), so with two replicas both would act. Every replica watches and keeps its caches warm; only
the one holding the Lease runs passes (`wiring` asks `is_leader()` first). A standby takes the
Lease when its record has not changed for `lease_seconds` as observed on the standby's own clock
(no trust in the holder's clock); the leader stops acting as soon as it has not renewed within
`renew_deadline_seconds`, before any standby may take over. Every write carries the record's
resourceVersion, so two candidates never both win. State lives in each resource's status
(intent, act, confirm), so a new leader resumes where the old one stopped.
"""

from __future__ import annotations

import logging
import os
import socket
import threading
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from enum import StrEnum
from typing import Any, Final

from kubernetes import client
from kubernetes.client.exceptions import ApiException
from urllib3.exceptions import MaxRetryError

logger = logging.getLogger(__name__)

LEASE_NAME: Final = "autoloop-operator"


class Step(StrEnum):
    CREATE = "create"
    RENEW = "renew"
    TAKE_OVER = "take-over"
    WAIT = "wait"


@dataclass(frozen=True)
class Observed:
    """The Lease record as last read, and when this replica saw it change (monotonic seconds)."""

    holder: str | None
    record: tuple[Any, ...]
    changed_at: float


def next_step(observed: Observed | None, *, me: str, now: float, lease_seconds: float) -> Step:
    """What a candidate does with the Lease it read: the whole election policy, pure."""
    if observed is None:
        return Step.CREATE
    if observed.holder == me:
        return Step.RENEW
    if not observed.holder or now - observed.changed_at >= lease_seconds:
        return Step.TAKE_OVER
    return Step.WAIT


def identity() -> str:
    """The pod's name in a cluster (downward API), else host and process; unique per process."""
    base = os.environ.get("POD_NAME") or f"{socket.gethostname()}-{os.getpid()}"
    return f"{base}_{uuid.uuid4().hex[:8]}"


def _now_micro() -> datetime:
    return datetime.now(UTC)


def _spec(lease: client.V1Lease) -> client.V1LeaseSpec:
    """The Lease's spec, made empty when absent, so it can be read and written in place."""
    if lease.spec is None:
        lease.spec = client.V1LeaseSpec()
    spec: client.V1LeaseSpec = lease.spec
    return spec


class LeaderElector:
    """Runs the election in a daemon thread; `is_leader()` is safe to call from any thread."""

    def __init__(
        self,
        api: client.CoordinationV1Api,
        *,
        namespace: str,
        name: str = LEASE_NAME,
        me: str | None = None,
        lease_seconds: float = 15.0,
        renew_deadline_seconds: float = 10.0,
        retry_seconds: float = 2.0,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        """`clock`: seconds that only move forward (the renew deadline and the lease are measured
        on it, never on the apiserver's or the holder's wall clock)."""
        if not retry_seconds < renew_deadline_seconds < lease_seconds:
            raise ValueError("want retry < renew deadline < lease duration")
        self.api, self.namespace, self.name = api, namespace, name
        self.me = me or identity()
        self.lease_seconds = lease_seconds
        self.renew_deadline_seconds = renew_deadline_seconds
        self.retry_seconds = retry_seconds
        self.clock = clock
        self._observed: Observed | None = None
        self._renewed_at: float | None = None  # monotonic time of our last successful write as holder
        self._stop = threading.Event()
        self._lock = threading.Lock()
        self._thread: threading.Thread | None = None
        self.transitions: list[tuple[float, bool]] = []

    def is_leader(self) -> bool:
        with self._lock:
            return (
                self._renewed_at is not None and self.clock() - self._renewed_at < self.renew_deadline_seconds
            )

    def start(self) -> None:
        self._thread = threading.Thread(target=self._run, name="leader-election", daemon=True)
        self._thread.start()

    def stop(self, *, release: bool = True) -> None:
        """Stop campaigning; a leader hands the Lease back so a standby need not wait it out."""
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=self.retry_seconds + 5)
        if release and self.is_leader():
            try:
                lease = self.api.read_namespaced_lease(self.name, self.namespace)
                spec = _spec(lease)
                if spec.holder_identity == self.me:
                    spec.holder_identity = None
                    spec.renew_time = None
                    self.api.replace_namespaced_lease(self.name, self.namespace, lease)
            except ApiException as exc:
                logger.warning("could not release Lease %s/%s: %s", self.namespace, self.name, exc.reason)
        with self._lock:
            self._renewed_at = None

    def _run(self) -> None:
        was_leader = False
        while not self._stop.is_set():
            try:
                self.try_once()
            except (ApiException, MaxRetryError, OSError) as exc:
                # The apiserver unreachable or refusing (a restart, RBAC not yet synced): a state
                # to report, not a bug; is_leader() lapses on its own past the renew deadline.
                logger.warning("leader election step failed: %s", getattr(exc, "reason", None) or exc)
            except Exception:  # never let the election thread die: log, retry
                logger.exception("leader election step failed")
            leader = self.is_leader()
            if leader != was_leader:
                logger.warning("%s is %s", self.me, "now the leader" if leader else "no longer the leader")
                self.transitions.append((self.clock(), leader))
                was_leader = leader
            self._stop.wait(self.retry_seconds)

    def try_once(self) -> Step:
        """Read the Lease, decide, write; returns what was tried."""
        now = self.clock()
        try:
            lease = self.api.read_namespaced_lease(self.name, self.namespace)
        except ApiException as exc:
            if exc.status != 404:
                raise
            lease = None
        if lease is None:
            self._observed = None
        else:
            held = _spec(lease)
            record = (held.holder_identity, held.renew_time, held.acquire_time, held.lease_transitions)
            if self._observed is None or self._observed.record != record:
                self._observed = Observed(holder=held.holder_identity, record=record, changed_at=now)
            if held.holder_identity != self.me:
                with self._lock:
                    self._renewed_at = None  # someone else holds it: stop acting at once
        step = next_step(self._observed, me=self.me, now=now, lease_seconds=self.lease_seconds)
        if step is Step.WAIT:
            return step
        stamp = _now_micro()
        try:
            if step is Step.CREATE:
                body = client.V1Lease(
                    metadata=client.V1ObjectMeta(name=self.name, namespace=self.namespace),
                    spec=client.V1LeaseSpec(
                        holder_identity=self.me,
                        lease_duration_seconds=int(self.lease_seconds),
                        acquire_time=stamp,
                        renew_time=stamp,
                        lease_transitions=0,
                    ),
                )
                self.api.create_namespaced_lease(self.namespace, body)
            else:
                assert lease is not None
                spec = _spec(lease)
                if step is Step.TAKE_OVER:
                    spec.acquire_time = stamp
                    spec.lease_transitions = (spec.lease_transitions or 0) + 1
                spec.holder_identity = self.me
                spec.lease_duration_seconds = int(self.lease_seconds)
                spec.renew_time = stamp
                # replace carries metadata.resourceVersion: a concurrent writer gets 409.
                self.api.replace_namespaced_lease(self.name, self.namespace, lease)
        except ApiException as exc:
            if exc.status in (409, 422):
                return Step.WAIT  # another candidate wrote first: read again next round
            raise
        with self._lock:
            self._renewed_at = now
        return step


class AlwaysLeader:
    """The elector of a single replica run without leader election."""

    me = "standalone"

    def is_leader(self) -> bool:
        return True

    def start(self) -> None:
        pass

    def stop(self, *, release: bool = True) -> None:
        pass
