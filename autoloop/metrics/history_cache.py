"""Range histories kept between passes: a days-long window is read once, then only extended.

A usage loop reads 14 days of CPU and memory every pass and a ResourceAllocation 14 days per
workload, minutes apart: up to MAX_POINTS samples per query each time, almost all of them the same
as last pass. `HistoryCache.fetch` reads a query's window once with `demand.fetch_history`, then
asks Prometheus only for the samples since the last one it holds (re-reading the last
OVERLAP_STEPS: a rate() over the newest points still moves as late scrapes land), on the same
grid, and drops what fell out of the window. Every FULL_REFRESH_SECONDS, or when the window's step
changes, or for a young series read at a finer step, the whole window is read again.
Bounded: MAX_ENTRIES queries (the least recently used are dropped), each at most MAX_POINTS samples.
"""

from __future__ import annotations

import threading
from collections import OrderedDict
from dataclasses import dataclass
from typing import Final

import numpy as np

from autoloop.metrics import demand
from autoloop.metrics.source import MetricSource, MetricsUnavailable, Series

MAX_ENTRIES: Final[int] = 512
"""Queries kept (about 160 kB each at MAX_POINTS samples: at most ~80 MB)."""
OVERLAP_STEPS: Final[int] = 5
"""Newest steps read again each pass (5 steps of >= 61 s cover a 2-minute rate window and late scrapes)."""
FULL_REFRESH_SECONDS: Final[float] = 3600.0
"""The whole window is read again this often, so a backfill or a Prometheus restart shows within an hour."""


@dataclass(frozen=True)
class _Entry:
    series: Series
    step: float
    read_at: float  # `end` of the last full read


class HistoryCache:
    """Per-query histories; safe to share between handler threads."""

    def __init__(self, max_entries: int = MAX_ENTRIES) -> None:
        self.max_entries = max_entries
        self._entries: OrderedDict[str, _Entry] = OrderedDict()
        self._lock = threading.Lock()
        self.samples_read = 0
        """Samples Prometheus returned through this cache (for tests and the curious)."""

    def fetch(self, source: MetricSource, query: str, *, start: float, end: float) -> Series:
        """What `demand.fetch_history(source, query, start=start, end=end)` returns, on the grid of
        the query's last full read: only the newest samples are asked for when that is possible."""
        step = demand.coarse_step(start, end)
        with self._lock:
            entry = self._entries.get(query)
        if (
            entry is not None
            and entry.step == step
            and end - entry.read_at < FULL_REFRESH_SECONDS
            and len(entry.series)
            and start <= float(entry.series.timestamps[-1]) <= end
        ):
            first_new = float(entry.series.timestamps[-1]) - OVERLAP_STEPS * step
            try:
                fresh = demand.finite(source.range(query, start=max(first_new, start), end=end, step=step))
            except MetricsUnavailable as exc:
                if exc.reason != "NoData":
                    raise
                fresh = Series(timestamps=np.empty(0), values=np.empty(0))
            self.samples_read += len(fresh)
            old = entry.series
            keep = (old.timestamps >= start) & (old.timestamps < first_new)
            merged = Series(
                timestamps=np.concatenate([old.timestamps[keep], fresh.timestamps]),
                values=np.concatenate([old.values[keep], fresh.values]),
            )
            if len(merged) >= demand.MIN_SAMPLES:
                self._store(query, _Entry(merged, step, entry.read_at))
                return merged
        series = demand.fetch_history(source, query, start=start, end=end)
        self.samples_read += len(series)
        spacing = float(np.median(np.diff(series.timestamps))) if len(series) > 1 else 0.0
        if spacing >= step - 1e-6:  # read at the window's step (not a young series' finer one)
            self._store(query, _Entry(series, step, end))
        else:
            with self._lock:
                self._entries.pop(query, None)
        return series

    def _store(self, query: str, entry: _Entry) -> None:
        with self._lock:
            self._entries[query] = entry
            self._entries.move_to_end(query)
            while len(self._entries) > self.max_entries:
                self._entries.popitem(last=False)

    def __len__(self) -> int:
        return len(self._entries)
