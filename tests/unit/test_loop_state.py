"""The loop's state stays small after many passes and loads from an older operator's state."""

from __future__ import annotations

import math

import numpy as np

from autoloop.engines import loop
from autoloop.simulation import service
from tests.unit.loop_config import MIB, loop_config, observed

CFG = loop_config(max_changes_per_day=48)
# The operator's budget for `status.engineState` (it is sent to every watcher of the CR).
STATE_BYTES_MAX = 3000


def test_state_json_stays_under_3_kb_after_1000_passes_of_varying_load() -> None:
    rng = np.random.default_rng(1)
    profile = service.ServiceProfile(base_rps=200.0, diurnal_amplitude=0.6, period_seconds=6 * 3600)
    settings = {"replicas": 10.0, "cpu_request": 1.0, "memory_request": 1024 * MIB}
    engine, state, largest, applied = loop.LoopEngine(), loop.LoopState(), 0, 0
    for i in range(1000):
        s = service.Settings(
            int(settings["replicas"]), settings["cpu_request"], None, *[settings["memory_request"]] * 2
        )
        rows = [
            service.simulate_step(profile, s, 300.0 * i + 30 * k, rng, step_seconds=30) for k in range(10)
        ]
        obs = observed(settings, rows, oom_kills=sum(r.oom_kills for r in rows))
        d, state = engine.step(CFG, state, obs, 300.0 * (i + 1))
        text = state.model_dump_json()
        largest = max(largest, len(text))
        state = loop.LoopState.model_validate_json(text)
        # As the operator stores it, without the fields at their defaults: read back the same.
        stored = loop.LoopState.model_validate(state.model_dump(mode="json", exclude_defaults=True))
        assert stored == loop.LoopState.model_validate(state.model_dump(mode="json"))
        if d.applied and d.settings:
            applied += 1
            settings = {k: d.settings[k] for k in loop.KNOBS}
    assert applied >= 10  # the load moved and the loop followed it: a state that saw real work
    assert largest <= STATE_BYTES_MAX, largest


def test_compact_history_round_trips_within_rounding() -> None:
    e = {"t": 1000.0, "replicas": 3.0, "cpu_request": 0.5, "memory_request": 512 * MIB, "rps": 123.456}
    e |= {"cpu_per_pod": 0.25, "memory_per_pod": 300 * MIB, "latency_p95": 0.1234, "error_ratio": 0.001}
    state = loop.LoopState.model_validate({"history": [{**e, "utilisation": 0.5}]})
    back = loop.LoopState.model_validate_json(state.model_dump_json()).history[0]
    assert back.memory_request == 512 * MIB and math.isclose(back.rps, 123.5)
    assert math.isclose(back.utilisation, 0.5)  # recomputed, not stored


def test_an_older_state_dict_loads_and_steps() -> None:
    old = {
        "iteration": 40,
        "history": [
            {
                "t": 300.0 * k,
                "replicas": 4.0,
                "cpu_request": 1.0,
                "memory_request": 536870912.0,
                "rps": 200.0,
                "cpu_per_pod": 0.5,
                "memory_per_pod": 2.0e8,
                "latency_p95": 0.1,
                "error_ratio": 0.001,
                "utilisation": 0.5,
            }
            for k in range(10)
        ],
        "decisions": [
            {
                "id": "web-000039",
                "t": 11700.0,
                "action": "hold",
                "verdicts": [{"rule": "cooldown", "passed": True, "reason": "ok"}],
                "explanation": {"saw": {"rps": 200.0}, "proposed": "hold"},
            }
        ],
        "strategies": {"successes": {"small": 3}, "failures": {"large": 1}},
        "last_direction": {"replicas": -1.0},
        "last_direction_at": 11000.0,
        "capacity_floor": 0.02,
        "model": {"version": 2, "latency_base": 0.05, "latency_wait": 0.05, "fitted_on": 10},
        "something_newer": [1, 2, 3],
    }
    state = loop.LoopState.model_validate(old)
    assert state.iteration == 40 and len(state.history) == 10 and state.model.version == 2
    rng = np.random.default_rng(0)
    prof = service.ServiceProfile(base_rps=200.0)
    s = service.Settings(4, 1.0, None, 512 * MIB, 512 * MIB)
    rows = [service.simulate_step(prof, s, 12000.0 + 10 * k, rng, step_seconds=10) for k in range(30)]
    obs = observed({"replicas": 4.0, "cpu_request": 1.0, "memory_request": 512 * MIB}, rows)
    d, new = loop.LoopEngine().step(CFG, state, obs, 12300.0)
    assert d.action in ("hold", "change") and new.iteration == 41
    assert "strategies" not in new.model_dump() and len(new.model_dump_json()) <= STATE_BYTES_MAX
