"""The root options, `sltui --runs-dir D --data-root R COMMAND ...`: set by the root
callback, which runs first on every invocation, and used by every command wherever its
own --runs-dir or --data-root is not given (a command's own option wins)."""
from __future__ import annotations

import os
from pathlib import Path
from typing import Any, Optional

ROOT_OPTIONS: dict[str, Any] = {"runs_dir": None, "data_root": None}


def set_root_options(runs_dir: Optional[Path], data_root: Optional[str]) -> None:
    ROOT_OPTIONS.update(runs_dir=runs_dir, data_root=data_root)


def default_runs_dir(runs_dir: Optional[Path]) -> Path:
    """The command's --runs-dir, else the root's, else $SLTUI_RUNS, else ./runs."""
    return runs_dir or ROOT_OPTIONS["runs_dir"] or Path(os.environ.get("SLTUI_RUNS") or "runs")


def default_data_root(data_root: Optional[str]) -> Optional[str]:
    """The command's --data-root, else the root's (else None: $SLTUI_DATA or the default)."""
    return data_root or ROOT_OPTIONS["data_root"]
