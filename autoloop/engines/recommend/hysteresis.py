"""The band a request may stay in around the need, derived from what a change costs.

A new request restarts the workload's pods. Lowering a request is worth it only when what it saves
over the horizon it will hold for pays for that restart: with a restart worth `restart_cost_hours`
of the current request, lowering pays when (current - need) * horizon >= restart cost * current,
i.e. when the request exceeds the need by more than restart_cost_hours / horizon_hours. Raising
answers risk, not cost: memory (killed) rises at any shortfall, CPU (throttled) when the shortfall
reaches VPA's minimum change, the least difference VPA's updater acts on. A new request is set
at the band's geometric middle, as far (relatively) from both of its edges as it can be, so that
the need may drift either way before the next change.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Final

MIN_CHANGE: Final[float] = 0.10
"""VPA updater's defaultUpdateThreshold (updater/priority/update_priority_calculator.go)."""


@dataclass(frozen=True)
class Band:
    """Hold the request while need * (1 - shortfall) <= request <= need * (1 + excess)."""

    shortfall: float
    excess: float

    @classmethod
    def for_cost(cls, *, restart_cost_hours: float, horizon_hours: float, hard_failure: bool) -> Band:
        return cls(0.0 if hard_failure else MIN_CHANGE, max(restart_cost_hours / horizon_hours, MIN_CHANGE))

    def lower(self, need: float) -> float:
        return need * (1.0 - self.shortfall)

    def upper(self, need: float) -> float:
        return need * (1.0 + self.excess)

    def target(self, need: float) -> float:
        return need * math.sqrt((1.0 - self.shortfall) * (1.0 + self.excess))

    def holds(self, current: float, need: float) -> bool:
        return self.lower(need) <= current <= self.upper(need)
