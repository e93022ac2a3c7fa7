"""Two operator replicas, one active through the Lease; the active one is SIGKILLed mid-work.

What must hold: only the Lease holder writes (the standby's passes never run: its /metrics count
no reconcile); after the holder dies the standby takes the Lease and resumes every loop within
30 s; no decision is lost or applied twice (each applied decision id appears once in the loop's
history, and the target carries the last one); a graceful stop hands the Lease over at once.
"""

from __future__ import annotations

import re
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.cluster import operator_process as opp
from tests.cluster.test_loop import apply, deployment, loop, status

pytestmark = pytest.mark.cluster

TAKEOVER_LIMIT_S = 30.0


def holder(cp: Any) -> str:
    lease = cp.kubectl_json("-n", "autoloop-system", "get", "lease", "autoloop-operator")
    return str(lease["spec"].get("holderIdentity") or "")


def held_by(cp: Any, op: opp.OperatorProcess) -> bool:
    """The Lease names this process (identity `<host>-<pid>_<random>`, autoloop.operator.leader)."""
    return f"-{op.process.pid}_" in holder(cp)


def reconciles(op: opp.OperatorProcess) -> float:
    text = op.metrics()
    return sum(float(v) for v in re.findall(r"^autoloop_reconcile_total\{[^}]*\} ([0-9.e+]+)$", text, re.M))


def leader_gauge(op: opp.OperatorProcess) -> float:
    found = re.search(r"^autoloop_leader ([0-9.]+)$", op.metrics(), re.M)
    return float(found.group(1)) if found else -1.0


@pytest.fixture
def replicas(
    control_plane: Any, prometheus: Any, tmp_path: Path
) -> Iterator[tuple[opp.OperatorProcess, opp.OperatorProcess]]:
    opp.install(control_plane)
    (tmp_path / "a").mkdir()
    (tmp_path / "b").mkdir()
    first = opp.start(control_plane, prometheus.url, tmp_path / "a")
    # A Lease left by an earlier operator that was killed runs out within its 15 s.
    opp.wait_until(lambda: held_by(control_plane, first), timeout=60, what="the first replica leads")
    second = opp.start(control_plane, prometheus.url, tmp_path / "b")
    try:
        yield first, second
    finally:
        for op in (first, second):
            op.stop()


def test_the_standby_takes_over_a_killed_leader_without_losing_or_repeating_a_decision(
    control_plane: Any, namespace: str, replicas: tuple[opp.OperatorProcess, opp.OperatorProcess]
) -> None:
    cp = control_plane
    active, standby = replicas
    apply(
        cp,
        namespace,
        deployment("over", replicas=6, cpu="1", memory="256Mi", rps=80, cpu_per_request=0.01),
        loop("over", mode="Auto"),
    )
    # The holder acts, the standby only watches.
    opp.wait_until(
        lambda: "Applied" in [d["action"] for d in status(cp, namespace, "over").get("decisions", [])],
        timeout=180,
        interval=2,
        what="a first applied decision",
    )
    assert held_by(cp, active) and not held_by(cp, standby)
    assert reconciles(standby) == 0, "a standby ran passes"
    assert leader_gauge(active) == 1.0 and leader_gauge(standby) == 0.0

    # SIGKILL the holder in the middle of its work (it passes every 5 s; the timer ticks every 1 s).
    active.process.kill()
    active.process.wait()
    killed = time.monotonic()
    last = status(cp, namespace, "over").get("lastRunTime")
    opp.wait_until(
        lambda: held_by(cp, standby) and status(cp, namespace, "over").get("lastRunTime") != last,
        timeout=TAKEOVER_LIMIT_S + 10,
        interval=0.5,
        what="the standby leads and runs a pass",
    )
    took = time.monotonic() - killed
    assert took <= TAKEOVER_LIMIT_S, f"takeover took {took:.1f} s"
    assert reconciles(standby) > 0 and leader_gauge(standby) == 1.0

    # Let the new leader work a while, then check the history: every applied decision once, and
    # the target carries the newest one (nothing half-applied, nothing lost).
    time.sleep(20)
    decisions = status(cp, namespace, "over").get("decisions", [])
    applied = [d["id"] for d in decisions if d["action"] in ("Applied", "RolledBack", "Approved")]
    assert len(applied) == len(set(applied)), f"a decision applied twice: {applied}"
    target = opp.get_json(cp, namespace, "deployment/over")["metadata"]["annotations"]
    assert target["autoloop.x0tta6bl4.io/decision"] == applied[-1], (target, applied)
    pending = status(cp, namespace, "over").get("pendingDecision")
    assert pending is None or pending.get("id") not in applied[:-1]


def test_a_graceful_stop_hands_the_lease_over_at_once(
    control_plane: Any, replicas: tuple[opp.OperatorProcess, opp.OperatorProcess]
) -> None:
    cp = control_plane
    active, standby = replicas
    assert held_by(cp, active)
    stopped = time.monotonic()
    active.stop()  # SIGTERM: kopf stops, the elector releases the Lease
    opp.wait_until(lambda: held_by(cp, standby), timeout=15, interval=0.5, what="the standby leads")
    # Well under the 15 s a crashed holder's Lease needs to run out.
    assert time.monotonic() - stopped < 12
