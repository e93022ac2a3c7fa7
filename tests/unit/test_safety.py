"""Each safety rule on its own, then the assembled validator (all verdicts, fail closed)."""

from __future__ import annotations

import pytest

from autoloop.engines import safety as s

TARGET = s.Target(namespace="shop", kind="Deployment", name="web")
POLICY = s.SafetyPolicy(
    owner_namespace="shop",
    target=TARGET,
    bounds={
        "replicas": s.KnobBounds(min=1, max=10),
        "cpu_request": s.KnobBounds(min=0.1, max=4.0),
    },
    max_step_percent=50.0,
    cooldown_seconds=300.0,
    max_changes_per_hour=2,
    min_confidence=0.6,
)
NOW = 10_000.0
GOOD_CTX = s.SafetyContext(
    now=NOW,
    last_change_at=NOW - 1000,
    recent_change_times=(NOW - 1000,),
    slo_met_now=True,
    forecast_slo_met=True,
    confidence=0.9,
    pdb=s.PdbStatus(present=True, disruptions_allowed=1),
    anomaly_active=False,
)


def change(current: dict[str, float], proposed: dict[str, float], **kw: object) -> s.ProposedChange:
    return s.ProposedChange(target=kw.pop("target", TARGET), current=current, proposed=proposed, **kw)


UP = change({"replicas": 2}, {"replicas": 3})
DOWN_CPU = change({"cpu_request": 1.0}, {"cpu_request": 0.8})


