"""Leader election over a real Lease: electors race on the apiserver's optimistic concurrency.

Only the elector's clock is the test's (passed in, so a 15-second lease takes no 15 seconds); every
read and write goes to the real kube-apiserver, whose 409 on a stale resourceVersion is what keeps
two candidates from both leading. tests/cluster/test_ha.py runs two operator processes end to end.
"""

from __future__ import annotations

from typing import Any

import pytest
from kubernetes import client
from kubernetes.client.exceptions import ApiException

from autoloop.operator import kube, leader
from autoloop.operator.leader import LeaderElector, Observed, Step, next_step

pytestmark = pytest.mark.cluster


def test_policy() -> None:
    held = Observed(holder="b", record=("b", 1), changed_at=100.0)
    assert next_step(None, me="a", now=0.0, lease_seconds=15) is Step.CREATE
    assert next_step(held, me="b", now=200.0, lease_seconds=15) is Step.RENEW
    assert next_step(held, me="a", now=114.9, lease_seconds=15) is Step.WAIT
    assert next_step(held, me="a", now=115.0, lease_seconds=15) is Step.TAKE_OVER
    released = Observed(holder=None, record=(None, None), changed_at=100.0)
    assert next_step(released, me="a", now=100.0, lease_seconds=15) is Step.TAKE_OVER


class Clock:
    def __init__(self) -> None:
        self.t = 1000.0

    def __call__(self) -> float:
        return self.t


@pytest.fixture
def clock() -> Clock:
    return Clock()


@pytest.fixture
def coordination(control_plane: Any) -> client.CoordinationV1Api:
    return client.CoordinationV1Api(kube.Clients.connect(str(control_plane.kubeconfig)).api)


def lease(api: client.CoordinationV1Api, namespace: str) -> Any:
    """The stored Lease's spec."""
    return api.read_namespaced_lease(leader.LEASE_NAME, namespace).spec


def test_one_leader_at_a_time_and_takeover_after_the_lease(
    clock: Clock, coordination: client.CoordinationV1Api, namespace: str
) -> None:
    a = LeaderElector(coordination, namespace=namespace, me="a", clock=clock)
    b = LeaderElector(coordination, namespace=namespace, me="b", clock=clock)
    assert a.try_once() is Step.CREATE and a.is_leader()
    assert b.try_once() is Step.WAIT and not b.is_leader()
    # a renews every round: b never sees the record stand still long enough.
    for _ in range(10):
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
    stored = lease(coordination, namespace)
    assert (stored.holder_identity, stored.lease_transitions) == ("b", 1)


def test_a_leader_that_cannot_renew_stops_before_anyone_can_take_over(
    clock: Clock, control_plane: Any, coordination: client.CoordinationV1Api, namespace: str
) -> None:
    a = LeaderElector(coordination, namespace=namespace, me="a", clock=clock)
    a.try_once()
    # Its rights on Leases are taken away (a user without them, by impersonation): every call is 403.
    refused = kube.Clients.connect(str(control_plane.kubeconfig)).api
    refused.set_default_header("Impersonate-User", "nobody")
    a.api = client.CoordinationV1Api(refused)
    with pytest.raises(ApiException) as denied:
        a.try_once()
    assert denied.value.status == 403
    clock.t += a.renew_deadline_seconds - 0.1
    assert a.is_leader()
    clock.t += 0.2
    assert not a.is_leader()
    assert a.renew_deadline_seconds < a.lease_seconds


def test_a_leader_that_sees_another_holder_stops_at_once(
    clock: Clock, coordination: client.CoordinationV1Api, namespace: str
) -> None:
    a = LeaderElector(coordination, namespace=namespace, me="a", clock=clock)
    b = LeaderElector(coordination, namespace=namespace, me="b", clock=clock)
    a.try_once()
    b.try_once()
    clock.t += 20  # a stalled (a long GC pause) without noticing; b takes over
    b.try_once()
    assert b.is_leader()
    clock.t -= 15  # a wakes inside its old renew deadline, reads, sees b
    assert a.try_once() is Step.WAIT
    assert not a.is_leader()


class WriteAfter:
    """The real Lease API, but `first` runs between this candidate's read and its write."""

    def __init__(self, api: client.CoordinationV1Api, first: Any) -> None:
        self.api, self.first = api, first

    def read_namespaced_lease(self, name: str, namespace: str) -> client.V1Lease:
        return self.api.read_namespaced_lease(name, namespace)

    def replace_namespaced_lease(self, name: str, namespace: str, body: client.V1Lease) -> client.V1Lease:
        self.first()
        return self.api.replace_namespaced_lease(name, namespace, body)


def test_two_candidates_racing_for_a_released_lease_one_wins(
    clock: Clock, coordination: client.CoordinationV1Api, namespace: str
) -> None:
    a = LeaderElector(coordination, namespace=namespace, me="a", clock=clock)
    a.try_once()
    a.stop(release=True)  # a graceful stop hands the Lease back
    assert lease(coordination, namespace).holder_identity is None
    assert not a.is_leader()
    # b and c both read the released Lease; b writes first, so c's write carries a stale
    # resourceVersion: the apiserver answers 409 and c waits instead of becoming a second leader.
    b = LeaderElector(coordination, namespace=namespace, me="b", clock=clock)
    racing: Any = WriteAfter(coordination, b.try_once)
    c = LeaderElector(racing, namespace=namespace, me="c", clock=clock)
    assert c.try_once() is Step.WAIT
    assert b.is_leader() and not c.is_leader()
    assert lease(coordination, namespace).holder_identity == "b"
    clock.t += 2
    assert c.try_once() is Step.WAIT and b.try_once() is Step.RENEW


def test_two_candidates_from_scratch_one_creates(
    clock: Clock, coordination: client.CoordinationV1Api, namespace: str
) -> None:
    first = LeaderElector(coordination, namespace=namespace, me="b", clock=clock)
    second = LeaderElector(coordination, namespace=namespace, me="c", clock=clock)
    assert [first.try_once(), second.try_once()] == [Step.CREATE, Step.WAIT]
    assert [first.is_leader(), second.is_leader()] == [True, False]
    assert lease(coordination, namespace).holder_identity == "b"


def test_bad_timings_are_refused(coordination: client.CoordinationV1Api) -> None:
    with pytest.raises(ValueError):
        LeaderElector(coordination, namespace="x", lease_seconds=10, renew_deadline_seconds=10)
