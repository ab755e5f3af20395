"""The root options, `sltui --runs-dir D --data-root R COMMAND ...`: set by the root
callback, which runs first on every invocation, and used by every command wherever its
own --runs-dir or --data-root is not given (a command's own option wins)."""
from __future__ import annotations

import os
from pathlib import Path
from typing import Any, Optional

from engine.errors import ConfigError
from engine.files import existing_folder

ROOT_OPTIONS: dict[str, Any] = {"runs_dir": None, "data_root": None}


def set_root_options(runs_dir: Optional[Path], data_root: Optional[str]) -> None:
    if data_root is not None:
        check_data_root(data_root)
    ROOT_OPTIONS.update(runs_dir=runs_dir, data_root=data_root)


def check_data_root(data_root: Optional[str]) -> Optional[str]:
    """A --data-root given on the command line must exist: a mistyped one would otherwise
    become a new folder that a dataset download fills (ConfigError, nothing created)."""
    if data_root:
        existing_folder(data_root, "--data-root")
    return data_root


def runs_dir_to_read(runs_dir: Optional[Path]) -> Path:
    """The runs folder of a command that reads runs (list, show, tag, aggregate, report...):
    ConfigError, one line, where it does not exist or is a file."""
    root = default_runs_dir(runs_dir)
    if not root.exists():
        raise ConfigError(f"there is no runs folder {root}; pass --runs-dir (or set SLTUI_RUNS) to the folder "
                          "that holds the runs")
    if not root.is_dir():
        raise ConfigError(f"the runs folder {root} is a file, not a folder; pass --runs-dir to a folder")
    return root


def default_runs_dir(runs_dir: Optional[Path]) -> Path:
    """The command's --runs-dir, else the root's, else $SLTUI_RUNS, else ./runs."""
    return runs_dir or ROOT_OPTIONS["runs_dir"] or Path(os.environ.get("SLTUI_RUNS") or "runs")


def default_data_root(data_root: Optional[str]) -> Optional[str]:
    """The command's --data-root, else the root's (else None: $SLTUI_DATA or the default)."""
    return data_root or ROOT_OPTIONS["data_root"]
