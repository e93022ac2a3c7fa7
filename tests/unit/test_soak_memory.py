"""The operator's memory as the soak measures it (issue 18): fill-up versus leak in the RSS
figures, the malloc arena cap and the memory trace hook."""

from __future__ import annotations

import ctypes.util
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest

from autoloop.operator import memory, telemetry
from autoloop.operator.settings import OperatorSettings
from bench._soak_cluster import Incarnation
from bench.soak import rss_growth, rss_late_growth

GLIBC = sys.platform == "linux" and (ctypes.util.find_library("c") or "").startswith("libc.so")

# Eight threads each allocate through malloc at once (bytes objects of 64 kB: above Python's
# small-object allocator, below malloc's mmap threshold), then glibc prints one "Arena N:" block
# per arena to stderr.
ARENAS_SCRIPT = """
import ctypes, sys, threading
from autoloop.operator.memory import limit_malloc_arenas
limit_malloc_arenas(int(sys.argv[1]), {})
start = threading.Barrier(8)
def work():
    start.wait()
    keep = [bytes(65536) for _ in range(200)]
    del keep
threads = [threading.Thread(target=work) for _ in range(8)]
for t in threads: t.start()
for t in threads: t.join()
ctypes.CDLL("libc.so.6").malloc_stats()
"""


def arenas_used(cap: int) -> int:
    done = subprocess.run(
        [sys.executable, "-c", ARENAS_SCRIPT, str(cap)],
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
        env={"PATH": "/usr/bin:/bin", "PYTHONPATH": str(Path(__file__).resolve().parents[2])},
    )
    return sum(1 for line in done.stderr.splitlines() if line.startswith("Arena "))


@pytest.mark.skipif(
    not GLIBC,
    reason="mallopt and malloc_stats are glibc's: this libc is not glibc (the cap is a no-op there)",
)
def test_the_arena_cap_keeps_threads_to_two_arenas() -> None:
    assert arenas_used(0) > 2  # glibc's default: a new arena per thread, up to 8 per CPU
    assert arenas_used(2) <= 2


def test_the_arena_cap_leaves_malloc_arena_max_and_zero_alone() -> None:
    assert not memory.limit_malloc_arenas(2, {"MALLOC_ARENA_MAX": "4"})
    assert not memory.limit_malloc_arenas(0, {})


def test_settings_cap_arenas_by_default_and_refuse_nonsense() -> None:
    assert OperatorSettings().malloc_arenas == 2
    assert OperatorSettings.from_env({"AUTOLOOP_MALLOC_ARENAS": "0"}).malloc_arenas == 0
    with pytest.raises(ValueError, match="malloc_arenas"):
        OperatorSettings(malloc_arenas=-1).validate()
    with pytest.raises(ValueError, match="tracemalloc_every_seconds"):
        OperatorSettings(tracemalloc_every_seconds=0).validate()


def wait_for_lines(path: Path, prefix: str, count: int, timeout: float = 20.0) -> list[str]:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        lines = [x for x in path.read_text().splitlines() if x.startswith(prefix)] if path.exists() else []
        if len(lines) >= count:
            return lines
        time.sleep(0.1)
    raise AssertionError(f"fewer than {count} {prefix!r} lines in {path}")


def test_the_count_mode_reports_rss_blocks_and_objects(tmp_path: Path) -> None:
    out = tmp_path / "memory.txt"
    memory.trace_memory(str(out), 0.2, frames=0)
    line = wait_for_lines(out, "== count:", 2)[0]
    assert "rss " in line and "blocks " in line and "gc objects " in line


def test_the_trace_mode_names_what_grew_since_the_baseline(tmp_path: Path) -> None:
    """Run in a child: tracemalloc is process-wide and the hook's thread never stops."""
    out = tmp_path / "trace.txt"
    script = (
        "import time\n"
        "from autoloop.operator import memory\n"
        f"memory.trace_memory({str(out)!r}, 0.5)\n"
        "time.sleep(0.8)\n"
        "grown = [bytearray(40 * 2**20)]  # a pass holding 40 MiB\n"
        "time.sleep(1.5)\n"
    )
    root = str(Path(__file__).resolve().parents[2])
    subprocess.run([sys.executable, "-c", script], check=True, timeout=60, cwd=root)
    text = out.read_text()
    assert "== high:" in text and "== growth:" in text
    growth = text[text.index("== growth:") :]
    assert growth.splitlines()[1].startswith("+40960 KiB")  # first: the 40 MiB of line 5
    assert 'File "<string>", line 5' in growth.split("\n+")[1]


def incarnation(samples: list[tuple[float, float]]) -> Incarnation:
    return Incarnation(pid=7, started=0.0, log=Path("operator-000.log"), samples=samples)


def test_a_fill_then_plateau_grows_only_in_the_first_half() -> None:
    """Run 7's last process (bench-soak-uvt1a2qr/record.json, every 40 s): +258 MiB from 80 s,
    all but 3 MiB of it before the window's middle (400 s)."""
    rss = [524, 617, 618, 711, 727, 676, 768, 779, 779, 776, 776, 775, 777, 776, 776, 781, 782]
    inc = incarnation([(80.0 + 40.0 * i, float(v)) for i, v in enumerate(rss)])
    assert rss_growth([inc]) == (pytest.approx(258.0), 640.0, 7)
    assert rss_late_growth([inc]) == pytest.approx(3.0)


def test_a_leak_grows_in_the_second_half_too() -> None:
    inc = incarnation([(60.0 + 10.0 * i, 500.0 + 0.5 * i) for i in range(61)])  # 3 MiB a minute
    growth, _, _ = rss_growth([inc])
    assert growth == pytest.approx(30.0)
    assert rss_late_growth([inc]) == pytest.approx(15.0)
    assert rss_late_growth([incarnation([(10.0, 1.0)])]) is None


def test_resources_deleted_for_good_leave_no_mark_behind(monkeypatch: pytest.MonkeyPatch) -> None:
    """A deleted resource's updates are dropped for a grace period; resources deleted and never
    seen again (a CI creating uniquely named loops) must not leave one mark each for the life of
    the process."""
    clock = [5000.0]
    monkeypatch.setattr(telemetry.time, "monotonic", lambda: clock[0])
    monkeypatch.setattr(telemetry, "_forgotten", {})
    sweeps: list[float] = []

    class Timer:  # the delayed sweep of the Ready series: not run here
        def __init__(self, interval: float, fn: Any, args: tuple[Any, ...]) -> None:
            sweeps.append(interval)
            self.daemon = False

        def start(self) -> None:
            pass

    monkeypatch.setattr(telemetry.threading, "Timer", Timer)
    for i in range(1000):
        telemetry.forget(telemetry.LOOP_KIND, "ns", f"gone-{i}", grace=60.0)
        clock[0] += 1.0
    assert len(sweeps) == 1000
    # Only the marks of the last grace period remain, and they still drop late updates.
    assert len(telemetry._forgotten) == 60
    assert (telemetry.LOOP_KIND, "ns", "gone-999") in telemetry._forgotten
    assert (telemetry.LOOP_KIND, "ns", "gone-939") not in telemetry._forgotten
