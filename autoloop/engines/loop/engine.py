"""One OptimizationLoop pass: `LoopEngine().step(config, state, observation, now) -> (Decision, LoopState)`.

Contract: no I/O, no clock, no hidden state; deterministic. A pass: check the metrics (bad data ->
no action); record the experience; note memory (working set, OOM kills) and storm events; if a
change is pending, wait for its rollout and settle window and judge it (`guard`), rolling back a
failed tuning to a fresh last good setting; learn the planning utilisation of the pod size from a
steady pass; unless the circuit breaker is open, plan replicas for the next interval and pod
resources for the long-term level (`sizing`), and pass the change through the safety validator.
While the SLO is broken the plan is a remedy sized in one pass (the demand forecast, the HPA's
formula on the CPU in use, one HPA scale-up period when pods die of overload), which the validator
exempts from the max step, the change budgets and, for replicas, the cooldown.
`Auto` applies it, `Recommend` records it.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from autoloop.engines import learning, safety
from autoloop.engines.loop import guard, models, pieces, refits, sizing


@dataclass(frozen=True)
class _Pass:
    """What one step has worked out before judging and planning (they read it all)."""

    config: models.LoopConfig
    st: models.LoopState
    saw: dict[str, float]
    cur: dict[str, float]
    slo_ok: bool
    oom: bool
    obs: models.Observation
    now: float
    did: str
    frozen: str | None
    overload: bool = False
    """Pods were OOM-killed or restarted while the steady working set is far below the limit:
    the queue of an overloaded pod, answered by replicas."""

    def fields(
        self,
    ) -> tuple[
        models.LoopConfig,
        models.LoopState,
        dict[str, float],
        dict[str, float],
        bool,
        bool,
        models.Observation,
        float,
        str,
        str | None,
    ]:
        return (
            self.config, self.st, self.saw, self.cur, self.slo_ok,
            self.oom, self.obs, self.now, self.did, self.frozen,
        )  # fmt: skip


def _hold(
    did: str, now: float, saw: dict[str, float], why: str, breaker: str | None = None
) -> models.Decision:
    return models.Decision(
        id=did, t=now, action="hold", explanation=models.Explanation(saw=saw, proposed=why), breaker=breaker
    )


class LoopEngine:
    """Stateless: the state travels in and out of `step`."""

    def step(
        self, config: models.LoopConfig, state: models.LoopState, obs: models.Observation, now: float
    ) -> tuple[models.Decision, models.LoopState]:
        st = state.model_copy(deep=True)
        st.iteration += 1
        did = f"{config.target.name}-{st.iteration:06d}"
        windows = (obs.rps, obs.latency_p95, obs.error_ratio, obs.cpu_per_pod, obs.memory_per_pod)
        if not all(pieces.finite(list(w)) for w in windows) or any(
            k not in obs.settings for k in models.KNOBS
        ):
            why = "no action: metrics missing, empty or not finite"
            return models.Decision(
                id=did, t=now, action="none", explanation=models.Explanation(saw={}, proposed=why)
            ), st
        cur = {k: float(v) for k, v in obs.settings.items()}
        saw = pieces.summarise(obs, cur)
        slo_ok = (
            saw["latency_p95"] <= config.latency_slo_seconds and saw["error_ratio"] <= config.error_slo_ratio
        )
        saw["slo_met"] = float(slo_ok)
        oom = obs.oom_kills > 0 or obs.restarts > 0
        st.history = [*st.history, pieces.experience(now, cur, saw)][-models.MAX_HISTORY :]
        st.since = now if st.since is None else st.since
        refits.maybe_refit(config, st, now)
        # A working set under overload (requests piling up to their timeout) is not a need to
        # plan for; an OOM kill always is.
        working_set = saw["memory_per_pod"] if slo_ok else 0.0
        # An OOM kill while the steady working set is far below the limit is the queue's memory
        # (requests in flight under overload): more replicas answer it, and a rollout for memory
        # would take capacity away. Near the limit (or with no healthy pass to tell) it is memory.
        steady_peak = sizing.remember_peak(st, config, now)
        memory_oom = oom and (
            steady_peak == 0.0
            or steady_peak * (1.0 + config.memory_headroom) * sizing.OOM_BUMP_RATIO >= cur["memory_request"]
        )
        sizing.note_memory(st, working_set, cur["memory_request"], memory_oom, config.memory_headroom, now)
        if oom:
            guard.note_event(st, now)
        guard.track_broken(st, saw, config, slo_ok, now)
        frozen = guard.breaker(st, now)
        ps = _Pass(config, st, saw, cur, slo_ok, oom, obs, now, did, frozen, oom and not memory_oom)
        if st.pending is not None:
            judged = self._judge(ps)
            if judged is not None:
                return judged, self._record(st, judged)
        elif sizing.steady(st, now, config.settle_seconds) and obs.rollout_complete and not (oom or frozen):
            learned = sizing.learn_setpoint(
                st,
                cur["cpu_request"],
                saw["utilisation"],
                saw["latency_p95"] / config.latency_slo_seconds,
                slo_ok,
                config.latency_headroom,
            )
            if "too small" in learned:
                st.small_pods_at = now
            guard.note_healthy(st, slo_ok, now)
            if slo_ok and now - (st.healthy_since or now) >= config.settle_seconds:
                guard.mark_good(st, cur, saw["rps"], now)  # healthy, unchanged, a whole window
        d = self._plan(ps)
        return d, self._record(st, d)

    # -- judging a pending change -------------------------------------------------------------

    def _judge(self, ps: _Pass) -> models.Decision | None:
        """Hold while the change rolls out and settles; then judge it. None: judged, plan on."""
        config, st, saw, cur, slo_ok, oom, obs, now, did, frozen = ps.fields()
        assert st.pending is not None
        phase = guard.rollout_state(st, obs, now)
        pending = st.pending
        if pending.remedy and not pending.restarts:
            # More replicas restart nothing and are never undone: no need to wait for them
            # before adding more (load may still be rising).
            self._abandon(st, saw, now)
            return None
        lowered = pending.settings["memory_request"] < pending.previous["memory_request"]
        if oom and lowered:
            self._abandon(st, saw, now)  # the smaller pods are OOM-killed: raise memory now
            return None
        if phase == "rolling":
            if ps.overload and not slo_ok:
                return None  # pods die of overload mid-rollout: replicas now, the rollout judged later
            return _hold(did, now, saw, f"rollout of {pending.decision_id} in progress", frozen)
        if phase == "ready" and (oom or not slo_ok):
            st.pending = pending = pending.model_copy(update={"unhealthy": True})
        waited = now - (pending.ready_at or now)
        sev = guard.severity(saw, config)
        warming = (
            not slo_ok
            and pending.severity is not None
            and sev < (1.0 - guard.HELPED_FRACTION) * pending.severity
            and waited < guard.MAX_SETTLE_WINDOWS * config.settle_seconds
        )
        st.pending = pending = pending.model_copy(update={"severity": models.sig(sev, 4)})
        if phase == "ready" and (waited < config.settle_seconds or warming):
            # Pods just ready are still cold: the outcome is what holds at the window's end (and
            # while a breach keeps shrinking, the pods are still warming up).
            return _hold(did, now, saw, f"settling after {pending.decision_id}", frozen)
        self._abandon(st, saw, now)
        if phase == "ready" and not pending.unhealthy:
            guard.mark_good(st, cur, saw["rps"], now)  # healthy through its whole settle window
            return None
        if phase == "ready" and slo_ok:
            return None  # recovered by the window's end: kept, but not a last good setting
        if pending.remedy or pending.kind == "rollback" or oom:
            return None  # a remedy is never undone; an OOM is answered by memory, not a rollback
        if phase == "ready":
            guard.raise_floor(st, cur, saw["rps"], now)
        good = guard.good_for(st, saw["rps"], now)
        if frozen or good is None or all(abs(good[k] - cur[k]) < 1e-12 for k in models.KNOBS):
            return None
        return self._rollback(ps, good, pending)

    @staticmethod
    def _abandon(st: models.LoopState, saw: dict[str, float], now: float) -> bool:
        """Close the pending change, recording what was measured on its decision."""
        assert st.pending is not None
        # The time to the second: rounded to significant digits, an epoch time moves by an hour.
        measured = {
            **models.rounded({"latency_p95": saw["latency_p95"], "error_ratio": saw["error_ratio"]}),
            "at": float(round(now)),
        }
        st.decisions = [
            d.model_copy(update={"explanation": d.explanation.model_copy(update={"measured": measured})})
            if d.id == st.pending.decision_id
            else d
            for d in st.decisions
        ]
        st.pending = None
        return True

    def _rollback(self, ps: _Pass, good: dict[str, float], failed: models.Pending) -> models.Decision:
        config, st, saw, cur, slo_ok, _, obs, now, did, _ = ps.fields()
        # Never roll back into less memory than the pods have shown they need, nor into fewer
        # replicas (they answer today's load, not the load the last good setting saw).
        memory = max(
            good["memory_request"],
            sizing.memory_plan(st, cur["memory_request"], now, False, sizing.healthy_peak(st, config, now)),
        )
        back = {
            "replicas": max(good["replicas"], cur["replicas"]),
            "cpu_request": good["cpu_request"],
            "memory_request": memory,
        }
        change = safety.ProposedChange(
            target=config.target, current={k: cur[k] for k in models.KNOBS}, proposed=back, kind="rollback"
        )
        result = safety.validate(change, config.policy(), self._context(st, now, obs, slo_ok, True, 1.0))
        applied = result.accepted and config.mode == "Auto"
        reason = (
            f"SLO violated after {failed.decision_id} once ready: p95 {saw['latency_p95']:.3f}s, "
            f"errors {saw['error_ratio']:.4f}; roll back to the last good settings"
        )
        d = models.Decision(
            id=did,
            t=now,
            action="rollback",
            settings=pieces.with_limits(cur, back),
            accepted=result.accepted,
            applied=applied,
            verdicts=list(result.verdicts),
            explanation=models.Explanation(saw=saw, proposed=reason, validator=result.reasons()),
            restarts_pods=any(back[k] != cur[k] for k in ("cpu_request", "memory_request")),
        )
        if applied:
            st.rollbacks += 1
            guard.note_event(st, now)
            self._applied(config, st, cur, back, did, now, kind="rollback", remedy=False)
        return d

    # -- planning ----------------------------------------------------------------------------

    def _plan(self, ps: _Pass) -> models.Decision:
        config, st, saw, cur, slo_ok, oom, obs, now, did, frozen = ps.fields()
        if len(st.history) < 2:
            return _hold(did, now, saw, "collecting experience", frozen)
        if st.last_good is None and slo_ok and not oom:
            # Nothing to roll back to yet: the starting settings are watched through a settle
            # window first (a breach or an OOM is answered at once).
            return _hold(did, now, saw, "watching the current settings for a settle window first", frozen)
        proposal, notes = self._proposal(config, st, cur, slo_ok, now, saw, ps.overload)
        if frozen:
            proposal = pieces.frozen(proposal, cur, oom, guard.calm(st, config, now))
        if st.pending is not None:
            proposal = pieces.replicas_only(proposal, cur)  # a remedy during a rollout
        knobs = {k: cur[k] for k in models.KNOBS}
        moved = {k: float(np.sign(proposal[k] - knobs[k])) for k in models.KNOBS if proposal[k] != knobs[k]}
        predicted = pieces.predicted(config, st, saw, cur, proposal, now)
        rho, sp = predicted["utilisation"], predicted["setpoint"]
        if not moved:
            why = frozen or f"current settings fit ({notes})"
            d = _hold(did, now, saw, f"hold: {why}", frozen)
            d.explanation.predicted = predicted
            return d
        # A change that only adds capacity cannot make the forecast worse than holding: it passes
        # the SLO guard's forecast check even when one step does not reach the need.
        adds_only = all(proposal[k] >= knobs[k] for k in models.KNOBS)
        forecast_ok = adds_only or (rho <= sp * 1.05 and proposal["memory_request"] >= saw["memory_per_pod"])
        confidence = min(1.0, len(st.history) / learning.MIN_POINTS_TO_FIT)
        change = safety.ProposedChange(target=config.target, current=knobs, proposed=proposal)
        result = safety.validate(
            change, config.policy(), self._context(st, now, obs, slo_ok, forecast_ok, confidence)
        )
        applied = result.accepted and config.mode == "Auto"
        label = pieces.direction(moved)
        explanation = models.Explanation(
            saw=saw,
            proposed=", ".join(f"{k} {knobs[k]:.4g}->{proposal[k]:.4g}" for k in moved) + f" ({notes})",
            validator=pieces.validator_text(result),
            predicted=predicted,
            direction=label,
            policy_rule=self._rule(config, st),
        )
        restart = any(k in moved for k in ("cpu_request", "memory_request"))
        d = models.Decision(
            id=did,
            t=now,
            action="change",
            settings=pieces.with_limits(cur, proposal),
            accepted=result.accepted,
            applied=applied,
            verdicts=list(result.verdicts),
            explanation=explanation,
            breaker=frozen,
            restarts_pods=restart,
        )
        if applied:
            self._applied(config, st, cur, proposal, did, now, kind="tune", remedy=safety.is_remedy(change))
        return d

    def _proposal(
        self,
        config: models.LoopConfig,
        st: models.LoopState,
        cur: dict[str, float],
        slo_ok: bool,
        now: float,
        saw: dict[str, float],
        overload: bool,
    ) -> tuple[dict[str, float], str]:
        """Replicas for the next interval's upper load; pod resources for the long-term level."""
        lo = {k: config.bounds.get(k, (cur[k], cur[k]))[0] for k in models.KNOBS}
        hi = {k: config.bounds.get(k, (cur[k], cur[k]))[1] for k in models.KNOBS}
        step = config.max_step_percent / 100.0
        upper, _ = sizing.forecast(st, saw["rps_recent"])
        cpu_s = sizing.cpu_seconds_per_request(st, config.error_slo_ratio)
        cpu, notes = cur["cpu_request"], []
        resize_ok = sizing.resize_allowed(st, now) and "cpu_request" in config.bounds
        small = st.small_pods_at is not None and now - st.small_pods_at < 2 * config.settle_seconds
        if small and "cpu_request" in config.bounds:
            cpu, st.small_pods_at = cpu * (1.0 + step), None
            notes.append("pods too small for the SLO at low utilisation")
        elif resize_ok and slo_ok:
            mem_cores = (
                cur["memory_request"]
                / models.GIB
                * config.memory_price_per_gib_hour
                / config.cpu_price_per_core_hour
            )
            level = max(h.rps for h in st.history)
            cpu = sizing.cheapest_size(
                st, cpu, level, cpu_s, (lo["cpu_request"], hi["cpu_request"]), mem_cores
            )
        memory = cur["memory_request"]
        if "memory_request" in config.bounds:
            resize = sizing.resize_allowed(st, now) and slo_ok
            memory = sizing.memory_plan(st, memory, now, resize, sizing.healthy_peak(st, config, now))
        n = cur["replicas"]
        exact = sizing.pods_needed(st, cpu, upper, cpu_s, now, guard.FLOOR_TTL_S)
        need = float(sizing.replicas_needed(st, cpu, upper, cpu_s, now, guard.FLOOR_TTL_S))
        if not slo_ok:
            # A remedy is sized in one pass, not in max steps (`sizing.remedy_pods`).
            used = sizing.remedy_pods(st, n, saw["utilisation"], cur["cpu_request"], cpu, overload)
            exact, need = max(exact, used), max(need, float(used))
        recent_up = st.last_up_at is not None and now - st.last_up_at < config.reverse_hold_seconds
        grow = need > n and (exact > n * (1.0 + sizing.TOLERANCE) or not slo_ok)
        shrink = exact <= n * (1.0 - sizing.TOLERANCE) and need <= n - 1 and slo_ok and not recent_up
        replicas = need if grow or cpu != cur["cpu_request"] or shrink else n
        notes.append(f"need {need:.0f} pods at setpoint {sizing.setpoint(st, cpu):.2f}")
        if cpu != cur["cpu_request"] or memory != cur["memory_request"]:
            # A rolling update takes up to maxUnavailable of the pods away and brings cold ones:
            # carry the load on the rest until it is over (the next passes scale back).
            replicas = max(replicas, math.ceil(need / (1.0 - sizing.ROLLOUT_UNAVAILABLE)))
            notes.append("rollout headroom")
        plan = {"replicas": replicas, "cpu_request": cpu, "memory_request": memory}
        return pieces.within_limits(plan, cur, step, lo, hi, slo_ok), "; ".join(notes)

    # -- bookkeeping ------------------------------------------------------------------------------

    @staticmethod
    def _applied(
        config: models.LoopConfig,
        st: models.LoopState,
        cur: dict[str, float],
        new: dict[str, float],
        did: str,
        now: float,
        *,
        kind: str,
        remedy: bool,
    ) -> None:
        keep = safety.SECONDS_PER_DAY if config.max_changes_per_day else safety.SECONDS_PER_HOUR
        st.change_times = models.change_times_after(st.change_times, now, keep_seconds=keep)
        if new["replicas"] > cur["replicas"]:
            st.last_up_at = now
        restarts = any(new[k] != cur[k] for k in ("cpu_request", "memory_request"))
        if restarts:
            st.last_resize_at = now
        if st.pending is not None and not restarts:
            # Replicas added during a rollout: the rollout is still the change to judge, at the
            # replicas it now runs with.
            st.pending = st.pending.model_copy(
                update={"settings": {**st.pending.settings, "replicas": new["replicas"]}}
            )
            return
        st.pending = models.Pending(
            restarts=restarts,
            decision_id=did,
            applied_at=now,
            previous={k: cur[k] for k in models.KNOBS},
            settings={k: new[k] for k in models.KNOBS},
            kind="rollback" if kind == "rollback" else "tune",
            remedy=remedy,
        )

    @staticmethod
    def _rule(config: models.LoopConfig, st: models.LoopState) -> str | None:
        if not st.rules or not st.history:
            return None
        return learning.apply_rules(st.rules, refits.features(config, st.history[-1]))

    @staticmethod
    def _context(
        st: models.LoopState,
        now: float,
        obs: models.Observation,
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

    @staticmethod
    def _record(st: models.LoopState, d: models.Decision) -> models.LoopState:
        """Keep only applied decisions, lean: the caller records every decision whole (status
        `decisions[]`); the state needs only what the engine and the operator read again (which
        decision is pending and what was measured after it)."""
        if d.applied:
            kept = models.Explanation(saw={}, proposed=d.explanation.proposed[:60])
            lean = d.model_copy(
                update={"verdicts": [], "explanation": kept, "settings": None, "breaker": None}
            )
            st.decisions = [*st.decisions, lean][-models.MAX_DECISIONS :]
        return st
