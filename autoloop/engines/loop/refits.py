"""The strategic time scale: refit the response model on the whole experience, re-distil the policy.

Contract: pure; `strategic_refit` may run in a worker thread (the operator) and its result is
installed by `adopt_refit` only if the state did not move to another model meanwhile.
"""

from __future__ import annotations

import itertools
from typing import Final

from pydantic import BaseModel, ConfigDict

from autoloop.engines import learning
from autoloop.engines.loop import models

# Rules kept in the state (the largest leaves): an explanation, not a controller.
MAX_RULES: Final[int] = 4


class StrategicRefit(BaseModel):
    """The result of one strategic refit, computed from a snapshot of the state."""

    model_config = ConfigDict(frozen=True)
    based_on_version: int
    """The model version the snapshot held; a result for an older version is stale."""
    model: learning.ResponseModel
    rules: list[learning.Rule]
    message: str


def features(config: models.LoopConfig, h: learning.Experience) -> list[float]:
    return [
        h.utilisation,
        h.latency_p95 / config.latency_slo_seconds,
        h.memory_per_pod / max(h.memory_request, 1.0),
    ]


def distil(config: models.LoopConfig, st: models.LoopState) -> list[learning.Rule]:
    """A small tree from each kept pass's situation to what the loop did next (the change of
    settings between that pass and the next): up, down, mixed or hold."""
    feats, acts = [], []
    for a, b in itertools.pairwise(st.history):
        moves = [b.replicas - a.replicas, b.cpu_request - a.cpu_request, b.memory_request - a.memory_request]
        ups, downs = any(m > 0 for m in moves), any(m < 0 for m in moves)
        acts.append("mixed" if ups and downs else "up" if ups else "down" if downs else "hold")
        feats.append(features(config, a))
    if not feats:
        return []
    rules = learning.distil(feats, acts, random_state=config.seed)
    return sorted(rules, key=lambda r: -r.support)[:MAX_RULES]


def refit_due(config: models.LoopConfig, state: models.LoopState, now: float) -> bool:
    """The strategic schedule: once a bootstrapped model is `refit_interval_seconds` old."""
    return state.last_refit_at is not None and now - state.last_refit_at >= config.refit_interval_seconds


def strategic_refit(config: models.LoopConfig, state: models.LoopState) -> StrategicRefit:
    """Refit the response model on the whole experience (switching only if its backtest is better)
    and re-distil the policy. Pure and slow-ish: the operator runs it in a worker thread."""
    model, message = learning.maybe_switch(state.model, state.history)
    return StrategicRefit(
        based_on_version=state.model.version, model=model, rules=distil(config, state), message=message
    )


def adopt_refit(state: models.LoopState, result: StrategicRefit, now: float) -> tuple[models.LoopState, bool]:
    """Install a finished refit unless the state moved to another model meanwhile (then the
    next due check starts a fresh one). Returns the new state and whether it was adopted."""
    if result.based_on_version != state.model.version:
        return state, False
    st = state.model_copy(deep=True)
    st.model, st.rules = result.model, result.rules
    st.last_refit_at = now
    return st, True


def maybe_refit(config: models.LoopConfig, st: models.LoopState, now: float) -> None:
    """Bootstrap the model once enough experience exists; then refit on the strategic schedule."""
    if st.model.fitted_on == 0 and len(st.history) >= learning.MIN_POINTS_TO_FIT:
        st.model = learning.refit(st.history, version=st.model.version + 1)
        st.last_refit_at = now
    elif config.inline_refit and refit_due(config, st, now):
        result = strategic_refit(config, st)
        st.model, st.rules = result.model, result.rules
        st.last_refit_at = now
