"""Plain-text reports for a person at a terminal: `autoloop explain` and `autoloop analyze`.

Pure functions from a resource (as the apiserver returns it) to text, so they are easy to test.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from datetime import UTC, datetime, timedelta
from typing import Any, Final

from autoloop.api.common import parse_quantity, parse_time

SPARK_CHARS: Final = "▁▂▃▄▅▆▇█"
UNITS: Final = {
    "LatencyP95": "seconds",
    "LatencyP99": "seconds",
    "ErrorRatio": "ratio",
    "CPUUtilization": "ratio",
    "MemoryUtilization": "ratio",
    "Cost": "cost",
    "Throughput": "rate",
}
"""The unit of each built-in metric's value; a user's PromQL has none we can know."""
ENGINE_UNITS: Final = {
    "latency_p95": "seconds",
    "error_ratio": "ratio",
    "utilisation": "ratio",
    "setpoint": "ratio",
    "ready_fraction": "ratio",
    "cpu_per_pod": "cores",
    "cpu_cores": "cores",
    "cpuCores": "cores",
    "memory_per_pod": "bytes",
    "memory_floor": "bytes",
    "memoryBytes": "bytes",
    "rps": "rate",
    "rps_recent": "rate",
    "rps_mean": "rate",
    "rps_upper": "rate",
    "at": "time",
}
"""The units of the values the engines record in a decision (saw, predicted, measured)."""


def human_value(value: float, unit: str | None) -> str:
    """A measured value as a person reads it: `85 ms`, `0.4 %`, `0.132/h`."""
    if not math.isfinite(value):
        return str(value)
    if unit == "seconds":
        return f"{value:.2f} s" if value >= 10 else f"{value * 1000:.3g} ms"
    if unit == "ratio":
        return f"{value * 100:.3g} %"
    if unit == "cost":
        return f"{value:.3g}/h"
    if unit == "rate":
        return f"{value:.3g}/s"
    if unit == "cores":
        return f"{value:.3g} core" + ("" if value == 1 else "s")
    if unit == "bytes":
        return f"{value / 2**30:.3g}Gi" if value >= 2**30 else f"{value / 2**20:.3g}Mi"
    if unit == "time":
        return datetime.fromtimestamp(value, UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
    return f"{value:.4g}"


def human_setting(knob: str, value: Any) -> str:
    """A knob's value in the units people use: `4 replicas`, `0.25 cores`, `1.5Gi`."""
    try:
        if knob == "cpu":
            cores = parse_quantity(value)
            return f"{cores:.3g} core" + ("" if cores == 1 else "s")
        if knob == "memory":
            size = parse_quantity(value)
            return f"{size / 2**30:.3g}Gi" if size >= 2**30 else f"{size / 2**20:.3g}Mi"
    except ValueError:
        return str(value)
    if knob == "replicas":
        return f"{value} replica" + ("" if str(value) == "1" else "s")
    return str(value)


def sparkline(values: Sequence[float], *, width: int = 60) -> str:
    """A one-line chart of a series (NaN shown as a space), resampled to `width` characters."""
    finite = [v for v in values if math.isfinite(v)]
    if not finite:
        return ""
    if len(values) > width:
        step = len(values) / width
        values = [values[int(i * step)] for i in range(width)]
    lo, hi = min(finite), max(finite)
    span = hi - lo or 1.0
    return "".join(
        SPARK_CHARS[min(len(SPARK_CHARS) - 1, int((v - lo) / span * len(SPARK_CHARS)))]
        if math.isfinite(v)
        else " "
        for v in values
    )


def _table(rows: list[list[str]]) -> str:
    if not rows:
        return ""
    widths = [max(len(r[i]) for r in rows) for i in range(len(rows[0]))]
    return "\n".join("  ".join(c.ljust(w) for c, w in zip(r, widths, strict=True)).rstrip() for r in rows)


def _settings(s: dict[str, Any] | None) -> str:
    if not s:
        return "-"
    return ", ".join(human_setting(k, v) for k, v in s.items())


def _values(values: dict[str, float] | None, units: dict[str, str]) -> str:
    if not values:
        return "-"
    return ", ".join(f"{k} {human_value(v, units.get(k, ENGINE_UNITS.get(k)))}" for k, v in values.items())


def _units(spec: dict[str, Any]) -> dict[str, str]:
    """Objective name -> unit of its built-in metric."""
    return {
        o["name"]: UNITS[o["metric"]]
        for o in spec.get("objectives", [])
        if isinstance(o, dict) and "name" in o and o.get("metric") in UNITS
    }


def _change_budget(spec: dict[str, Any], status: dict[str, Any], now: datetime) -> str:
    """The applied changes the budgets count now, next to the budgets themselves."""
    safety = spec.get("safety", {})
    times = [parse_time(t) for t in status.get("recentChangeTimes", [])]
    hour = sum(1 for t in times if now - t < timedelta(hours=1))
    day = sum(1 for t in times if now - t < timedelta(days=1))
    daily = safety.get("maxChangesPerDay")
    return (
        f"changes: last {status.get('lastChangeTime', 'never')}; {hour} in the last hour "
        f"(max {safety.get('maxChangesPerHour', 4)}), {day} in the last 24h"
        + (f" (max {daily})" if daily else "")
    )


