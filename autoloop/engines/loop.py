"""One OptimizationLoop iteration's decision, as a pure function of (config, state, observation, now).

Contract: `LoopEngine().step(config, state, observation, now) -> (Decision, LoopState)`. No I/O,
no clock, no hidden state: everything needed next time (bounded experience, pending change,
last good settings, change clocks, learned model and its version, strategy posteriors, distilled
rules) is in `LoopState`, a JSON-serialisable pydantic model the operator keeps in the CR status.
Deterministic for a given `config.seed` (randomness: Thompson sampling, seeded per iteration).

An iteration: check the metrics (bad data -> no action); record the experience; if a change is
pending, wait for the settle window, then compare the measured outcome with the prediction and
roll back to the last good settings if the SLO guard is violated; otherwise forecast demand over
the horizon with a prediction interval, score candidate settings (cost, predicted p95 latency
against the SLO, memory headroom), refine CPU by golden-section search, keep the change only if
it beats holding by the hysteresis margin and does not reverse a recent change (damping), and
pass it through the safety validator. `Auto` applies it, `Recommend` records it.

Two time scales: `step` is the tactical path. The strategic refit (`strategic_refit`: refit on
all experience, switch only on a better backtest, re-distil the policy) runs inside `step` when
`config.inline_refit` (library use, benches), or off the loop's path in the operator, which
hands the result back with `adopt_refit`.
"""

from __future__ import annotations

import math
from typing import Final, Literal

import numpy as np
from pydantic import BaseModel, ConfigDict, Field

from autoloop.engines import learning, optimize, safety

MAX_HISTORY: Final[int] = 50
MAX_DECISIONS: Final[int] = 50
# Applied changes remembered for the change budgets: the last 24 h, at most the largest daily budget.
MAX_CHANGE_TIMES: Final[int] = 96
KNOBS: Final[tuple[str, ...]] = ("replicas", "cpu_request", "memory_request")
GIB: Final[float] = 2.0**30
# z for a one-sided 95 % prediction interval of the demand forecast.
Z_UPPER: Final[float] = 1.645
# Recent observations the demand forecast uses.
FORECAST_POINTS: Final[int] = 12
# Penalty weights that make a predicted SLO breach dominate any cost saving.
SLO_PENALTY: Final[float] = 100.0
MEMORY_PENALTY: Final[float] = 100.0
# Deadband: a change that moves no continuous knob by at least this fraction (and no replica)
# is not worth a rollout.
MIN_RELATIVE_CHANGE: Final[float] = 0.05
# The current settings may sit this much (relative) above the planning latency target before
# the loop moves them.
LATENCY_HYSTERESIS: Final[float] = 0.1
# A rolled-back capacity plus this margin becomes the floor the optimiser must stay above.
CAPACITY_FLOOR_MARGIN: Final[float] = 0.1
# Predicted latency (s) for a saturated service: finite, so the state stays valid JSON.
SATURATED_LATENCY: Final[float] = 1e3

Action = Literal["none", "hold", "change", "rollback"]


def change_times_after(times: list[float], now: float) -> list[float]:
    """The change times the budgets need after a change at `now`: the last 24 h, bounded."""
    return [*[t for t in times if now - t < safety.SECONDS_PER_DAY][-(MAX_CHANGE_TIMES - 1) :], now]


