"""The scale bench's arithmetic (bench._scale_figures, bench._scale_measure): no cluster, worked values in comments."""

from __future__ import annotations

import pytest

from autoloop.api.optimizationloop import OptimizationLoopStatus
from bench import _scale_figures as fig
from bench._scale_measure import decision_figures

SCRAPE_BEFORE = """\
# TYPE autoloop_reconcile_total counter
autoloop_reconcile_total{kind="OptimizationLoop",result="ok"} 10.0
autoloop_reconcile_total{kind="ResourceAllocation",result="ok"} 4.0
# TYPE autoloop_apiserver_requests_total counter
autoloop_apiserver_requests_total{verb="GET"} 30.0
autoloop_apiserver_requests_total{verb="PATCH"} 20.0
# TYPE autoloop_pass_lag_seconds histogram
autoloop_pass_lag_seconds_bucket{kind="OptimizationLoop",le="0.5"} 5.0
autoloop_pass_lag_seconds_bucket{kind="OptimizationLoop",le="1.0"} 8.0
autoloop_pass_lag_seconds_bucket{kind="OptimizationLoop",le="+Inf"} 10.0
autoloop_pass_lag_seconds_count{kind="OptimizationLoop"} 10.0
autoloop_pass_lag_seconds_sum{kind="OptimizationLoop"} 6.0
"""

SCRAPE_AFTER = """\
# TYPE autoloop_reconcile_total counter
autoloop_reconcile_total{kind="OptimizationLoop",result="ok"} 108.0
autoloop_reconcile_total{kind="OptimizationLoop",result="conflict"} 2.0
autoloop_reconcile_total{kind="ResourceAllocation",result="ok"} 9.0
# TYPE autoloop_apiserver_requests_total counter
autoloop_apiserver_requests_total{verb="GET"} 330.0
autoloop_apiserver_requests_total{verb="PATCH"} 220.0
autoloop_apiserver_requests_total{verb="POST"} 5.0
# TYPE autoloop_pass_lag_seconds histogram
autoloop_pass_lag_seconds_bucket{kind="OptimizationLoop",le="0.5"} 55.0
autoloop_pass_lag_seconds_bucket{kind="OptimizationLoop",le="1.0"} 98.0
autoloop_pass_lag_seconds_bucket{kind="OptimizationLoop",le="+Inf"} 110.0
autoloop_pass_lag_seconds_count{kind="OptimizationLoop"} 110.0
autoloop_pass_lag_seconds_sum{kind="OptimizationLoop"} 66.0
"""


def window() -> fig.Samples:
    return fig.delta(fig.parse_exposition(SCRAPE_BEFORE), fig.parse_exposition(SCRAPE_AFTER))


def test_deltas_count_only_the_window_and_the_kind_asked_for() -> None:
    d = window()
    # OptimizationLoop: ok 108 - 10 = 98, conflict 2 - 0 (absent before) = 2.
    assert fig.total(d, "autoloop_reconcile_total", kind="OptimizationLoop") == 100.0
    assert fig.total(d, "autoloop_reconcile_total", kind="ResourceAllocation") == 5.0
    assert fig.verbs(d, "autoloop_apiserver_requests_total") == {"GET": 300.0, "PATCH": 200.0, "POST": 5.0}


def test_requests_per_pass_over_the_window() -> None:
    d = window()
    passes = fig.total(d, "autoloop_reconcile_total", kind="OptimizationLoop")
    # (300 + 200 + 5) requests over 100 passes.
    assert fig.per_pass(sum(fig.verbs(d, "autoloop_apiserver_requests_total").values()), passes) == 5.05
    assert fig.per_pass(12.0, 0.0) is None


def test_histogram_buckets_of_the_window() -> None:
    # 55-5, 98-8, 110-10.
    assert fig.buckets(window(), "autoloop_pass_lag_seconds", kind="OptimizationLoop") == [
        (0.5, 50.0),
        (1.0, 90.0),
        (float("inf"), 100.0),
    ]


@pytest.mark.parametrize(
    ("q", "expected"),
    [
        # rank 50 of 100 is the top of the first bucket: 0 + 0.5 * 50/50.
        (0.5, 0.5),
        # rank 25: halfway through the first bucket [0, 0.5].
        (0.25, 0.25),
        # rank 70: 20 of the 40 in (0.5, 1.0] -> 0.5 + 0.5 * 20/40.
        (0.7, 0.75),
        # rank 99 lies in the +Inf bucket: the largest finite bound, as Prometheus answers.
        (0.99, 1.0),
    ],
)
def test_histogram_quantile_interpolates_like_prometheus(q: float, expected: float) -> None:
    cumulative = [(0.5, 50.0), (1.0, 90.0), (float("inf"), 100.0)]
    assert fig.histogram_quantile(q, cumulative) == pytest.approx(expected)