def explain(obj: dict[str, Any], *, decisions: int = 10, now: datetime | None = None) -> str:
    """What an OptimizationLoop saw, proposed, what safety said and what happened after."""
    meta, spec, status = obj.get("metadata", {}), obj.get("spec", {}), obj.get("status", {})
    target = spec.get("targetRef", {})
    units = _units(spec)
    lines = [
        f"{obj.get('kind', 'OptimizationLoop')} {meta.get('namespace')}/{meta.get('name')}"
        f" → {target.get('kind', 'Deployment')}/{target.get('name')}  mode={spec.get('mode', 'Recommend')}"
        f"  phase={status.get('phase', '-')}",
        f"message: {status.get('message', '-')}",
        "",
        "conditions:",
        _table(
            [["TYPE", "STATUS", "REASON", "MESSAGE"]]
            + [
                [c["type"], c["status"], c["reason"], c.get("message", "")[:90]]
                for c in status.get("conditions", [])
            ]
        ),
        "",
        f"baseline: {_settings(status.get('baseline'))}",
        f"current:  {_settings(status.get('current'))}",
        f"observed: {_values(status.get('observed'), units)}",
        "improvement vs baseline: "
        + (", ".join(f"{k} {v:+.1f} %" for k, v in (status.get("improvement") or {}).items()) or "-"),
        f"model: {status.get('modelVersion', '-')}",
        _change_budget(spec, status, now or datetime.now(UTC)),
    ]
    rec = status.get("recommendation")
    if rec:
        lines.append(
            f"recommendation {rec['decisionId']}: {_settings(rec.get('settings'))}"
            + (
                " (approved)"
                if rec.get("approved")
                else f" — approve: kubectl annotate oloop {meta.get('name')} autoloop.x0tta6bl4.io/approve={rec['decisionId']}"
            )
        )
    history = status.get("decisions", [])[-decisions:]
    lines += ["", f"last {len(history)} decisions (newest last):"]
    for d in history:
        lines.append(
            f"- {d['time']} {d['action']} {d['id']}: {_settings(d.get('current'))} → {_settings(d.get('proposed'))}"
        )
        if d.get("observed"):
            lines.append(f"    saw: {_values(d['observed'], units)}")
        if d.get("predicted"):
            lines.append(f"    predicted: {_values(d['predicted'], units)}")
        verdicts = d.get("verdicts", [])
        failed = [v for v in verdicts if not v["passed"]]
        exempt = [v for v in verdicts if v["passed"] and "exempt" in v.get("reason", "")]
        rules = len(verdicts) + len(d.get("passedRules", []))
        if rules:
            said = failed or exempt
            lines.append(
                "    safety: "
                + (
                    "; ".join(f"{v['rule']}: {v['reason']}" for v in said)
                    if said
                    else f"all {rules} rules passed"
                )
                + (f" (the other {rules - len(said)} passed)" if said and not failed else "")
            )
        if d.get("measured"):
            lines.append(f"    measured: {_values(d['measured'], units)}")
        if d.get("explanation"):
            lines.append(f"    why: {d['explanation'][:300]}")
    return "\n".join(lines)


def _conditions(status: dict[str, Any]) -> str:
    return _table(
        [["TYPE", "STATUS", "REASON", "MESSAGE"]]
        + [
            [c["type"], c["status"], c["reason"], c.get("message", "")[:90]]
            for c in status.get("conditions", [])
        ]
    )


def _header(obj: dict[str, Any]) -> list[str]:
    meta, spec, status = obj.get("metadata", {}), obj.get("spec", {}), obj.get("status", {})
    where = f"{meta['namespace']}/{meta.get('name')}" if meta.get("namespace") else str(meta.get("name"))
    return [
        f"{obj.get('kind')} {where}  mode={spec.get('mode', 'Recommend')}  phase={status.get('phase', '-')}",
        f"message: {status.get('message', '-')}",
        "",
        "conditions:",
        _conditions(status),
        "",
    ]


def explain_allocation(obj: dict[str, Any]) -> str:
    """What a ResourceAllocation decided for each workload, at what cost against its budget."""
    spec, status = obj.get("spec", {}), obj.get("status", {})
    budget = (spec.get("budget") or {}).get("maxCostPerHour")
    cost = status.get("costPerHour")
    solver = status.get("solver") or {}
    lines = _header(obj)
    lines.append(
        f"cost: {human_value(cost, 'cost') if cost is not None else '-'} of a budget of "
        f"{human_value(budget, 'cost') if budget is not None else '-'}; SLA score "
        f"{status.get('slaScore', '-')}; solver {solver.get('name', '-')}"
        + (f" in {solver['seconds']:.2f} s" if solver.get("seconds") is not None else "")
        + (f", gap {solver['gap'] * 100:.2g} %" if solver.get("gap") is not None else "")
    )
    rows = [["WORKLOAD", "REPLICAS", "CPU / POD", "MEMORY / POD"]]
    for a in status.get("allocations", []):
        rows.append(
            [
                a["name"],
                f"{a.get('currentReplicas', '?')} → {a['replicas']}",
                f"{human_setting('cpu', a.get('currentCpu', '?'))} → {human_setting('cpu', a['cpu'])}",
                f"{human_setting('memory', a.get('currentMemory', '?'))} → {human_setting('memory', a['memory'])}",
            ]
        )
    lines += ["", "allocation (current → decided):", _table(rows) if len(rows) > 1 else "  none yet"]
    return "\n".join(lines)