class LoopConfig(BaseModel):
    """The spec of one loop, in base units (seconds, cores, bytes, USD)."""

    model_config = ConfigDict(frozen=True)
    namespace: str
    target: safety.Target
    mode: Literal["Recommend", "Auto"] = "Recommend"
    bounds: dict[str, tuple[float, float]]
    latency_slo_seconds: float = 0.2
    error_slo_ratio: float = 0.01
    weight_cost: float = 1.0
    weight_latency: float = 1.0
    max_step_percent: float = 50.0
    cooldown_seconds: float = 300.0
    max_changes_per_hour: int = 4
    max_changes_per_day: int | None = None
    min_confidence: float = 0.5
    settle_seconds: float = 300.0
    hysteresis: float = 0.03
    """A change must improve the score by this fraction over holding."""
    reverse_hold_seconds: float = 1800.0
    """Damping: no reversal of a knob's last direction this soon unless the SLO is broken."""
    latency_headroom: float = 0.8
    """Plan for p95 <= headroom * SLO at the upper forecast."""
    memory_headroom: float = 0.2
    refit_interval_seconds: float = 86_400.0
    inline_refit: bool = True
    """True: `step` runs the strategic refit itself when due (benches, library use). False: the
    caller runs `strategic_refit` off the loop's path (the operator's background worker) and
    hands the result to `adopt_refit`; `step` then only bootstraps the first model."""
    cpu_price_per_core_hour: float = 0.0316
    memory_price_per_gib_hour: float = 0.0042
    seed: int = 0

    def policy(self) -> safety.SafetyPolicy:
        return safety.SafetyPolicy(
            owner_namespace=self.namespace,
            target=self.target,
            bounds={k: safety.KnobBounds(min=lo, max=hi) for k, (lo, hi) in self.bounds.items()},
            max_step_percent=self.max_step_percent,
            cooldown_seconds=self.cooldown_seconds,
            max_changes_per_hour=self.max_changes_per_hour,
            max_changes_per_day=self.max_changes_per_day,
            min_confidence=self.min_confidence,
        )

    def cost(self, s: dict[str, float]) -> float:
        per_pod = (
            s["cpu_request"] * self.cpu_price_per_core_hour
            + s["memory_request"] / GIB * self.memory_price_per_gib_hour
        )
        return s["replicas"] * per_pod


class Observation(BaseModel):
    """The windows the operator fetched for one interval, and the target's current settings."""

    model_config = ConfigDict(frozen=True)
    settings: dict[str, float]
    """replicas, cpu_request (cores), memory_request (bytes); optional cpu_limit, memory_limit."""
    rps: list[float]
    latency_p95: list[float]
    error_ratio: list[float]
    cpu_per_pod: list[float]
    memory_per_pod: list[float]
    oom_kills: int = 0
    anomaly_active: bool | None = False
    pdb: safety.PdbStatus | None = None


class Pending(BaseModel):
    decision_id: str
    applied_at: float
    previous: dict[str, float]
    settings: dict[str, float]
    predicted_latency: float
    strategy: str
    kind: Literal["tune", "rollback"] = "tune"


class Explanation(BaseModel):
    saw: dict[str, float]
    proposed: str
    validator: list[str] = Field(default_factory=list)
    predicted: dict[str, float] = Field(default_factory=dict)
    measured: dict[str, float] | None = None
    direction: str | None = None
    """up / down / mixed for a change: the label the distilled policy learns."""
    policy_rule: str | None = None


class Decision(BaseModel):
    id: str
    t: float
    action: Action
    settings: dict[str, float] | None = None
    accepted: bool = False
    applied: bool = False
    verdicts: list[safety.RuleVerdict] = Field(default_factory=list)
    explanation: Explanation


class LoopState(BaseModel):
    """Everything carried between iterations; bounded, JSON-serialisable."""

    iteration: int = 0
    history: list[learning.Experience] = Field(default_factory=list)
    decisions: list[Decision] = Field(default_factory=list)
    pending: Pending | None = None
    last_good: dict[str, float] | None = None
    change_times: list[float] = Field(default_factory=list)
    last_direction: dict[str, float] = Field(default_factory=dict)
    """knob -> +1/-1 of its last applied change."""
    last_direction_at: float | None = None
    model: learning.ResponseModel = Field(default_factory=learning.ResponseModel)
    last_refit_at: float | None = None
    strategies: learning.StrategyStats = Field(default_factory=learning.StrategyStats)
    rules: list[learning.Rule] = Field(default_factory=list)
    rollbacks: int = 0
    capacity_floor: float = 0.0
    """Total CPU capacity (cores per request/s of load) below which a rollback showed the SLO
    breaks; scaled by the forecast load when used, so it follows load changes."""


