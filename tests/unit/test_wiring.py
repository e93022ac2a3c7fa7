"""The reconcile shell: a standby replica writes nothing; an apiserver refusal is a reported state."""

from __future__ import annotations

from typing import Any

import kopf
import pytest
from kubernetes.client.exceptions import ApiException

from autoloop.api.optimizationloop import OptimizationLoop, OptimizationLoopStatus
from autoloop.operator import kube, wiring

SPEC = {
    "targetRef": {"name": "web"},
    "objectives": [{"name": "latency", "metric": "LatencyP95"}],
    "knobs": {"replicas": {"min": 1, "max": 3}},
}


class Leader:
    def __init__(self, leading: bool) -> None:
        self.leading = leading

    def is_leader(self) -> bool:
        return self.leading


def run(monkeypatch: pytest.MonkeyPatch, run_pass: Any, *, leading: bool = True) -> list[dict[str, Any]]:
    written: list[dict[str, Any]] = []
    monkeypatch.setattr(kube, "patch_status", lambda clients, **kw: written.append(kw["status"]))
    monkeypatch.setattr(kopf, "event", lambda *a, **kw: None)
    reconcile = wiring.make_reconciler(
        kind=OptimizationLoop,
        status_type=OptimizationLoopStatus,
        spec_problems=lambda resource, namespace: [],
        run_pass=run_pass,
    )
    memo = kopf.Memo(clients=None, leader=Leader(leading))
    reconcile(body={}, spec=SPEC, status={}, meta={"generation": 1}, namespace="shop", name="web", memo=memo)
    return written


def test_a_standby_replica_runs_no_pass_and_writes_nothing(monkeypatch: pytest.MonkeyPatch) -> None:
    ran: list[bool] = []
    assert run(monkeypatch, lambda p, memo: ran.append(True), leading=False) == []
    assert ran == []
    assert run(monkeypatch, lambda p, memo: ran.append(True), leading=True)
    assert ran == [True]


def test_an_apiserver_refusal_is_reported_not_traced(
    monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    def refused(p: Any, memo: Any) -> None:
        exc = ApiException(status=400, reason="Bad Request")
        exc.body = '{"kind":"Status","message":"unable to parse requirement: $"}'
        raise exc

    (status,) = run(monkeypatch, refused)
    ready = next(c for c in status["conditions"] if c["type"] == "Ready")
    assert (ready["status"], ready["reason"]) == ("False", "ApiError")
    assert ready["message"] == "the apiserver answered 400 Bad Request: unable to parse requirement: $"
    assert status["phase"] == "Error"
    assert not any(r.exc_info for r in caplog.records), "a refusal is not a bug: no traceback"


def test_a_bug_is_still_traced(monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture) -> None:
    def broken(p: Any, memo: Any) -> None:
        raise KeyError("oops")

    (status,) = run(monkeypatch, broken)
    ready = next(c for c in status["conditions"] if c["type"] == "Ready")
    assert ready["reason"] == "InternalError"
    assert any(r.exc_info for r in caplog.records)
