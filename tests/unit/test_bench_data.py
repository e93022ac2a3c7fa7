"""bench/_data.py: where the benchmarks read the shared data (--data beats $AUTOLOOP_DATA beats
../shared/data beside the repository; a missing folder is a clear error, never a silent fallback)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from bench import _data, _rs_series, forecast

REPO = Path(__file__).resolve().parents[2]


@pytest.fixture
def roots(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> dict[str, Path]:
    """Three existing data roots (option, env, default), $AUTOLOOP_DATA unset, default patched."""
    out = {name: tmp_path / name for name in ("option", "env", "default")}
    for path in out.values():
        (path / "traces").mkdir(parents=True)
    monkeypatch.delenv(_data.ENV_VAR, raising=False)
    monkeypatch.setattr(_data, "DEFAULT_ROOT", out["default"])
    return out


def test_env_var_name() -> None:
    assert _data.ENV_VAR == "AUTOLOOP_DATA"


def test_default_is_shared_data_beside_the_repository() -> None:
    assert _data.REPO_ROOT == REPO
    assert REPO.parent / "shared" / "data" == _data.DEFAULT_ROOT


def test_option_beats_env_var(roots: dict[str, Path], monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(_data.ENV_VAR, str(roots["env"]))
    assert _data.data_root(roots["option"]) == roots["option"].resolve()
    assert _data.data_root(str(roots["option"])) == roots["option"].resolve()


def test_env_var_beats_default(roots: dict[str, Path], monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(_data.ENV_VAR, str(roots["env"]))
    assert _data.data_root() == roots["env"].resolve()
    assert _data.data_root(None) == roots["env"].resolve()


def test_default_without_option_or_env(roots: dict[str, Path], monkeypatch: pytest.MonkeyPatch) -> None:
    assert _data.data_root() == roots["default"].resolve()
    monkeypatch.setenv(_data.ENV_VAR, "")  # empty counts as unset
    assert _data.data_root() == roots["default"].resolve()
    assert _data.data_root("") == roots["default"].resolve()


def test_relative_paths_are_taken_from_the_current_directory(
    roots: dict[str, Path], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    assert _data.data_root("option") == roots["option"].resolve()
    monkeypatch.setenv(_data.ENV_VAR, "env")
    assert _data.data_root() == roots["env"].resolve()


def test_missing_option_folder_is_a_clear_error(roots: dict[str, Path], tmp_path: Path) -> None:
    missing = tmp_path / "nope"
    with pytest.raises(SystemExit) as exc:
        _data.data_root(missing)
    message = str(exc.value)
    assert str(missing) in message
    assert "--data" in message
    assert "AUTOLOOP_DATA" in message


def test_missing_env_folder_does_not_fall_back_to_the_default(
    roots: dict[str, Path], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    missing = tmp_path / "typo"
    monkeypatch.setenv(_data.ENV_VAR, str(missing))
    with pytest.raises(SystemExit) as exc:
        _data.data_root()
    assert str(missing) in str(exc.value)
    assert "$AUTOLOOP_DATA" in str(exc.value)


def test_missing_default_folder_is_a_clear_error(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv(_data.ENV_VAR, raising=False)
    missing = tmp_path / "shared" / "data"
    monkeypatch.setattr(_data, "DEFAULT_ROOT", missing)
    with pytest.raises(SystemExit) as exc:
        _data.data_root()
    assert str(missing) in str(exc.value)
    assert "AUTOLOOP_DATA" in str(exc.value)


def test_a_file_is_not_a_data_folder(tmp_path: Path) -> None:
    path = tmp_path / "file"
    path.write_text("x")
    with pytest.raises(SystemExit, match="not found"):
        _data.data_root(path)


def test_required_subfolder(roots: dict[str, Path], tmp_path: Path) -> None:
    assert _data.data_root(roots["option"], require="traces") == roots["option"].resolve()
    bare = tmp_path / "bare"
    bare.mkdir()
    with pytest.raises(SystemExit) as exc:
        _data.data_root(bare, require="traces")
    assert str(bare / "traces") in str(exc.value)
    assert "AUTOLOOP_DATA" in str(exc.value)


def _write_trace(root: Path, n: int, values: list[float]) -> None:
    lines = ["timestamp,value"] + [f"{1.7e9 + 60 * i:.0f},{v}" for i, v in enumerate(values)]
    (root / "traces" / f"cpu-{n}.csv").write_text("\n".join(lines) + "\n")


def test_benches_read_the_resolved_root(roots: dict[str, Path], monkeypatch: pytest.MonkeyPatch) -> None:
    _write_trace(roots["option"], 10, [1.0, 2.0, 3.0])
    _write_trace(roots["option"], 2, [4.0, 5.0, 6.0])
    _write_trace(roots["env"], 7, [2.0, 2.0])
    monkeypatch.setenv(_data.ENV_VAR, str(roots["env"]))

    # forecast: --data (run's data_dir) wins; numeric order of cpu-<n>.
    names = [name for name, _, _ in forecast.trace_series(roots["option"])]
    assert names == ["cpu-2", "cpu-10"]
    _, t, v = forecast.trace_series(roots["option"])[1]
    np.testing.assert_allclose(v, [1.0, 2.0, 3.0])
    assert t[1] - t[0] == 60
    assert [name for name, _, _ in forecast.trace_series()] == ["cpu-7"]

    # rightsizing's series: $AUTOLOOP_DATA; scaled to a first-day mean of 1.
    series = _rs_series.load_traces()
    assert [s.name for s in series] == ["cpu-7"]
    np.testing.assert_allclose(series[0].usage, [1.0, 1.0])
    assert [s.name for s in _rs_series.load_traces(data_dir=roots["option"])] == ["cpu-10", "cpu-2"]


def test_forecast_cli_has_data_option(roots: dict[str, Path], monkeypatch: pytest.MonkeyPatch) -> None:
    missing = roots["option"].parent / "elsewhere"
    monkeypatch.setattr("sys.argv", ["forecast", "--quick", "--data", str(missing)])
    with pytest.raises(SystemExit) as exc:
        forecast.main()
    assert str(missing) in str(exc.value)
