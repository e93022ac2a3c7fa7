"""Evidence: the changes root-cause analysis works on, and the per-service view ranking uses.

Owns: `Evidence` (one change of one metric of one service), `Findings` (the evidence of one
window, before ranking), `Service` (a service and its evidence while it is explained away), the
harm weighting (`harm`, `HARMFUL_UP`, `IMPROVEMENT_WEIGHT`), `PROPAGATING_KINDS` and the graph
types `Node` and `Links`.
Must never: find, explain or rank changes (`gathering`, `explaining`, `ranking` do).
"""

from __future__ import annotations

import dataclasses
import math
from typing import Final

from autoloop.engines import anomaly

Node = tuple[str, str]
"""(service, metric): one change in the explanation graph."""
Links = dict[Node, set[Node]]

PROPAGATING_KINDS: Final[frozenset[str]] = frozenset({"latency", "errors"})
"""Metric kinds whose change travels from a callee to its callers; cpu and memory do not."""
EXTERNAL_DEMAND: Final[str] = "<external demand>"
"""`Evidence.explained_by` of a frontend's load change: users, not a service, sent it."""
HARMFUL_UP: Final[frozenset[str]] = frozenset({"latency", "errors", "cpu", "memory"})
"""Kinds for which going up is going wrong."""
IMPROVEMENT_WEIGHT: Final[float] = 0.3
"""Weight of a change for the better (latency down, ...) as evidence of a fault."""


@dataclasses.dataclass(frozen=True)
class Evidence:
    """One anomalous metric of one service inside the analysis window."""

    service: str
    metric: str
    kind: str
    z: float
    """Peak robust z (signed) in the window."""
    onset: float
    """Change time (s)."""
    delta: float
    """Peak change in the metric's own units (expected -> observed)."""
    relative_change: float
    shape: anomaly.Shape
    low_confidence: bool
    """The reference had no variation: `z` rests on the detector's scale floor."""
    demand: bool = False
    """The metric moved with the service's own request rate (see `engines.anomaly`)."""
    explained_by: str | None = None
    """The service whose change accounts for this one (a callee for latency and errors, a caller
    for load), `EXTERNAL_DEMAND` for a frontend's traffic, or None: the service's own change."""

    @property
    def own(self) -> bool:
        """Evidence that the service itself changed: not load, not demand, not explained."""
        return self.kind != "load" and not self.demand and self.explained_by is None

    def weight(self, relative_floor: float) -> float:
        """log(1 + |z|), |z| at most |relative change| / `relative_floor`: scale-free evidence."""
        z = abs(self.z)
        if self.relative_change != 0.0:
            z = min(z, abs(self.relative_change) / relative_floor)
        return math.log1p(z)

    def describe(self) -> str:
        sign = "rose" if self.z > 0 else "fell"
        text = (
            f"{self.metric} {sign} {abs(self.z):.1f} sigma ({self.shape}, {self.relative_change:+.0%}) "
            f"at t={self.onset:.0f}s"
        )
        if self.demand:
            text += ", with its request rate"
        if self.explained_by == EXTERNAL_DEMAND:
            text += ", external demand"
        elif self.explained_by:
            text += f", explained by {self.explained_by}"
        return text


@dataclasses.dataclass(frozen=True)
class Findings:
    """The evidence of one analysis window, before any ranking (`RootCauseAnalyzer.findings`)."""

    evidence: dict[str, tuple[Evidence, ...]]
    """Per service with any change in the window, its changes."""
    services: tuple[str, ...]
    """Every service scored (with or without a change)."""
    window: tuple[float, float]
    onset: float | None
    """The suspected onset the timing score is anchored to (None: the earliest own change)."""
    note: str = ""
    """Why there is nothing to rank, when there is not."""
    warnings: tuple[str, ...] = ()


@dataclasses.dataclass
class Service:
    """One anomalous service while it is ranked: its evidence, explained away step by step."""

    name: str
    evidence: list[Evidence]

    @property
    def onset(self) -> float:
        return min(e.onset for e in self.evidence)

    @property
    def own(self) -> list[Evidence]:
        return [e for e in self.evidence if e.own]


def harm(e: Evidence) -> float:
    """1 for a change for the worse (latency, errors, cpu or memory up; anything for other
    metrics), `IMPROVEMENT_WEIGHT` for one for the better: faults make things worse."""
    if e.kind in HARMFUL_UP and e.z < 0:
        return IMPROVEMENT_WEIGHT
    return 1.0
