"""`sltui sweep`, `sltui runs aggregate` and `sltui report`: grids of runs and their summaries."""
from __future__ import annotations

import csv
import io
import threading
from pathlib import Path
from typing import Any, List, Optional

import typer
from rich.text import Text
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

from engine.config import ATTACKS, TRIGGERS
from engine.errors import ConfigError
from engine.files import make_folder, write_output
from engine.store import RunEntry, RunStore, read_run_file
from engine.sweeps.aggregate import aggregate
from engine.sweeps.arena import is_arena, planned_variants
from engine.sweeps.grid import AXES, expand, load_sweep_file, make_sweep
from engine.sweeps.executors import (JobResult, LocalExecutor, RayExecutor, SweepFile, find_sweep, load_sweep_doc,
                               make_jobs, pending, point_run_docs, runs_by_key)

from .config_flags import given_fields, with_config_flags
from .root import runs_dir_to_read
from ..format import fmt_cell, fmt_mean_std, fmt_pct, json_text, literal, printable
from ..run_index import RunIndex
from ..tables import Column, WIDE_HELP, print_table

# The run fields the sweep command takes only as axes (the other axes' fields stay single flags too).
AXIS_FIELDS = ("dataset", "model", "cut", "clients", "alpha", "attack", "trigger", "seed")
AXIS_HELP = {
    "datasets": "comma list, e.g. mnist,fmnist", "models": "comma list: lenet,stripnet,resnet9",
    "cuts": "comma list, e.g. 1,3", "clients": "comma list of K, e.g. 1,3,5,7",
    "alphas": "comma list, e.g. 0.5,0.09 (surrogate attack only)", "attacks": "comma list: " + ",".join(ATTACKS),
    "triggers": "comma list: " + ",".join(TRIGGERS) + " (attacks only; none runs once)",
    "seeds": "comma list, e.g. 1,2,3",
    "hijack_betas": "comma list of the hijack's task-gradient share, e.g. 0,0.25,0.5,0.7,0.9 (hijack only)",
    "hijack_critics": "comma list: conditional,plain (hijack only)",
    "hijack_warmups": "comma list of the hijack's honest warm-up epochs, e.g. 2,6 (hijack only)",
    "on_flags": "comma list: continue,stop (what the honest clients do at a detector's flag)",
}


# `sweep --dry-run`: the setting of each run always; the id of a done run goes first.
PLAN_COLUMNS = (
    Column("n", "#", 0, "right"), Column("dataset", "dataset", 1), Column("model", "model", 1),
    Column("cut", "cut", 1, "right"), Column("clients", "K", 1, "right"), Column("attack", "attack", 1),
    Column("alpha", "alpha", 1, "right"), Column("trigger", "trigger", 2), Column("defenses", "defenses", 1),
    Column("seed", "seed", 1, "right"), Column("epochs", "epochs", 2, "right"),
    Column("state", "state"), Column("run", "run", 3),
)
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


# The options `sltui sweep` and `sltui arena` share: how their runs are planned and executed.
DRY_RUN_OPTION = typer.Option(False, "--dry-run", help="list the runs and what is already done; run nothing")
JOBS_OPTION = typer.Option(1, "--jobs", help="runs at once (several per GPU suit small models)")
EXECUTOR_OPTION = typer.Option("local", "--executor", help="local (worker processes) or ray")
RAY_ADDRESS_OPTION = typer.Option(None, "--ray-address", help="Ray cluster address (default: a local instance)")
GPUS_PER_JOB_OPTION = typer.Option(None, "--gpus-per-job",
                                   help="Ray: GPU share per run (default 1/jobs with --device cuda, else 0)")
RUNS_DIR_OPTION = typer.Option(None, "--runs-dir", help="folder of run files (default $SLTUI_RUNS or ./runs)")
WIDE_DRY_RUN_OPTION = typer.Option(False, "--wide", help="--dry-run: " + WIDE_HELP)


def check_executor(jobs: int, executor: str) -> None:
    """One line (ConfigError) for a bad --jobs or --executor."""
    if jobs < 1:
        raise ConfigError(f"--jobs must be at least 1 (got {jobs})")
    if executor not in ("local", "ray"):
        raise ConfigError(f"--executor must be local or ray (got {executor!r})")


def gpu_share(gpus_per_job: Optional[float], jobs: int, device: Any) -> float:
    """Ray's GPU share per run: --gpus-per-job, else 1/jobs of a GPU for CUDA runs, else none."""
    if gpus_per_job is not None:
        return gpus_per_job
    return min(1.0, 1.0 / jobs) if device == "cuda" else 0.0


def unreadable_warnings(entries: list[RunEntry], what: str) -> None:
    """One warning on stderr per run file that could not be read, naming it and saying
    what became of it (`what`), so that no run goes missing from a table in silence."""
    for entry in entries:
        if not entry.readable:
            typer.echo(printable(f"warning: {entry.error} ({what})"), err=True)


def read_runs(root: Path, what: str = "left out") -> list[RunEntry]:
    """The runs folder's entries (through the run index), with a warning for each unreadable one."""
    entries = RunIndex(root).scan()
    unreadable_warnings(entries, what)
    return entries