def test_histogram_quantile_of_nothing_is_none() -> None:
    assert fig.histogram_quantile(0.99, []) is None
    assert fig.histogram_quantile(0.99, [(1.0, 0.0), (float("inf"), 0.0)]) is None


def test_histogram_quantile_skips_empty_buckets() -> None:
    # All 10 observations in (2.5, 5]: rank 9.9 -> 2.5 + 2.5 * 9.9/10.
    cumulative = [(1.0, 0.0), (2.5, 0.0), (5.0, 10.0), (float("inf"), 10.0)]
    assert fig.histogram_quantile(0.99, cumulative) == pytest.approx(4.975)


def test_lags_from_pass_starts() -> None:
    runs = [
        fig.Run(at=1000.0, phase="Ready"),
        fig.Run(at=1061.0, phase="Ready"),  # due 1060: 1 s late
        fig.Run(at=1121.0, phase="Waiting"),  # due 1121: on time
        fig.Run(at=1139.0, phase="Ready"),  # after Waiting the retry is 15 s: due 1136, 3 s late
        fig.Run(at=1199.0, phase="Ready"),  # due 1199
    ]
    assert fig.lags(runs, interval=60.0, retry=15.0, window=(0.0, 2000.0)) == [1.0, 0.0, 3.0, 0.0]


def test_lags_count_only_passes_started_in_the_window_and_each_start_once() -> None:
    runs = [
        fig.Run(at=1000.0, phase="Ready"),
        fig.Run(at=1065.0, phase="Ready"),
        fig.Run(at=1065.0, phase="Ready"),  # the same pass seen twice (intent and final write)
        fig.Run(at=1130.0, phase="Ready"),
    ]
    # The pass at 1065 started before the window: only 1130 - 1065 - 60 = 5 counts.
    assert fig.lags(list(reversed(runs)), interval=60.0, retry=15.0, window=(1100.0, 1200.0)) == [5.0]


def test_quantile_and_spread() -> None:
    values = [float(v) for v in range(1, 101)]  # 1..100
    # position 0.99 * 99 = 98.01 -> 99 + 0.01 * (100 - 99).
    assert fig.quantile(values, 0.99) == pytest.approx(99.01)
    assert fig.spread([3.0, 1.0, 2.0]) == {"p50": 2.0, "p99": pytest.approx(2.98), "max": 3.0}
    assert fig.spread([]) == {"p50": None, "p99": None, "max": None}


def test_cpu_from_proc_stat() -> None:
    # Fields after "(name)": state is field 3, utime field 14 and stime field 15 of the whole line.
    line = "4242 (python3 -m x) S 1 4242 4242 0 -1 4194304 100 0 0 0 250 50 0 0 20 0 7 0 1 2 3"
    assert fig.stat_ticks(line) == 300
    # 300 more ticks at 100 per second over 10 s: 0.3 cores.
    assert fig.cpu_cores(1000, 1300, seconds=10.0, ticks_per_second=100.0) == pytest.approx(0.3)
    with pytest.raises(ValueError):
        fig.cpu_cores(0, 1, seconds=0.0, ticks_per_second=100.0)


def test_schedstat_reads_run_and_wait() -> None:
    assert fig.schedstat("978198 19221868 19\n") == (978198, 19221868)


def test_a_full_decision_list_is_projected_as_the_operator_cuts_it() -> None:
    decision = {"id": "d1", "time": "2026-12-07T10:00:00Z", "action": "Applied", "explanation": "x" * 1600}
    items = [{"status": {"phase": "Ready", "decisions": [decision]}}]
    figures = decision_figures(items, limit=20)
    base = figures["status_bytes_without_decisions_p99"]
    # 20 decisions of ~1.7 kB would be ~34 kB: older ones are compacted to ~300 B and the list kept
    # within its budget; the status as a whole is within the loop's.
    projected = figures["status_bytes_projected_full_decisions"]
    assert base + 1700 < projected <= base + OptimizationLoopStatus.DECISIONS_BUDGET_BYTES + 10
    assert projected <= (OptimizationLoopStatus.STATUS_BUDGET_BYTES or 0)
    # A status over the budget on its own is cut to it: its older decisions go first.
    big = {**items[0]["status"], "conditions": [], "engineState": {"z": "q" * 2500}}
    assert decision_figures([{"status": big}], limit=20)["status_bytes_projected_full_decisions"] <= (
        OptimizationLoopStatus.STATUS_BUDGET_BYTES or 0
    )