def explain_plan(obj: dict[str, Any]) -> str:
    """A MaintenancePlan's predictions, its schedule and what each node went through."""
    status = obj.get("status", {})
    lines = _header(obj)
    lines.append(f"next window: {status.get('nextWindow', '-')}; solver {status.get('solver', '-')}")
    risks = [
        [r["node"], f"{r['probability'] * 100:.0f} %", "; ".join(r.get("reasons", []))[:80]]
        for r in status.get("predictions", [])[:10]
    ]
    lines += [
        "",
        "predicted risk (riskiest first):",
        _table([["NODE", "RISK", "WHY"], *risks]) if risks else "  none",
    ]
    slots = [[s["node"], s["start"], s["end"], s.get("reason", "")[:60]] for s in status.get("schedule", [])]
    lines += [
        "",
        "schedule:",
        _table([["NODE", "START", "END", "WHY"], *slots]) if slots else "  nothing scheduled",
    ]
    steps = [
        [e["node"], e["step"], e.get("startedAt", "-"), str(e.get("evicted", 0)), e.get("message", "")[:60]]
        for e in status.get("progress", [])
    ]
    lines += [
        "",
        "progress:",
        _table([["NODE", "STEP", "STARTED", "EVICTED", "MESSAGE"], *steps]) if steps else "  no node started",
    ]
    routes = [
        [
            r["route"],
            r["phase"],
            _weights(r.get("original")),
            _weights(r.get("applied") or r.get("target")),
            r.get("message", "")[:60],
        ]
        for r in status.get("routes", [])
    ]
    if routes:
        lines += [
            "",
            "routing (weights before -> now):",
            _table([["ROUTE", "PHASE", "BEFORE", "NOW", "WHY"], *routes]),
        ]
    return "\n".join(lines)


def _weights(backends: list[dict[str, Any]] | None) -> str:
    """A route's weights as `a=50 b=50` (Service names, rule-local)."""
    return (
        " ".join(f"{b['service'].rpartition('/')[2] or b['index']}={b['weight']}" for b in backends or [])
        or "-"
    )


def explain_any(obj: dict[str, Any], *, decisions: int = 10) -> str:
    """`autoloop explain` for any of the three kinds."""
    kind = obj.get("kind")
    if kind == "ResourceAllocation":
        return explain_allocation(obj)
    if kind == "MaintenancePlan":
        return explain_plan(obj)
    return explain(obj, decisions=decisions)


def analysis(obj: dict[str, Any], series: Mapping[str, Sequence[float]] | None = None) -> str:
    """The latest anomalies and root-cause ranking of a loop, with sparklines of the key series."""
    meta, status = obj.get("metadata", {}), obj.get("status", {})
    lines = [f"analysis of {meta.get('namespace')}/{meta.get('name')}"]
    anomalies = status.get("anomalies", [])
    lines += ["", f"anomalies ({len(anomalies)}):"]
    lines.append(
        _table(
            [["SERVICE", "METRIC", "DIR", "SHAPE", "Z", "DEMAND?", "HARMLESS?", "SEVERITY"]]
            + [
                [
                    a.get("service", ""),
                    a.get("metric", ""),
                    a.get("direction", ""),
                    a.get("shape", ""),
                    f"{a.get('peak_z', 0):+.1f}",
                    "yes" if a.get("explained_by_load") else "no",
                    "yes" if a.get("benign") else "no",
                    a.get("severity", ""),
                ]
                for a in anomalies
            ]
        )
        if anomalies
        else "  none"
    )
    result = status.get("analysis") or {}
    causes = result.get("causes", [])
    lines += ["", "root causes (ranked):"]
    if causes:
        lines.append(
            _table(
                [["#", "SERVICE", "METRIC", "FAULT", "CONFIDENCE", "ACTION"]]
                + [
                    [
                        str(c.get("rank", i + 1)),
                        c["service"],
                        c.get("metric", ""),
                        c.get("fault_type", ""),
                        f"{c.get('confidence', 0):.2f}",
                        c.get("action", ""),
                    ]
                    for i, c in enumerate(causes)
                ]
            )
        )
        top = causes[0]
        lines += ["", f"top cause: {top.get('explanation', '')}", "evidence:"]
        lines += [f"  - {e}" for e in top.get("evidence", [])]
    else:
        lines.append(f"  {result.get('explanation', 'no analysis yet')}")
    for name, values in (series or {}).items():
        finite = [v for v in values if math.isfinite(v)]
        if finite:
            lines.append(f"{name:<28} {sparkline(values)}  [{min(finite):.4g} .. {max(finite):.4g}]")
    return "\n".join(lines)