def _rounded(values: dict[str, float]) -> dict[str, float]:
    """Six significant digits: what an explanation needs, a third of the JSON of full floats."""
    return {k: float(f"{v:.6g}") for k, v in values.items()}


def _finite(values: list[float]) -> bool:
    return bool(values) and all(math.isfinite(v) for v in values)


def _capacity(s: dict[str, float]) -> float:
    return s.get("cpu_limit") or s["cpu_request"]


def _with_limits(current: dict[str, float], knobs: dict[str, float]) -> dict[str, float]:
    """New settings with limits kept at the current limit/request ratio."""
    out = dict(knobs)
    for lim, req in (("cpu_limit", "cpu_request"), ("memory_limit", "memory_request")):
        if current.get(lim):
            out[lim] = current[lim] / current[req] * knobs[req]
    return out


class StrategicRefit(BaseModel):
    """The result of one strategic refit, computed from a snapshot of the state."""

    model_config = ConfigDict(frozen=True)
    based_on_version: int
    """The model version the snapshot held; a result for an older version is stale."""
    model: learning.ResponseModel
    rules: list[learning.Rule]
    message: str


def refit_due(config: LoopConfig, state: LoopState, now: float) -> bool:
    """The strategic schedule: once a bootstrapped model is `refit_interval_seconds` old."""
    return state.last_refit_at is not None and now - state.last_refit_at >= config.refit_interval_seconds


def strategic_refit(config: LoopConfig, state: LoopState) -> StrategicRefit:
    """Refit the response model on the whole experience (switching only if its backtest is better)
    and re-distil the policy. Pure and slow-ish: the operator runs it in a worker thread."""
    model, message = learning.maybe_switch(state.model, state.history)
    return StrategicRefit(
        based_on_version=state.model.version,
        model=model,
        rules=LoopEngine._distil(config, state),
        message=message,
    )


def adopt_refit(state: LoopState, result: StrategicRefit, now: float) -> tuple[LoopState, bool]:
    """Install a finished refit unless the state moved to another model meanwhile (then the
    next due check starts a fresh one). Returns the new state and whether it was adopted."""
    if result.based_on_version != state.model.version:
        return state, False
    st = state.model_copy(deep=True)
    st.model, st.rules = result.model, result.rules
    st.last_refit_at = now
    return st, True


