"""A MetricSource over one dense series, answering range queries as Prometheus evaluates them
(at start + k * step, nothing before `first`), recording each call; `fail` makes every call raise."""

from __future__ import annotations

import numpy as np

from autoloop.metrics.source import MetricsUnavailable, Series


class FakeSource:
    def __init__(self, first: float, end: float, *, fail: str | None = None) -> None:
        self.first, self.end, self.fail = first, end, fail
        self.calls: list[tuple[float, float, float]] = []

    def value(self, t: np.ndarray) -> np.ndarray:
        """The series' value at times t (ones; subclasses give other shapes)."""
        return np.ones_like(t)

    def instant(self, query: str, *, at: float | None = None) -> float:
        if self.fail:
            raise MetricsUnavailable(self.fail, "refused")
        when = at if at is not None else self.end
        if when < self.first:
            raise MetricsUnavailable("NoData", "empty")
        return float(self.value(np.array([when]))[0])

    def range(self, query: str, *, start: float, end: float, step: float) -> Series:
        self.calls.append((start, end, step))
        if self.fail:
            raise MetricsUnavailable(self.fail, "refused")
        grid = np.arange(start, end + 1e-9, step)
        grid = grid[grid >= self.first]
        if len(grid) == 0:
            raise MetricsUnavailable("NoData", "empty")
        return Series(timestamps=grid, values=self.value(grid))
