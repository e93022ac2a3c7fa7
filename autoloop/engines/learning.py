"""Learning from measured outcomes: a response model, strategy selection, a distilled policy.

Contract: pure functions over JSON-serialisable pydantic models, so everything learned lives in
the loop's status and a restarted operator continues where it was.

- `ResponseModel`: what the loop believes about its service: p95 latency as a queueing curve of
  utilisation, `latency = a + b * rho / (1 - rho)`, and memory per pod as `c + d * rps/pod`. Fitted
  by least squares on the bounded experience (`refit`), scored on held-out history (`backtest`);
  the operator switches to a refitted model only when its backtest beats the current one.
- `StrategyStats`: Thompson sampling over step strategies (how far a change may move), with a
  Beta posterior per strategy updated by whether a change improved the score without breaking
  the SLO.
- `distil`: a depth-limited decision tree (scikit-learn) fitted on the loop's own decisions,
  stored as a few threshold rules and shown as the explanation of what the loop learned.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Final

import numpy as np
from pydantic import BaseModel, ConfigDict, Field
from sklearn.tree import DecisionTreeClassifier

# Utilisation above which the queueing curve is not evaluated (its pole is at 1).
RHO_CAP: Final[float] = 0.95
MIN_POINTS_TO_FIT: Final[int] = 6
TREE_MAX_DEPTH: Final[int] = 3
STRATEGIES: Final[tuple[str, ...]] = ("small", "medium", "large")
# Fraction of the spec's max step each strategy may use.
STRATEGY_STEP: Final[dict[str, float]] = {"small": 0.25, "medium": 0.5, "large": 1.0}


class Experience(BaseModel):
    """One measured interval: what was set and what was seen."""

    model_config = ConfigDict(frozen=True)
    t: float
    replicas: float
    cpu_request: float
    memory_request: float
    rps: float
    cpu_per_pod: float
    memory_per_pod: float
    latency_p95: float
    error_ratio: float
    utilisation: float


class ResponseModel(BaseModel):
    """The learned response of the service; `version` grows with each accepted refit."""

    model_config = ConfigDict(frozen=True)
    version: int = 0
    latency_base: float = 0.05
    latency_wait: float = 0.05
    memory_base: float = 128 * 2**20
    memory_per_rps: float = 2**20
    fitted_on: int = 0

    def latency(self, rho: float) -> float:
        r = min(max(rho, 0.0), RHO_CAP)
        return self.latency_base + self.latency_wait * r / (1.0 - r)

    def max_utilisation(self, latency_target: float) -> float:
        """The utilisation at which the predicted p95 latency reaches the target."""
        if latency_target <= self.latency_base or self.latency_wait <= 0:
            return 0.0 if latency_target <= self.latency_base else RHO_CAP
        x = (latency_target - self.latency_base) / self.latency_wait  # = rho / (1 - rho)
        return min(RHO_CAP, x / (1.0 + x))

    def memory(self, rps_per_pod: float) -> float:
        return self.memory_base + self.memory_per_rps * max(rps_per_pod, 0.0)


def refit(history: Sequence[Experience], *, version: int = 0) -> ResponseModel:
    """Least-squares fit of the latency curve and the memory line on the history."""
    if len(history) < MIN_POINTS_TO_FIT:
        raise ValueError(f"need at least {MIN_POINTS_TO_FIT} experiences, have {len(history)}")
    rho = np.clip([h.utilisation for h in history], 0.0, RHO_CAP)
    lat = np.array([h.latency_p95 for h in history])
    x = np.column_stack([np.ones_like(rho), rho / (1.0 - rho)])
    (a, b), *_ = np.linalg.lstsq(x, lat, rcond=None)
    rpp = np.array([h.rps / max(h.replicas, 1.0) for h in history])
    mem = np.array([h.memory_per_pod for h in history])
    (c, d), *_ = np.linalg.lstsq(np.column_stack([np.ones_like(rpp), rpp]), mem, rcond=None)
    return ResponseModel(
        version=version,
        latency_base=float(max(a, 1e-6)),
        latency_wait=float(max(b, 0.0)),
        memory_base=float(max(c, 0.0)),
        memory_per_rps=float(max(d, 0.0)),
        fitted_on=len(history),
    )


def backtest(model: ResponseModel, history: Sequence[Experience]) -> float:
    """Mean relative error of the latency and memory predictions on `history` (lower is better)."""
    if not history:
        return float("inf")
    errs = []
    for h in history:
        lat = model.latency(h.utilisation)
        mem = model.memory(h.rps / max(h.replicas, 1.0))
        errs.append(abs(lat - h.latency_p95) / max(h.latency_p95, 1e-9))
        errs.append(abs(mem - h.memory_per_pod) / max(h.memory_per_pod, 1.0))
    return float(np.mean(errs))


def maybe_switch(current: ResponseModel, history: Sequence[Experience]) -> tuple[ResponseModel, str]:
    """The strategic refit: fit on the older 2/3, backtest both on the newer 1/3, keep the better."""
    if len(history) < 2 * MIN_POINTS_TO_FIT:
        return current, f"kept v{current.version}: only {len(history)} experiences"
    cut = (2 * len(history)) // 3
    candidate = refit(history[:cut], version=current.version + 1)
    new_score, old_score = backtest(candidate, history[cut:]), backtest(current, history[cut:])
    if new_score < old_score:
        return refit(
            history, version=current.version + 1
        ), f"switched to v{current.version + 1}: backtest {new_score:.3f} < {old_score:.3f}"
    return current, f"kept v{current.version}: backtest {old_score:.3f} <= candidate {new_score:.3f}"


class StrategyStats(BaseModel):
    """Beta(successes + 1, failures + 1) per strategy."""

    successes: dict[str, int] = Field(default_factory=lambda: dict.fromkeys(STRATEGIES, 0))
    failures: dict[str, int] = Field(default_factory=lambda: dict.fromkeys(STRATEGIES, 0))

    def choose(self, rng: np.random.Generator) -> str:
        """Thompson sampling: draw from each posterior, take the best draw."""
        draws = {s: rng.beta(self.successes.get(s, 0) + 1, self.failures.get(s, 0) + 1) for s in STRATEGIES}
        return max(STRATEGIES, key=lambda s: (draws[s], -STRATEGIES.index(s)))

    def update(self, strategy: str, success: bool) -> StrategyStats:
        succ, fail = dict(self.successes), dict(self.failures)
        if success:
            succ[strategy] = succ.get(strategy, 0) + 1
        else:
            fail[strategy] = fail.get(strategy, 0) + 1
        return StrategyStats(successes=succ, failures=fail)

    def mean(self, strategy: str) -> float:
        s, f = self.successes.get(strategy, 0), self.failures.get(strategy, 0)
        return (s + 1) / (s + f + 2)


class Rule(BaseModel):
    """One leaf of the distilled tree: the conditions on the path and the action at the leaf."""

    model_config = ConfigDict(frozen=True)
    conditions: list[str]
    action: str
    support: int


POLICY_FEATURES: Final[tuple[str, ...]] = ("utilisation", "latency_vs_slo", "memory_vs_request")


def distil(
    features: Sequence[Sequence[float]], actions: Sequence[str], *, random_state: int = 0
) -> list[Rule]:
    """Fit a small tree mapping the situation to the action the loop took; return its leaves."""
    if len(features) == 0 or len(set(actions)) < 1:
        return []
    tree = DecisionTreeClassifier(max_depth=TREE_MAX_DEPTH, random_state=random_state)
    tree.fit(np.asarray(features, dtype=float), list(actions))
    t = tree.tree_
    rules: list[Rule] = []

    def walk(node: int, conds: list[str]) -> None:
        if t.children_left[node] == -1:
            action = str(tree.classes_[int(np.argmax(t.value[node][0]))])
            rules.append(Rule(conditions=conds, action=action, support=int(t.n_node_samples[node])))
            return
        name, thr = POLICY_FEATURES[t.feature[node]], float(t.threshold[node])
        walk(int(t.children_left[node]), [*conds, f"{name} <= {thr:.3g}"])
        walk(int(t.children_right[node]), [*conds, f"{name} > {thr:.3g}"])

    walk(0, [])
    return rules


def apply_rules(rules: Sequence[Rule], feature_values: Sequence[float]) -> str | None:
    """The action of the leaf whose conditions hold (the fast path); None when no rules."""
    values = dict(zip(POLICY_FEATURES, feature_values, strict=True))
    for rule in rules:
        ok = True
        for cond in rule.conditions:
            name, op, thr = cond.split()
            v = values[name]
            ok = ok and (v <= float(thr) if op == "<=" else v > float(thr))
        if ok:
            return rule.action
    return None
