"""Clairvoyant bound for bench/rightsizing under a limit on the days that may see a change.

Issue 21 asks for >= 75 % of workload-days without a change, so the question that matters is:
at VPA's overrun, what is the least cost of *any* request schedule, even one that knows the
future, that changes the request on at most a fraction F of the days (the bench passes 25 %)?

Weak Lagrangian duality answers it without enumerating schedules. For any lambda, mu >= 0,
    min over schedules of [cost + lambda * overrun + mu * change_days]
        <= cost* + lambda * V + mu * F
for the constrained optimum cost* (overrun <= V, change-day fraction <= F), so
    cost* >= max over lambda, mu of (L(lambda, mu) - lambda * V - mu * F).
L is computed exactly by dynamic programming over the 15-minute gate slots. The schedule class
is relaxed so that the bound holds for every schedule the bench's gate can produce:
- On a change day the request may change at every slot boundary. The issue's p99 <= 6 changes
  a day is not imposed.
- A change at a day boundary may count for either day.
- The level at the start of the first scored day is free (day 1 is warm-up for every recommender).
- Levels are grid intervals [lo, hi]. A slot is charged cost at lo and overrun at hi, which is
  never more than any level inside the interval gives. Levels above the series' maximum are
  dominated by the maximum.
The same DP charged at the grid levels themselves gives real schedules (achievable points). The
least cost among them at overrun <= V and change days <= F shows how tight the bound is. (Their
midnight changes are counted for whichever day suits; the bench's gate counts a change that takes
effect at midnight for the day that ends, so a schedule may need such a change 15 min later.)

Costs and overruns use the bench's day metrics: cost of a day = mean request / the series' mean
usage; overrun of a day = usage area above the request / that day's usage area; both are
averaged over all scored days of all series.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Final

import numpy as np

from bench import _rs_series

MIN_PER_DAY: Final[int] = _rs_series.MINUTES_PER_DAY
SLOT_MIN: Final[int] = 15  # the bench's gate interval
SLOTS_PER_DAY: Final[int] = MIN_PER_DAY // SLOT_MIN
# Level grid per series: usage quantiles (dense where usage is) and a geometric fill to the maximum.
QUANTILE_LEVELS: Final[int] = 200
GEOMETRIC_LEVELS: Final[int] = 100
LAMBDAS: Final[np.ndarray] = np.geomspace(0.1, 100.0, 30)
MUS: Final[np.ndarray] = np.concatenate([[0.0], np.geomspace(1e-3, 1.0, 12)])


@dataclass(frozen=True)
class OracleSweep:
    """Pooled Lagrangian values and achievable points over the (lambda, mu) grid."""

    lower: np.ndarray  # L(lambda, mu) with interval-relaxed charges, shape (len(LAMBDAS), len(MUS))
    cost: np.ndarray  # achievable schedules' mean cost, same shape
    overrun: np.ndarray  # their mean overrun
    change_days: np.ndarray  # their fraction of days with a change


@dataclass(frozen=True)
class SlotCharges:
    """What holding a level for one slot adds to the pooled means, per (slot, grid level).

    Level i stands for the interval [grid[i - 1], grid[i]]: `cost_low` is the cost at its low
    end (a lower bound for any level inside), `cost` the cost at grid[i], `overrun` the overrun at
    grid[i] (the least inside)."""

    grid: np.ndarray
    cost_low: np.ndarray
    cost: np.ndarray
    overrun: np.ndarray


def slot_charges(usage: np.ndarray, days: int, norm: float, n_total: int) -> SlotCharges:
    """Charges for `days` whole days of `usage`, weighted by 1 / n_total days and normalised by
    the series' mean usage `norm`, as the bench's day metrics are."""
    top = float(np.max(usage)) or 1.0
    grid = np.unique(
        np.concatenate(
            [
                [0.0],
                np.quantile(usage, np.linspace(0.0, 1.0, QUANTILE_LEVELS)),
                np.geomspace(top / 100.0, top, GEOMETRIC_LEVELS),
            ]
        )
    )
    lo = np.concatenate([[0.0], grid[:-1]])
    slots = usage.reshape(days, SLOTS_PER_DAY, SLOT_MIN)
    day_area = np.maximum(slots.sum(axis=(1, 2)), 1e-12)
    excess = np.maximum(slots[..., None] - grid[None, None, None, :], 0.0).sum(axis=2)
    n_slots = days * SLOTS_PER_DAY
    cost_w = SLOT_MIN / MIN_PER_DAY / norm / n_total
    return SlotCharges(
        grid=grid,
        cost_low=np.broadcast_to(lo * cost_w, (n_slots, grid.size)),
        cost=np.broadcast_to(grid * cost_w, (n_slots, grid.size)),
        overrun=(excess / day_area[:, None, None] / n_total).reshape(n_slots, grid.size),
    )


def lagrangian_dp(
    cost: np.ndarray,
    over: np.ndarray,
    *,
    lambdas: np.ndarray = LAMBDAS,
    mus: np.ndarray = MUS,
    day_w: float,
    slots_per_day: int = SLOTS_PER_DAY,
    max_changes: int | None,
    track: bool,
) -> tuple[np.ndarray, ...]:
    """min over schedules of cost + lambda * overrun + mu * day_w * change days, for every
    (lambda, mu). `cost` and `over` are (slots, levels): the charge of holding each level in each
    slot. Returns the minima, shape (lambdas, mus), and with `track` the minimising schedules'
    summed cost, overrun and day_w * change days (carried along with the value, so they describe
    one real schedule).

    State per (lambda, mu): the level and how many changes today saw (0 .. `max_changes`; with
    None, "one or more" is a single state).
    """
    n_states = 2 if max_changes is None else max_changes + 1
    lam = lambdas[:, None, None, None]
    mu = mus[None, :, None, None] * day_w
    shape = (lambdas.size, mus.size, n_states, cost.shape[1])
    v = np.full(shape, np.inf)
    v[:, :, 0, :] = 0.0
    comps = [np.zeros(shape) for _ in range(3)] if track else []

    def switch() -> None:
        """Change to any level now: state k's best value moves to state k + 1."""
        idx = np.argmin(v, axis=3)[..., None]
        best = np.take_along_axis(v, idx, axis=3)
        picked = [np.take_along_axis(c, idx, axis=3) for c in comps]
        for k in reversed(range(n_states)):
            dst = k + 1 if k + 1 < n_states else (k if max_changes is None else None)
            if dst is None:
                continue
            take = best[:, :, k] < v[:, :, dst]
            v[:, :, dst] = np.where(take, best[:, :, k], v[:, :, dst])
            for c, p in zip(comps, picked, strict=True):
                c[:, :, dst] = np.where(take, p[:, :, k], c[:, :, dst])

    def close_day() -> None:
        """End of a day: fold the changed states into state 0, charging mu for the change day."""
        for k in range(1, n_states):
            take = v[:, :, k] + mu[:, :, 0] < v[:, :, 0]
            v[:, :, 0] = np.where(take, v[:, :, k] + mu[:, :, 0], v[:, :, 0])
            for i, c in enumerate(comps):
                c[:, :, 0] = np.where(take, c[:, :, k] + (day_w if i == 2 else 0.0), c[:, :, 0])
        v[:, :, 1:] = np.inf

    for s in range(cost.shape[0]):
        if s % slots_per_day == 0 and s > 0:
            switch()  # a change at the day boundary may count for the day that ends
            close_day()
        switch()
        c_s, o_s = cost[s], over[s]
        v += c_s + lam * o_s
        if track:
            comps[0] += c_s
            comps[1] += o_s
    close_day()
    idx = np.argmin(v[:, :, 0], axis=2)[..., None]
    return (
        np.take_along_axis(v[:, :, 0], idx, axis=2)[..., 0],
        *(np.take_along_axis(c[:, :, 0], idx, axis=2)[..., 0] for c in comps),
    )


