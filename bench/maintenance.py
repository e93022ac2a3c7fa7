"""bench.maintenance: failure prediction on the fleet simulator and maintenance scheduling.

Full: the model trains on an 800-node fleet (the simulator is not the scarce part; more history
helped on the validation seeds 505/606) and is scored on a 400-node fleet from another seed.

Run `python -m bench.maintenance` (full) or `python -m bench.maintenance --quick` (smaller fleets,
same code path). Prints tables, then one JSON line with the headline keys.
"""

from __future__ import annotations

import argparse
import json
import math
import time

from bench import _maint_predict, _maint_schedule


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--quick", action="store_true", help="smaller fleets, under a minute")
    parser.add_argument("--train-seed", type=int, default=_maint_predict.TRAIN_SEED)
    parser.add_argument("--test-seed", type=int, default=_maint_predict.TEST_SEED)
    args = parser.parse_args()
    seeds = {"train_seed": args.train_seed, "test_seed": args.test_seed}
    began = time.perf_counter()
    if args.quick:
        pred = _maint_predict.run(n_nodes=150, days=24.0, split_day=16.0, **seeds)
        rows = _maint_schedule.run((50, 200, 1000), annealing_sizes=(50,), offsets=(0.0, 84.0))
    else:
        pred = _maint_predict.run(n_nodes=400, days=30.0, split_day=20.0, train_nodes=800, **seeds)
        rows = _maint_schedule.run(
            (50, 200, 1000), annealing_sizes=(50, 200, 1000), offsets=_maint_schedule.PLAN_OFFSETS_HOURS
        )

    print(
        f"prediction: test points {pred['points']:.0f}, positives {pred['positives']:.0f}, "
        f"failures scored {pred['failures']:.0f}"
    )
    print(f"{'method/set':<22}{'PR-AUC':>8}{'P@R.5':>8}{'P@R.8':>8}{'F1':>7}{'lead h':>8}{'detected':>9}")
    for key in ("model_all", "rule_all", "model_predictable", "rule_predictable"):
        s = pred[key]
        assert isinstance(s, _maint_predict.Scores)
        print(
            f"{key:<22}{s.pr_auc:>8.3f}{s.precision_at_recall_0_5:>8.3f}{s.precision_at_recall_0_8:>8.3f}"
            f"{s.f1:>7.3f}{s.median_lead_time_hours:>8.1f}{s.detected:>9.2f}"
        )
    lead = pred["model_all"]
    assert isinstance(lead, _maint_predict.Scores)
    print(
        f"median lead time {lead.median_lead_time_hours:.1f} h vs drain time {_maint_predict.DRAIN_HOURS:.2f} h;"
        f" model alarms at p >= {_maint_predict.ALERT_THRESHOLD}, the rule when predict_linear crosses 0"
    )
    print()
    print(
        f"{'nodes':>6} {'method':<16}{'seconds':>8}{'gap':>8}{'viol':>5}{'sched':>7}{'needed':>7}"
        f"{'E[unplanned]':>13}{'disruption':>11}"
    )
    for r in rows:
        print(
            f"{r.nodes:>6} {r.method:<16}{r.seconds:>8.2f}{r.gap:>8.4f}{r.hard_violations:>5}{r.scheduled:>7}"
            f"{r.needed:>7}{r.expected_unplanned:>13.2f}{r.disruption:>11.0f}"
        )
    print(f"\ntotal {time.perf_counter() - began:.1f}s")

    model_all, rule_all = pred["model_all"], pred["rule_all"]
    model_pred = pred["model_predictable"]
    assert isinstance(model_all, _maint_predict.Scores) and isinstance(rule_all, _maint_predict.Scores)
    assert isinstance(model_pred, _maint_predict.Scores)
    ours = {r.nodes: r for r in rows if r.method == "ours-CPSAT"}
    fifo = {r.nodes: r for r in rows if r.method == "kured-fifo"}
    reductions = [1.0 - ours[n].expected_unplanned / fifo[n].expected_unplanned for n in ours]
    headline = {
        "predictable_precision_at_recall_0_8": round(model_pred.precision_at_recall_0_8, 4),
        "pr_auc": round(model_all.pr_auc, 4),
        "pr_auc_ratio_vs_rule": round(model_all.pr_auc / max(rule_all.pr_auc, 1e-9), 3),
        "f1_ratio_vs_rule": round(model_all.f1 / max(rule_all.f1, 1e-9), 3),
        "median_lead_time_hours": round(model_all.median_lead_time_hours, 2),
        "schedule_seconds_1000": round(ours[1000].seconds, 2),
        "hard_violations": int(sum(r.hard_violations for r in rows if r.method.startswith("ours"))),
        "unplanned_failure_reduction_vs_fifo": round(min(reductions), 4) if reductions else math.nan,
    }
    print(json.dumps(headline))


if __name__ == "__main__":
    main()