@pytest.mark.parametrize(
    ("rule", "chg", "ctx", "passed", "reason_part"),
    [
        (s.ownership, UP, GOOD_CTX, True, "own target"),
        (
            s.ownership,
            change({"replicas": 2}, {"replicas": 3}, target=TARGET.model_copy(update={"namespace": "x"})),
            GOOD_CTX,
            False,
            "not the loop's",
        ),
        (
            s.ownership,
            change({"replicas": 2}, {"replicas": 3}, target=TARGET.model_copy(update={"name": "db"})),
            GOOD_CTX,
            False,
            "not spec.targetRef",
        ),
        (s.not_empty, change({"replicas": 2}, {"replicas": 2}), GOOD_CTX, False, "equal current"),
        (s.knob_bounds, change({"replicas": 10}, {"replicas": 11}), GOOD_CTX, False, "outside [1, 10]"),
        (
            s.knob_bounds,
            change({"memory_request": 1e9}, {"memory_request": 2e9}),
            GOOD_CTX,
            False,
            "no declared",
        ),
        (s.knob_bounds, change({"replicas": 9}, {"replicas": 10}), GOOD_CTX, True, "within"),
        # An undeclared knob may ride along unchanged in a whole-settings proposal.
        (
            s.knob_bounds,
            change({"replicas": 9, "memory_request": 1e9}, {"replicas": 8, "memory_request": 1e9}),
            GOOD_CTX,
            True,
            "within",
        ),
        # 2 -> 3 replicas is +50 %, exactly the cap; 2 -> 4 is +100 %.
        (s.max_step, UP, GOOD_CTX, True, "within"),
        (s.max_step, change({"replicas": 2}, {"replicas": 4}), GOOD_CTX, False, "100%"),
        # 1 -> 2 replicas is +100 % but a one-replica step is always allowed.
        (s.max_step, change({"replicas": 1}, {"replicas": 2}), GOOD_CTX, True, "within"),
        (s.max_step, change({"cpu_request": 1.0}, {"cpu_request": 0.4}), GOOD_CTX, False, "60%"),
        (
            s.max_step,
            change({"cpu_request": 1.0}, {"cpu_request": 0.4}, kind="rollback"),
            GOOD_CTX,
            True,
            "exempt",
        ),
        (s.cooldown, UP, GOOD_CTX.model_copy(update={"last_change_at": NOW - 100}), False, "100s"),
        (s.cooldown, UP, GOOD_CTX.model_copy(update={"last_change_at": None}), True, "no previous"),
        (s.cooldown, UP, GOOD_CTX, True, "1000s"),
        # Two changes within the hour reach the budget of 2; one 3601 s ago no longer counts.
        (
            s.change_budget,
            UP,
            GOOD_CTX.model_copy(update={"recent_change_times": (NOW - 600, NOW - 1200)}),
            False,
            "2 changes",
        ),
        (
            s.change_budget,
            UP,
            GOOD_CTX.model_copy(update={"recent_change_times": (NOW - 600, NOW - 3601)}),
            True,
            "1/2",
        ),
        (
            s.slo_guard,
            DOWN_CPU,
            GOOD_CTX.model_copy(update={"forecast_slo_met": False}),
            False,
            "break the SLO",
        ),
        (s.slo_guard, DOWN_CPU, GOOD_CTX.model_copy(update={"slo_met_now": False}), False, "frozen"),
        (s.slo_guard, UP, GOOD_CTX.model_copy(update={"slo_met_now": False}), True, "remedy"),
        (s.slo_guard, UP, GOOD_CTX.model_copy(update={"slo_met_now": None}), False, "unknown"),
        (s.slo_guard, DOWN_CPU, GOOD_CTX.model_copy(update={"forecast_slo_met": None}), False, "no forecast"),
        (s.min_confidence, UP, GOOD_CTX.model_copy(update={"confidence": 0.5}), False, "0.50 < 0.60"),
        (s.min_confidence, UP, GOOD_CTX.model_copy(update={"confidence": None}), False, "unknown"),
        # While the SLO is broken a capacity-adding remedy goes through without model confidence;
        # a shrinking change does not.
        (
            s.min_confidence,
            UP,
            GOOD_CTX.model_copy(update={"confidence": 0.1, "slo_met_now": False}),
            True,
            "remedy",
        ),
        (
            s.min_confidence,
            DOWN_CPU,
            GOOD_CTX.model_copy(update={"confidence": 0.1, "slo_met_now": False}),
            False,
            "0.10 < 0.60",
        ),
        (s.min_confidence, UP, GOOD_CTX.model_copy(update={"confidence": float("nan")}), False, "unknown"),
        # Scaling up restarts no pod; a CPU change does.
        (s.pdb_headroom, UP, GOOD_CTX.model_copy(update={"pdb": None}), True, "restarts no pods"),
        (s.pdb_headroom, DOWN_CPU, GOOD_CTX.model_copy(update={"pdb": None}), False, "unknown"),
        (
            s.pdb_headroom,
            DOWN_CPU,
            GOOD_CTX.model_copy(update={"pdb": s.PdbStatus(present=True)}),
            False,
            "no disruption",
        ),
        (
            s.pdb_headroom,
            DOWN_CPU,
            GOOD_CTX.model_copy(update={"pdb": s.PdbStatus(present=False)}),
            True,
            "no Pod",
        ),
        (
            s.pdb_headroom,
            change({"replicas": 3}, {"replicas": 2}),
            GOOD_CTX.model_copy(update={"pdb": s.PdbStatus(present=True)}),
            False,
            "no disruption",
        ),
        (s.anomaly_freeze, UP, GOOD_CTX.model_copy(update={"anomaly_active": True}), False, "anomaly active"),
        (s.anomaly_freeze, UP, GOOD_CTX.model_copy(update={"anomaly_active": None}), False, "unknown"),
        (
            s.anomaly_freeze,
            change({"replicas": 2}, {"replicas": 3}, kind="rollback"),
            GOOD_CTX.model_copy(update={"anomaly_active": True}),
            True,
            "rollback",
        ),
    ],
)
def test_rule(
    rule: s.Rule, chg: s.ProposedChange, ctx: s.SafetyContext, passed: bool, reason_part: str
) -> None:
    check_rule(rule, chg, ctx, passed, reason_part)


def check_rule(
    rule: s.Rule, chg: s.ProposedChange, ctx: s.SafetyContext, passed: bool, reason_part: str
) -> None:
    verdict = rule(chg, POLICY, ctx)
    assert verdict.passed is passed
    assert reason_part in verdict.reason


