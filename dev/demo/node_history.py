"""The demo's node data: one kwok node's disk filling, 72 h of node-exporter history for them all.

Annotates the kwok nodes (`type=kwok`) for `autoloop.simulation.node_exporter`: the last one's root
disk at 85 % and filling 1 % an hour, the others healthy, all with one reference time; writes their
history over the last 72 h as OpenMetrics for dev/backfill.sh, in the series the live exporter
continues (job `node-exporter-sim`, as dev/prometheus.sh scrapes it).
Run: `python dev/demo/node_history.py --kubeconfig K --out history.om`.
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

from kubernetes import client, config

from autoloop.simulation.node_exporter import PREFIX, NodeModel, history_openmetrics

HOURS = 72.0
STEP_SECONDS = 300.0
JOB = "node-exporter-sim"
RISKY = {"disk-used": "0.85", "disk-fill-rate": "0.01"}
SIM_KEYS = ("disk-used", "disk-fill-rate", "memory-used", "temperature", "errors-per-hour", "reference-time")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--kubeconfig", required=True)
    parser.add_argument("--out", type=Path, required=True)
    args = parser.parse_args()
    core = client.CoreV1Api(config.new_client_from_config(config_file=args.kubeconfig))
    names = sorted(n.metadata.name for n in core.list_node(label_selector="type=kwok").items)
    if not names:
        raise SystemExit("no kwok nodes (type=kwok): is the dev cluster up?")
    now = time.time()
    models: dict[str, NodeModel] = {}
    for name in names:
        values = {"reference-time": f"{now:.0f}", **(RISKY if name == names[-1] else {})}
        annotations: dict[str, str | None] = {f"{PREFIX}{k}": None for k in SIM_KEYS}
        annotations.update({f"{PREFIX}{k}": v for k, v in values.items()})
        core.patch_node(name, {"metadata": {"annotations": annotations}})
        models[name] = NodeModel.from_annotations(
            {f"{PREFIX}{k}": v for k, v in values.items()}, default_reference=now
        )
    text = history_openmetrics(
        models, start=now - HOURS * 3600, end=now - 60, step=STEP_SECONDS, extra_labels={"job": JOB}
    )
    args.out.write_text(text)
    print(f"{len(names)} kwok nodes, {names[-1]} with a filling disk; history in {args.out}")


if __name__ == "__main__":
    main()
