"""The soak's fault schedule: which fault, when, and a seed for its details (pure).

Each kind of fault is its own renewal process: the gap to its next occurrence is drawn uniformly
from the kind's range, so the faults interleave irregularly, every few seconds in all. One
`random.Random(seed)` draws the whole schedule, kind by kind in a fixed order, so `--seed N` gives
the same faults at the same offsets with the same details on every run (the details, such as which
Deployment a person scales and to what, are drawn from each fault's own `arg` at run time).
"""

from __future__ import annotations

import random
from dataclasses import dataclass
from typing import Final

OPERATOR_KILL: Final = "operator-kill"
OPERATOR_RESTART: Final = "operator-restart"
PROMETHEUS_RESTART: Final = "prometheus-restart"
APISERVER_RESTART: Final = "apiserver-restart"
EDIT_REPLICAS: Final = "edit-replicas"
EDIT_LOOP_SPEC: Final = "edit-loop-spec"
EDIT_BUDGET: Final = "edit-budget"
KINDS: Final[tuple[str, ...]] = (
    OPERATOR_KILL,
    OPERATOR_RESTART,
    PROMETHEUS_RESTART,
    APISERVER_RESTART,
    EDIT_REPLICAS,
    EDIT_LOOP_SPEC,
    EDIT_BUDGET,
)
GRACEFUL_SHARE: Final = 0.25
"""Of the operator restarts, this share is a graceful stop (SIGTERM), the rest SIGKILL."""
OPERATOR_SHARE: Final = 2.0 / 3.0
"""Operator restarts fall in the first two thirds of the period; the incarnation started by the
last one then lives through the last third (the other faults go on) and the settle period, which
gives the RSS growth a window of minutes in a full run."""


@dataclass(frozen=True)
class Gaps:
    """Ranges (seconds) of the gap between two faults of one kind; the first one comes after
    `first` seconds drawn from the same range scaled by `first_scale`."""

    operator: tuple[float, float]
    prometheus: tuple[float, float]
    apiserver: tuple[float, float]
    edit_replicas: tuple[float, float] = (3.0, 8.0)
    edit_loop_spec: tuple[float, float] = (8.0, 20.0)
    edit_budget: tuple[float, float] = (10.0, 25.0)


FULL_GAPS: Final = Gaps(operator=(40.0, 150.0), prometheus=(60.0, 180.0), apiserver=(300.0, 480.0))
"""30 minutes: ~18 operator restarts, ~15 Prometheus restarts, 4-5 apiserver crashes."""
QUICK_GAPS: Final = Gaps(operator=(22.0, 38.0), prometheus=(35.0, 60.0), apiserver=(0.0, 0.0))
"""90 s: 2-3 operator restarts, 1-2 Prometheus restarts; the apiserver crash is placed by
`schedule` once in the middle third."""


@dataclass(frozen=True, order=True)
class Fault:
    at: float
    """Seconds after the fault period starts."""
    kind: str
    arg: int
    """Seeds the fault's details (target, new value) at run time."""


def _renewal(rng: random.Random, kind: str, gaps: tuple[float, float], duration: float) -> list[Fault]:
    out: list[Fault] = []
    t = rng.uniform(*gaps) / 2  # the first comes sooner: faults start with the period
    while t < duration:
        out.append(Fault(at=round(t, 3), kind=kind, arg=rng.getrandbits(32)))
        t += rng.uniform(*gaps)
    return out


def _operator(rng: random.Random, gaps: tuple[float, float], duration: float) -> list[Fault]:
    out = []
    for f in _renewal(rng, OPERATOR_KILL, gaps, duration):
        graceful = rng.random() < GRACEFUL_SHARE
        out.append(Fault(at=f.at, kind=OPERATOR_RESTART if graceful else OPERATOR_KILL, arg=f.arg))
    return out


def _apiserver(rng: random.Random, gaps: tuple[float, float], duration: float) -> list[Fault]:
    """Rare: once in the middle third when a gap does not fit twice into the period, else a
    renewal process."""
    if gaps[1] <= 0.0 or duration < 2 * gaps[0]:
        return [
            Fault(at=round(rng.uniform(duration / 3, 2 * duration / 3), 3), kind=APISERVER_RESTART, arg=0)
        ]
    return _renewal(rng, APISERVER_RESTART, gaps, duration)


def schedule(seed: int, duration: float, gaps: Gaps) -> list[Fault]:
    """Every fault of a period of `duration` seconds, in time order."""
    rng = random.Random(seed)
    faults = [
        *_operator(rng, gaps.operator, duration * OPERATOR_SHARE),
        *_renewal(rng, PROMETHEUS_RESTART, gaps.prometheus, duration),
        *_apiserver(rng, gaps.apiserver, duration),
        *_renewal(rng, EDIT_REPLICAS, gaps.edit_replicas, duration),
        *_renewal(rng, EDIT_LOOP_SPEC, gaps.edit_loop_spec, duration),
        *_renewal(rng, EDIT_BUDGET, gaps.edit_budget, duration),
    ]
    return sorted(faults)


def gaps_for(duration: float) -> Gaps:
    """Quick runs (under 10 minutes of faults) use the quick gaps, longer ones the full ones."""
    return QUICK_GAPS if duration < 600.0 else FULL_GAPS
