"""Watching the scale bench's loops from the outside: each loop's pass starts and what a watcher
receives for every status write.

One thread lists the run's OptimizationLoops once, then watches from the list's resourceVersion
(renewed every WATCH_SECONDS, resumed after an error, listed again after 410 Gone). Each event is
reduced at once to (lastRunTime, phase) and the size of the object a watcher was sent; the objects
themselves are not kept.
"""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, Final

from kubernetes import watch
from kubernetes.client.exceptions import ApiException

from autoloop.api.common import GROUP, parse_time
from autoloop.operator import kube
from bench._scale_figures import Run
from bench._soak_cluster import REQUEST_TIMEOUT
from bench._soak_objects import VERSION

WATCH_SECONDS: Final = 30
PLURAL: Final = "optimizationloops"


@dataclass
class Seen:
    """What the watch saw of the run's loops, under one lock."""

    runs: dict[str, dict[float, str]] = field(default_factory=dict)
    """namespace/name -> lastRunTime (epoch seconds) -> the last phase seen with it."""
    event_bytes: list[tuple[float, int]] = field(default_factory=list)
    """(time received, bytes of the object) of every MODIFIED event: what each watcher of
    OptimizationLoops is sent per write."""
    errors: int = 0
    lock: threading.Lock = field(default_factory=threading.Lock)

    def note(self, obj: dict[str, Any], received: float, *, modified: bool) -> None:
        meta = obj.get("metadata") or {}
        key = f"{meta.get('namespace')}/{meta.get('name')}"
        status = obj.get("status") or {}
        with self.lock:
            runs = self.runs.setdefault(key, {})
            last = status.get("lastRunTime")
            if isinstance(last, str):
                runs[parse_time(last).timestamp()] = str(status.get("phase") or "")
            if modified:
                self.event_bytes.append((received, len(json.dumps(obj, separators=(",", ":")))))

    def started_since(self, moment: float) -> int:
        """Loops whose latest pass started at or after `moment` (whole seconds, so 1 s slack)."""
        with self.lock:
            return sum(1 for runs in self.runs.values() if runs and max(runs) >= moment - 1.0)

    def snapshot(self) -> tuple[dict[str, list[Run]], list[tuple[float, int]]]:
        with self.lock:
            runs = {k: [Run(at=at, phase=phase) for at, phase in v.items()] for k, v in self.runs.items()}
            return runs, list(self.event_bytes)


def _list(clients: kube.Clients, selector: str) -> tuple[list[dict[str, Any]], str]:
    answer: Any = clients.custom.list_cluster_custom_object(
        GROUP,
        VERSION,
        PLURAL,
        label_selector=selector,
        _request_timeout=REQUEST_TIMEOUT,
        _preload_content=False,
    )
    data = json.loads(answer.data)
    return list(data.get("items") or []), str(data["metadata"]["resourceVersion"])


def _watch_once(clients: kube.Clients, seen: Seen, selector: str, version: str) -> str:
    """One watch request from `version`; the last resourceVersion seen."""
    stream = watch.Watch().stream(
        clients.custom.list_cluster_custom_object,
        GROUP,
        VERSION,
        PLURAL,
        label_selector=selector,
        resource_version=version,
        timeout_seconds=WATCH_SECONDS,
        _request_timeout=(REQUEST_TIMEOUT[0], WATCH_SECONDS + 10),
    )
    for event in stream:
        obj = event.get("raw_object") or {}
        if event.get("type") == "ERROR":
            raise ApiException(status=int(obj.get("code") or 500), reason=str(obj.get("message")))
        version = str((obj.get("metadata") or {}).get("resourceVersion") or version)
        seen.note(obj, time.time(), modified=event.get("type") == "MODIFIED")
    return version


def watch_loops(
    connect: Callable[[], kube.Clients], seen: Seen, stop: threading.Event, selector: str
) -> None:
    """List, then watch until `stop` is set (a daemon thread's body)."""
    version = ""
    while not stop.is_set():
        try:
            clients = connect()
            if not version:
                listed, version = _list(clients, selector)
                now = time.time()
                for obj in listed:
                    seen.note(obj, now, modified=False)
            version = _watch_once(clients, seen, selector, version)
        except ApiException as exc:
            seen.errors += 1
            if exc.status == 410:
                version = ""
            stop.wait(1.0)
        except Exception:
            seen.errors += 1
            stop.wait(1.0)
