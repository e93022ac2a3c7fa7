"""What detection reports: one `Anomaly` per alarm, a `DetectionReport` per call, JSON-safe.

Owns: `Anomaly`, `DetectionReport`, `json_safe` and `MAX_REPORTED_ANOMALIES` (a CR status stays
small).
Must never: compute scores or alarms; these are frozen results and their rendering.
"""

from __future__ import annotations

import dataclasses
import math
from typing import Any, Final, Literal

import numpy as np

from autoloop.engines.anomaly import samples

MAX_REPORTED_ANOMALIES: Final[int] = 20
"""`to_dict` keeps at most this many anomalies, strongest first, so a CR status stays small."""


@dataclasses.dataclass(frozen=True)
class Anomaly:
    """One anomaly of one metric of one service."""

    service: str
    metric: str
    kind: samples.MetricKind
    direction: Literal["up", "down"]
    start: float
    """Estimated change time (s, same clock as the input timestamps)."""
    detected_at: float
    """When the alarm rule first held (s): `detected_at - start` is the detection delay."""
    end: float | None
    """When the metric returned to its baseline (s); None while the anomaly is active."""
    peak_z: float
    expected: float
    peak_value: float
    relative_change: float
    shape: samples.Shape
    severity: Literal["warning", "critical"]
    explained_by_load: bool
    low_confidence: bool
    explanation: str
    benign: bool = False
    """It moved the way its kind cannot harm (memory or errors down,
    `samples.harmful_direction`): reported, never unexplained."""

    @property
    def active(self) -> bool:
        return self.end is None

    @property
    def unexplained(self) -> bool:
        """Not demand, not a degenerate reference, not a harmless direction: the kind that should
        pause optimisation."""
        return not self.explained_by_load and not self.low_confidence and not self.benign

    def summary(self) -> str:
        where = f"{self.service}/{self.metric}" if self.service else self.metric
        return f"{self.severity} {where} {self.direction} {self.shape} z={self.peak_z:+.1f} since t={self.start:.0f}s"

    def to_dict(self) -> dict[str, Any]:
        return json_safe(dataclasses.asdict(self))


def json_safe(obj: Any) -> Any:
    """Floats rounded and made finite, tuples to lists: safe to put in a CR status."""
    if isinstance(obj, dict):
        return {str(k): json_safe(v) for k, v in obj.items()}
    if isinstance(obj, list | tuple):
        return [json_safe(v) for v in obj]
    if isinstance(obj, bool | int | str) or obj is None:
        return obj
    if isinstance(obj, float | np.floating):
        f = float(obj)
        return round(f, 4) if math.isfinite(f) else None
    return str(obj)


@dataclasses.dataclass(frozen=True)
class DetectionReport:
    """All anomalies found in one call, strongest first."""

    anomalies: tuple[Anomaly, ...]
    test_start: float
    end: float
    explanation: str

    @property
    def active(self) -> tuple[Anomaly, ...]:
        return tuple(a for a in self.anomalies if a.active)

    @property
    def unexplained_active(self) -> bool:
        """True while an anomaly that demand does not explain is ongoing: optimisation should pause."""
        return any(a.active and a.unexplained for a in self.anomalies)

    def summary(self) -> str:
        if not self.anomalies:
            return "no anomalies"
        head = "; ".join(a.summary() for a in self.anomalies[:3])
        more = len(self.anomalies) - 3
        return head + (f" (+{more} more)" if more > 0 else "")

    def to_dict(self, max_items: int = MAX_REPORTED_ANOMALIES) -> dict[str, Any]:
        return {
            "testStart": json_safe(self.test_start),
            "end": json_safe(self.end),
            "unexplainedActive": self.unexplained_active,
            "count": len(self.anomalies),
            "anomalies": [a.to_dict() for a in self.anomalies[:max_items]],
            "explanation": self.explanation[:1000],
        }
