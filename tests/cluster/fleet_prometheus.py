"""A generated fleet whose failures the simulator prior does not know, served by a private Prometheus.

`precursor_fleet`: a PSU ripple signal (a user's `spec.prediction.signals` entry) rises for ~24 h
before each failure while the built-in node metrics stay healthy. `backfilled_prometheus` writes it
as node-exporter and kube-state-metrics series (the labels `maintenance_planning.node_queries` and
`ready_query` select on), backfills them with promtool and runs a Prometheus on them; the tests then
read it with the operator's own `PrometheusSource`. Needs only /usr/bin/prometheus and promtool.
"""

from __future__ import annotations

import json
import subprocess
import urllib.parse
import urllib.request
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Final

import numpy as np
import yaml

from autoloop.engines import failure
from tests.cluster import operator_process as opp

RIPPLE: Final = "node_psu_ripple_millivolts"
RIPPLE_QUERY: Final = 'max(node_psu_ripple_millivolts{instance="$node"})'
STEP: Final = 300.0
"""Seconds between generated samples, the operator's history step."""
HOUR: Final = 3600.0
PRECURSOR_HOURS: Final = 24.0
"""The ripple rises over the whole default horizon before a failure."""
START_TIMEOUT_SECONDS: Final = 60.0


@dataclass(frozen=True)
class PrecursorFleet:
    """Per node: samples (name -> values, NaN while down), Ready (1/0), failure times; one clock."""

    timestamps: np.ndarray
    metrics: dict[str, dict[str, np.ndarray]]
    ready: dict[str, np.ndarray]
    failures: dict[str, list[float]]


def precursor_fleet(
    nodes: tuple[str, ...],
    *,
    end: float,
    days: float,
    every_hours: float = 48.0,
    about_to_fail: str | None = None,
    seed: int = 7,
) -> PrecursorFleet:
    """Healthy built-in metrics; each node fails 16 h + an exponential gap of mean `every_hours` (NotReady 30 min, no node
    metrics meanwhile) after its ripple rose from ~10 mV towards ~40 mV over the 24 h before.
    `about_to_fail` has its ripple rising over the last 8 h and no failure yet."""
    rng = np.random.default_rng(seed)
    ts = np.arange(end - days * 24 * HOUR, end + 1e-6, STEP)
    n = len(ts)
    out = PrecursorFleet(ts, {}, {}, {})
    for i, node in enumerate(nodes):
        ripple = 10.0 + rng.normal(0.0, 1.0, n)
        down = np.zeros(n, dtype=bool)
        fails: list[float] = []
        t = ts[0] + (30.0 + 10.0 * i + rng.uniform(0, 12)) * HOUR
        while t < ts[-1] - 14 * HOUR:
            k = int(np.searchsorted(ts, t))
            pre = slice(max(0, k - int(PRECURSOR_HOURS * HOUR / STEP)), k)
            ripple[pre] += np.linspace(0.0, 30.0, pre.stop - pre.start)
            down[k : k + int(30 * 60 / STEP)] = True
            fails.append(float(ts[k]))
            # Memoryless gaps: time since the last repair says nothing, only the ripple does.
            t += (16.0 + rng.exponential(every_hours)) * HOUR
        if node == about_to_fail:
            last = int(8 * HOUR / STEP)
            ripple[-last:] += np.linspace(0.0, 22.0, last)
        size = 100e9
        values = {
            failure.DISK_SIZE: np.full(n, size),
            failure.DISK_AVAIL: size * (0.55 + rng.normal(0, 0.005, n)),
            failure.MEM_TOTAL: np.full(n, 16e9),
            failure.MEM_AVAIL: 16e9 * (0.6 + rng.normal(0, 0.01, n)),
            failure.TEMP: 50.0 + rng.normal(0, 1.0, n),
            RIPPLE: ripple,
        }
        out.metrics[node] = {k: np.where(down, np.nan, v) for k, v in values.items()}
        out.ready[node] = np.where(down, 0.0, 1.0)
        out.failures[node] = fails
    return out


