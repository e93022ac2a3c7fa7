"""bench/rightsizing's matched-risk comparison and leave-one-series-out choice."""

from __future__ import annotations

import numpy as np
import pytest

from autoloop.engines import recommend
from bench import _rs_matched, _rs_replay, _rs_series, rightsizing


def days(overrun: float, cost: float, changes: float = 0.0, n: int = 4) -> list[dict[str, float]]:
    return [{"overrun": overrun, "cost": cost, "changes": changes, "exceed": overrun} for _ in range(n)]


def test_interpolation_inside_and_clipped() -> None:
    curve = [(0.02, 2.0), (0.10, 1.0)]
    # Halfway in overrun: halfway in cost.
    assert _rs_matched.interpolate(curve, 0.06) == _rs_matched.Matched(1.5, False)
    # Outside the curve the end value is used and the point is flagged, never silently.
    assert _rs_matched.interpolate(curve, 0.2) == _rs_matched.Matched(1.0, True)


def test_ratio_both_ways() -> None:
    al = {0.05: days(0.02, 2.0), 0.2: days(0.10, 1.0)}
    vpa = {0.9: days(0.06, 2.0), 0.5: days(0.10, 1.6)}
    # Autoloop at VPA's 6 % overrun costs 1.5: 0.75 of VPA's 2.0.
    assert _rs_matched.ratio_at_vpa(al, vpa[0.9]).value == pytest.approx(0.75)
    # VPA at autoloop's 10 % overrun costs 1.6; autoloop there costs 1.0.
    assert _rs_matched.ratio_at_autoloop(al[0.2], vpa).value == pytest.approx(1.0 / 1.6)


def test_choice_uses_only_the_training_series_and_respects_the_change_bars() -> None:
    # "busy" changes every day (infeasible) but is cheap; "calm" meets the bars.
    al = {
        "busy": {s: {0.1: days(0.06, 1.0, changes=1), 0.2: days(0.1, 0.8, changes=1)} for s in "abc"},
        "calm": {s: {0.1: days(0.06, 1.8), 0.2: days(0.1, 1.5)} for s in "abc"},
    }
    vpa = {s: days(0.06, 2.0) for s in "abc"}
    assert _rs_matched.choose(["busy", "calm"], al, vpa, ["a", "b"], 0.1) == "calm"
    # With the held-out series' data altered the choice on the others cannot change.
    al["calm"]["c"] = {0.1: days(0.06, 99.0), 0.2: days(0.1, 99.0)}
    assert _rs_matched.choose(["busy", "calm"], al, vpa, ["a", "b"], 0.1) == "calm"


def test_replay_is_driven_by_time_for_any_step() -> None:
    # A 5-minute series: the gate still acts every 15 minutes, days hold 288 samples.
    n = 3 * 288
    ts = 1.7e9 + 300.0 * np.arange(n)
    s = _rs_series.Series("five", "cpu", ts, np.ones(n), 300.0, "bitbrains")
    calls: list[int] = []

    class Counting(_rs_replay.StaticRec):
        def decide(self, i: int, current: float, set_at: float) -> tuple[float, float | None, float | None]:
            calls.append(i)
            return current, None, None

    rp = _rs_replay.replay(s, Counting())
    assert np.diff(calls).tolist() == [3] * (len(calls) - 1)
    metrics = _rs_replay.day_metrics(s, rp)
    assert len(metrics) == 2  # day 0 is warm-up
    assert all(m["exceed"] == 0.0 and m["cost"] == pytest.approx(1.0) for m in metrics)


def test_bitbrains_selection_and_step_come_from_the_data(tmp_path: object) -> None:
    from pathlib import Path

    root = Path(str(tmp_path)) / "bitbrains"
    root.mkdir()
    header = (
        "vm,file,rows,start_utc,end_utc,span_days,median_step_s,cpu_cores,capacity_mhz,mean_cores,included"
    )
    rows = ["1,a,0,,,30.0,300,8,0,0.5,1", "2,a,0,,,30.0,300,8,0,0.05,1", "3,a,0,,,10.0,300,8,0,0.5,1"]
    (root / "index.csv").write_text("\n".join([header, *rows]) + "\n")
    for vm in (1, 2, 3):
        lines = ["ts,value"] + [f"{1.7e9 + 300 * i:.0f},{0.5}" for i in range(10)]
        (root / f"vm{vm:03d}.csv").write_text("\n".join(lines) + "\n")
    series = _rs_series.load_bitbrains(data_dir=root.parent)
    # Only VM 1: VM 2 is near idle (mean <= 0.1 core), VM 3 spans less than 20 days.
    assert [s.name for s in series] == ["vm001"]
    assert series[0].step == 300.0 and series[0].per_day == 288 and series[0].group == "bitbrains"


def test_grid_crosses_calibration_and_surge_test_and_every_point_is_valid() -> None:
    # Half-life 7 d x restart cost {9.6, 19.2} h x calibration step {0, 0.03, 0.1, 0.3} x surge test
    # {on, off}: 16 points, each one the engine accepts as it stands (leave-one-series-out picks).
    grid = rightsizing._grid(False)
    assert len(grid) == 16
    assert {k["surge_test"] for k in grid.values()} == {True, False}
    assert {k["calibration_step"] for k in grid.values()} == {0.0, 0.03, 0.1, 0.3}
    for knobs in grid.values():
        params = recommend.RightsizingParams.model_validate({"resource": "cpu", **knobs})
        assert params.surge_test is knobs["surge_test"]
        assert params.calibration_step == knobs["calibration_step"]
