"""`sltui sweep`, `sltui runs aggregate` and `sltui report`: grids of runs and their summaries."""
from __future__ import annotations

import csv
import io
from pathlib import Path
from typing import Any, List, Optional

import typer

from engine.errors import ConfigError
from engine.files import make_folder, write_output
from engine.sweeps.aggregate import aggregate
from engine.sweeps.arena import is_arena, planned_variants
from engine.sweeps.grid import AXES, expand, load_sweep_file, make_sweep
from engine.sweeps.executors import (find_sweep, load_sweep_doc,
                               point_run_docs, runs_by_key)

from .batch import (AXIS_HELP, DRY_RUN_OPTION, EXECUTOR_OPTION, GPUS_PER_JOB_OPTION, JOBS_OPTION, RAY_ADDRESS_OPTION,
                    RUNS_DIR_OPTION, WIDE_DRY_RUN_OPTION, check_executor, gpu_share, launch, read_runs, summarize)
from .config_flags import given_fields, with_config_flags
from .root import runs_dir_to_read
from ..format import fmt_cell, fmt_mean_std, json_text, literal
from ..tables import Column, WIDE_HELP, print_table

# The run fields the sweep command takes only as axes (the other axes' fields stay single flags too).
AXIS_FIELDS = ("dataset", "model", "cut", "clients", "alpha", "attack", "trigger", "seed")
# `runs aggregate --format table`: the setting (epochs included: rows may differ by it alone)
# always, then its metrics over seeds.
AGGREGATE_COLUMNS = (
    Column("dataset", "dataset"), Column("model", "model"), Column("cut", "cut", 0, "right"),
    Column("clients", "K", 0, "right"), Column("attack", "attack"), Column("alpha", "alpha", 0, "right"),
    Column("trigger", "trigger", 3), Column("epochs", "epochs", 0, "right"), Column("n", "n", 2, "right"),
    Column("cda", "CDA %", 1, "right"), Column("asr", "ASR %", 1, "right"),
    Column("best_cda", "best CDA %", 4, "right"), Column("best_asr", "best ASR %", 4, "right"),
    Column("seeds", "seeds", 5),
)


