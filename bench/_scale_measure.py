"""One measurement window of the scale bench: what is read at its start and end, and the figures.

Read at both ends: the operator's /metrics (counters and the pass-lag histogram), utime+stime of
the operator and of the apiserver, Prometheus and the synthetic exporter (their CPU is the
machine's share the operator did not get). During it: the operator's RSS every RSS_EVERY_S. After
it: each loop's status as listed, and the pass starts and watch events the outside watch saw.
"""

from __future__ import annotations

import json
import os
import threading
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Final

from autoloop.api.common import StatusBase
from autoloop.api.optimizationloop import OptimizationLoopStatus
from autoloop.engines.loop import MAX_HISTORY
from bench import _scale_figures as fig
from bench._scale_watch import Seen
from bench._soak_cluster import rss_mib

RSS_EVERY_S: Final = 5.0
LOOP_KIND: Final = "OptimizationLoop"
WAITING_RETRY_S: Final = 15.0
"""The operator retries a Waiting or Error loop this soon (`operator.wiring.WAITING_RETRY`)."""
TICKS_PER_SECOND: Final = float(os.sysconf("SC_CLK_TCK"))
DECISION_LIMIT: Final = StatusBase.HISTORY_LIMIT
"""Decisions a status keeps (`api.common.StatusBase.HISTORY_LIMIT`)."""
SATURATED_PASSES: Final = MAX_HISTORY
"""A loop's status stops growing once its engine history is full: one experience row per pass,
the last MAX_HISTORY kept. Status sizes are also reported over the loops that ran this many."""


def metrics_port(pid: int) -> int:
    """The --metrics-port the operator process was started with (OperatorRunner picks a free one
    and keeps only the liveness URL)."""
    args = Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0")
    return int(args[args.index(b"--metrics-port") + 1])


def scrape(url: str) -> fig.Samples:
    with urllib.request.urlopen(url, timeout=30) as response:
        return fig.parse_exposition(response.read().decode())


def ticks(pid: int | None) -> int | None:
    if pid is None:
        return None
    try:
        return fig.stat_ticks(Path(f"/proc/{pid}/stat").read_text())
    except (OSError, ValueError, IndexError):
        return None


def run_and_wait(pid: int) -> tuple[int, int] | None:
    """Nanoseconds on a CPU and waiting for one, summed over the process's threads now."""
    run_ns = wait_ns = 0
    try:
        tasks = list(Path(f"/proc/{pid}/task").iterdir())
    except OSError:
        return None
    for task in tasks:
        try:
            r, w = fig.schedstat((task / "schedstat").read_text())
        except (OSError, ValueError):
            continue  # a thread that ended meanwhile
        run_ns, wait_ns = run_ns + r, wait_ns + w
    return run_ns, wait_ns


@dataclass
class Window:
    """Start and end readings of one window; `others` are the pids of the dev components."""

    pid: int
    metrics_url: str
    others: dict[str, int | None]
    began: float = 0.0
    ended: float = 0.0
    before: fig.Samples = field(default_factory=dict)
    after: fig.Samples = field(default_factory=dict)
    ticks_before: dict[str, int | None] = field(default_factory=dict)
    ticks_after: dict[str, int | None] = field(default_factory=dict)
    rss: list[float] = field(default_factory=list)
    sched_before: tuple[int, int] | None = None
    sched_after: tuple[int, int] | None = None

    def pids(self) -> dict[str, int | None]:
        return {"operator": self.pid, **self.others}

    def start(self, now: float) -> None:
        self.before = scrape(self.metrics_url)
        self.ticks_before = {k: ticks(p) for k, p in self.pids().items()}
        self.sched_before = run_and_wait(self.pid)
        self.began = now

    def sample_until(self, stop: threading.Event) -> None:
        while True:
            value = rss_mib(self.pid)
            if value is not None:
                self.rss.append(value)
            if stop.wait(RSS_EVERY_S):
                return

    def end(self, now: float) -> None:
        self.after = scrape(self.metrics_url)
        self.ticks_after = {k: ticks(p) for k, p in self.pids().items()}
        self.sched_after = run_and_wait(self.pid)
        self.ended = now

    def waiting_for_cpu(self) -> float | None:
        """Mean number of the operator's threads runnable but not running over the window (time
        waiting for a CPU / window): a machine too busy to run it, as opposed to the operator's
        own work."""
        if self.sched_before is None or self.sched_after is None or self.ended <= self.began:
            return None
        return round((self.sched_after[1] - self.sched_before[1]) / 1e9 / (self.ended - self.began), 3)

    def cores(self) -> dict[str, float | None]:
        out: dict[str, float | None] = {}
        for name in self.pids():
            a, b = self.ticks_before.get(name), self.ticks_after.get(name)
            out[name] = (
                None
                if a is None or b is None
                else round(
                    fig.cpu_cores(a, b, seconds=self.ended - self.began, ticks_per_second=TICKS_PER_SECOND), 3
                )
            )
        return out