def sweep(
    series: list[_rs_series.Series], warmup_days: int, caps: tuple[int | None, ...]
) -> dict[int | None, OracleSweep]:
    """Pooled over `series` (their days after `warmup_days`), every (lambda, mu) of the grid, for
    each cap on the changes of a change day (None: any number). A series' charges are computed
    once for all caps."""
    scored = [(s, s.usage.size // MIN_PER_DAY - warmup_days) for s in series]
    n_total = sum(d for _, d in scored if d > 0)
    w = 1.0 / n_total
    shape = (LAMBDAS.size, MUS.size)
    sums = {cap: [np.zeros(shape) for _ in range(4)] for cap in caps}
    for s, days in scored:
        if days <= 0:
            continue
        norm = float(np.mean(s.usage)) or 1.0
        u = s.usage[warmup_days * MIN_PER_DAY : (warmup_days + days) * MIN_PER_DAY]
        ch = slot_charges(u, days, norm, n_total)
        for cap, (lower, cost, overrun, chg) in sums.items():
            lower += lagrangian_dp(ch.cost_low, ch.overrun, day_w=w, max_changes=cap, track=False)[0]
            _, c, o, n = lagrangian_dp(ch.cost, ch.overrun, day_w=w, max_changes=cap, track=True)
            cost += c
            overrun += o
            chg += n
    return {cap: OracleSweep(*parts) for cap, parts in sums.items()}


def bounds(sw: OracleSweep, overrun: float, change_fraction: float) -> tuple[float, float]:
    """(lower bound, least achievable) mean cost at mean overrun <= `overrun` with at most
    `change_fraction` of the days changed. The achievable figure is nan if no swept schedule
    meets both limits."""
    dual = sw.lower - LAMBDAS[:, None] * overrun - MUS[None, :] * change_fraction
    ok = (sw.overrun <= overrun) & (sw.change_days <= change_fraction)
    achievable = float(np.min(sw.cost[ok])) if ok.any() else float("nan")
    return float(np.max(dual)), achievable
