"""PrometheusSource over HTTP: each way a server can answer badly becomes a named MetricsUnavailable.

A local HTTP server plays Prometheus' query API with canned answers (the cluster tier runs the
same faults through a proxy in front of the real server, tests/cluster/test_prometheus_faults.py).
"""

from __future__ import annotations

import http.server
import json
import socket
import threading
import time
from collections.abc import Iterator
from typing import Any

import pytest

from autoloop.metrics.prometheus import PrometheusSource
from autoloop.metrics.source import MetricsUnavailable


class Canned:
    status = 200
    body: bytes = b""


@pytest.fixture
def server() -> Iterator[tuple[str, type[Canned]]]:
    class Handler(http.server.BaseHTTPRequestHandler):
        def log_message(self, *_: Any) -> None:
            pass

        def reply(self) -> None:
            self.send_response(Canned.status)
            self.send_header("Content-Type", "application/json")
            self.end_headers()
            self.wfile.write(Canned.body)

        do_GET = reply
        do_POST = reply

    httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    threading.Thread(target=httpd.serve_forever, daemon=True).start()
    yield f"http://127.0.0.1:{httpd.server_address[1]}", Canned
    httpd.shutdown()


def vector(*values: tuple[float, str]) -> bytes:
    """A vector answer; each sample stamped `age` seconds before now (the time of the call)."""
    now = time.time()
    result = [{"metric": {"i": str(i)}, "value": [now - age, v]} for i, (age, v) in enumerate(values)]
    return json.dumps({"status": "success", "data": {"resultType": "vector", "result": result}}).encode()


@pytest.mark.parametrize(
    ("status", "answer", "reason"),
    [
        (200, ((0.0, "NaN"),), "NaN"),
        (200, ((0.0, "+Inf"),), "NaN"),
        (200, (), "NoData"),
        (200, ((0.0, "1"), (0.0, "2")), "AmbiguousResult"),
        (200, ((3600.0, "1"),), "Stale"),
        (503, b"service unavailable", "PrometheusUnreachable"),  # after the client's retries
        (200, b'{"status": "success", "data": ', "QueryFailed"),
    ],
    ids=["nan", "inf", "empty", "two-series", "stale", "503", "garbage"],
)
def test_bad_answers_have_a_reason(
    server: tuple[str, type[Canned]], status: int, answer: bytes | tuple[tuple[float, str], ...], reason: str
) -> None:
    url, canned = server
    canned.status = status
    canned.body = answer if isinstance(answer, bytes) else vector(*answer)
    with pytest.raises(MetricsUnavailable) as caught:
        PrometheusSource(url, timeout_seconds=2).instant("up")
    assert caught.value.reason == reason, caught.value.message


def test_a_fresh_single_sample_is_read(server: tuple[str, type[Canned]]) -> None:
    url, canned = server
    canned.status, canned.body = 200, vector((0.0, "0.25"))
    assert PrometheusSource(url).instant("up") == 0.25
    # Asked for a past time, an answer stamped at that time is fresh.
    canned.body = vector((time.time() - 1_000_000.0, "3"))
    assert PrometheusSource(url).instant("up", at=1_000_000.0) == 3.0


def test_an_unreachable_server_is_named() -> None:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]  # closed again before the query: nothing listens there
    with pytest.raises(MetricsUnavailable) as caught:
        PrometheusSource(f"http://127.0.0.1:{port}", timeout_seconds=1).instant("up")
    assert caught.value.reason == "PrometheusUnreachable"
