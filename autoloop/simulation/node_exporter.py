"""Simulated node-exporter for nodes that have none (kwok): node health driven by Node annotations.

Contract: lists the cluster's Nodes through the Kubernetes API on every scrape and serves, per
node, the node-exporter series the failure predictor reads (`instance="<node name>"`, as
kube-prometheus relabels node-exporter): root filesystem size and available bytes, MemTotal and
MemAvailable, a hwmon temperature, a corrected-EDAC-error counter and a carrier-change counter.
Their values follow annotations on the Node (prefix `sim.autoloop.x0tta6bl4.io/`):

| annotation | meaning | default |
| --- | --- | --- |
| `disk-used` | root filesystem used fraction at the reference time | 0.4 |
| `disk-fill-rate` | change of that fraction per hour (before and after the reference time) | 0 |
| `memory-used` | memory used fraction | 0.5 |
| `temperature` | °C | 45 |
| `errors-per-hour` | corrected memory errors per hour | 0 |
| `reference-time` | epoch seconds at which `disk-used` holds | the exporter's start |

Disk use moves linearly at the fill rate from the reference time, never below the smaller of
`disk-used` and 0.4 (so a filling disk has a flat history before its fill) nor above 0.999.
`history_openmetrics` renders the same model over a past interval as OpenMetrics text for
`promtool tsdb create-blocks-from openmetrics` (dev/backfill.sh), so backfilled history and live
samples are one series. A bad annotation is logged and its default used.
Run: `python -m autoloop.simulation.node_exporter --kubeconfig K --port P`.
"""

from __future__ import annotations

import argparse
import logging
import time
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from typing import Any, Final

from prometheus_client.core import GaugeMetricFamily
from prometheus_client.registry import Collector, CollectorRegistry

PREFIX: Final = "sim.autoloop.x0tta6bl4.io/"
DISK_SIZE_BYTES: Final = 100e9
"""Root filesystem size of every simulated node (100 GB)."""
MEM_TOTAL_BYTES: Final = 16 * 2.0**30
"""Memory of every simulated node (16 GiB)."""
BASELINE_DISK_USED: Final = 0.4
"""Disk use a filling node started from: its history is flat at this level before the fill."""
MAX_DISK_USED: Final = 0.999
HISTORY_HOURS: Final = 72.0
"""The error counter starts this long before the reference time (the predictor's lookback)."""

log = logging.getLogger("autoloop.node-exporter")


@dataclass(frozen=True)
class NodeModel:
    """One node's simulated health, from its annotations."""

    disk_used: float = BASELINE_DISK_USED
    disk_fill_rate: float = 0.0
    memory_used: float = 0.5
    temperature: float = 45.0
    errors_per_hour: float = 0.0
    reference_time: float = 0.0

    @classmethod
    def from_annotations(cls, annotations: Mapping[str, str], *, default_reference: float) -> NodeModel:
        values: dict[str, float] = {"reference_time": default_reference}
        for field_name in (
            "disk_used",
            "disk_fill_rate",
            "memory_used",
            "temperature",
            "errors_per_hour",
            "reference_time",
        ):
            raw = annotations.get(PREFIX + field_name.replace("_", "-"))
            if raw is None:
                continue
            try:
                values[field_name] = float(raw)
            except ValueError:
                log.warning("ignoring annotation %s%s=%r: not a number", PREFIX, field_name, raw)
        return cls(**values)

    def disk_used_at(self, t: float) -> float:
        level = self.disk_used + self.disk_fill_rate * (t - self.reference_time) / 3600.0
        return min(MAX_DISK_USED, max(min(self.disk_used, BASELINE_DISK_USED), level))

    def errors_at(self, t: float) -> float:
        return max(0.0, self.errors_per_hour * (t - self.reference_time + HISTORY_HOURS * 3600.0) / 3600.0)

    def samples(self, node: str, t: float) -> list[tuple[str, dict[str, str], float]]:
        """(metric, labels, value) of this node at time t, node-exporter names and labels."""
        root = {"instance": node, "mountpoint": "/", "device": "/dev/vda1", "fstype": "ext4"}
        return [
            ("node_filesystem_size_bytes", root, DISK_SIZE_BYTES),
            ("node_filesystem_avail_bytes", root, DISK_SIZE_BYTES * (1.0 - self.disk_used_at(t))),
            ("node_memory_MemTotal_bytes", {"instance": node}, MEM_TOTAL_BYTES),
            (
                "node_memory_MemAvailable_bytes",
                {"instance": node},
                MEM_TOTAL_BYTES * (1.0 - self.memory_used),
            ),
            (
                "node_hwmon_temp_celsius",
                {"instance": node, "chip": "coretemp", "sensor": "temp1"},
                self.temperature,
            ),
            ("node_edac_correctable_errors_total", {"instance": node, "controller": "0"}, self.errors_at(t)),
            ("node_network_carrier_changes_total", {"instance": node, "device": "eth0"}, 0.0),
        ]


