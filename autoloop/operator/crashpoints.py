"""Named points where a fault test can kill the operator: `AUTOLOOP_CRASH_AT=<point>` SIGKILLs the
process when a pass reaches that point, as a crash would (no clean-up, no final status write).

Unset (always, outside tests) a point is one dictionary lookup. The cluster tests use them to show
that a crash between any two writes of a decision loses nothing and applies nothing twice.
"""

from __future__ import annotations

import os
import signal
from typing import Final

POINTS: Final[tuple[str, ...]] = (
    "loop-before-intent",
    "loop-after-intent",
    "loop-after-patch",
    "allocation-after-intent",
    "allocation-after-patch",
    "plan-after-cordon",
    "plan-after-evict",
    "plan-after-act",
    "plan-after-uncordon",
)
ENV: Final = "AUTOLOOP_CRASH_AT"


def reached(point: str) -> None:
    """Die here if this is the point the environment names."""
    if point not in POINTS:
        raise ValueError(f"unknown crash point {point!r}")
    if os.environ.get(ENV) == point:
        os.kill(os.getpid(), signal.SIGKILL)
