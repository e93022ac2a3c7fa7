"""Strategic refits off the loops' path: one worker thread, at most one refit per loop in flight.

A pass that finds a refit due submits it with a snapshot of the engine state and goes on with the
current model; a later pass collects the finished result and adopts it (or drops it when the
state moved to another model meanwhile). A refit lost to an operator restart is simply due again.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor
from typing import Final, Generic, TypeVar

log = logging.getLogger(__name__)

MAX_WORKERS: Final = 1
"""Refits are CPU-bound and rare; one thread keeps them from competing with the passes."""

UNCOLLECTED_SECONDS: Final = 86400.0
"""A finished refit nobody collected for a day belongs to a loop that is gone: dropped."""

R = TypeVar("R")


class BackgroundRefits(Generic[R]):
    """Futures keyed by loop uid."""

    def __init__(self, max_workers: int = MAX_WORKERS) -> None:
        self._pool = ThreadPoolExecutor(max_workers=max_workers, thread_name_prefix="refit")
        self._futures: dict[str, Future[R]] = {}
        self._submitted: dict[str, float] = {}
        self._lock = threading.Lock()

    def in_flight(self, key: str) -> bool:
        with self._lock:
            return key in self._futures

    def submit(self, key: str, refit: Callable[[], R]) -> bool:
        """Start `refit` unless one is already running or waiting for `key`; True if started."""
        with self._lock:
            self._drop_uncollected(time.monotonic())
            if key in self._futures:
                return False
            self._futures[key] = self._pool.submit(refit)
            self._submitted[key] = time.monotonic()
            return True

    def _drop_uncollected(self, now: float) -> None:
        """Finished futures older than UNCOLLECTED_SECONDS: their loop was deleted before a pass
        collected them (held under the lock)."""
        for key in [
            k for k, f in self._futures.items() if f.done() and now - self._submitted[k] > UNCOLLECTED_SECONDS
        ]:
            del self._futures[key], self._submitted[key]

    def collect(self, key: str) -> R | None:
        """The finished result for `key` (once), or None while running / when none was submitted.
        A refit that raised is logged and dropped: it will be due again on the next pass."""
        with self._lock:
            future = self._futures.get(key)
            if future is None or not future.done():
                return None
            del self._futures[key], self._submitted[key]
        error = future.exception()
        if error is not None:
            log.warning("strategic refit for %s failed: %s", key, error)
            return None
        return future.result()

    def shutdown(self) -> None:
        self._pool.shutdown(wait=False, cancel_futures=True)
