"""Strategic refits: run off the loop's path, adopted once, stale results dropped."""

from __future__ import annotations

import threading
import time
from datetime import UTC, datetime
from typing import Any

from autoloop.api.optimizationloop import OptimizationLoop, OptimizationLoopStatus
from autoloop.engines import loop
from autoloop.operator import optimizationloop, wiring
from autoloop.operator import refits as refits_module
from autoloop.operator.refits import BackgroundRefits
from tests.unit.test_loop_engine import CFG, OVER, run

NOW = datetime(2026, 11, 25, 12, 0, tzinfo=UTC)
DAY = 86_400.0


def _wait(refits: BackgroundRefits[int], key: str) -> int:
    for _ in range(200):
        got = refits.collect(key)
        if got is not None:
            return got
        time.sleep(0.01)
    raise AssertionError("the refit never finished")


def test_one_refit_per_key_collected_once() -> None:
    refits: BackgroundRefits[int] = BackgroundRefits()
    release = threading.Event()
    assert refits.submit("ns/a", lambda: (release.wait(5), 7)[1])
    assert not refits.submit("ns/a", lambda: 8)  # one in flight per loop
    assert refits.collect("ns/a") is None  # still running: the caller does not wait
    release.set()
    assert _wait(refits, "ns/a") == 7
    assert refits.collect("ns/a") is None  # handed out once
    assert refits.submit("ns/a", lambda: 9)  # and a new one may start
    assert _wait(refits, "ns/a") == 9
    refits.shutdown()


def test_failed_refit_is_dropped_and_can_be_retried() -> None:
    refits: BackgroundRefits[int] = BackgroundRefits()

    def boom() -> int:
        raise RuntimeError("singular matrix")

    refits.submit("ns/a", boom)
    for _ in range(200):  # collecting a failed refit yields nothing and clears it
        if refits.collect("ns/a") is None and not refits.in_flight("ns/a"):
            break
        time.sleep(0.01)
    assert not refits.in_flight("ns/a")
    assert refits.submit("ns/a", lambda: 1)
    refits.shutdown()


def _trained_state() -> loop.LoopState:
    _, state, _ = run(dict(OVER), 40)
    assert state.model.fitted_on > 0 and state.last_refit_at is not None
    return state


def test_step_leaves_a_due_refit_to_the_caller_when_not_inline() -> None:
    state = _trained_state()
    later = state.last_refit_at + DAY + 1  # type: ignore[operator]
    external = CFG.model_copy(update={"inline_refit": False, "refit_interval_seconds": DAY})
    assert loop.refit_due(external, state, later)
    result = loop.strategic_refit(external, state)
    # A refit on the old snapshot is dropped once the state moved to another model.
    moved = state.model_copy(deep=True)
    moved.model = moved.model.model_copy(update={"version": state.model.version + 1})
    same, adopted = loop.adopt_refit(moved, result, later)
    assert not adopted and same is moved
    fresh, adopted = loop.adopt_refit(state, result, later)
    assert adopted and fresh.last_refit_at == later and not loop.refit_due(external, fresh, later)
    assert fresh.model == result.model and fresh.rules == result.rules


def _pass() -> optimizationloop.LoopPass:
    body = {
        "apiVersion": "autoloop.x0tta6bl4.io/v1alpha1",
        "kind": "OptimizationLoop",
        "metadata": {"name": "web", "namespace": "ns"},
        "spec": {
            "targetRef": {"kind": "Deployment", "name": "web"},
            "knobs": {"replicas": {"min": 1, "max": 9}},
            "objectives": [{"name": "latency", "metric": "LatencyP95", "target": 0.2}],
        },
    }
    return wiring.Pass(
        resource=OptimizationLoop.model_validate(body),
        namespace="ns",
        name="web",
        generation=1,
        now=NOW,
        status=OptimizationLoopStatus(),
    )


def test_pass_does_not_wait_for_the_refit_and_adopts_it_later() -> None:
    state = _trained_state()
    config = CFG.model_copy(update={"inline_refit": False, "refit_interval_seconds": 60.0})
    state.last_refit_at = NOW.timestamp() - 120  # due
    gate = threading.Event()
    refits: BackgroundRefits[loop.StrategicRefit] = BackgroundRefits()

    def slow(cfg: loop.LoopConfig, st: loop.LoopState) -> loop.StrategicRefit:
        gate.wait(5)
        return loop.strategic_refit(cfg, st)

    p = _pass()
    started = time.monotonic()
    after = optimizationloop.run_strategic_refit(p, config, state, refits, slow)
    assert time.monotonic() - started < 4.0  # the refit is held for 5 s; the pass does not wait for it
    assert after is state and refits.in_flight("ns/web") and not p.events
    # A second pass while it runs starts nothing new and changes nothing.
    assert optimizationloop.run_strategic_refit(p, config, state, refits, slow) is state
    gate.set()
    for _ in range(300):  # later passes adopt it once it is done
        after = optimizationloop.run_strategic_refit(p, config, after, refits, slow)
        if p.events:
            break
        time.sleep(0.01)
    refits.shutdown()
    assert after.last_refit_at == NOW.timestamp()
    assert [e[1] for e in p.events] == ["ModelRefit"]


def test_a_finished_refit_nobody_collects_for_a_day_is_dropped(monkeypatch: Any) -> None:
    clock = [1000.0]
    monkeypatch.setattr(refits_module.time, "monotonic", lambda: clock[0])
    refits: BackgroundRefits[int] = BackgroundRefits()
    assert refits.submit("deleted-loop", lambda: 1)
    for _ in range(200):  # finished, never collected: its loop was deleted
        if refits._futures["deleted-loop"].done():
            break
        time.sleep(0.01)
    clock[0] += refits_module.UNCOLLECTED_SECONDS - 1
    assert refits.submit("other", lambda: 2)
    assert refits.in_flight("deleted-loop"), "within a day it waits for its pass"
    clock[0] += 2
    assert refits.submit("third", lambda: 3)
    assert not refits.in_flight("deleted-loop") and refits.in_flight("other")
    assert _wait(refits, "other") == 2