def test_daily_change_budget_counts_the_trailing_day_and_lets_remedies_through() -> None:
    daily = POLICY.model_copy(update={"max_changes_per_day": 3, "max_changes_per_hour": 4})
    # Three changes in the last 24 h (one of them in the last hour); one 24 h + 1 s ago no longer counts.
    spent = GOOD_CTX.model_copy(
        update={"recent_change_times": (NOW - 86_401, NOW - 80_000, NOW - 40_000, NOW - 600)}
    )
    verdict = s.change_budget(DOWN_CPU, daily, spent)
    assert not verdict.passed and "3 changes in the last 24h (max 3)" in verdict.reason
    # The hourly budget alone would have allowed it, and without a daily budget it passes.
    assert s.change_budget(DOWN_CPU, POLICY.model_copy(update={"max_changes_per_hour": 4}), spent).passed
    two = spent.model_copy(update={"recent_change_times": (NOW - 86_401, NOW - 40_000, NOW - 600)})
    verdict = s.change_budget(DOWN_CPU, daily, two)
    assert verdict.passed and "2/3 in the last 24h" in verdict.reason
    # A rollback goes through a spent day; so does added capacity while the SLO is broken, but not
    # while it holds, and not a decrease while it is broken.
    rollback = change({"cpu_request": 1.0}, {"cpu_request": 0.4}, kind="rollback")
    assert s.change_budget(rollback, daily, spent).passed
    broken = spent.model_copy(update={"slo_met_now": False})
    assert s.change_budget(UP, daily, broken).passed
    assert not s.change_budget(UP, daily, spent).passed
    assert not s.change_budget(DOWN_CPU, daily, broken).passed
    # A spent hourly budget does not hold back a remedy either (see the remedy tests below).
    hourly = broken.model_copy(update={"recent_change_times": tuple(NOW - 60 * k for k in range(1, 5))})
    assert s.change_budget(UP, daily, hourly).passed


BROKEN = GOOD_CTX.model_copy(update={"slo_met_now": False})
# 2 -> 8 replicas is +300 %: far past the 50 % step, and the need of a flash crowd.
BIG_UP = change({"replicas": 2}, {"replicas": 8})
CPU_UP = change({"cpu_request": 1.0}, {"cpu_request": 3.0})
MIXED = change({"replicas": 2, "cpu_request": 1.0}, {"replicas": 8, "cpu_request": 0.8})
SPENT_HOUR = (NOW - 100, NOW - 700)  # the policy's hourly budget is 2
REMEDY = "the SLO is broken now and the change only adds capacity"


@pytest.mark.parametrize(
    ("rule", "chg", "ctx", "passed", "reason_part"),
    [
        # While the SLO is measured broken, a change that only adds capacity is exempt from the step...
        (s.max_step, BIG_UP, BROKEN, True, REMEDY),
        (s.max_step, CPU_UP, BROKEN, True, REMEDY),
        # ...but not while the SLO holds, nor when the SLO state is unknown, nor if anything shrinks.
        (s.max_step, BIG_UP, GOOD_CTX, False, "300%"),
        (s.max_step, BIG_UP, GOOD_CTX.model_copy(update={"slo_met_now": None}), False, "300%"),
        (s.max_step, MIXED, BROKEN, False, "300%"),
        # The hourly budget: the same.
        (
            s.change_budget,
            BIG_UP,
            BROKEN.model_copy(update={"recent_change_times": SPENT_HOUR}),
            True,
            REMEDY,
        ),
        (
            s.change_budget,
            BIG_UP,
            GOOD_CTX.model_copy(update={"recent_change_times": SPENT_HOUR}),
            False,
            "2 changes",
        ),
        (
            s.change_budget,
            MIXED,
            BROKEN.model_copy(update={"recent_change_times": SPENT_HOUR}),
            False,
            "2 changes",
        ),
        # The cooldown: only a remedy that restarts no pod (replicas up) is exempt.
        (s.cooldown, BIG_UP, BROKEN.model_copy(update={"last_change_at": NOW - 100}), True, REMEDY),
        (s.cooldown, CPU_UP, BROKEN.model_copy(update={"last_change_at": NOW - 100}), False, "100s"),
        (s.cooldown, BIG_UP, GOOD_CTX.model_copy(update={"last_change_at": NOW - 100}), False, "100s"),
        # Bounds, the PDB and the anomaly freeze still bind a remedy.
        (s.knob_bounds, change({"replicas": 2}, {"replicas": 20}), BROKEN, False, "outside [1, 10]"),
        (
            s.pdb_headroom,
            CPU_UP,
            BROKEN.model_copy(update={"pdb": s.PdbStatus(present=True)}),
            False,
            "no disruption",
        ),
        (
            s.anomaly_freeze,
            BIG_UP,
            BROKEN.model_copy(update={"anomaly_active": True}),
            False,
            "anomaly active",
        ),
    ],
)
def test_a_remedy_is_exempt_from_the_churn_rules_only(
    rule: s.Rule, chg: s.ProposedChange, ctx: s.SafetyContext, passed: bool, reason_part: str
) -> None:
    check_rule(rule, chg, ctx, passed, reason_part)


