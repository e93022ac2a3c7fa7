"""The interface every metric source implements, and the errors it raises."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol

import numpy as np
import numpy.typing as npt


class MetricsUnavailable(Exception):
    """No trustworthy number: unreachable server, empty result, NaN or stale data."""

    def __init__(self, reason: str, message: str) -> None:
        super().__init__(message)
        self.reason = reason
        self.message = message


@dataclass(frozen=True)
class Series:
    """One time series: timestamps in unix seconds and float values, same length."""

    timestamps: npt.NDArray[np.float64]
    values: npt.NDArray[np.float64]

    def __len__(self) -> int:
        return len(self.values)


class MetricSource(Protocol):
    def instant(self, query: str, *, at: float | None = None) -> float:
        """The single value of a query; raises MetricsUnavailable if there is none to trust."""

    def range(self, query: str, *, start: float, end: float, step: float) -> Series:
        """A range of one series; raises MetricsUnavailable when empty."""
