"""Where the benchmarks find the shared data sets (`traces/`, ...).

The data root is, first match wins: a bench's `--data DIR` option, the `AUTOLOOP_DATA` environment
variable, or `../shared/data` beside the repository (computed from this file: the `shared` folder
next to the checkout). Relative paths are taken from the current directory.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Final

ENV_VAR: Final[str] = "AUTOLOOP_DATA"
REPO_ROOT: Final[Path] = Path(__file__).resolve().parents[1]
DEFAULT_ROOT: Path = REPO_ROOT.parent / "shared" / "data"


def data_root(option: str | os.PathLike[str] | None = None, *, require: str | None = None) -> Path:
    """The data root: `option` (a bench's `--data DIR`), else $AUTOLOOP_DATA, else DEFAULT_ROOT.

    `require` names a folder that must exist inside the root (e.g. "traces"). A missing folder
    ends the bench with SystemExit and a message naming the path, where it came from and the
    environment variable; a set but wrong path never falls back to the default."""
    env = os.environ.get(ENV_VAR, "")
    if option is not None and str(option) != "":
        root, source = Path(option), "--data"
    elif env:
        root, source = Path(env), f"${ENV_VAR}"
    else:
        root, source = DEFAULT_ROOT, "the default, ../shared/data beside the repository"
    root = root.expanduser().resolve()
    how = f"pass --data DIR or set {ENV_VAR}=DIR to the folder holding the data sets"
    if not root.is_dir():
        raise SystemExit(f"bench data folder not found: {root} (from {source}); {how}")
    if require is not None and not (root / require).is_dir():
        raise SystemExit(
            f"bench data folder {root} (from {source}) has no {require}/ folder: "
            f"{root / require} not found; {how}"
        )
    return root
