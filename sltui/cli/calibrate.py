"""`sltui calibrate`: the detectors' calibration before any evaluation (docs/protocol.md
section 10, "The calibration procedure"; docs/detectors.md), in three resumable steps:

- `run`: the honest runs of the calibration set (or, `--set evaluation`, of the
  false-accusation set), one `sltui arena --attacks none` per setting, resumable;
- `rule`: the rule (engine/sweeps/calibration.py), written down before any attack run was
  looked at, applied to the stored calibration runs: calibration.json and calibration.md;
- `false-accusations`: the share of honest evaluation runs flagged by each epoch, with the
  calibrated and the published parameters (sltui/reports/calibration.py)."""
from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path
from typing import Any, Optional

import typer

from engine.errors import ConfigError
from engine.sweeps.calibration import CALIBRATION_SEEDS, EVALUATION_SEEDS, SETTINGS
from engine.sweeps.grid import parse_list

from ..format import literal
from .batch import RUNS_DIR_OPTION
from .config_flags import HelpTyper
from .root import runs_dir_to_read

SETS = {"calibration": CALIBRATION_SEEDS, "evaluation": EVALUATION_SEEDS}


def register(app: typer.Typer, console: Any, default_runs_dir: Any, default_data_root: Any) -> None:
    calibrate_app = HelpTyper(help="Fix the detectors' parameters on honest runs only, before any evaluation.",
                                no_args_is_help=True)
    app.add_typer(calibrate_app, name="calibrate")

    @calibrate_app.command("run")
    def run_command(
        which: str = typer.Option("calibration", "--set", help="calibration (seeds 101-103) or evaluation "
                                                               "(seeds 201-203: the false accusations over time)"),
        seeds: Optional[str] = typer.Option(None, "--seeds", help="comma list among the set's seeds (default: its first)"),
        jobs: int = typer.Option(2, "--jobs", help="runs at once"),
        data_root: Optional[Path] = typer.Option(None, "--data-root", help="folder holding the datasets"),
        runs_dir: Optional[Path] = RUNS_DIR_OPTION,
    ) -> None:
        """The honest runs of a set: MNIST and FMNIST, LeNet, cuts 1 and 3, K 1 and 3, full length,
        each with the watching detectors and, apart, SplitGuard, all with --defense-trace;
        started again, it runs only what is missing."""
        if which not in SETS:
            raise ConfigError(f"--set must be calibration or evaluation (got {which!r})")
        chosen = parse_list("seeds", seeds) if seeds else SETS[which][:1]
        if not set(chosen) <= set(SETS[which]):
            raise ConfigError(f"--seeds: the {which} set's seeds are {', '.join(map(str, SETS[which]))} "
                              f"(the others are kept for the {'evaluation' if which == 'calibration' else 'calibration'})")
        root = default_runs_dir(runs_dir)
        data = data_root or default_data_root(None)
        env = {**os.environ, "OMP_NUM_THREADS": "1"}
        for dataset, cut, clients in SETTINGS:
            command = [sys.executable, "-m", "sltui", "arena", "--attacks", "none",
                       "--defenses", "splitguard,scrutinizer,splitout", "--seeds", ",".join(map(str, chosen)),
                       "--dataset", dataset, "--model", "lenet", "--cut", str(cut), "--clients", str(clients),
                       "--defense-trace", "--no-save-weights", "--runs-dir", str(root), "--jobs", str(jobs)]
            if data is not None:
                command += ["--data-root", str(data)]
            console.print(literal(" ".join(["sltui", *command[3:]])), soft_wrap=True)
            code = subprocess.call(command, env=env)
            if code != 0:
                raise typer.Exit(code)

    @calibrate_app.command("rule")
    def rule_command(runs_dir: Optional[Path] = RUNS_DIR_OPTION) -> None:
        """The rule on the stored calibration runs: calibration.json and calibration.md beside them."""
        from engine.sweeps.calibration import write_calibration

        for path in write_calibration(runs_dir_to_read(runs_dir)):
            console.print(literal(path), soft_wrap=True)

    @calibrate_app.command("false-accusations")
    def false_accusations_command(
        runs_dir: Optional[Path] = RUNS_DIR_OPTION,
        calibration: Path = typer.Option(..., "--calibration", help="the calibration.json that `rule` wrote"),
    ) -> None:
        """Per detector, the share of the honest runs flagged by each epoch, calibrated and
        published parameters: false-accusations.csv and .png beside the runs."""
        from ..reports.calibration import write_false_accusations

        for path in write_false_accusations(runs_dir_to_read(runs_dir), calibration):
            console.print(literal(path), soft_wrap=True)