class LoopEngine:
    """Stateless: the state travels in and out of `step`."""

    def step(
        self, config: LoopConfig, state: LoopState, obs: Observation, now: float
    ) -> tuple[Decision, LoopState]:
        st = state.model_copy(deep=True)
        st.iteration += 1
        did = f"{config.target.name}-{st.iteration:06d}"
        windows = (obs.rps, obs.latency_p95, obs.error_ratio, obs.cpu_per_pod, obs.memory_per_pod)
        if not all(_finite(list(w)) for w in windows) or any(k not in obs.settings for k in KNOBS):
            d = Decision(
                id=did,
                t=now,
                action="none",
                explanation=Explanation(saw={}, proposed="no action: metrics missing, empty or not finite"),
            )
            return d, self._record(st, d)
        cur = {k: float(obs.settings[k]) for k in obs.settings}
        saw = self._summarise(obs, cur)
        st.history = [*st.history, self._experience(now, cur, saw)][-MAX_HISTORY:]
        slo_ok = (
            saw["latency_p95"] <= config.latency_slo_seconds and saw["error_ratio"] <= config.error_slo_ratio
        )
        saw["slo_met"] = float(slo_ok)
        self._maybe_refit(config, st, now)

        if st.pending is not None:
            if now - st.pending.applied_at < config.settle_seconds and slo_ok:
                d = Decision(
                    id=did,
                    t=now,
                    action="hold",
                    explanation=Explanation(saw=saw, proposed=f"settling after {st.pending.decision_id}"),
                )
                return d, self._record(st, d)
            rolled = self._settle(config, st, saw, cur, slo_ok, now, obs, did)
            if rolled is not None:
                return rolled, self._record(st, rolled)
        if (st.last_good is None and slo_ok) or (slo_ok and st.pending is None):
            st.last_good = {k: cur[k] for k in KNOBS}
        return self._optimise(config, st, saw, cur, slo_ok, now, obs, did)

    # -- pieces -------------------------------------------------------------------------------

    @staticmethod
    def _summarise(obs: Observation, cur: dict[str, float]) -> dict[str, float]:
        cpu = float(np.mean(obs.cpu_per_pod))
        return {
            "rps": float(np.mean(obs.rps)),
            "latency_p95": float(np.mean(obs.latency_p95)),
            "error_ratio": float(np.mean(obs.error_ratio)),
            "cpu_per_pod": cpu,
            "memory_per_pod": float(np.max(obs.memory_per_pod)),
            "utilisation": cpu / max(_capacity(cur), 1e-9),
            "oom_kills": float(obs.oom_kills),
        }

    @staticmethod
    def _experience(now: float, cur: dict[str, float], saw: dict[str, float]) -> learning.Experience:
        return learning.Experience(
            t=now,
            replicas=cur["replicas"],
            cpu_request=cur["cpu_request"],
            memory_request=cur["memory_request"],
            rps=saw["rps"],
            cpu_per_pod=saw["cpu_per_pod"],
            memory_per_pod=saw["memory_per_pod"],
            latency_p95=saw["latency_p95"],
            error_ratio=saw["error_ratio"],
            utilisation=saw["utilisation"],
        )

    def _maybe_refit(self, config: LoopConfig, st: LoopState, now: float) -> None:
        """Bootstrap the model once enough experience exists; then refit on the strategic schedule."""
        if st.model.fitted_on == 0 and len(st.history) >= learning.MIN_POINTS_TO_FIT:
            st.model = learning.refit(st.history, version=st.model.version + 1)
            st.last_refit_at = now
        elif config.inline_refit and refit_due(config, st, now):
            result = strategic_refit(config, st)
            st.model, st.rules = result.model, result.rules
            st.last_refit_at = now

    @staticmethod
    def _features(config: LoopConfig, saw: dict[str, float], cur: dict[str, float]) -> list[float]:
        return [
            saw["utilisation"],
            saw["latency_p95"] / config.latency_slo_seconds,
            saw["memory_per_pod"] / max(cur["memory_request"], 1.0),
        ]

    @staticmethod
    def _distil(config: LoopConfig, st: LoopState) -> list[learning.Rule]:
        feats, acts = [], []
        for d in st.decisions:
            s = d.explanation.saw
            if (
                d.action in ("hold", "change")
                and {"utilisation", "latency_p95", "memory_per_pod", "memory_request"} <= s.keys()
            ):
                feats.append(
                    [
                        s["utilisation"],
                        s["latency_p95"] / config.latency_slo_seconds,
                        s["memory_per_pod"] / max(s["memory_request"], 1.0),
                    ]
                )
                acts.append((d.explanation.direction or "hold") if d.action == "change" else "hold")
        return learning.distil(feats, [str(a) for a in acts], random_state=config.seed) if feats else []

    def _settle(
        self,
        config: LoopConfig,
        st: LoopState,
        saw: dict[str, float],
        cur: dict[str, float],
        slo_ok: bool,
        now: float,
        obs: Observation,
        did: str,
    ) -> Decision | None:
        """Measure the pending change; roll back on an SLO violation, else accept it as good."""
        pending = st.pending
        assert pending is not None
        measured = {
            "latency_p95": saw["latency_p95"],
            "error_ratio": saw["error_ratio"],
            "predicted_latency": pending.predicted_latency,
        }
        for d in st.decisions:
            if d.id == pending.decision_id:
                d.explanation.measured = measured
        st.pending = None
        # A measured outcome is new evidence: refit if that predicts the recent past better.
        if len(st.history) >= 2 * learning.MIN_POINTS_TO_FIT:
            recent = st.history[-learning.MIN_POINTS_TO_FIT :]
            cand = learning.refit(st.history, version=st.model.version + 1)
            if learning.backtest(cand, recent) < learning.backtest(st.model, recent):
                st.model = cand
        cost_down = config.cost(cur) < config.cost(pending.previous)
        if slo_ok:
            st.strategies = st.strategies.update(
                pending.strategy, success=cost_down or pending.kind == "rollback"
            )
            st.last_good = {k: cur[k] for k in KNOBS}
            return None
        st.strategies = st.strategies.update(pending.strategy, success=False)
        failed = cur["replicas"] * _capacity(cur) * (1.0 + CAPACITY_FLOOR_MARGIN) / max(saw["rps"], 1e-9)
        st.capacity_floor = max(st.capacity_floor, failed)
        good = st.last_good if pending.kind == "tune" else None
        if good is None or all(abs(good[k] - cur[k]) < 1e-12 for k in KNOBS):
            return None  # nothing better to return to: the optimiser will look for a remedy
        target = _with_limits(cur, good)
        change = safety.ProposedChange(
            target=config.target,
            current={k: cur[k] for k in KNOBS},
            proposed={k: good[k] for k in KNOBS},
            kind="rollback",
        )
        result = safety.validate(change, config.policy(), self._context(st, saw, now, obs, slo_ok, True, 1.0))
        applied = result.accepted and config.mode == "Auto"
        reason = (
            f"SLO violated after {pending.decision_id}: p95 {saw['latency_p95']:.3f}s "
            f"(predicted {pending.predicted_latency:.3f}s), errors {saw['error_ratio']:.4f}; roll back"
        )
        d = Decision(
            id=did,
            t=now,
            action="rollback",
            settings=target,
            accepted=result.accepted,
            applied=applied,
            verdicts=list(result.verdicts),
            explanation=Explanation(saw=saw, proposed=reason, validator=result.reasons(), measured=measured),
        )
        if applied:
            st.rollbacks += 1
            st.pending = Pending(
                decision_id=did,
                applied_at=now,
                previous={k: cur[k] for k in KNOBS},
                settings=good,
                predicted_latency=pending.predicted_latency,
                strategy=pending.strategy,
                kind="rollback",
            )
            st.change_times = change_times_after(st.change_times, now)
        return d

    @staticmethod
    def _context(
        st: LoopState,
        saw: dict[str, float],
        now: float,
        obs: Observation,
        slo_ok: bool,
        forecast_ok: bool,
        confidence: float,
    ) -> safety.SafetyContext:
        return safety.SafetyContext(
            now=now,
            last_change_at=st.change_times[-1] if st.change_times else None,
            recent_change_times=tuple(st.change_times),
            slo_met_now=slo_ok,
            forecast_slo_met=forecast_ok,
            confidence=confidence,
            pdb=obs.pdb,
            anomaly_active=obs.anomaly_active,
        )

    def _forecast(self, st: LoopState) -> tuple[float, float, float]:
        """Upper (95 %) forecast of rps over the next interval, its mean, and CPU s/request."""
        recent = st.history[-FORECAST_POINTS:]
        rps = np.array([h.rps for h in recent])
        mean = float(rps.mean())
        slope = float(np.polyfit(np.arange(rps.size), rps, 1)[0]) if rps.size >= 3 else 0.0
        upper = (
            mean
            + max(slope, 0.0) * rps.size / 2
            + Z_UPPER * float(rps.std(ddof=1) if rps.size > 1 else 0.1 * mean)
        )
        ratios = [h.cpu_per_pod * h.replicas / h.rps for h in st.history if h.rps > 0 and h.utilisation < 0.9]
        cpu_s = (
            float(np.median(ratios))
            if ratios
            else float(np.median([h.cpu_per_pod * h.replicas / max(h.rps, 1e-9) for h in st.history]))
        )
        return upper, mean, cpu_s

    def _predict(
        self,
        config: LoopConfig,
        st: LoopState,
        s: dict[str, float],
        rps: float,
        cpu_s: float,
        cur: dict[str, float],
        *,
        relaxed: bool = False,
    ) -> tuple[float, float, float]:
        """Predicted p95 latency, memory per pod, and the weighted score of settings `s`."""
        cap = _with_limits(cur, s)
        capacity = cap.get("cpu_limit") or cap["cpu_request"]
        rho = rps * cpu_s / max(s["replicas"] * capacity, 1e-9)
        latency = st.model.latency(rho) if rho < learning.RHO_CAP else SATURATED_LATENCY
        memory = st.model.memory(rps / max(s["replicas"], 1.0))
        # Threshold hysteresis: the settings already in place are judged against a looser
        # planning target than new ones, so forecast noise near the target does not flip them.
        headroom = config.latency_headroom * (1.0 + LATENCY_HYSTERESIS if relaxed else 1.0)
        target = min(headroom, 1.0) * config.latency_slo_seconds
        score = config.weight_cost * config.cost(s) / max(config.cost(cur), 1e-12)
        if latency > target:
            score += config.weight_latency * SLO_PENALTY * (latency / target - 1.0)
        floor = st.capacity_floor * rps
        if s["replicas"] * capacity < floor:
            score += SLO_PENALTY * (floor / max(s["replicas"] * capacity, 1e-9) - 1.0)
        mem_need = memory * (1.0 + config.memory_headroom)
        if mem_need > s["memory_request"]:
            score += MEMORY_PENALTY * (mem_need / s["memory_request"] - 1.0)
        return latency, memory, score

    def _optimise(
        self,
        config: LoopConfig,
        st: LoopState,
        saw: dict[str, float],
        cur: dict[str, float],
        slo_ok: bool,
        now: float,
        obs: Observation,
        did: str,
    ) -> tuple[Decision, LoopState]:
        upper, mean, cpu_s = self._forecast(st)
        rng = np.random.default_rng([config.seed, st.iteration])
        strategy = st.strategies.choose(rng)
        step = config.max_step_percent / 100.0 * learning.STRATEGY_STEP[strategy]
        knobs = {k: cur[k] for k in KNOBS}
        bounds = {k: config.bounds[k] for k in KNOBS if k in config.bounds}
        fixed = {k: knobs[k] for k in KNOBS if k not in bounds}

        def score(s: dict[str, float], relaxed: bool = False) -> float:
            return self._predict(config, st, {**fixed, **s}, upper, cpu_s, cur, relaxed=relaxed)[2]

        cands = optimize.candidate_grid({k: knobs[k] for k in bounds}, bounds, step)
        if not slo_ok:
            # While the SLO is broken only remedies are considered: nothing may shrink.
            cands = [c for c in cands if all(c[k] >= knobs[k] for k in c)]
        best, best_score = optimize.best_candidate(cands, score)
        if "cpu_request" in bounds:
            lo = max(bounds["cpu_request"][0], cur["cpu_request"] * (1 - step))
            hi = min(bounds["cpu_request"][1], cur["cpu_request"] * (1 + step))
            if not slo_ok:
                lo = max(lo, cur["cpu_request"])
            if hi > lo:
                g = optimize.golden_section(lambda x: score({**best, "cpu_request": x}), lo, hi)
                if g.fx < best_score:
                    best, best_score = {**best, "cpu_request": g.x}, g.fx
        proposal = {**fixed, **best}
        hold_score = score({k: knobs[k] for k in bounds}, relaxed=True)
        latency, memory, _ = self._predict(config, st, proposal, upper, cpu_s, cur)
        forecast_ok = latency <= config.latency_slo_seconds and memory <= proposal["memory_request"]
        confidence = min(1.0, len(st.history) / learning.MIN_POINTS_TO_FIT) * (
            1.0 if st.model.fitted_on else 0.5
        )
        directions = {k: float(np.sign(proposal[k] - knobs[k])) for k in KNOBS if proposal[k] != knobs[k]}
        label = (
            "up"
            if all(v > 0 for v in directions.values()) and directions
            else ("down" if directions and all(v < 0 for v in directions.values()) else "mixed")
        )
        predicted = {
            "latency_p95": latency,
            "memory_per_pod": memory,
            "rps_upper": upper,
            "rps_mean": mean,
            "score": best_score,
            "hold_score": hold_score,
            "strategy_step": step,
        }
        rule = learning.apply_rules(st.rules, self._features(config, saw, cur)) if st.rules else None
        saw = {**saw, "memory_request": cur["memory_request"]}
        # Hysteresis: the change must beat holding by a margin (always when the SLO is broken).
        reversal = (
            any(st.last_direction.get(k, 0.0) == -v for k, v in directions.items())
            and st.last_direction_at is not None
            and now - st.last_direction_at < config.reverse_hold_seconds
        )
        why_hold = None
        small = all(
            k != "replicas" and abs(proposal[k] - knobs[k]) < MIN_RELATIVE_CHANGE * abs(knobs[k])
            for k in directions
        )
        if not directions:
            why_hold = "current settings score best"
        elif small and slo_ok:
            why_hold = f"every move below the {MIN_RELATIVE_CHANGE:.0%} deadband"
        elif slo_ok and best_score > hold_score * (1.0 - config.hysteresis):
            why_hold = (
                f"gain {1 - best_score / max(hold_score, 1e-12):.1%} below hysteresis {config.hysteresis:.0%}"
            )
        elif slo_ok and reversal:
            why_hold = "damping: would reverse the last change too soon"
        explanation = Explanation(saw=saw, proposed="", predicted={**predicted}, policy_rule=rule)
        if why_hold:
            explanation.proposed = f"hold: {why_hold}"
            d = Decision(id=did, t=now, action="hold", explanation=explanation)
            return d, self._record(st, d)
        target_settings = _with_limits(cur, proposal)
        change = safety.ProposedChange(target=config.target, current=knobs, proposed=proposal)
        result = safety.validate(
            change, config.policy(), self._context(st, saw, now, obs, slo_ok, forecast_ok, confidence)
        )
        applied = result.accepted and config.mode == "Auto"
        explanation.direction = label
        explanation.proposed = (
            f"{strategy} step: "
            + ", ".join(f"{k} {knobs[k]:.4g}->{proposal[k]:.4g}" for k in directions)
            + f"; score {hold_score:.3f}->{best_score:.3f}"
        )
        explanation.validator = result.reasons() or ["accepted"]
        d = Decision(
            id=did,
            t=now,
            action="change",
            settings=target_settings,
            accepted=result.accepted,
            applied=applied,
            verdicts=list(result.verdicts),
            explanation=explanation,
        )
        if applied:
            st.pending = Pending(
                decision_id=did,
                applied_at=now,
                previous=knobs,
                settings=proposal,
                predicted_latency=latency,
                strategy=strategy,
            )
            st.change_times = change_times_after(st.change_times, now)
            st.last_direction = directions
            st.last_direction_at = now
        return d, self._record(st, d)

    @staticmethod
    def _record(st: LoopState, d: Decision) -> LoopState:
        """Keep the decision without its per-rule verdicts and with rounded numbers: the caller
        records the full decision (status `decisions[]`); the state, which lives in the CR status
        too, needs only what the engine reads again (what was seen, done and measured)."""
        e = d.explanation
        kept = e.model_copy(update={"saw": _rounded(e.saw), "predicted": _rounded(e.predicted)})
        st.decisions = [*st.decisions, d.model_copy(update={"verdicts": [], "explanation": kept})][
            -MAX_DECISIONS:
        ]
        return st
