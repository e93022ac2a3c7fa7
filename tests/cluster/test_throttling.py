"""429 on writes from the real kube-apiserver: the operator backs off, says why, loses nothing and
applies nothing twice.

The refusals come from the apiserver itself, through a validating admission webhook
(tests/cluster/throttling_webhook.py) that denies chosen writes with code 429 TooManyRequests.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from autoloop.operator import kube
from tests.cluster import operator_process as opp
from tests.cluster.throttling_webhook import ThrottlingWebhook

pytestmark = [pytest.mark.cluster, pytest.mark.slow]  # ~75 s: `make test-slow`, which CI also runs


@pytest.fixture(scope="module")
def operator(control_plane: Any, prometheus: Any, tmp_path_factory: Any) -> Iterator[opp.OperatorProcess]:
    yield from opp.operator_fixture(control_plane, prometheus, tmp_path_factory)


@pytest.fixture
def webhook(control_plane: Any, namespace: str, tmp_path: Path) -> Iterator[ThrottlingWebhook]:
    hook = ThrottlingWebhook(control_plane, namespace, tmp_path)
    try:
        yield hook
    finally:
        hook.close()


def _ready(loop: dict[str, Any]) -> dict[str, Any]:
    return opp.condition(loop, "Ready") or {}


def test_throttled_writes_are_retried_and_the_decision_applied_once(
    control_plane: Any, namespace: str, operator: opp.OperatorProcess, webhook: ThrottlingWebhook
) -> None:
    cp = control_plane
    cp.kubectl("-n", namespace, "apply", "-f", str(opp.ROOT / "manifests" / "examples" / "workload.yaml"))
    webhook.throttled = {"deployments"}

    # The webhook is live once the apiserver refuses a person's write with 429 too.
    def refused() -> bool:
        probe = cp.kubectl("-n", namespace, "annotate", "deploy", "web", "probe=1", check=False)
        return probe.returncode != 0 and "TooManyRequests" in probe.stderr

    opp.wait_until(refused, timeout=30, what="the apiserver answering 429 through the webhook")
    generation = opp.get_json(cp, namespace, "deploy/web")["metadata"]["generation"]
    opp.approved_recommendation(cp, namespace)  # the first pass applies r1: replicas 4 -> 2

    def throttled() -> dict[str, Any] | None:
        loop = opp.get_json(cp, namespace, "oloop/web")
        return loop if _ready(loop).get("reason") == "Throttled" else None

    loop = opp.wait_until(throttled, timeout=60, interval=1, what="Ready=False Throttled")
    assert "429" in _ready(loop)["message"], _ready(loop)
    pending = loop["status"].get("pendingDecision") or ""
    assert pending.startswith("r1"), "the intent was recorded before the refused patch"
    deploy = opp.get_json(cp, namespace, "deploy/web")
    assert deploy["spec"]["replicas"] == 4 and deploy["metadata"]["generation"] == generation
    before = webhook.refused.get("deployments", 0)
    # Retried soon (a failed pass is retried in 15 s, not after the loop's 1 h interval).
    opp.wait_until(
        lambda: webhook.refused.get("deployments", 0) > before, timeout=45, what="the patch retried"
    )
    # Its status writes refused as well: the operator stays up and retries them without a traceback.
    webhook.throttled = {"deployments", "optimizationloops/status"}
    opp.wait_until(
        lambda: webhook.refused.get("optimizationloops/status", 0) >= 2,
        timeout=60,
        what="status writes refused twice",
    )
    assert operator.process.poll() is None
    webhook.throttled = set()

    def applied() -> dict[str, Any] | None:
        loop = opp.get_json(cp, namespace, "oloop/web")
        status = loop.get("status", {})
        done = status.get("pendingDecision") is None and _ready(loop).get("reason") != "Throttled"
        return loop if done and any(d["id"] == pending for d in status.get("decisions", [])) else None

    opp.wait_until(applied, timeout=60, interval=1, what=f"{pending} applied after the throttling ended")
    deploy = opp.get_json(cp, namespace, "deploy/web")
    assert deploy["spec"]["replicas"] == 2
    assert deploy["metadata"]["annotations"].get(kube.DECISION_ANNOTATION) == pending
    assert deploy["metadata"]["generation"] == generation + 1, "applied once"
    assert "Traceback" not in operator.log(), operator.log()[-3000:]
