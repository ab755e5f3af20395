"""What `sltui sweep`, `sltui arena` and `sltui reproduce` share: the options that plan
and execute a list of runs, the plan (--dry-run), running the runs not yet done on an
executor with a progress bar, and the tally at the end."""
from __future__ import annotations

import threading
from pathlib import Path
from typing import Any, Optional

import typer
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn
from rich.text import Text

from engine.config import ATTACKS, TRIGGERS
from engine.errors import ConfigError
from engine.files import make_folder
from engine.store import RunEntry, RunStore, read_run_file
from engine.sweeps.executors import JobResult, LocalExecutor, RayExecutor, SweepFile, make_jobs, pending

from ..format import fmt_pct, literal, printable
from ..runs.index import RunIndex
from ..tables import Column, WIDE_HELP, print_table

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
