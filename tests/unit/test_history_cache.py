"""HistoryCache: a long window read once, then extended by the newest samples only."""

from __future__ import annotations

import numpy as np
import pytest

from autoloop.metrics import demand, history_cache
from autoloop.metrics.history_cache import HistoryCache
from autoloop.metrics.source import MetricsUnavailable
from tests.unit.fake_source import FakeSource

WEEK = 7 * 86_400.0


class Source(FakeSource):
    """A smooth series whose values from `revised_from` on are replaced (late scrapes)."""

    def __init__(self, first: float) -> None:
        super().__init__(first, first + 60 * 86_400.0)
        self.revised_from = np.inf

    def value(self, t: np.ndarray) -> np.ndarray:
        return np.where(t >= self.revised_from, -1.0, np.sin(t / 5000.0) + 2.0)


def test_second_read_asks_only_for_the_newest_samples_and_matches_a_full_read() -> None:
    end = 2_000_000.0
    source = Source(first=end - 30 * 86_400)
    cache = HistoryCache()
    first = cache.fetch(source, "q", start=end - WEEK, end=end)
    step = demand.coarse_step(end - WEEK, end)
    assert source.calls == [(end - WEEK, end, step)] and len(first) == len(
        np.arange(end - WEEK, end + 1, step)
    )

    later = end + 300.0
    second = cache.fetch(source, "q", start=later - WEEK, end=later)
    start2, end2, step2 = source.calls[-1]
    assert step2 == step and end2 == later
    assert start2 == first.timestamps[-1] - history_cache.OVERLAP_STEPS * step  # on the same grid
    assert cache.samples_read < len(first) + 20
    # Same samples as Prometheus gives on that grid, none older than the window, none twice.
    assert second.timestamps[0] >= later - WEEK
    assert np.all(np.diff(second.timestamps) == step)
    np.testing.assert_allclose(second.values, source.value(second.timestamps))
    assert second.timestamps[-1] > first.timestamps[-1]


def test_late_samples_in_the_overlap_are_read_again() -> None:
    end = 2_000_000.0
    source = Source(first=end - 30 * 86_400)
    cache = HistoryCache()
    first = cache.fetch(source, "q", start=end - WEEK, end=end)
    source.revised_from = float(first.timestamps[-2])  # the last two samples change afterwards
    second = cache.fetch(source, "q", start=end + 60 - WEEK, end=end + 60)
    revised = second.timestamps >= source.revised_from
    assert revised.sum() >= 2 and np.all(second.values[revised] == -1.0)


def test_failures_propagate_and_keep_what_was_read() -> None:
    end = 2_000_000.0
    source = Source(first=end - 30 * 86_400)
    cache = HistoryCache()
    cache.fetch(source, "q", start=end - WEEK, end=end)
    source.fail = "PrometheusUnreachable"
    with pytest.raises(MetricsUnavailable) as exc:
        cache.fetch(source, "q", start=end + 60 - WEEK, end=end + 60)
    assert exc.value.reason == "PrometheusUnreachable"
    source.fail = None
    calls = len(source.calls)
    cache.fetch(source, "q", start=end + 120 - WEEK, end=end + 120)
    assert len(source.calls) == calls + 1 and source.calls[-1][0] > end - 3600  # still incremental


def test_whole_window_is_read_again_hourly_and_for_young_series() -> None:
    end = 2_000_000.0
    source = Source(first=end - 30 * 86_400)
    cache = HistoryCache()
    cache.fetch(source, "q", start=end - WEEK, end=end)
    later = end + history_cache.FULL_REFRESH_SECONDS + 1
    cache.fetch(source, "q", start=later - WEEK, end=later)
    assert source.calls[-1][0] == later - WEEK

    young = Source(first=end - 600)  # ten minutes of data: read at a finer step, not cached
    cache.fetch(young, "y", start=end - WEEK, end=end)
    calls = len(young.calls)
    cache.fetch(young, "y", start=end + 5 - WEEK, end=end + 5)
    assert young.calls[calls][0] == end + 5 - WEEK  # a full read again


def test_bounded_number_of_queries() -> None:
    end = 2_000_000.0
    source = Source(first=end - 30 * 86_400)
    cache = HistoryCache(max_entries=2)
    for q in ("a", "b", "c"):
        cache.fetch(source, q, start=end - WEEK, end=end)
    assert len(cache) == 2
    calls = len(source.calls)
    cache.fetch(source, "a", start=end - WEEK, end=end)  # dropped first: read whole again
    assert source.calls[calls][0] == end - WEEK