def openmetrics(data: PrecursorFleet) -> str:
    """The fleet as node-exporter and kube-state-metrics series (no sample while a node is down)."""
    families: dict[str, list[str]] = {}

    def add(metric: str, labels: str, ts: np.ndarray, values: np.ndarray) -> None:
        rows = families.setdefault(metric, [])
        rows.extend(
            f"{metric}{{{labels}}} {float(v)!r} {t:.3f}"
            for t, v in zip(ts, values, strict=True)
            if np.isfinite(v)
        )

    names = {
        failure.DISK_AVAIL: ("node_filesystem_avail_bytes", ',mountpoint="/"'),
        failure.DISK_SIZE: ("node_filesystem_size_bytes", ',mountpoint="/"'),
        failure.MEM_AVAIL: ("node_memory_MemAvailable_bytes", ""),
        failure.MEM_TOTAL: ("node_memory_MemTotal_bytes", ""),
        failure.TEMP: ("node_hwmon_temp_celsius", ',chip="coretemp",sensor="temp1"'),
        RIPPLE: (RIPPLE, ""),
    }
    for node in data.ready:
        for key, (metric, extra) in names.items():
            add(
                metric,
                f'instance="{node}",job="node-exporter"{extra}',
                data.timestamps,
                data.metrics[node][key],
            )
        add(
            "kube_node_status_condition",
            f'condition="Ready",job="kube-state-metrics",node="{node}",status="true"',
            data.timestamps,
            data.ready[node],
        )
    lines = []
    for metric, rows in families.items():
        lines += [f"# TYPE {metric} gauge", *rows]
    return "\n".join([*lines, "# EOF"]) + "\n"


def query(url: str, promql: str, *, at: float | None = None) -> list[dict[str, Any]]:
    """Instant query (at `at`, default now); the `result` list of the API answer."""
    params: dict[str, Any] = {"query": promql}
    if at is not None:
        params["time"] = f"{at:.3f}"
    with urllib.request.urlopen(f"{url}/api/v1/query?{urllib.parse.urlencode(params)}", timeout=10) as resp:
        return list(json.loads(resp.read())["data"]["result"])


def _all_readiness_loaded(url: str, data: PrecursorFleet) -> bool:
    """Every generated Ready sample is queryable (the whole backfill is in, not just a block)."""
    span = int(data.timestamps[-1] - data.timestamps[0] + STEP)
    result = query(
        url,
        f'sum(count_over_time(kube_node_status_condition{{condition="Ready"}}[{span}s]))',
        at=float(data.timestamps[-1]),
    )
    return bool(result) and float(result[0]["value"][1]) == len(data.timestamps) * len(data.ready)


@contextmanager
def backfilled_prometheus(data: PrecursorFleet, work: Path) -> Iterator[str]:
    """A private Prometheus holding `data` (backfilled into `work`); yields its URL, stops it after."""
    (work / "history.om").write_text(openmetrics(data))
    (work / "data").mkdir()
    subprocess.run(
        [
            "/usr/bin/promtool",
            "tsdb",
            "create-blocks-from",
            "openmetrics",
            "--max-block-duration=24h",  # a block per day instead of per 2 h: a faster backfill and start
            "history.om",
            "data",
        ],
        check=True,
        capture_output=True,
        cwd=work,
        timeout=300,
    )
    (work / "prometheus.yml").write_text(yaml.safe_dump({"global": {"scrape_interval": "15s"}}))
    port = opp.free_port()
    with (work / "prometheus.log").open("wb") as log:
        prom = subprocess.Popen(
            [
                "/usr/bin/prometheus",
                f"--config.file={work / 'prometheus.yml'}",
                f"--storage.tsdb.path={work / 'data'}",
                "--storage.tsdb.retention.time=3650d",
                f"--web.listen-address=127.0.0.1:{port}",
                "--log.level=warn",
            ],
            stdout=log,
            stderr=subprocess.STDOUT,
        )
    url = f"http://127.0.0.1:{port}"
    try:
        opp.wait_until(
            lambda: _all_readiness_loaded(url, data),
            timeout=START_TIMEOUT_SECONDS,
            what=f"the backfilled history in the private Prometheus (log: {work / 'prometheus.log'})",
        )
        yield url
    finally:
        opp.stop_process(prom)
