"""The OptimizationLoop engine: one pass's decision as a pure function of (config, state, observation, now).

Contract: `LoopEngine().step(config, state, observation, now) -> (Decision, LoopState)`. No I/O, no
clock, no hidden state: what the next pass needs is in `LoopState`, a small JSON-serialisable
pydantic model the operator keeps in the CR status. Modules, one job each:
`models` (config, observation, decision, state), `sizing` (replicas for the short-term load, pod
resources for the long-term level, the per-pod-size planning utilisation), `guard` (judging a
change after its rollout and settle window, last good, expiring floors, the circuit breaker),
`refits` (the strategic refit and distilled policy), `engine` (the pass).
"""

from autoloop.engines.loop.engine import LoopEngine
from autoloop.engines.loop.models import (
    KNOBS,
    MAX_CHANGE_TIMES,
    MAX_DECISIONS,
    MAX_HISTORY,
    Decision,
    Explanation,
    LoopConfig,
    LoopState,
    Observation,
    Pending,
    change_times_after,
)
from autoloop.engines.loop.refits import StrategicRefit, adopt_refit, refit_due, strategic_refit

__all__ = [
    "KNOBS",
    "MAX_CHANGE_TIMES",
    "MAX_DECISIONS",
    "MAX_HISTORY",
    "Decision",
    "Explanation",
    "LoopConfig",
    "LoopEngine",
    "LoopState",
    "Observation",
    "Pending",
    "StrategicRefit",
    "adopt_refit",
    "change_times_after",
    "refit_due",
    "strategic_refit",
]