def register(app: typer.Typer, runs_app: typer.Typer, console: Any, default_runs_dir: Any, default_data_root: Any) -> None:
    """Add the sweep, aggregate and report commands to the `sltui` app."""

    def sweep_command(
        datasets: Optional[str] = typer.Option(None, "--datasets", help=AXIS_HELP["datasets"]),
        models: Optional[str] = typer.Option(None, "--models", help=AXIS_HELP["models"]),
        cuts: Optional[str] = typer.Option(None, "--cuts", help=AXIS_HELP["cuts"]),
        clients: Optional[str] = typer.Option(None, "--clients", help=AXIS_HELP["clients"]),
        alphas: Optional[str] = typer.Option(None, "--alphas", help=AXIS_HELP["alphas"]),
        attacks: Optional[str] = typer.Option(None, "--attacks", help=AXIS_HELP["attacks"]),
        triggers: Optional[str] = typer.Option(None, "--triggers", help=AXIS_HELP["triggers"]),
        seeds: Optional[str] = typer.Option(None, "--seeds", help=AXIS_HELP["seeds"]),
        hijack_betas: Optional[str] = typer.Option(None, "--hijack-betas", help=AXIS_HELP["hijack_betas"]),
        hijack_critics: Optional[str] = typer.Option(None, "--hijack-critics", help=AXIS_HELP["hijack_critics"]),
        hijack_warmups: Optional[str] = typer.Option(None, "--hijack-warmups", help=AXIS_HELP["hijack_warmups"]),
        on_flags: Optional[str] = typer.Option(None, "--on-flags", help=AXIS_HELP["on_flags"]),
        grid_file: Optional[Path] = typer.Option(None, "--file", help="TOML or JSON file of axes and run fields"),
        paper: bool = typer.Option(False, "--paper", help="the paper's grid (docs/protocol.md section 6); other axes narrow it"),
        dry_run: bool = DRY_RUN_OPTION,
        jobs: int = JOBS_OPTION,
        executor: str = EXECUTOR_OPTION,
        ray_address: Optional[str] = RAY_ADDRESS_OPTION,
        gpus_per_job: Optional[float] = GPUS_PER_JOB_OPTION,
        runs_dir: Optional[Path] = RUNS_DIR_OPTION,
        wide: bool = WIDE_DRY_RUN_OPTION,
        **flags: Any,
    ) -> None:
        """Run a grid of settings x seeds; started again, it skips what is done and redoes the rest."""
        check_executor(jobs, executor)
        from_file = load_sweep_file(grid_file) if grid_file else {}
        axes = {axis: from_file.get(axis) for axis in AXES}
        given_axes = {"datasets": datasets, "models": models, "cuts": cuts, "clients": clients,
                      "alphas": alphas, "attacks": attacks, "triggers": triggers, "seeds": seeds,
                      "hijack_betas": hijack_betas, "hijack_critics": hijack_critics,
                      "hijack_warmups": hijack_warmups, "on_flags": on_flags}
        axes.update({k: v for k, v in given_axes.items() if v is not None})
        base = {k: v for k, v in from_file.items() if k not in AXES}
        base.update(given_fields(flags))
        if "data_root" not in base and default_data_root(None):
            base["data_root"] = default_data_root(None)
        sweep = make_sweep(axes, base, paper=paper)
        points = expand(sweep)
        share = gpu_share(gpus_per_job, jobs, base.get("device"))
        ran = launch("sweep", sweep, points, default_runs_dir(runs_dir), jobs, executor, ray_address, share,
                     dry_run, wide, console)
        if ran is not None:
            summarize(console, *ran)

    app.command("sweep", context_settings={"help_option_names": ["-h", "--help"]})(
        with_config_flags(sweep_command, exclude=AXIS_FIELDS))

    @runs_app.command("aggregate")
    def aggregate_command(
        sweep: Optional[str] = typer.Option(None, "--sweep", help="only the runs of this sweep (id or file)"),
        fmt: str = typer.Option("csv", "--format", help="csv, json or table"),
        out: Optional[Path] = typer.Option(None, "--out", help="write to this file instead of stdout"),
        runs_dir: Optional[Path] = typer.Option(None, "--runs-dir", help="folder of run files (default $SLTUI_RUNS or ./runs)"),
        wide: bool = typer.Option(False, "--wide", help="--format table: " + WIDE_HELP),
    ) -> None:
        """Mean, std and n of final and best CDA/ASR over seeds, one row per setting (completed runs)."""
        if fmt not in ("csv", "json", "table"):
            raise ConfigError(f"--format must be csv, json or table (got {fmt!r})")
        if fmt == "table" and out:
            raise ConfigError("--format table is for reading on screen; write --format csv or json to --out")
        root = runs_dir_to_read(runs_dir)
        if sweep:
            sweep_doc = load_sweep_doc(find_sweep(root, sweep))
            docs = point_run_docs(sweep_doc, runs_by_key(read_runs(root)))
        else:
            docs = [{**e.doc, "status": e.status} for e in read_runs(root) if e.doc is not None]
        rows = aggregate(docs)
        if fmt == "table":
            print_table(AGGREGATE_COLUMNS, [aggregate_cells(r) for r in rows], wide)
            return
        text = json_text(rows) if fmt == "json" else rows_to_csv(rows)
        if out:
            write_output(out, text, "--out")
            console.print(literal(f"{len(rows)} setting(s) -> {out}"), soft_wrap=True)
        else:
            print(text, end="" if text.endswith("\n") else "\n")

    @app.command("report")
    def report_command(
        sweeps: List[str] = typer.Argument(..., help="sweep ids (see runs/sweeps/) or sweep files: one report over all "
                                                      "their runs"),
        out: Optional[Path] = typer.Option(None, "--out", help="folder for the figures (default runs/sweeps/<id>/report; "
                                                               "required for several sweeps)"),
        runs_dir: Optional[Path] = typer.Option(None, "--runs-dir", help="folder of run files (default $SLTUI_RUNS or ./runs)"),
    ) -> None:
        """The paper's figures (ASR and CDA against K, a panel per cut x alpha) and a Markdown
        table; for arenas' sweeps, the arena's report (arena.md, runs.csv, cells.csv, heatmap,
        frontier), rebuilt from the run files under today's counting rules. Several sweeps of
        one kind give one report over all their runs (each run once)."""
        from ..reports.arena import write_arena_report
        from ..reports.sweep import write_report

        root = runs_dir_to_read(runs_dir)
        paths = [find_sweep(root, name) for name in dict.fromkeys(sweeps)]
        sweep_docs = [load_sweep_doc(path) for path in paths]
        if len({is_arena(doc) for doc in sweep_docs}) > 1:
            raise ConfigError("report: give arenas' sweeps or other sweeps, not both")
        if len(sweep_docs) > 1 and out is None:
            raise ConfigError("report: several sweeps need --out, the folder for their one report")
        title = str(sweep_docs[0].get("id", paths[0].stem)) if len(paths) == 1 else f"{len(paths)} sweeps"
        folder = out or paths[0].parent / title / "report"
        arena = is_arena(sweep_docs[0])
        # The sweeps' points as one sweep's: point_run_docs counts each run once.
        points = {"points": [point for doc in sweep_docs for point in doc["points"]]}
        docs = point_run_docs(points, runs_by_key(read_runs(root)), continue_twins=arena)
        if docs:
            make_folder(folder, "the report folder (--out)")
        if arena:
            written = write_arena_report(docs, folder, title, planned_variants(*sweep_docs))
        else:
            written = write_report(docs, folder, title=title)
        if not written:
            raise ConfigError(f"{title} has no completed runs yet: nothing to plot")
        for path_ in written:
            console.print(literal(path_), soft_wrap=True)


def aggregate_cells(row: dict[str, Any]) -> dict[str, str]:
    """One `runs aggregate --format table` row: mean ± std over seeds where there are several."""
    several = (row.get("n") or 0) > 1
    cells = {key: fmt_cell(key, row.get(key)) for key in ("dataset", "model", "cut", "clients", "attack",
                                                         "epochs", "n", "seeds")}
    cells["alpha"] = fmt_cell("alpha", row.get("alpha") if row.get("attack") == "surrogate" else None)
    # Runs from before trigger kinds existed used the patch.
    cells["trigger"] = fmt_cell("trigger", (row.get("trigger") or "patch") if row.get("attack") not in (None, "none") else None)
    for name in ("cda", "asr", "best_cda", "best_asr"):
        cells[name] = fmt_mean_std(row.get(f"{name}_mean"), row.get(f"{name}_std") if several else None)
    return cells


def rows_to_csv(rows: list[dict[str, Any]]) -> str:
    columns: list[str] = []
    for row in rows:
        columns += [k for k in row if k not in columns]
    buf = io.StringIO()
    writer = csv.DictWriter(buf, fieldnames=columns)
    writer.writeheader()
    for row in rows:
        writer.writerow({k: ";".join(map(str, v)) if isinstance(v, list) else ("" if v is None else v)
                         for k, v in row.items()})
    return buf.getvalue()
