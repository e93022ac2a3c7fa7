"""What the scale bench creates: kwok nodes, namespaces, one Deployment and one loop per service.

The builders of `bench._soak_objects` are reused (same labels, same synthetic-exporter
annotations, same tainted kwok nodes), with two changes that keep kwok and the scheduler out of
the measurement on a small machine: every Deployment has one replica, and each loop's replicas
knob is pinned to 1 (its cpu and memory knobs stay free, so Auto loops still act and write).
"""

from __future__ import annotations

import dataclasses
import math
import random
from dataclasses import dataclass
from typing import Any, Final

from bench import _soak_objects as objects

LOOPS_PER_NAMESPACE: Final = 50
PODS_PER_WORKLOAD: Final = 2
"""One replica, two pods during a rollout (the loops' cpu and memory changes): sizes the nodes."""


@dataclass(frozen=True)
class Layout:
    """Names of everything a run creates, for its largest size; a size uses the first n loops."""

    run: str
    nodes: list[str]
    namespaces: list[str]
    loops: list[tuple[str, str]]
    """(namespace, name) of each loop and of the Deployment it manages."""

    def namespaces_for(self, n: int) -> list[str]:
        return sorted({ns for ns, _ in self.loops[:n]})


def layout(run: str, largest: int) -> Layout:
    spaces = max(1, math.ceil(largest / LOOPS_PER_NAMESPACE))
    names = [f"scale-{run}-{k}" for k in range(spaces)]
    pods = largest * PODS_PER_WORKLOAD
    return Layout(
        run=run,
        nodes=[f"scale-{run}-n{k}" for k in range(max(1, math.ceil(pods / objects.NODE_PODS)))],
        namespaces=names,
        loops=[(names[i // LOOPS_PER_NAMESPACE], f"w-{i:04d}") for i in range(largest)],
    )


def workload(name: str, run: str, rng: random.Random) -> dict[str, Any]:
    """The soak's synthetic service with one replica."""
    return objects.workload(name, run, dataclasses.replace(objects.profile(rng), replicas=1))


def loop(name: str, run: str, *, interval_s: int) -> dict[str, Any]:
    """The soak's Auto loop, replicas pinned to 1."""
    body = objects.loop(name, run, interval_s=interval_s)
    body["spec"]["knobs"]["replicas"] = {"min": 1, "max": 1}
    return body


node = objects.node
namespace = objects.namespace
LABEL: Final = objects.SOAK_LABEL