def launch(kind: str, sweep: Any, points: list, root: Path, jobs: int, executor: str, ray_address: Optional[str],
           gpu_share: float, dry_run: bool, wide: bool, console: Any) -> tuple[SweepFile, list] | None:
    """The plan (--dry-run: None), or the runs of `points` not yet done: the sweep file,
    then `jobs` at a time on the executor; returns (the sweep file, the results). One
    implementation for `sltui sweep` and `sltui arena` (`kind` names it in the output)."""
    store = RunStore(root)
    todo, done = pending(points, store)
    if dry_run:
        print_plan(sweep.sweep_id(), points, done, wide)
        return None
    make_folder(root, "the runs folder")
    runner: Any = None
    if executor == "ray":
        runner = RayExecutor(root, jobs, ray_address, gpu_share)
        # Before the sweep file is written and before execute's signal handlers
        # (ray.init installs its own); an unreachable address fails here, in one line.
        runner.start()
    record = SweepFile(root, sweep, points)
    for key, run_id in done.items():
        record.mark(key, "completed", run_id)
    record.save()
    console.print(Text.assemble(f"{kind} ", literal(sweep.sweep_id(), "bold"),
                                literal(f": {len(points)} runs, {len(done)} already done, {len(todo)} to run, "
                                        f"{jobs} at once ({executor}) -> {record.path}")), soft_wrap=True)
    if runner is None:
        runner = LocalExecutor(root, jobs, record.path.parent / record.doc["id"] / "logs")
    return record, execute(runner, make_jobs(todo), record, store, console, len(points), len(done))


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
        from .arena import write_arena_report
        from .report import write_report

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


def print_plan(sweep_id: str, points: list, done: dict[str, str], wide: bool = False) -> None:
    """The runs of a sweep and which of them are done (the run that did each), run nothing."""
    print(printable(f"{sweep_id}: {len(points)} runs, {len(done)} done"))
    rows = []
    for i, point in enumerate(points, 1):
        c = point.config
        rows.append({"n": str(i), "dataset": c.dataset, "model": c.model, "cut": str(c.cut),
                     "clients": str(c.clients), "attack": c.attack,
                     "alpha": str(c.alpha) if c.attack == "surrogate" else "-",
                     "trigger": c.trigger if c.attack != "none" else "-",
                     "defenses": ",".join(c.defenses) or "-", "seed": str(c.seed),
                     "epochs": str(c.epochs), "state": "done" if point.key in done else "to run",
                     "run": done.get(point.key, "-")})
    print_table(PLAN_COLUMNS, rows, wide)


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


def execute(runner: Any, jobs: list, record: SweepFile, store: RunStore, console: Any,
            total: int, already: int) -> list[JobResult]:
    from .signals import cancellation

    results: list[JobResult] = []
    stop = threading.Event()
    columns = (TextColumn("[bold]{task.description}"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn(),
               TextColumn("{task.fields[running]} running"))
    with cancellation(stop), Progress(*columns, console=console, disable=not console.is_terminal) as progress:
        task = progress.add_task("sweep", total=total, completed=already, running=0)
        active = [0]

        def on_start(job: Any) -> None:
            active[0] += 1
            record.mark(job.point.key, "running", job.run_id)
            progress.update(task, running=active[0])

        def on_end(result: JobResult) -> None:
            active[0] -= 1
            results.append(result)
            record.mark(result.job.point.key, result.status, result.job.run_id, result.error)
            progress.update(task, advance=1 if result.status == "completed" else 0, running=active[0])
            console.print(literal(result_line(result, store)), soft_wrap=True)

        runner.run(jobs, stop, on_start, on_end)
        if stop.is_set():
            progress.update(task, description="cancelled")
    return results


def result_line(result: JobResult, store: RunStore) -> str:
    c = result.job.point.config
    what = f"{c.dataset} {c.model} cut {c.cut} K={c.clients} {c.attack}" + (
        f" alpha {c.alpha}" if c.attack == "surrogate" else "") + (
        f" {c.trigger}" if c.attack != "none" and c.trigger != "patch" else "") + f" seed {c.seed}"
    line = f"{result.status:9} {what}  {result.job.run_id}"
    if result.status == "completed":
        try:
            final = read_run_file(store.path(result.job.run_id)).get("final") or {}
            line += f"  CDA {fmt_pct(final.get('cda'))}%  ASR {fmt_pct(final.get('asr'))}%"
        except Exception:  # noqa: BLE001 - the line is informative only
            pass
    elif result.error:
        line += f"  {result.error}"
    return line


def summarize(console: Any, record: SweepFile, results: list[JobResult], kind: str = "sweep") -> None:
    """The sweep's (or arena's) tally; exit 130 if runs were cancelled, 1 if any is not done."""
    states = [p["status"] for p in record.doc["points"]]
    counts = {s: states.count(s) for s in dict.fromkeys(states)}
    complete = counts.get("completed", 0) == len(states)
    record.finish("completed" if complete else "incomplete")
    console.print(literal(f"{kind} {record.doc['id']}: " + ", ".join(f"{n} {s}" for s, n in counts.items())))
    if complete and kind == "sweep":
        console.print(literal(f"report: sltui report {record.doc['id']}"))
    elif not complete:
        console.print("run the same command again to do the rest (completed runs are kept)", highlight=False)
    if any(r.status == "cancelled" for r in results):
        raise typer.Exit(130)
    if not complete:
        raise typer.Exit(1)


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
