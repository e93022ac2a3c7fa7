"""The scale bench's table for people: one column per size, one row per figure."""

from __future__ import annotations

from typing import Any, Final

ROWS: Final = (
    ("kept up", "kept_up"),
    ("warm-up s (loops run by its end)", ("warmup_s", "warmed_loops")),
    ("passes / expected", None),
    ("lag p99 s (worse of the two below)", "lag_p99_s"),
    (
        "lag p50 / p99 s (histogram; top bucket)",
        ("lag_histogram_p50_s", "lag_histogram_p99_s", "lag_histogram_top_s"),
    ),
    ("lag p50 / p99 / max s (lastRunTime)", ("lag_outside_p50_s", "lag_outside_p99_s", "lag_outside_max_s")),
    ("RSS max MiB", "rss_mib"),
    ("RSS window start / end MiB", ("rss_start_mib", "rss_end_mib")),
    ("operator CPU cores", None),
    ("operator CPU ms / pass", "operator_cpu_ms_per_pass"),
    ("operator threads waiting for a CPU", "operator_threads_waiting_for_cpu"),
    ("pass s mean / p50 / p99", ("pass_seconds_mean", "pass_seconds_p50", "pass_seconds_p99")),
    ("apiserver requests / pass", "apiserver_requests_per_pass"),
    ("apiserver bytes written / pass", "apiserver_bytes_written_per_pass"),
    ("Prometheus queries / pass", "prometheus_queries_per_pass"),
    ("status bytes p50 / p99 / max", ("status_bytes_p50", "status_bytes_p99", "status_bytes_max")),
    ("status bytes p99 / max, full history", ("status_bytes_saturated_p99", "status_bytes_saturated_max")),
    ("loops with full history", "saturated_loops"),
    ("decisions held per loop p50 / max", None),
    ("bytes per decision p99", "decision_bytes_p99"),
    ("status bytes with a full decision list", "status_bytes_projected_full_decisions"),
    ("watch event bytes / pass", "watch_event_bytes_per_pass"),
    ("apiserver / Prometheus / exporter cores", None),
)


def cell(r: dict[str, Any], label: str, key: str | tuple[str, ...] | None) -> str:
    cores = r.get("cpu_cores") or {}
    if label.startswith("passes"):
        return f"{r.get('passes')} / {r.get('passes_expected')}"
    if label == "operator CPU cores":
        return str(cores.get("operator"))
    if label.startswith("decisions held"):
        held = r.get("decisions_per_loop") or {}
        return f"{held.get('p50')} / {held.get('max')}"
    if key is None:
        return " / ".join(str(cores.get(k)) for k in ("kube-apiserver", "prometheus", "exporter"))
    keys = (key,) if isinstance(key, str) else key
    return " / ".join(str(r.get(k)) for k in keys)


def table(result: dict[str, Any]) -> None:
    sizes = list(result["by_size"].values())
    width = max(len(label) for label, _ in ROWS)
    print(f"{'loops'.ljust(width)}  " + "  ".join(f"{r['loops']:>22}" for r in sizes))
    for label, key in ROWS:
        print(f"{label.ljust(width)}  " + "  ".join(f"{cell(r, label, key):>22}" for r in sizes))
    for note in result["notes"]:
        print(f"  - {note}")
