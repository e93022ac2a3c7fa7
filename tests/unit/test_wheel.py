"""The package as the image installs it: the built wheel in a clean virtual environment with only
its runtime dependencies (no test or lint tools), and the CLI works from there."""

from __future__ import annotations

import json
import subprocess
import sys
import venv
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
DEV_ONLY = {"pytest", "ruff", "mypy", "hypothesis", "lupa", "import-linter"}


def test_the_wheel_installs_and_runs_with_only_its_runtime_dependencies(tmp_path: Path) -> None:
    dist = tmp_path / "dist"
    subprocess.run(
        [sys.executable, "-m", "pip", "wheel", "-q", "--no-deps", "-w", str(dist), str(ROOT)],
        check=True,
        timeout=600,
    )
    (wheel,) = dist.glob("autoloop-*.whl")
    env_dir = tmp_path / "venv"
    venv.create(env_dir, with_pip=True)
    python = env_dir / "bin" / "python"
    subprocess.run(
        [str(python), "-m", "pip", "install", "-q", "--disable-pip-version-check", str(wheel)],
        check=True,
        timeout=900,
    )
    listed = subprocess.run(
        [str(python), "-m", "pip", "list", "--format=json"], check=True, capture_output=True, text=True
    )
    installed = {p["name"].lower() for p in json.loads(listed.stdout)}
    assert "autoloop" in installed and "kopf" in installed
    assert not installed & DEV_ONLY, f"dev tools in the runtime install: {installed & DEV_ONLY}"
    cli = env_dir / "bin" / "autoloop"
    helped = subprocess.run([str(cli), "--help"], capture_output=True, text=True, timeout=120)
    assert helped.returncode == 0 and "run" in helped.stdout, helped.stderr
    # From the checkout, the installed models must produce the CRDs that are checked in.
    checked = subprocess.run(
        [str(cli), "crds", "--check"], cwd=ROOT, capture_output=True, text=True, timeout=120
    )
    assert checked.returncode == 0, checked.stderr
