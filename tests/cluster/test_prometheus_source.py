"""PrometheusSource against the real Prometheus: each way an answer can be bad is a named reason.

Bad answers come from the real server through tests/cluster/fault_proxy.py (the real answer
rewritten, or an error in its place); the others are real PromQL answers.
"""

from __future__ import annotations

import concurrent.futures
import logging
import socket
import threading
import time
from collections.abc import Iterator
from typing import Any

import pytest

from autoloop.metrics.prometheus import PrometheusSource
from autoloop.metrics.source import MetricsUnavailable
from tests.cluster.fault_proxy import FaultProxy

pytestmark = pytest.mark.cluster

TIMEOUT_S = 2.0
TWO_SERIES = 'label_replace(vector(1), "i", "a", "", "") or label_replace(vector(2), "i", "b", "", "")'


@pytest.fixture(scope="module")
def proxy(prometheus: Any) -> Iterator[FaultProxy]:
    p = FaultProxy(prometheus.url)
    yield p
    p.close()


@pytest.mark.parametrize(
    ("mode", "reason"),
    [
        ("nan", "NaN"),
        ("inf", "NaN"),
        ("empty", "NoData"),
        ("stale", "Stale"),
        ("error", "PrometheusUnreachable"),  # a 503 after the client's one retry
        ("slow", "PrometheusUnreachable"),
        ("garbage", "QueryFailed"),
    ],
)
def test_bad_answers_have_a_reason(proxy: FaultProxy, mode: str, reason: str) -> None:
    proxy.mode = mode
    try:
        with pytest.raises(MetricsUnavailable) as caught:
            PrometheusSource(proxy.url, timeout_seconds=TIMEOUT_S).instant("vector(0.25)")
    finally:
        proxy.mode = "pass"
    assert caught.value.reason == reason, caught.value.message


def test_two_series_where_one_is_wanted_is_ambiguous(prometheus: Any) -> None:
    with pytest.raises(MetricsUnavailable) as caught:
        PrometheusSource(prometheus.url).instant(TWO_SERIES)
    assert caught.value.reason == "AmbiguousResult"


def test_a_fresh_single_sample_is_read(prometheus: Any, proxy: FaultProxy) -> None:
    assert PrometheusSource(prometheus.url).instant("vector(0.25)") == 0.25
    assert PrometheusSource(proxy.url).instant("vector(0.25)") == 0.25, "the proxy passes answers unchanged"
    # Asked for a past time, an answer stamped at that time is fresh.
    assert PrometheusSource(prometheus.url).instant("vector(3)", at=time.time() - 86400.0) == 3.0


def test_an_unreachable_server_is_named() -> None:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]  # closed again before the query: nothing listens there
    with pytest.raises(MetricsUnavailable) as caught:
        PrometheusSource(f"http://127.0.0.1:{port}", timeout_seconds=1).instant("up")
    assert caught.value.reason == "PrometheusUnreachable"


def test_concurrent_passes_reuse_their_connections(prometheus: Any, caplog: pytest.LogCaptureFixture) -> None:
    # The operator's handler threads share one source; a pool smaller than the threads querying
    # at once opens and drops a connection per query beyond it (urllib3 says "pool is full").
    threads = 24  # the operator's default workers
    source = PrometheusSource(prometheus.url, pool_size=threads)
    barrier = threading.Barrier(threads)

    def queries(_: int) -> list[float]:
        barrier.wait()
        return [source.instant("vector(1)") for _ in range(5)]

    with (
        caplog.at_level(logging.WARNING, logger="urllib3.connectionpool"),
        concurrent.futures.ThreadPoolExecutor(threads) as pool,
    ):
        answers = [v for vs in pool.map(queries, range(threads)) for v in vs]
    assert answers == [1.0] * 5 * threads
    assert not [r for r in caplog.records if "pool is full" in r.getMessage()]
