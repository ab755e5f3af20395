"""`sltui run --headless`: a run in a worker thread, a Rich progress bar in the main one.

The main thread only drains the event queue; Ctrl-C, SIGTERM, SIGHUP or a closed stdout
set the stop event (sltui/cli/signals.py), and the engine ends the run at the next batch
with the run file marked cancelled."""
from __future__ import annotations

import contextlib
import queue
import threading
from typing import Any

from rich.console import Console
from rich.text import Text
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn, TimeRemainingColumn

from engine.config import RunConfig
from engine.events import DefenseScores, EpochMetrics, PhaseProgress, RunFailed, RunFinished, RunStarted
from engine.store import RunStore
from engine.training.runner import RunResult, new_run_id, run

from ..format import fmt_defenses, fmt_num, literal
from ..runs.threads import DONE, Job, StartError, start_job_thread
from .signals import cancellation, quiet_ctrl_c


def run_headless(cfg: RunConfig, store: RunStore, console: Console) -> tuple[RunResult | None, BaseException | None]:
    try:
        run_id = store.reserve(lambda _: new_run_id(cfg))
    except OSError as exc:  # the runs folder cannot be made
        return None, exc
    return follow_thread(lambda emit, stop: run(cfg, emit, stop, run_id), store, console, cfg.epochs, run_id)


def follow_thread(job: Job, store: RunStore, console: Console, epochs: int | None, reserved: str | None = None
                  ) -> tuple[RunResult | None, BaseException | None]:
    """Run `job` in a worker thread and show its events as a progress bar until it ends;
    every cause of cancellation (sltui/cli/signals.py) stops it cleanly."""
    events: "queue.Queue[Any]" = queue.Queue()
    stop = threading.Event()
    with cancellation(stop), quiet_ctrl_c() if console.is_terminal else contextlib.nullcontext():
        thread = start_job_thread(job, store, events, stop, reserved=reserved)
        return _follow(epochs, store, console, thread, events, stop)


def log_line(console: Console, text: str) -> None:
    """Where output is not a terminal (a cluster job's log) there is no bar:
    print one line per epoch instead, so the log tells how the run went."""
    if not console.is_terminal:
        console.print(literal(text), soft_wrap=True)


def _follow(epochs: int | None, store: RunStore, console: Console, thread: threading.Thread,
            events: "queue.Queue[Any]", stop: threading.Event) -> tuple[RunResult | None, BaseException | None]:
    result: RunResult | None = None
    start_error: BaseException | None = None
    columns = (
        TextColumn("[bold]{task.description}"), BarColumn(), MofNCompleteColumn(),
        TimeElapsedColumn(), TextColumn("eta"), TimeRemainingColumn(), TextColumn("{task.fields[stats]}"),
    )
    # Where output is not a terminal (a cluster job's log) the per-epoch lines replace the bar.
    progress = Progress(*columns, console=console, transient=False, disable=not console.is_terminal)
    task = progress.add_task("loading data", total=None, stats="")
    defenses: DefenseScores | None = None
    progress.start()
    try:
        while True:
            try:
                item = events.get(timeout=0.2)
            except queue.Empty:
                if stop.is_set() and progress.tasks[task].description != "cancelling":
                    progress.update(task, description="cancelling")
                continue
            if item is DONE:
                break
            if isinstance(item, StartError):
                start_error = item.error
                # Nothing ran: leave no "loading data" bar beside the one-line error.
                progress.update(task, visible=False)
                progress.live.transient = True
            elif isinstance(item, RunResult):
                result = item
            elif isinstance(item, RunStarted):
                name = (item.config or {}).get("name")
                console.print(Text.assemble("run ", literal(item.run_id, "bold"),
                                            *((" ", literal(f"({name})")) if name else ()),
                                            literal(f" -> {store.path(item.run_id)}")), soft_wrap=True)
                epochs = item.total_epochs or epochs     # resolved from the dataset where not given
                progress.update(task, description="training", total=item.total_epochs, completed=0)
            elif isinstance(item, PhaseProgress):
                stats = f"loss {fmt_num(item.loss, '.4f')}"
                progress.update(task, description=item.phase, total=item.epochs, completed=item.epoch, stats=stats)
                log_line(console, f"{item.phase} {item.epoch}/{item.epochs}  {stats}")
            elif isinstance(item, DefenseScores):
                defenses = item
            elif isinstance(item, EpochMetrics):
                if progress.tasks[task].description != "training":
                    progress.update(task, description="training", total=epochs)
                stats = (f"loss {fmt_num(item.train_loss, '.4f')}  CDA {fmt_num(item.cda)}%  ASR {fmt_num(item.asr)}%"
                         f"  {item.samples_per_s:,.0f} samples/s")
                if defenses is not None and defenses.epoch == item.epoch:
                    stats += "  " + fmt_defenses(defenses.defenses)
                progress.update(task, completed=item.epoch, stats=stats)
                log_line(console, f"epoch {item.epoch}/{epochs or '?'}  {stats}  {item.seconds:.1f}s")
            elif isinstance(item, (RunFinished, RunFailed)):
                pass
    finally:
        progress.stop()
    thread.join()  # the sentinel came last: the thread is ending (no run left behind in torch)
    return result, start_error
