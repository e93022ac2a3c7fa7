"""What root-cause analysis returns: ranked `Cause`s in an `RCAResult`, JSON-safe and bounded.

Owns: `Cause`, `RCAResult`, the fault types and actions they name (`FaultType`, `Action`) and the
bounds of their rendering (`MAX_TEXT`, `MAX_EVIDENCE`).
Must never: compute evidence, scores or confidence; these are frozen results and their rendering.
"""

from __future__ import annotations

import dataclasses
from typing import Any, Final, Literal

from autoloop.engines import anomaly

FaultType = Literal["cpu_saturation", "memory_leak", "latency", "error_burst", "bad_rollout", "unknown"]
Action = Literal["scale", "rollback", "restart", "schedule_maintenance", "investigate"]

MAX_EVIDENCE: Final[int] = 5
MAX_TEXT: Final[int] = 400
"""Characters kept of an explanation in `to_dict`: a CR status must stay small."""


@dataclasses.dataclass(frozen=True)
class Cause:
    """One ranked candidate root cause; tied causes share a rank."""

    rank: int
    service: str
    metric: str
    fault_type: FaultType
    score: float
    confidence: float
    onset: float
    action: Action
    evidence: tuple[str, ...]
    explanation: str

    def summary(self) -> str:
        return (
            f"#{self.rank} {self.service}/{self.metric}: {self.fault_type} "
            f"(confidence {self.confidence:.2f}) -> {self.action}"
        )

    def to_dict(self) -> dict[str, Any]:
        d = dataclasses.asdict(self)
        d["evidence"] = [e[:MAX_TEXT] for e in self.evidence[:MAX_EVIDENCE]]
        d["explanation"] = self.explanation[:MAX_TEXT]
        return dict(anomaly.json_safe(d))


@dataclasses.dataclass(frozen=True)
class RCAResult:
    """Ranked causes (best first) and what the analysis looked at."""

    causes: tuple[Cause, ...]
    anomalous_services: tuple[str, ...]
    window: tuple[float, float]
    reference_end: float
    explanation: str
    confident: bool = False
    """The top cause explains the anomaly (the safety validator can resume)."""
    warnings: tuple[str, ...] = ()
    """Why the analysis could see little or nothing (a reference too short, ...)."""

    @property
    def top(self) -> Cause | None:
        return self.causes[0] if self.causes else None

    @property
    def tied(self) -> tuple[Cause, ...]:
        """Every cause sharing the first rank (more than one: the evidence cannot tell them apart)."""
        return tuple(c for c in self.causes if c.rank == 1)

    def summary(self) -> str:
        top = self.top
        if top is None:
            return "; ".join((self.explanation, *self.warnings))
        if len(self.tied) > 1:
            names = " or ".join(c.service for c in self.tied)
            return f"root cause tied between {names}: investigate"
        return f"likely root cause {top.service} ({top.fault_type}, confidence {top.confidence:.2f}): {top.action}"

    def to_dict(self, max_causes: int = 5) -> dict[str, Any]:
        return {
            "causes": [c.to_dict() for c in self.causes[:max_causes]],
            "anomalousServices": list(self.anomalous_services[:20]),
            "window": [anomaly.json_safe(v) for v in self.window],
            "confident": self.confident,
            "explanation": self.explanation[:MAX_TEXT],
            "warnings": [w[:MAX_TEXT] for w in self.warnings[:5]],
        }
