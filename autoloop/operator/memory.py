"""The operator process's memory: glibc's malloc arenas capped at start, and an optional trace of
what holds memory (debugging only).

Owns: `limit_malloc_arenas` (settings.malloc_arenas) and `trace_memory`
(settings.tracemalloc_file). Must never: run unless asked (the trace slows every allocation).
Why: passes run in many handler threads; glibc gives each its own arena and keeps its high-water
mark, so RSS climbs to a plateau far above what Python keeps (docs/benchmarks.md, soak).
"""

from __future__ import annotations

import ctypes
import ctypes.util
import os
import threading
import time
from collections.abc import Mapping
from typing import Any, Final

M_ARENA_MAX: Final = -8
"""mallopt's parameter number for the arena limit (glibc malloc.h)."""


def limit_malloc_arenas(arenas: int, environ: Mapping[str, str] = os.environ) -> bool:
    """Cap glibc's malloc arenas at `arenas` (see OperatorSettings.malloc_arenas); True when set.
    Nothing on 0, when MALLOC_ARENA_MAX is set (glibc applied it already) or without glibc."""
    if arenas <= 0 or "MALLOC_ARENA_MAX" in environ:
        return False
    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6")
        mallopt = libc.mallopt
    except (OSError, AttributeError):
        return False
    mallopt.argtypes = [ctypes.c_int, ctypes.c_int]
    mallopt.restype = ctypes.c_int
    return bool(mallopt(M_ARENA_MAX, arenas))


TRACE_FRAMES: Final = 8
TRACE_TOP: Final = 25
TRACE_PEAK_STEP: Final = 32 * 2**20
"""A new high of the traced heap this far above the last one captured is captured too."""


def _rss_mib() -> float:
    """This process's VmRSS in MiB (0 where /proc is missing)."""
    try:
        with open("/proc/self/status") as status:
            for line in status:
                if line.startswith("VmRSS:"):
                    return int(line.split()[1]) / 1024.0
    except OSError:
        pass
    return 0.0


def trace_memory(path: str, every: float, frames: int = TRACE_FRAMES) -> threading.Thread:
    """Debugging memory (settings.tracemalloc_file): `every` seconds after start (start-up is not
    slowed), trace Python allocations from then on and take a baseline snapshot. Then append to
    `path`, every `every` seconds, the RSS, the traced heap (allocated since the baseline and still
    alive) and the TRACE_TOP tracebacks that grew most since the baseline; and, whenever the traced
    heap reaches a new high (TRACE_PEAK_STEP above the last one captured), what holds it then:
    the transient allocations of passes, which never show in a diff of live objects.

    `frames` 0: no tracing (it slows every allocation and its snapshots take memory and the GIL);
    only a line every `every` seconds with the RSS, the interpreter's allocated blocks and the
    objects the garbage collector tracks: whether Python objects grow, at no cost."""
    import gc
    import sys
    import tracemalloc

    started = time.monotonic()

    def write(title: str, stats: list[Any]) -> None:
        current, peak = tracemalloc.get_traced_memory()
        lines = [
            f"== {title}: age {time.monotonic() - started:.0f} s, rss {_rss_mib():.1f} MiB, traced "
            f"{current / 2**20:.1f} MiB (peak {peak / 2**20:.1f}), threads {threading.active_count()}"
        ]
        for stat in stats[:TRACE_TOP]:
            grown = (
                f"{stat.size_diff / 2**10:+.0f} KiB {stat.count_diff:+d} blocks, "
                if title == "growth"
                else ""
            )
            lines.append(f"{grown}now {stat.size / 2**10:.0f} KiB in {stat.count} blocks")
            lines.extend(f"    {frame}" for frame in stat.traceback.format())
        with open(path, "a") as out:
            out.write("\n".join(lines) + "\n")

    def count() -> None:
        while True:
            time.sleep(every)
            line = (
                f"== count: pid {os.getpid()}, age {time.monotonic() - started:.0f} s, rss {_rss_mib():.1f} MiB, "
                f"blocks {sys.getallocatedblocks()}, gc objects {len(gc.get_objects())}, "
                f"threads {threading.active_count()}"
            )
            with open(path, "a") as out:
                out.write(line + "\n")

    def sample() -> None:
        time.sleep(every)
        tracemalloc.start(frames)
        baseline = tracemalloc.take_snapshot()
        captured = 0
        due = time.monotonic() + every
        while True:
            time.sleep(1.0)
            current, _ = tracemalloc.get_traced_memory()
            if current >= captured + TRACE_PEAK_STEP:
                captured = current
                write("high", tracemalloc.take_snapshot().statistics("traceback"))
            if time.monotonic() >= due:
                due += every
                write("growth", tracemalloc.take_snapshot().compare_to(baseline, "traceback"))

    thread = threading.Thread(target=sample if frames > 0 else count, name="tracemalloc", daemon=True)
    thread.start()
    return thread
