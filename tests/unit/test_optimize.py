"""Golden-section search and the candidate grid."""

from __future__ import annotations

import math

import pytest

from autoloop.engines import optimize


@pytest.mark.parametrize(
    ("f", "lo", "hi", "x_star"),
    [
        (lambda x: (x - 2.0) ** 2, 0.0, 5.0, 2.0),
        # cost + SLO-penalty shape: minimum of x + 1/x on [0.1, 10] is at x = 1.
        (lambda x: x + 1.0 / x, 0.1, 10.0, 1.0),
        # Monotone: the minimum sits on the lower edge.
        (lambda x: x, 3.0, 4.0, 3.0),
    ],
)
def test_golden_section_finds_minimum(f, lo, hi, x_star) -> None:  # type: ignore[no-untyped-def]
    r = optimize.golden_section(f, lo, hi, tol=1e-6)
    assert r.x == pytest.approx(x_star, abs=1e-4 * (hi - lo))
    assert r.fx == pytest.approx(f(r.x))


def test_golden_section_uses_one_evaluation_per_iteration() -> None:
    calls = []

    def f(x: float) -> float:
        calls.append(x)
        return (x - 1.0) ** 2

    r = optimize.golden_section(f, 0.0, 4.0, tol=1e-3)
    # Bracket shrinks by 0.618 per step: 0.618^n <= 1e-3 needs n = 15 steps, plus 2 initial calls.
    assert r.evaluations == len(calls) == 2 + math.ceil(math.log(1e-3) / math.log(optimize.INV_PHI))


def test_golden_section_rejects_empty_interval() -> None:
    with pytest.raises(ValueError):
        optimize.golden_section(lambda x: x, 1.0, 0.0)


def test_candidate_grid_respects_bounds_and_step() -> None:
    cands = optimize.candidate_grid(
        {"replicas": 4, "cpu_request": 1.0}, {"replicas": (1, 5), "cpu_request": (0.5, 1.2)}, 0.5
    )
    assert cands[0] == {"cpu_request": 1.0, "replicas": 4}
    reps = {c["replicas"] for c in cands}
    cpus = {c["cpu_request"] for c in cands}
    # replicas: ±0.25*0.5*4=0.5 -> at least 1; ±0.5*4*0.5=1 ; ±1*0.5*4=2 -> 2,3,4,5 (6 clipped to 5).
    assert reps == {2, 3, 4, 5}
    # cpu: 1.0 ± {0.125, 0.25, 0.5}, clipped to [0.5, 1.2].
    assert cpus == {0.5, 0.75, 0.875, 1.0, 1.125, 1.2}
    assert len(cands) == len({tuple(sorted(c.items())) for c in cands}) == len(reps) * len(cpus)


def test_best_candidate_ties_keep_first() -> None:
    best, score = optimize.best_candidate([{"a": 1.0}, {"a": 2.0}], lambda c: 0.0)
    assert best == {"a": 1.0} and score == 0.0