def test_a_knob_whose_current_value_is_unknown_is_not_a_capacity_only_change() -> None:
    assert s.adds_capacity_only(change({"replicas": 2}, {"replicas": 3}))
    assert not s.adds_capacity_only(change({"replicas": 2}, {"replicas": 3, "cpu_request": 1.0}))
    assert not s.adds_capacity_only(change({"replicas": 2}, {"replicas": 2}))
    assert not s.remedy_now(change({"replicas": 2}, {"replicas": 3, "cpu_request": 1.0}), BROKEN)
    assert s.is_remedy(change({"cpu_request": 1.0}, {"cpu_request": 0.4}, kind="rollback"))


def test_validator_lets_a_flash_crowd_remedy_through_in_one_step_and_says_why() -> None:
    # A minute after the last change, the hour's budget spent, the SLO broken: 2 -> 8 replicas.
    ctx = BROKEN.model_copy(update={"last_change_at": NOW - 60, "recent_change_times": SPENT_HOUR})
    result = s.validate(BIG_UP, POLICY, ctx)
    assert result.accepted
    why = {v.rule: v.reason for v in result.verdicts}
    assert all(REMEDY in why[r] for r in ("maxStep", "cooldown", "changeBudget"))
    assert result.remedy_exemptions() == ["maxStep", "cooldown", "changeBudget"]
    # The same change while the SLO holds is refused by each of those three rules.
    held = s.validate(BIG_UP, POLICY, ctx.model_copy(update={"slo_met_now": True}))
    assert {r.split(":")[0] for r in held.reasons()} == {"maxStep", "cooldown", "changeBudget"}


def test_validator_accepts_when_all_rules_pass_and_reports_every_rule() -> None:
    result = s.validate(UP, POLICY, GOOD_CTX)
    assert result.accepted
    assert [v.rule for v in result.verdicts] == [
        "ownership",
        "nonEmpty",
        "bounds",
        "maxStep",
        "cooldown",
        "changeBudget",
        "sloGuard",
        "confidence",
        "pdbHeadroom",
        "anomalyFreeze",
    ]


def test_validator_collects_all_rejections() -> None:
    ctx = GOOD_CTX.model_copy(update={"confidence": 0.1, "last_change_at": NOW - 10})
    result = s.validate(change({"replicas": 2}, {"replicas": 20}), POLICY, ctx)
    assert not result.accepted
    assert {r.split(":")[0] for r in result.reasons()} == {"bounds", "maxStep", "cooldown", "confidence"}


def test_rule_that_raises_fails_closed() -> None:
    def broken(c: s.ProposedChange, p: s.SafetyPolicy, x: s.SafetyContext) -> s.RuleVerdict:
        raise ZeroDivisionError("boom")

    result = s.validate(UP, POLICY, GOOD_CTX, rules=(s.ownership, broken))
    assert not result.accepted
    assert result.verdicts[1] == s.RuleVerdict(rule="broken", passed=False, reason="could not evaluate: boom")


def test_no_rules_rejects() -> None:
    assert not s.validate(UP, POLICY, GOOD_CTX, rules=()).accepted


def test_models_round_trip_json() -> None:
    result = s.validate(UP, POLICY, GOOD_CTX)
    assert s.SafetyResult.model_validate_json(result.model_dump_json()) == result