def _labels(labels: Mapping[str, str]) -> str:
    body = ",".join(f'{k}="{v}"' for k, v in sorted(labels.items()))
    return "{" + body + "}"


def history_openmetrics(
    models: Mapping[str, NodeModel],
    *,
    start: float,
    end: float,
    step: float,
    extra_labels: Mapping[str, str] | None = None,
) -> str:
    """The models' series from start to end (inclusive) every step seconds, as OpenMetrics text.

    `extra_labels` are the target labels Prometheus adds when it scrapes (at least `job`), so the
    backfilled samples land in the same series as the scraped ones.
    """
    by_metric: dict[str, list[str]] = {}
    t = start
    while t <= end:
        for node, model in sorted(models.items()):
            for metric, labels, value in model.samples(node, t):
                by_metric.setdefault(metric, []).append(
                    f"{metric}{_labels({**labels, **(extra_labels or {})})} {value!r} {t:.3f}"
                )
        t += step
    lines: list[str] = []
    for metric, samples in by_metric.items():
        lines.append(f"# TYPE {metric} gauge")
        lines.extend(samples)
    lines.append("# EOF")
    return "\n".join(lines) + "\n"


class NodeCollector(Collector):
    """Lists Nodes at each scrape and yields their simulated series."""

    def __init__(self, core: Any, *, started: float) -> None:
        self.core = core
        self.started = started
        self._last: dict[str, dict[str, str]] = {}

    def nodes(self) -> dict[str, dict[str, str]]:
        try:
            items = self.core.list_node().items
        except Exception as exc:  # keep serving the last known nodes through API hiccups
            log.warning("listing nodes failed: %s", exc)
            return self._last
        self._last = {n.metadata.name: dict(n.metadata.annotations or {}) for n in items}
        return self._last

    def collect(self) -> Iterator[GaugeMetricFamily]:
        now = time.time()
        families: dict[str, GaugeMetricFamily] = {}
        for node, notes in sorted(self.nodes().items()):
            model = NodeModel.from_annotations(notes, default_reference=self.started)
            for metric, labels, value in model.samples(node, now):
                family = families.get(metric)
                if family is None:
                    family = families[metric] = GaugeMetricFamily(
                        metric, f"simulated {metric}", labels=sorted(labels)
                    )
                family.add_metric([labels[k] for k in sorted(labels)], value)
        yield from families.values()


def main(argv: list[str] | None = None) -> None:
    from kubernetes import client, config
    from prometheus_client import start_http_server

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--kubeconfig", required=True)
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--host", default="127.0.0.1")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(message)s")
    api = config.new_client_from_config(config_file=args.kubeconfig)
    registry = CollectorRegistry()
    registry.register(NodeCollector(client.CoreV1Api(api), started=time.time()))
    start_http_server(args.port, addr=args.host, registry=registry)
    log.info("serving simulated node-exporter series on %s:%d", args.host, args.port)
    while True:
        time.sleep(3600)


if __name__ == "__main__":
    main()
