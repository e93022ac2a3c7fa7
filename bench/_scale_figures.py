"""The scale bench's arithmetic: pure functions over scraped text, samples and timestamps.

Nothing here talks to a cluster or a process: the bench (`bench.scale`) collects, these reduce.
Counters and histograms are read as the difference of two scrapes of the operator's /metrics, so
what the operator did before the measurement window (start-up, warm-up) is left out.
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Final

from prometheus_client.parser import text_string_to_metric_families

Labels = tuple[tuple[str, str], ...]
Samples = dict[tuple[str, Labels], float]
"""(sample name, sorted labels) -> value, for every sample of one scrape."""

WRITE_VERBS: Final = frozenset({"POST", "PUT", "PATCH"})
"""Requests that carry a body the apiserver stores (and sends to every watcher)."""


def parse_exposition(text: str) -> Samples:
    """Every sample of a Prometheus text exposition, keyed by name and sorted labels."""
    out: Samples = {}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            out[(sample.name, tuple(sorted(sample.labels.items())))] = float(sample.value)
    return out


def delta(before: Samples, after: Samples) -> Samples:
    """after - before per sample (a sample absent before counts from 0)."""
    return {key: value - before.get(key, 0.0) for key, value in after.items()}


def total(samples: Samples, name: str, **match: str) -> float:
    """Sum of the samples called `name` whose labels include `match`."""
    return sum(
        value
        for (sample, labels), value in samples.items()
        if sample == name and all(dict(labels).get(k) == v for k, v in match.items())
    )


def buckets(samples: Samples, name: str, **match: str) -> list[tuple[float, float]]:
    """(upper bound, cumulative count) of histogram `name` (its `_bucket` samples), by bound."""
    out: dict[float, float] = {}
    for (sample, labels), value in samples.items():
        label = dict(labels)
        if sample != f"{name}_bucket" or any(label.get(k) != v for k, v in match.items()):
            continue
        bound = float(label["le"])
        out[bound] = out.get(bound, 0.0) + value
    return sorted(out.items())


def histogram_quantile(q: float, cumulative: Sequence[tuple[float, float]]) -> float | None:
    """Prometheus's `histogram_quantile`: linear interpolation inside the bucket holding rank
    q x count, the first bucket starting at 0; a rank in the +Inf bucket gives the largest finite
    bound (the true value is above it). None when the histogram is empty."""
    if not cumulative or cumulative[-1][1] <= 0:
        return None
    count = cumulative[-1][1]
    rank = q * count
    lower_bound, lower_count = 0.0, 0.0
    for bound, cum in cumulative:
        if cum >= rank:
            if math.isinf(bound):
                return lower_bound
            if cum == lower_count:
                return bound
            return lower_bound + (bound - lower_bound) * (rank - lower_count) / (cum - lower_count)
        lower_bound, lower_count = bound, cum
    return lower_bound


def quantile(values: Sequence[float], q: float) -> float | None:
    """The q-quantile by linear interpolation between order statistics (numpy's default)."""
    if not values:
        return None
    ordered = sorted(values)
    position = q * (len(ordered) - 1)
    low = math.floor(position)
    high = min(low + 1, len(ordered) - 1)
    return ordered[low] + (ordered[high] - ordered[low]) * (position - low)


@dataclass(frozen=True)
class Run:
    """One observed pass of a loop: when it started (status.lastRunTime, epoch seconds) and the
    phase it left the loop in (Waiting and Error shorten the wait for the next pass)."""

    at: float
    phase: str


def lags(runs: Sequence[Run], *, interval: float, retry: float, window: tuple[float, float]) -> list[float]:
    """How late each pass started after it was due, from the outside: the previous pass's start
    plus its period (the interval, or `retry` after a Waiting or Error pass). Only passes that
    started inside `window` count. lastRunTime has whole seconds, so each lag is +-1 s."""
    out: list[float] = []
    latest = {run.at: run for run in runs}  # one pass per start; the last phase seen of it
    ordered = [latest[at] for at in sorted(latest)]
    for previous, current in itertools.pairwise(ordered):
        if not window[0] <= current.at <= window[1]:
            continue
        period = min(interval, retry) if previous.phase in ("Waiting", "Error") else interval
        out.append(current.at - previous.at - period)
    return out


def per_pass(amount: float, passes: float) -> float | None:
    """`amount` per pass; None when no pass ran (a ratio over nothing is not 0)."""
    return amount / passes if passes > 0 else None


def cpu_cores(ticks_before: int, ticks_after: int, *, seconds: float, ticks_per_second: float) -> float:
    """Mean cores used over `seconds` from two readings of utime+stime (clock ticks)."""
    if seconds <= 0:
        raise ValueError("seconds must be positive")
    return (ticks_after - ticks_before) / ticks_per_second / seconds


def stat_ticks(stat_line: str) -> int:
    """utime + stime (fields 14 and 15) of a /proc/<pid>/stat line; the command name in
    parentheses may itself hold spaces, so fields are counted after its closing parenthesis."""
    fields = stat_line.rsplit(")", 1)[1].split()
    return int(fields[11]) + int(fields[12])


def schedstat(line: str) -> tuple[int, int]:
    """(nanoseconds on a CPU, nanoseconds runnable but waiting for one) of a /proc/.../schedstat
    line: the wait is the machine's share of a slow pass, not the operator's."""
    run_ns, wait_ns, *_ = line.split()
    return int(run_ns), int(wait_ns)


def spread(values: Iterable[float]) -> dict[str, float | None]:
    """p50, p99 and max of `values` (None when there are none)."""
    listed = list(values)
    return {
        "p50": quantile(listed, 0.5),
        "p99": quantile(listed, 0.99),
        "max": max(listed) if listed else None,
    }


def verbs(samples: Mapping[tuple[str, Labels], float], name: str) -> dict[str, float]:
    """A counter's value per `verb` label."""
    out: dict[str, float] = {}
    for (sample, labels), value in samples.items():
        if sample == name:
            verb = dict(labels).get("verb", "")
            out[verb] = out.get(verb, 0.0) + value
    return out