def wire_bytes(value: Any) -> int:
    """Bytes of `value` as JSON the way the apiserver stores and sends it (no spaces)."""
    return len(json.dumps(value, separators=(",", ":")))


def status_bytes(items: list[dict[str, Any]]) -> dict[str, int]:
    """namespace/name -> wire bytes of each listed loop's status: what every status write sends
    to each watcher (on top of the spec and metadata)."""
    return {
        f"{item['metadata']['namespace']}/{item['metadata']['name']}": wire_bytes(item.get("status") or {})
        for item in items
    }


def field_bytes(items: list[dict[str, Any]]) -> dict[str, float | None]:
    """p99 over the listed loops of each status field's JSON size (0 where a loop lacks it): what
    makes a status large."""
    statuses = [item.get("status") or {} for item in items]
    keys = sorted({k for st in statuses for k in st})
    return {
        k: _r(fig.quantile([float(wire_bytes(st[k])) if k in st else 0.0 for st in statuses], 0.99), 0)
        for k in keys
    }


def decision_figures(items: list[dict[str, Any]], *, limit: int) -> dict[str, Any]:
    """Decisions held per loop, bytes per decision, and the status each loop would have once it
    has decided `limit` times, which a window of a few passes does not reach: its newest decision
    recorded `limit` more times and the status cut to its budget, by the operator's own code
    (`OptimizationLoopStatus.record` and `fit_to_budget`)."""
    held: list[float] = []
    each: list[float] = []
    rest: list[float] = []
    projected: list[float] = []
    for item in items:
        status = item.get("status") or {}
        decisions = status.get("decisions") or []
        held.append(float(len(decisions)))
        each.extend(float(wire_bytes(d)) for d in decisions)
        rest.append(float(wire_bytes({k: v for k, v in status.items() if k != "decisions"})))
        if decisions:
            projected.append(float(full_history_bytes(status, limit=limit)))
    return {
        "decisions_per_loop": fig.spread(held),
        "decision_bytes_p99": _r(fig.quantile(each, 0.99), 0),
        "status_bytes_without_decisions_p99": _r(fig.quantile(rest, 0.99), 0),
        "status_bytes_projected_full_decisions": _r(fig.quantile(projected, 0.99), 0),
    }


def full_history_bytes(status: dict[str, Any], *, limit: int) -> int:
    """The size of `status` after `limit` more decisions like its newest, as a pass writes it."""
    st = OptimizationLoopStatus.model_validate(status)
    newest = st.decisions[-1]
    for i in range(limit):
        st.record(newest.model_copy(update={"id": f"{newest.id}-{i}"}))
    st.fit_to_budget()
    return st.json_bytes()


def _r(value: float | None, digits: int = 2) -> float | None:
    return None if value is None else round(value, digits)


def worst(*values: float | None) -> float | None:
    """The larger of two measurements of one quantity: the operator's histogram (late by up to
    1.5 s by construction: it counts from lastRunTime, cut to whole seconds, plus its interval
    less 0.5 s, and a p99 in its top bucket is that bucket's bound) and the outside one (+-1 s)."""
    known = [v for v in values if v is not None]
    return max(known) if known else None


