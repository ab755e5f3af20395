"""`sltui arena`: every attack against every detector over seeds (docs/protocol.md section
11), on the sweep machinery (resumable, parallel, --dry-run), then the matrix as Markdown,
CSV and a heatmap under the sweep's report folder (sltui/reports/arena.py)."""
from __future__ import annotations

from pathlib import Path
from typing import Any, Optional

import typer

from engine.config import ATTACKS, DEFENSES
from engine.errors import ConfigError
from engine.sweeps.arena import DEFAULT_SEEDS, arena_sweep, planned_variants
from engine.sweeps.executors import sweep_run_docs

from ..format import literal
from ..reports.arena import write_arena_report
from .batch import (AXIS_HELP, DRY_RUN_OPTION, EXECUTOR_OPTION, GPUS_PER_JOB_OPTION, JOBS_OPTION, RAY_ADDRESS_OPTION,
                    RUNS_DIR_OPTION, WIDE_DRY_RUN_OPTION, check_executor, gpu_share, launch, summarize)
from .config_flags import given_fields, with_config_flags

def parse_defenses_list(text: str) -> tuple[str, ...]:
    names = tuple(dict.fromkeys(part.strip() for part in text.split(",") if part.strip()))
    if not names:
        raise ConfigError("--defenses needs at least one detector")
    for name in names:
        if name not in DEFENSES:
            raise ConfigError(f"--defenses: unknown detector {name!r}; choose from {', '.join(DEFENSES)}")
    return names


def register(app: typer.Typer, console: Any, default_runs_dir: Any) -> None:
    """Add `sltui arena` to the app."""

    def arena_command(
        attacks: str = typer.Option(",".join(ATTACKS), "--attacks",
                                    help="comma list of attacks; `none` gives the false-accusation rate"),
        defenses: str = typer.Option(",".join(DEFENSES), "--defenses", help="comma list: " + ", ".join(DEFENSES)),
        seeds: str = typer.Option(DEFAULT_SEEDS, "--seeds",
                                  help="comma list of evaluation seeds (never the calibration seeds 101-103)"),
        hijack_betas: Optional[str] = typer.Option(None, "--hijack-betas", help=AXIS_HELP["hijack_betas"]),
        hijack_critics: Optional[str] = typer.Option(None, "--hijack-critics", help=AXIS_HELP["hijack_critics"]),
        hijack_warmups: Optional[str] = typer.Option(None, "--hijack-warmups", help=AXIS_HELP["hijack_warmups"]),
        on_flags: Optional[str] = typer.Option(None, "--on-flags", help=AXIS_HELP["on_flags"]),
        dry_run: bool = DRY_RUN_OPTION,
        jobs: int = JOBS_OPTION,
        executor: str = EXECUTOR_OPTION,
        ray_address: Optional[str] = RAY_ADDRESS_OPTION,
        gpus_per_job: Optional[float] = GPUS_PER_JOB_OPTION,
        runs_dir: Optional[Path] = RUNS_DIR_OPTION,
        wide: bool = WIDE_DRY_RUN_OPTION,
        **flags: Any,
    ) -> None:
        """Every attack against every detector over seeds, then the matrix (arena.md, CSV, heatmap)."""
        check_executor(jobs, executor)
        base = given_fields(flags)
        axes = {"hijack_betas": hijack_betas, "hijack_critics": hijack_critics, "hijack_warmups": hijack_warmups,
                "on_flags": on_flags}
        sweep, points = arena_sweep(attacks, parse_defenses_list(defenses), seeds, base, axes)
        share = gpu_share(gpus_per_job, jobs, base.get("device"))
        root = default_runs_dir(runs_dir)
        ran = launch("arena", sweep, points, root, jobs, executor, ray_address, share, dry_run, wide, console)
        if ran is None:
            return
        record, results = ran
        folder = record.path.parent / record.doc["id"] / "report"
        for path in write_arena_report(sweep_run_docs(root, record.doc, continue_twins=True), folder, record.doc["id"],
                                       planned_variants(record.doc)):
            console.print(literal(path), soft_wrap=True)
        summarize(console, record, results, "arena")

    app.command("arena", context_settings={"help_option_names": ["-h", "--help"]})(
        with_config_flags(arena_command, exclude=("attack", "seed", "defenses")))
