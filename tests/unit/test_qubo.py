"""Tests of the QUBO builders, the annealing wrapper and the `Auto` rule (autoloop.engines.qubo)."""

from __future__ import annotations

import itertools

import dimod
import numpy as np
import pytest
from dwave.samplers.sa.sampler import _default_ising_beta_range

from autoloop.engines import qubo


@pytest.mark.parametrize(
    ("ones", "expected"),
    [
        # strength * (sum(x) - 1)**2 with strength 3: 0 ones -> 3, 1 -> 0, 2 -> 3, 3 -> 12.
        ((), 3.0),
        ((0,), 0.0),
        ((2,), 0.0),
        ((0, 1), 3.0),
        ((0, 1, 2), 12.0),
    ],
)
def test_one_hot_penalty_energy(ones: tuple[int, ...], expected: float) -> None:
    bqm = dimod.BinaryQuadraticModel(dimod.BINARY)
    add = ["a", "b", "c"]
    qubo.add_one_hot(bqm, add, 3.0)
    sample = {v: int(k in ones) for k, v in enumerate(add)}
    assert bqm.energy(sample) == pytest.approx(expected)


def test_one_hot_rejects_non_positive_strength() -> None:
    with pytest.raises(ValueError, match="positive"):
        qubo.add_one_hot(dimod.BinaryQuadraticModel(dimod.BINARY), ["a", "b"], 0.0)


def test_decode_one_hot_positions() -> None:
    sample = {"a": 0, "b": 1, "c": 1, "d": 0, "e": 0}
    assert qubo.decode_one_hot(sample, [["a", "b"], ["c", "d", "e"], ["d"]]) == [[1], [0], []]


@pytest.mark.parametrize("max_units", [1, 2, 5, 7, 8, 100, 255])
def test_slack_weights_reach_every_value_exactly_once_range(max_units: int) -> None:
    w = qubo._slack_weights(max_units).astype(int)
    reachable = {sum(c) for r in range(len(w) + 1) for c in itertools.combinations(w, r)}
    assert reachable == set(range(max_units + 1))


def _brute_force(obj: np.ndarray, group: np.ndarray, use: np.ndarray, cap: np.ndarray) -> float:
    menus = [np.flatnonzero(group == g) for g in range(int(group.max()) + 1)]
    best = np.inf
    for pick in itertools.product(*menus):
        idx = list(pick)
        if (use[idx].sum(axis=0) <= cap + 1e-9).all():
            best = min(best, float(obj[idx].sum()))
    return best


@pytest.mark.parametrize("seed", [0, 1, 2, 3, 4, 5])
def test_choice_qubo_ground_state_is_the_feasible_optimum(seed: int) -> None:
    # 3 groups x 3 options, one capacity that binds: the exact ground state of the BQM must decode
    # to a feasible choice whose objective equals the brute-force constrained optimum.
    rng = np.random.default_rng(seed)
    group = np.repeat(np.arange(3), 3)
    use = rng.uniform(1.0, 10.0, (9, 1))
    # Objective falls as use rises (more resources, less risk): the capacity is what stops it.
    obj = 20.0 - 1.5 * use[:, 0] + rng.uniform(0.0, 1.0, 9)
    gmin = np.array([use[group == g, 0].min() for g in range(3)])
    gmax = np.array([use[group == g, 0].max() for g in range(3)])
    cap = np.array([gmin.sum() + 0.5 * (gmax.sum() - gmin.sum())])
    model = qubo.build_choice_qubo(obj, group, use, cap, slack_bits=4)
    assert model.constrained_resources == (0,)
    ground = dimod.ExactSolver().sample(model.bqm).first.sample
    chosen = [
        j for j in range(9) if model.option_variable[j] >= 0 and ground[int(model.option_variable[j])] == 1
    ]
    assert sorted(group[chosen].tolist()) == [0, 1, 2]  # exactly one per group
    assert use[chosen, 0].sum() <= cap[0] + 1e-9
    # Rounding uses up to 1/15 of the headroom can exclude a barely-feasible optimum; the
    # ground state is then the best choice feasible in rounded units, within one unit's value.
    best = _brute_force(obj, group, use, cap)
    assert obj[chosen].sum() == pytest.approx(best, rel=0.05)


