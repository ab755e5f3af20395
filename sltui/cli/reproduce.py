"""`sltui reproduce`: the paper on record (docs/protocol.md section 13).

`run` runs the reproduction's parts as one resumable sweep (engine/sweeps/reproduction.py);
`report` turns the run files into cells.csv, the paper-layout figures and
docs/reproduction.md by the comparison rules fixed before the runs (engine/sweeps/agreement.py)."""
from __future__ import annotations

from pathlib import Path
from typing import Any, Optional

import typer

from engine.config import DEVICES
from engine.errors import ConfigError
from engine.sweeps.grid import parse_list
from engine.sweeps.reproduction import PARTS, parse_parts, reproduction_sweep

from .sweep import (DRY_RUN_OPTION, EXECUTOR_OPTION, JOBS_OPTION, RAY_ADDRESS_OPTION, RUNS_DIR_OPTION,
                    WIDE_DRY_RUN_OPTION, check_executor, gpu_share, launch, summarize)

PARTS_HELP = ("comma list of parts (default: the paper at K = 1, every part but `clients`; `all`: every part): "
              + "; ".join(f"{p.name}: {p.what}" for p in PARTS))


def register(app: typer.Typer, console: Any, default_runs_dir: Any, default_data_root: Any) -> None:
    reproduce_app = typer.Typer(help="The paper on record: run its grid with seeds, compare it cell by cell.",
                                no_args_is_help=True)
    app.add_typer(reproduce_app, name="reproduce")

    @reproduce_app.command("run")
    def run_command(
        parts: Optional[str] = typer.Option(None, "--parts", help=PARTS_HELP),
        datasets: Optional[str] = typer.Option(None, "--datasets", help="only the parts' runs on these datasets "
                                               "(comma list, e.g. mnist,mnist-10k)"),
        device: str = typer.Option("auto", "--device", help="auto, cpu or cuda (every run file names its device)"),
        data_root: Optional[Path] = typer.Option(None, "--data-root", help="folder holding the datasets"),
        dry_run: bool = DRY_RUN_OPTION,
        jobs: int = JOBS_OPTION,
        executor: str = EXECUTOR_OPTION,
        ray_address: Optional[str] = RAY_ADDRESS_OPTION,
        runs_dir: Optional[Path] = RUNS_DIR_OPTION,
        wide: bool = WIDE_DRY_RUN_OPTION,
    ) -> None:
        """Run the reproduction's parts (the paper's protocol, defaults untouched) as one sweep;
        started again, it skips what is done and redoes the rest."""
        check_executor(jobs, executor)
        if device not in DEVICES:
            raise ConfigError(f"--device must be one of {', '.join(DEVICES)} (got {device!r})")
        base: dict[str, Any] = {"device": device}
        root_data = data_root or default_data_root(None)
        if root_data is not None:
            base["data_root"] = str(root_data)
        sweep, points = reproduction_sweep(parse_parts(parts), base, parse_list("datasets", datasets) if datasets else None)
        ran = launch("reproduction", sweep, points, default_runs_dir(runs_dir), jobs, executor, ray_address,
                     gpu_share(None, jobs, device), dry_run, wide, console)
        if ran is not None:
            summarize(console, *ran, kind="reproduction")