def figures(
    w: Window, seen: Seen, statuses: list[dict[str, Any]], *, loops: int, interval: float
) -> dict[str, Any]:
    """Everything reported for one size."""
    d = fig.delta(w.before, w.after)
    passes = fig.total(d, "autoloop_reconcile_total", kind=LOOP_KIND)
    requests = fig.verbs(d, "autoloop_apiserver_requests_total")
    sent = fig.verbs(d, "autoloop_apiserver_request_bytes_total")
    written = sum(v for k, v in sent.items() if k in fig.WRITE_VERBS)
    lag_buckets = fig.buckets(d, "autoloop_pass_lag_seconds", kind=LOOP_KIND)
    step = {"kind": LOOP_KIND, "step": "pass"}
    pass_buckets = fig.buckets(d, "autoloop_step_duration_seconds", **step)
    pass_seconds = fig.total(d, "autoloop_step_duration_seconds_sum", **step)
    pass_count = fig.total(d, "autoloop_step_duration_seconds_count", **step)
    runs, events = seen.snapshot()
    outside = [
        lag
        for loop_runs in runs.values()
        for lag in fig.lags(loop_runs, interval=interval, retry=WAITING_RETRY_S, window=(w.began, w.ended))
    ]
    in_window = [size for t, size in events if w.began <= t <= w.ended]
    by_loop = status_bytes(statuses)
    sizes = fig.spread(by_loop.values())
    full = fig.spread(v for k, v in by_loop.items() if len(runs.get(k, ())) >= SATURATED_PASSES)
    seconds = w.ended - w.began
    operator_cores = w.cores()["operator"]
    cpu_per_pass = None if operator_cores is None else fig.per_pass(operator_cores * seconds * 1000.0, passes)
    return {
        "loops": loops,
        "interval_s": interval,
        "window_s": round(seconds, 1),
        "passes": int(passes),
        "passes_expected": round(loops * seconds / interval, 1),
        "lag_p99_s": _r(worst(fig.histogram_quantile(0.99, lag_buckets), fig.quantile(outside, 0.99))),
        "lag_histogram_p50_s": _r(fig.histogram_quantile(0.5, lag_buckets)),
        "lag_histogram_p99_s": _r(fig.histogram_quantile(0.99, lag_buckets)),
        "lag_histogram_top_s": lag_buckets[-2][0] if len(lag_buckets) > 1 else None,
        "lag_outside_p50_s": _r(fig.quantile(outside, 0.5)),
        "lag_outside_p99_s": _r(fig.quantile(outside, 0.99)),
        "lag_outside_max_s": _r(max(outside) if outside else None),
        "lag_outside_passes": len(outside),
        "rss_mib": _r(max(w.rss) if w.rss else None, 1),
        "rss_start_mib": _r(w.rss[0] if w.rss else None, 1),
        "rss_end_mib": _r(w.rss[-1] if w.rss else None, 1),
        "cpu_cores": w.cores(),
        "operator_threads_waiting_for_cpu": w.waiting_for_cpu(),
        "operator_cpu_ms_per_pass": _r(cpu_per_pass, 1),
        "pass_seconds_mean": _r(fig.per_pass(pass_seconds, pass_count), 3),
        "pass_seconds_p50": _r(fig.histogram_quantile(0.5, pass_buckets), 3),
        "pass_seconds_p99": _r(fig.histogram_quantile(0.99, pass_buckets), 3),
        "apiserver_requests_per_pass": _r(fig.per_pass(sum(requests.values()), passes)),
        "apiserver_requests_by_verb": {k: int(v) for k, v in sorted(requests.items())},
        "apiserver_bytes_written_per_pass": _r(fig.per_pass(written, passes), 0),
        "prometheus_queries_per_pass": _r(
            fig.per_pass(fig.total(d, "autoloop_prometheus_queries_total"), passes)
        ),
        "status_bytes_p50": _r(sizes["p50"], 0),
        "status_bytes_p99": _r(sizes["p99"], 0),
        "status_bytes_max": sizes["max"],
        "status_bytes_saturated_p99": _r(full["p99"], 0),
        "status_bytes_saturated_max": full["max"],
        "saturated_loops": sum(1 for k in by_loop if len(runs.get(k, ())) >= SATURATED_PASSES),
        "passes_seen_per_loop": fig.spread(float(len(runs.get(k, ()))) for k in by_loop),
        **decision_figures(statuses, limit=DECISION_LIMIT),
        "status_field_bytes_p99": field_bytes(statuses),
        "watch_event_bytes_per_pass": _r(fig.per_pass(float(sum(in_window)), passes), 0),
        "watch_events": len(in_window),
        "pass_results": {
            dict(labels).get("result", ""): int(v)
            for (name, labels), v in d.items()
            if name == "autoloop_reconcile_total" and dict(labels).get("kind") == LOOP_KIND and v
        },
        "watch_errors": seen.errors,
    }
