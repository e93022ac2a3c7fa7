"""Fleet simulator: determinism, honest observations, ground truth consistent with the metrics."""

from __future__ import annotations

import numpy as np
import pytest

from autoloop.engines import failure
from autoloop.simulation import fleet

SMALL = fleet.FleetConfig(n_nodes=40, days=12.0)


@pytest.fixture(scope="module")
def sim() -> fleet.Fleet:
    return fleet.simulate_fleet(SMALL, random_state=3)


def test_deterministic_per_seed_and_seeds_differ(sim: fleet.Fleet) -> None:
    again = fleet.simulate_fleet(SMALL, random_state=3)
    other = fleet.simulate_fleet(SMALL, random_state=4)
    assert again.failures == sim.failures
    np.testing.assert_array_equal(again.metrics[failure.DISK_AVAIL], sim.metrics[failure.DISK_AVAIL])
    assert other.failures != sim.failures


def test_shapes_and_names(sim: fleet.Fleet) -> None:
    # 12 days of 10-minute samples = 12 * 144 = 1728 steps.
    assert sim.timestamps.shape == (1728,)
    assert set(sim.metrics) == set(failure.METRICS)
    for values in sim.metrics.values():
        assert values.shape == (40, 1728)


def test_failures_are_followed_by_silence_and_precursors_precede_them(sim: fleet.Fleet) -> None:
    assert len(sim.failures) > 5
    index = {n: i for i, n in enumerate(sim.nodes)}
    for item in sim.failures:
        after = np.flatnonzero(sim.timestamps >= item.time)
        if len(after):
            k = after[0]
            assert sim.down[index[item.node], k]
            assert np.isnan(sim.metrics[failure.DISK_AVAIL][index[item.node], k])
        if item.mode == "sudden":
            assert item.precursor_start == item.time
        else:
            assert item.precursor_start < item.time


def test_disk_fill_reaches_full_before_failure(sim: fleet.Fleet) -> None:
    fills = [
        f for f in fleet.simulate_fleet(fleet.FleetConfig(n_nodes=80, days=12.0), random_state=5).failures
    ]
    sim5 = fleet.simulate_fleet(fleet.FleetConfig(n_nodes=80, days=12.0), random_state=5)
    index = {n: i for i, n in enumerate(sim5.nodes)}
    checked = 0
    for item in fills:
        if (
            item.mode != "disk_fill"
            or item.time > sim5.timestamps[-1]
            or item.time < sim5.timestamps[0] + 3600
        ):
            continue
        i = index[item.node]
        k = np.searchsorted(sim5.timestamps, item.time) - 1  # last sample before the failure
        used = 1 - sim5.metrics[failure.DISK_AVAIL][i, k] / sim5.metrics[failure.DISK_SIZE][i, k]
        # Linear fill to 100 % at the failure: one 10-minute step earlier it is at least ~95 % full.
        assert used > 0.9
        checked += 1
    assert checked >= 1


def test_sensorless_nodes_have_no_hardware_failures(sim: fleet.Fleet) -> None:
    no_sensor = {sim.nodes[i] for i in range(40) if np.isnan(sim.metrics[failure.TEMP][i]).all()}
    assert no_sensor  # 20 % of 40 nodes expected
    assert not [f for f in sim.failures if f.node in no_sensor and f.mode == "hardware"]


def test_counter_restarts_from_zero_after_a_reboot() -> None:
    inc = np.array([1.0, 1.0, 1.0, 1.0, 1.0, 1.0])
    down = np.array([False, False, True, True, False, False])
    # Counted while up: 1, 2; nothing while down; after the reboot it starts again at 1, 2.
    np.testing.assert_array_equal(fleet._counter(inc, down), [1.0, 2.0, 2.0, 2.0, 1.0, 2.0])


def test_node_series_cut_and_failure_times(sim: fleet.Fleet) -> None:
    until = sim.timestamps[100]
    series = sim.node_series(0, until=until)
    assert series.name == sim.nodes[0]
    assert len(series.timestamps) == 101
    assert series.metrics[failure.DISK_AVAIL].shape == (101,)
    times = sim.failure_times()
    assert sum(len(v) for v in times.values()) == len(sim.failures)