def test_non_binding_capacity_is_left_out() -> None:
    group = np.array([0, 0, 1, 1])
    use = np.array([[1.0], [2.0], [1.0], [2.0]])
    model = qubo.build_choice_qubo(np.array([2.0, 1.0, 2.0, 1.0]), group, use, np.array([4.0]))
    # Largest options sum to 4 <= capacity 4: nothing to enforce, no slack variables.
    assert model.constrained_resources == ()
    assert model.bqm.num_variables == 4


def test_sample_bqm_is_repeatable_and_finds_the_one_hot_minimum() -> None:
    bqm = dimod.BinaryQuadraticModel({"a": 1.0, "b": 0.5, "c": 2.0}, {}, 0.0, dimod.BINARY)
    qubo.add_one_hot(bqm, ["a", "b", "c"], 5.0)
    first = qubo.sample_bqm(bqm, num_reads=8, num_sweeps=200, random_state=7)
    again = qubo.sample_bqm(bqm, num_reads=8, num_sweeps=200, random_state=7)
    # Minimum: only "b" on, energy 0.5 (the one-hot term is 0).
    assert first.first.sample == {"a": 0, "b": 1, "c": 0}
    assert first.first.energy == pytest.approx(0.5)
    assert np.array_equal(first.record.sample, again.record.sample)
    assert first.info["num_reads"] == 8


def test_sample_bqm_time_limit_still_returns_a_read() -> None:
    bqm = dimod.BinaryQuadraticModel({"a": -1.0, "b": 1.0}, {("a", "b"): 0.5}, 0.0, dimod.BINARY)
    out = qubo.sample_bqm(bqm, num_reads=50, num_sweeps=100, time_limit_seconds=0.0, random_state=0)
    assert 1 <= out.info["num_reads"] < 50


def test_sample_bqm_rejects_empty_model() -> None:
    with pytest.raises(ValueError, match="no variables"):
        qubo.sample_bqm(dimod.BinaryQuadraticModel(dimod.BINARY))


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_beta_range_matches_dwave_default(seed: int) -> None:
    bqm = dimod.generators.gnp_random_bqm(12, 0.5, "BINARY", random_state=seed)
    h, J, _ = bqm.to_ising()
    expected = _default_ising_beta_range(h, J)
    assert qubo.ising_beta_range(bqm) == pytest.approx(tuple(expected), rel=1e-9)


@pytest.mark.parametrize(
    ("variables", "interactions", "time_limit", "expected"),
    [
        (qubo.AUTO_MAX_QUBO_VARIABLES + 1, 0, 1e9, "CPSAT"),  # too large to hold densely
        # 100 variables, 4,950 interactions: 4 reads x 1000 sweeps x 4950 / 2e8 = 0.1 s <= 3 s.
        (100, 4950, 10.0, "Portfolio"),
        # 1,000 dense variables: 4 x 1000 x 499,500 / 2e8 = 10 s > 0.3 x 10 s.
        (1000, 499_500, 10.0, "CPSAT"),
    ],
)
def test_choose_solver(variables: int, interactions: int, time_limit: float, expected: str) -> None:
    assert qubo.choose_solver(variables, interactions, time_limit_seconds=time_limit) == expected


@pytest.mark.parametrize(
    ("binding", "expected"),
    [
        # Groups of 3 and 2 options plus 8 slack bits: 13 variables, all 78 pairs interact.
        (True, (13, 78)),
        # No binding capacity: only one-hot pairs, 3 + 1 = 4 interactions among 5 options.
        (False, (5, 4)),
    ],
)
def test_choice_qubo_size(binding: bool, expected: tuple[int, int]) -> None:
    assert qubo.choice_qubo_size(np.array([0, 0, 0, 1, 1]), binding) == expected
