"""Leader election: the policy (pure) and two electors racing over one Lease with resourceVersions.

The Lease store below keeps the one rule of the apiserver that matters here: a write carrying an
old resourceVersion gets 409. The cluster tier runs the real thing (tests/cluster/test_ha.py).
"""

from __future__ import annotations

import copy
import itertools
from typing import Any

import pytest
from kubernetes import client
from kubernetes.client.exceptions import ApiException

from autoloop.operator import leader
from autoloop.operator.leader import LeaderElector, Observed, Step, next_step


def test_policy() -> None:
    held = Observed(holder="b", record=("b", 1), changed_at=100.0)
    assert next_step(None, me="a", now=0.0, lease_seconds=15) is Step.CREATE
    assert next_step(held, me="b", now=200.0, lease_seconds=15) is Step.RENEW
    assert next_step(held, me="a", now=114.9, lease_seconds=15) is Step.WAIT
    assert next_step(held, me="a", now=115.0, lease_seconds=15) is Step.TAKE_OVER
    released = Observed(holder=None, record=(None, None), changed_at=100.0)
    assert next_step(released, me="a", now=100.0, lease_seconds=15) is Step.TAKE_OVER


class LeaseStore:
    """One Lease, with optimistic concurrency as the apiserver has it."""

    def __init__(self) -> None:
        self.lease: client.V1Lease | None = None
        self.versions = itertools.count(1)
        self.down = False

    def _check(self) -> None:
        if self.down:
            raise ApiException(status=503, reason="apiserver down")

    def read_namespaced_lease(self, name: str, namespace: str) -> client.V1Lease:
        self._check()
        if self.lease is None:
            raise ApiException(status=404, reason="Not Found")
        return copy.deepcopy(self.lease)

    def create_namespaced_lease(self, namespace: str, body: client.V1Lease) -> client.V1Lease:
        self._check()
        if self.lease is not None:
            raise ApiException(status=409, reason="AlreadyExists")
        body.metadata.resource_version = str(next(self.versions))
        self.lease = copy.deepcopy(body)
        return body

    def replace_namespaced_lease(self, name: str, namespace: str, body: client.V1Lease) -> client.V1Lease:
        self._check()
        assert self.lease is not None
        if body.metadata.resource_version != self.lease.metadata.resource_version:
            raise ApiException(status=409, reason="Conflict")
        body.metadata.resource_version = str(next(self.versions))
        self.lease = copy.deepcopy(body)
        return body


class Clock:
    def __init__(self) -> None:
        self.t = 1000.0

    def __call__(self) -> float:
        return self.t


@pytest.fixture
def clock(monkeypatch: pytest.MonkeyPatch) -> Clock:
    c = Clock()
    monkeypatch.setattr(leader.time, "monotonic", c)
    return c


def elector(store: LeaseStore, me: str) -> LeaderElector:
    api: Any = store
    return LeaderElector(api, namespace="autoloop-system", me=me)


def test_one_leader_at_a_time_and_takeover_after_the_lease(clock: Clock) -> None:
    store = LeaseStore()
    a, b = elector(store, "a"), elector(store, "b")
    assert a.try_once() is Step.CREATE and a.is_leader()
    assert b.try_once() is Step.WAIT and not b.is_leader()
    # a renews every round: b never sees the record stand still long enough.
    for _ in range(20):
        clock.t += 2
        assert a.try_once() is Step.RENEW
        assert b.try_once() is Step.WAIT
        assert a.is_leader() and not b.is_leader()
    # a dies. b takes over once the record has stood still for the lease duration on b's clock,
    # and not before a's own renew deadline has expired (a would have stopped acting by then).
    died = clock.t
    while not b.is_leader():
        clock.t += 1
        b.try_once()
    assert clock.t - died >= b.lease_seconds
    assert clock.t - died <= b.lease_seconds + 2 * b.retry_seconds
    assert not a.is_leader(), "past its renew deadline a no longer acts"
    assert store.lease is not None and store.lease.spec.lease_transitions == 1


def test_a_leader_that_cannot_renew_stops_before_anyone_can_take_over(clock: Clock) -> None:
    store = LeaseStore()
    a = elector(store, "a")
    a.try_once()
    store.down = True
    with pytest.raises(ApiException):
        a.try_once()
    clock.t += a.renew_deadline_seconds - 0.1
    assert a.is_leader()
    clock.t += 0.2
    assert not a.is_leader()
    assert a.renew_deadline_seconds < a.lease_seconds


def test_a_leader_that_sees_another_holder_stops_at_once(clock: Clock) -> None:
    store = LeaseStore()
    a, b = elector(store, "a"), elector(store, "b")
    a.try_once()
    b.try_once()
    clock.t += 20  # a stalled (a long GC pause) without noticing; b takes over
    b.try_once()
    assert b.is_leader()
    clock.t -= 15  # a wakes inside its old renew deadline, reads, sees b
    assert a.try_once() is Step.WAIT
    assert not a.is_leader()


def test_two_candidates_racing_for_a_free_lease_one_wins(clock: Clock) -> None:
    store = LeaseStore()
    a = elector(store, "a")
    a.try_once()
    a.stop(release=True)  # a graceful stop hands the Lease back
    assert store.lease is not None and store.lease.spec.holder_identity is None
    assert not a.is_leader()
    # b and c both read the released Lease, then both write: the second write is stale.
    b_read, c_read = store.read_namespaced_lease("x", "y"), store.read_namespaced_lease("x", "y")
    for lease, who in ((b_read, "b"), (c_read, "c")):
        lease.spec.holder_identity = who
    store.replace_namespaced_lease("x", "y", b_read)
    with pytest.raises(ApiException) as lost:
        store.replace_namespaced_lease("x", "y", c_read)
    assert lost.value.status == 409
    # Through the electors, a write that loses the race is a WAIT, never a second leader.
    c = elector(store, "c")
    c._observed = None  # c read before b wrote: it believes the Lease free
    original = store.read_namespaced_lease
    store.read_namespaced_lease = lambda name, namespace: c_read  # type: ignore[method-assign]
    assert c.try_once() is Step.WAIT and not c.is_leader()
    store.read_namespaced_lease = original  # type: ignore[method-assign]
    # And from scratch: exactly one of two candidates holds it after a round each.
    store2 = LeaseStore()
    first, second = elector(store2, "b"), elector(store2, "c")
    steps = [first.try_once(), second.try_once()]
    assert steps == [Step.CREATE, Step.WAIT]
    assert [first.is_leader(), second.is_leader()] == [True, False]


def test_bad_timings_are_refused() -> None:
    with pytest.raises(ValueError):
        LeaderElector(Any, namespace="x", lease_seconds=10, renew_deadline_seconds=10)  # type: ignore[arg-type]
