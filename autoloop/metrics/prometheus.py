"""A `MetricSource` that queries a real Prometheus server over its HTTP API."""

from __future__ import annotations

import math
import time
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any, Final

import numpy as np
from prometheus_api_client import PrometheusApiClientException, PrometheusConnect
from requests import JSONDecodeError, RequestException, Session
from requests.adapters import DEFAULT_POOLSIZE, HTTPAdapter
from urllib3.util.retry import Retry

from autoloop.metrics.source import MetricsUnavailable, Series

DEFAULT_TIMEOUT_SECONDS: Final = 10.0
RETRY_STATUSES: Final = (408, 429, 500, 502, 503, 504)
DEFAULT_MAX_AGE_SECONDS: Final = 300.0
"""A sample older than this at query time is stale: Prometheus marks series stale after 5 minutes."""


class PrometheusSource:
    """Instant and range queries with explicit failure reasons instead of silent empties."""

    def __init__(
        self,
        url: str,
        *,
        timeout_seconds: float = DEFAULT_TIMEOUT_SECONDS,
        max_age_seconds: float = DEFAULT_MAX_AGE_SECONDS,
        on_query: Callable[[], None] | None = None,
        pool_size: int = DEFAULT_POOLSIZE,
    ) -> None:
        """`pool_size`: connections kept open for reuse; give it the number of threads that query
        at once (the operator's handler workers), or each query beyond it opens and drops one."""
        self.url = url
        self.on_query = on_query
        """Called once per query sent (the operator counts them in its /metrics)."""
        self.timeout_seconds = timeout_seconds
        self.max_age_seconds = max_age_seconds
        # One quick retry of a 5xx/429 answer: the next pass retries anyway, and the client's own
        # default (3 retries, 1 s backoff factor) would hold a pass for ~7 s per query.
        retry = Retry(total=1, backoff_factor=0.2, status_forcelist=RETRY_STATUSES, allowed_methods=None)
        session = Session()
        session.verify = False  # what disable_ssl=True sets on a session the client makes itself
        self._client = PrometheusConnect(
            url=url, disable_ssl=True, retry=retry, timeout=timeout_seconds, session=session
        )
        # The client mounts its own adapter (urllib3's default pool of 10) for `url`; ours replaces it.
        session.mount(url, HTTPAdapter(max_retries=retry, pool_connections=1, pool_maxsize=pool_size))

    def _call(self, fn: Any, *args: Any, **kwargs: Any) -> Any:
        if self.on_query is not None:
            self.on_query()
        try:
            return fn(*args, **kwargs)
        except PrometheusApiClientException as exc:
            raise MetricsUnavailable(
                "QueryFailed", f"Prometheus at {self.url} refused the query: {exc}"
            ) from exc
        except JSONDecodeError as exc:  # before RequestException, which it also is
            raise MetricsUnavailable(
                "QueryFailed", f"Prometheus at {self.url} answered invalid JSON: {exc}"
            ) from exc
        except (RequestException, OSError) as exc:
            raise MetricsUnavailable("PrometheusUnreachable", f"Prometheus at {self.url}: {exc}") from exc

    def healthy(self) -> bool:
        try:
            return bool(self._client.check_prometheus_connection())
        except Exception:
            return False

    def instant(self, query: str, *, at: float | None = None) -> float:
        params = {"time": str(at)} if at is not None else None
        result = self._call(self._client.custom_query, query=query, params=params)
        if not result:
            raise MetricsUnavailable("NoData", f"query returned no series: {query}")
        if len(result) > 1:
            raise MetricsUnavailable(
                "AmbiguousResult", f"query returned {len(result)} series, want 1: {query}"
            )
        stamp, raw = result[0]["value"]
        # An instant answer is stamped with its evaluation time: far from the time asked for, it
        # is an old answer (a cache, a clock fault), not a measurement of now.
        age = (at if at is not None else time.time()) - float(stamp)
        if abs(age) > self.max_age_seconds:
            raise MetricsUnavailable(
                "Stale",
                f"answer stamped {age:.0f}s from the time asked (> {self.max_age_seconds:g}s): {query}",
            )
        value = float(raw)
        if math.isnan(value) or math.isinf(value):
            raise MetricsUnavailable("NaN", f"query returned {raw}: {query}")
        return value

    def range(self, query: str, *, start: float, end: float, step: float) -> Series:
        result = self._call(
            self._client.custom_query_range,
            query=query,
            start_time=datetime.fromtimestamp(start, UTC),
            end_time=datetime.fromtimestamp(end, UTC),
            step=f"{step:g}",
        )
        if not result:
            raise MetricsUnavailable("NoData", f"query returned no series: {query}")
        if len(result) > 1:
            raise MetricsUnavailable(
                "AmbiguousResult", f"query returned {len(result)} series, want 1: {query}"
            )
        samples = result[0]["values"]
        stamps = np.array([float(s[0]) for s in samples], dtype=np.float64)
        values = np.array([float(s[1]) for s in samples], dtype=np.float64)
        return Series(timestamps=stamps, values=values)


def age_seconds(series: Series, *, now: float | None = None) -> float:
    """Seconds since the newest sample of a series."""
    if len(series) == 0:
        return math.inf
    return (now if now is not None else time.time()) - float(series.timestamps[-1])
