"""An HTTP proxy in front of the real Prometheus that passes requests through or answers in one
fault mode at a time: error (503), slow, garbage JSON, or the real answer rewritten to NaN, +Inf,
empty or an hour stale."""

from __future__ import annotations

import contextlib
import http.server
import json
import threading
import time
import urllib.request
from typing import Any

SLOW_SECONDS = 6.0
"""How long `slow` holds an answer: longer than the timeouts the tests give their clients."""


class FaultProxy:
    """Forwards GETs and POSTs to Prometheus, or answers in the fault `mode` it is set to."""

    def __init__(self, upstream: str) -> None:
        self.upstream = upstream
        self.mode = "pass"
        self.calls = 0
        proxy = self

        class Handler(http.server.BaseHTTPRequestHandler):
            def log_message(self, *_: Any) -> None:
                pass

            def do_GET(self) -> None:
                proxy.answer(self, None)

            def do_POST(self) -> None:
                proxy.answer(self, self.rfile.read(int(self.headers.get("Content-Length") or 0)))

        self.server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def forward(self, handler: http.server.BaseHTTPRequestHandler, body: bytes | None) -> tuple[int, bytes]:
        req = urllib.request.Request(self.upstream + handler.path, data=body, method=handler.command)
        if body is not None:
            req.add_header(
                "Content-Type", handler.headers.get("Content-Type", "application/x-www-form-urlencoded")
            )
        with urllib.request.urlopen(req, timeout=30) as resp:
            return resp.status, resp.read()

    def answer(self, handler: http.server.BaseHTTPRequestHandler, body: bytes | None) -> None:
        self.calls += 1
        mode = self.mode
        status, payload = 200, b""
        if mode == "error":
            status, payload = 503, b"service unavailable"
        elif mode == "slow":
            time.sleep(SLOW_SECONDS)
            status, payload = self.forward(handler, body)
        elif mode == "garbage":
            payload = b'{"status": "success", "data": '
        else:
            status, payload = self.forward(handler, body)
            if mode in ("nan", "inf", "empty", "stale") and handler.path.startswith("/api/v1/query"):
                payload = json.dumps(self.rewrite(json.loads(payload), mode)).encode()
        handler.send_response(status)
        handler.send_header("Content-Type", "application/json")
        handler.send_header("Content-Length", str(len(payload)))
        handler.end_headers()
        with contextlib.suppress(OSError):  # the operator gave up on a slow answer
            handler.wfile.write(payload)

    @staticmethod
    def rewrite(answer: dict[str, Any], mode: str) -> dict[str, Any]:
        data = answer.get("data", {})
        if mode == "empty":
            data["result"] = []
            return answer
        for series in data.get("result", []):
            if "value" in series:
                series["value"] = FaultProxy.sample(series["value"], mode)
            if "values" in series:
                series["values"] = [FaultProxy.sample(v, mode) for v in series["values"]]
        return answer

    @staticmethod
    def sample(point: list[Any], mode: str) -> list[Any]:
        if mode == "nan":
            return [point[0], "NaN"]
        if mode == "inf":
            return [point[0], "+Inf"]
        return [float(point[0]) - 3600.0, point[1]]  # stale: an hour old

    def close(self) -> None:
        self.server.shutdown()
