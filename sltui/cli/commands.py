"""The `sltui` command: the TUI by default, `run --headless`, `runs list|show`, `doctor`.

User errors print one line on stderr and exit with code 2, never a traceback."""
from __future__ import annotations

import sys
from pathlib import Path
from typing import Any, Optional

import typer
from rich.console import Console
from rich.text import Text

from engine.errors import ConfigError, DataError
from engine.files import make_folder, reason
from engine.store import RunNotFound, RunStore, RunUnreadable

from ..runs.annotations import read_annotations
from ..runs.query import QueryError, parse_query
from ..runs.index import AmbiguousRunId, RunIndex, resolve_run_id, run_ids, run_row, short_run_ids, used_config
from .config_flags import HelpTyper, build_config, with_config_flags
from ..format import fmt_cell, fmt_flag, fmt_num, fmt_pct, fmt_reaction, json_text, literal, printable
from ..tables import Column, WIDE_HELP, fit_columns, natural_widths, print_table, terminal_width
from .annotate import register as register_annotate
from .arena import register as register_arena
from .calibrate import register as register_calibrate
from .doctor import register as register_doctor
from .reproduce import register as register_reproduce
from .root import check_data_root, default_data_root, default_runs_dir, runs_dir_to_read, set_root_options
from .signals import guard_output
from .batch import unreadable_warnings
from .sweep import register as register_sweep

app = HelpTyper(add_completion=False, no_args_is_help=False, rich_markup_mode="rich",
                help="Run, watch and compare server-side backdoor attacks on split learning.")
runs_app = HelpTyper(help="List and inspect stored runs.", no_args_is_help=True)
app.add_typer(runs_app, name="runs")

console = Console()
err_console = Console(stderr=True)

RUNS_DIR_HELP = "folder of run files (default $SLTUI_RUNS or ./runs)"


def error_line(message: Any) -> Text:
    """`error: MESSAGE`, the message shown literally (it quotes what the user typed or a run
    folder holds)."""
    return Text.assemble(("error:", "bold red"), " ", literal(message))


def fail(message: str, code: int = 2) -> None:
    err_console.print(error_line(message), soft_wrap=True)
    raise typer.Exit(code)


def load_run(runs_dir: Optional[Path], run_id: str) -> tuple[RunStore, str, dict[str, Any]]:
    """(the store, the run's id, its file) for `run_id`, a whole or a short id; one line
    and exit 2 when it is missing, ambiguous or unreadable."""
    store = RunStore(runs_dir_to_read(runs_dir))
    run_id = find_run(store, run_id)
    try:
        return store, run_id, store.load(run_id)
    except RunNotFound:
        fail(f"no run {run_id!r} in {store.root}; `sltui runs list` shows the ids")
    except RunUnreadable as exc:
        fail(f"run {run_id!r} is unreadable: {exc}")


def find_run(store: RunStore, text: str) -> str:
    """The id of the run `text` names in `store`: its id, or its short id as the browser
    and `runs list` show it (sltui.runs.index.resolve_run_id); one line and exit 2 where no
    run or several runs end with it."""
    try:
        return resolve_run_id(run_ids(store.root), text)
    except RunNotFound:
        fail(f"no run {text!r} in {store.root}; `sltui runs list` shows the ids")
    except AmbiguousRunId as exc:
        fail(str(exc))
    raise AssertionError("unreachable")


def runs_folder_to_read(runs_dir: Optional[Path]) -> Path:
    """The runs folder the terminal UI opens; one line and exit 2 when it is a file."""
    root = default_runs_dir(runs_dir)
    if root.exists() and not root.is_dir():
        fail(f"the runs folder {root} is a file, not a folder; pass --runs-dir to a folder")
    return root


@app.callback(invoke_without_command=True)
def main_callback(
    ctx: typer.Context,
    runs_dir: Optional[Path] = typer.Option(None, "--runs-dir", help=RUNS_DIR_HELP + "; for every command"),
    data_root: Optional[str] = typer.Option(None, "--data-root", help="folder holding the datasets; for every command"),
) -> None:
    """With no command: open the terminal UI."""
    set_root_options(runs_dir, data_root)
    if ctx.invoked_subcommand is not None:
        return
    open_tui(runs_folder_to_read(None), data_root)


def open_tui(runs_dir: Path, data_root: Optional[str], config: Any = None) -> None:
    try:
        from ..tui.app import launch
    except ImportError as exc:
        fail(f"the terminal UI is not available ({exc}); use `sltui run --headless`")
    code = launch(runs_dir=runs_dir, data_root=data_root, config=config)
    if code:
        raise typer.Exit(code)


@with_config_flags
def run_command(
    headless: bool = typer.Option(False, "--headless", help="no UI: a progress bar, for scripts and clusters"),
    config_file: Optional[Path] = typer.Option(None, "--config", help="JSON file of config fields (or a run.json)"),
    runs_dir: Optional[Path] = typer.Option(None, "--runs-dir", help=RUNS_DIR_HELP),
    **flags: Any,
) -> None:
    """Run one experiment. Flags override --config, which overrides the paper's defaults."""
    try:
        cfg = build_config(config_file, flags)
    except ConfigError as exc:
        fail(str(exc))
    if not headless:
        open_tui(runs_folder_to_read(runs_dir), cfg.data_root, cfg)
        return
    from .headless import run_headless

    store = RunStore(make_folder(default_runs_dir(runs_dir), "the runs folder"))

    result, start_error = run_headless(cfg, store, console)
    if start_error is not None:
        if isinstance(start_error, (ConfigError, DataError)):
            fail(str(start_error))
        if isinstance(start_error, OSError):  # e.g. --runs-dir is a file or read-only
            fail(f"cannot write the run file under {store.root}: {reason(start_error)}")
        fail(f"{type(start_error).__name__}: {start_error}", code=1)
    assert result is not None
    print_result(result)
    if result.status == "failed":
        fail(f"run failed: {result.error} (details in {store.path(result.run_id)})", code=1)
    if result.status == "cancelled":
        raise typer.Exit(130)


app.command("run", context_settings={"help_option_names": ["-h", "--help"]})(run_command)


@app.command("transfer")
def transfer_command(
    run_id: str = typer.Argument(..., help="id (or short id) of a completed run whose network is checked"),
    dataset: str = typer.Option(..., "--dataset", help="clean dataset to retrain the last layer on: mnist, emnist-letters-aj, fmnist, ..."),
    epochs: int = typer.Option(10, "--epochs", help="epochs of last-layer retraining"),
    runs_dir: Optional[Path] = typer.Option(None, "--runs-dir", help=RUNS_DIR_HELP),
    data_root: Optional[str] = typer.Option(None, "--data-root", help="folder holding the datasets"),
    device: Optional[str] = typer.Option(None, "--device", help="auto, cpu or cuda"),
    train_limit: Optional[int] = typer.Option(None, "--train-limit", help="first N training images only"),
    eval_limit: Optional[int] = typer.Option(None, "--eval-limit", help="first N test images only"),
) -> None:
    """Retrain the last layer of a finished run on a clean dataset; its CDA and ASR there.

    The transfer check (docs/protocol.md section 8), stored as a run linked to its source."""
    from engine.store import load_weights
    from engine.training.transfer import run_transfer, transfer_config

    from .headless import follow_thread

    check_data_root(data_root)
    store, run_id, source = load_run(runs_dir, run_id)
    if source.get("status") != "completed":
        fail(f"run {run_id!r} is {source.get('status')}, not completed: only a finished run can be checked")
    if not source.get("weights"):
        fail(f"run {run_id!r} has no stored weights (it ran with --no-save-weights)")
    if not store.weights_path(run_id).is_file():
        fail(f"run {run_id!r}'s weights file {store.weights_path(run_id)} is missing (deleted or moved)")
    try:
        cfg = transfer_config(source, dataset, epochs, data_root=default_data_root(data_root), device=device,
                              train_limit=train_limit, eval_limit=eval_limit)
        weights = load_weights(store.weights_path(run_id))
    except (ConfigError, RunUnreadable, RunNotFound) as exc:
        fail(str(exc))
    # Each transfer is a run of its own: a second one on the same dataset gets the next number.
    try:
        new_id = store.reserve(lambda n: f"{run_id}-transfer-{dataset}" + (f"-{n + 1}" if n else ""))
    except OSError as exc:
        fail(f"cannot write the run file under {store.root}: {reason(exc)}")
    result, start_error = follow_thread(
        lambda emit, stop: run_transfer(source, weights, cfg, emit, stop, new_id), store, console, cfg.epochs,
        new_id)
    if start_error is not None:
        fail(str(start_error) if isinstance(start_error, (ConfigError, DataError)) else
             f"{type(start_error).__name__}: {start_error}", code=2 if isinstance(start_error, (ConfigError, DataError)) else 1)
    assert result is not None
    print_result(result)
    if result.status != "completed":
        raise typer.Exit(1 if result.status == "failed" else 130)


def print_result(result) -> None:
    console.print(Text.assemble("run ", literal(result.run_id), ": ", literal(result.status, "bold"),
                                f" after {len(result.epochs)} epoch(s)"))
    for label, metrics in (("final", result.final), ("best val", result.best)):
        if metrics:
            console.print(literal(f"  {label:8} epoch {metrics['epoch']:>3}  CDA {fmt_pct(metrics['cda'])}%  "
                                  f"ASR {fmt_pct(metrics['asr'])}%  val loss {fmt_num(metrics['val_loss'], '.4f')}"))
    for name, report in (getattr(result, "defenses", None) or {}).items():
        verdict = "flagged the server at " + fmt_flag(report["flagged_at"]) if report.get("flagged_at") else "did not flag the server"
        counts = "".join(f", {k.replace('_', ' ')} {v}" for k, v in report.items()
                         if k not in ("scores", "flagged_at", "flagged_epochs", "trace"))
        if report.get("flagged_epochs"):
            counts += f", flagged in {len(report['flagged_epochs'])} of {len(result.epochs)} epoch(s)"
        console.print(literal(f"  {name:12} {verdict}{counts}"))
    if getattr(result, "reaction", None):
        console.print(literal("  " + fmt_reaction(result.reaction)))


# The run list's columns in display order. The id (short where whole ids do not fit), status,
# setting (`mnist lenet c3 K3 hijack`) and final metrics always; the rest as the width
# allows (priority: the lowest stays longest) and all of them with --wide.
RUN_LIST_COLUMNS = (
    Column("id", "id"), Column("status", "status"), Column("setting", "setting"),
    Column("cda", "CDA %", 0, "right"), Column("asr", "ASR %", 0, "right"),
    Column("seed", "seed", 1, "right"), Column("best_cda", "best CDA %", 2, "right"),
    Column("best_asr", "best ASR %", 2, "right"), Column("detectors", "verdicts", 3),
    Column("name", "name", 4), Column("tags", "tags", 5),
)
# What --columns may name: the default columns (verdicts, time, K by their usual names) and
# the setting's fields one by one.
LIST_COLUMN_CHOICES = {
    **{c.key: c for c in RUN_LIST_COLUMNS if c.key != "detectors"},
    "verdicts": Column("detectors", "verdicts"), "time": Column("seconds", "time", 0, "right"),
    "epochs": Column("epochs", "epochs", 0, "right"), "note": Column("note", "note"),
    "dataset": Column("dataset", "dataset"), "model": Column("model", "model"),
    "cut": Column("cut", "cut", 0, "right"), "k": Column("clients", "K", 0, "right"),
    "attack": Column("attack", "attack"), "alpha": Column("alpha", "alpha", 0, "right"),
    "trigger": Column("trigger", "trigger"), "created": Column("created", "created"),
}
COLUMNS_HELP = "the columns to show, in order, e.g. id,status,setting,asr,name: " + ",".join(LIST_COLUMN_CHOICES)
SHORT_IDS_NOTE = "(ids shortened to their ends, which every command takes; --wide shows whole ids)"
FILTER_HELP = ("only runs matching: words, FIELD=VALUE, FIELD>=N (cut>=2 asr>90), tag:NAME, name:TEXT "
               "(docs/explorer.md)")
# `runs show`: the per-epoch metrics.
EPOCH_COLUMNS = (
    Column("epoch", "epoch", 0, "right"), Column("train_loss", "train loss", 5, "right"),
    Column("val_loss", "val loss", 4, "right"), Column("val_acc", "val acc", 6, "right"),
    Column("cda", "CDA %", 1, "right"), Column("asr", "ASR %", 2, "right"),
    Column("lr", "lr", 7, "right"), Column("seconds", "s", 3, "right"),
    Column("samples_per_s", "samples/s", 8, "right"),
)
CONFIG_COLUMNS = (Column("key", "field"), Column("value", "value"))


@runs_app.command("list")
def runs_list(
    runs_dir: Optional[Path] = typer.Option(None, "--runs-dir", help=RUNS_DIR_HELP),
    as_json: bool = typer.Option(False, "--json", help="print JSON rows instead of a table"),
    wide: bool = typer.Option(False, "--wide", help=WIDE_HELP + ", and whole ids"),
    filter_text: Optional[str] = typer.Option(None, "--filter", help=FILTER_HELP),
    columns_text: Optional[str] = typer.Option(None, "--columns", help=COLUMNS_HELP),
) -> None:
    """A table of stored runs, newest first; unreadable files are listed and marked.

    Where whole ids do not fit, each id is shortened to its last characters that no other
    run's id ends with (as the terminal UI shows them); every command takes them. Read
    through the run index (runs/.index.sqlite): only run files that changed since the last
    listing are read again."""
    root = runs_dir_to_read(runs_dir)
    try:
        query = parse_query(filter_text or "")
    except QueryError as exc:
        fail(f"--filter: {exc}")
    columns = list_columns(columns_text)
    entries = RunIndex(root).scan()
    unreadable_warnings(entries, "listed with status unreadable")
    rows = [r for r in map(run_row, entries) if query.matches(r)]
    if as_json:
        print(json_text(rows))
        return
    if not rows:
        err_console.print(literal(f"no runs in {root}" + (f" match {filter_text!r}" if filter_text else "")),
                          soft_wrap=True)
        return
    cells = [{c.key: fmt_cell(c.key, row.get(c.key)) for c in columns} for row in rows]
    picked = columns_text is not None
    width = terminal_width()
    if not wide and any(c.key == "id" for c in columns) and (
            render_width(columns, cells, picked) > width or len(fit_columns(columns, cells, width)) < len(columns)):
        short = short_run_ids(e.run_id for e in entries)
        cells = [{**cell, "id": short.get(cell["id"], cell["id"])} for cell in cells]
        print(SHORT_IDS_NOTE, file=sys.stderr)
    print_table(columns, cells, wide or picked)


def list_columns(text: Optional[str]) -> list[Column]:
    """RUN_LIST_COLUMNS, or the columns `--columns` names; one line and exit 2 for a name it
    does not know."""
    if text is None:
        return list(RUN_LIST_COLUMNS)
    names = [name.strip().lower() for name in text.split(",") if name.strip()]
    unknown = [name for name in names if name not in LIST_COLUMN_CHOICES]
    if unknown or not names:
        fail(f"--columns: unknown column {', '.join(map(repr, unknown)) or '(none given)'}; "
             f"columns: {', '.join(LIST_COLUMN_CHOICES)}")
    return [LIST_COLUMN_CHOICES[name] for name in dict.fromkeys(names)]


def render_width(columns: list[Column], cells: list[dict[str, str]], every: bool) -> int:
    """The width of the table's widest line: every column, or those that fit the terminal."""
    shown = columns if every else fit_columns(columns, cells, terminal_width())
    widths = natural_widths(shown, cells)
    return sum(widths.values()) + 2 * max(0, len(shown) - 1)


def epoch_cells(epoch: dict[str, Any]) -> dict[str, str]:
    """One row of the `runs show` epoch table."""
    return {"epoch": str(epoch.get("epoch")), "train_loss": fmt_num(epoch.get("train_loss"), ".4f"),
            "val_loss": fmt_num(epoch.get("val_loss"), ".4f"), "val_acc": fmt_pct(epoch.get("val_acc")),
            "cda": fmt_pct(epoch.get("cda")), "asr": fmt_pct(epoch.get("asr")),
            "lr": fmt_num(epoch.get("lr"), ".0e"), "seconds": fmt_num(epoch.get("seconds"), ".1f"),
            "samples_per_s": fmt_num(epoch.get("samples_per_s"), ",.0f")}


@runs_app.command("show")
def runs_show(
    run_id: str = typer.Argument(..., help="run id (a folder name under the runs dir), or its short id"),
    runs_dir: Optional[Path] = typer.Option(None, "--runs-dir", help=RUNS_DIR_HELP),
    as_json: bool = typer.Option(False, "--json", help="print the run file"),
    wide: bool = typer.Option(False, "--wide", help=WIDE_HELP),
) -> None:
    """One run: its config, environment and per-epoch metrics."""
    store, run_id, doc = load_run(runs_dir, run_id)
    if as_json:
        print(json_text(doc))
        return
    print(printable(doc["id"]))
    name = (doc.get("config") or {}).get("name")
    if name:
        print(printable(f"name: {name}"))
    print(printable(f"status {doc['status']}, created {doc.get('created')}"))
    notes = read_annotations(store.path(run_id).parent)
    if notes.get("tags"):
        print(printable("tags: " + " ".join(notes["tags"])))
    if notes.get("note"):
        print(printable(f"note: {notes['note']}"))
    if doc.get("error"):
        print(printable(f"error: {(str(doc['error']).splitlines() or [''])[0]}"))
    env = doc.get("env") or {}
    print(printable("env: " + ", ".join(f"{k} {v}" for k, v in env.items())))
    print("\nconfig")
    print_table(CONFIG_COLUMNS, [{"key": k, "value": fmt_cell(k, v)} for k, v in sorted(used_config(doc.get("config") or {}).items())],
                wide, header=False)
    for name, phase in (doc.get("phases") or {}).items():
        info = {k: v for k, v in phase.items() if k != "history"}
        print(printable(f"phase {name}: " + ", ".join(f"{k} {v}" for k, v in info.items())))
    if doc.get("epochs"):
        print("\nepochs")
        print_table(EPOCH_COLUMNS, [epoch_cells(e) for e in doc["epochs"]], wide)
    for label in ("final", "best"):
        if doc.get(label):
            m = doc[label]
            print(printable(f"{label}: epoch {m.get('epoch')}  CDA {fmt_pct(m.get('cda'))}%  ASR {fmt_pct(m.get('asr'))}%"))


register_sweep(app, runs_app, console, default_runs_dir, default_data_root)
register_annotate(runs_app, console, default_runs_dir, fail, RUNS_DIR_HELP)
register_doctor(app, console, default_runs_dir, fail, RUNS_DIR_HELP, default_data_root)
register_arena(app, console, default_runs_dir)
register_reproduce(app, console, default_runs_dir, default_data_root)
register_calibrate(app, console, default_runs_dir, default_data_root)


def _is_usage_error(exc: BaseException) -> bool:
    """A Click usage error (unknown flag, bad value, missing argument). Duck-typed: Typer
    raises Click's exceptions or, from 0.20 on, those of its vendored copy of Click."""
    return callable(getattr(exc, "format_message", None)) and isinstance(getattr(exc, "exit_code", None), int)


def main() -> None:
    guard_output()  # a closed stdout or stderr cancels cleanly (sltui/cli/signals.py)
    try:
        code = app(standalone_mode=False)
    except typer.Abort:
        err_console.print(Text("aborted", "bold red"))
        sys.exit(130)
    except (ConfigError, DataError) as exc:
        err_console.print(error_line(exc), soft_wrap=True)
        sys.exit(2)
    except Exception as exc:
        if type(exc).__name__ == "NoArgsIsHelpError":
            sys.exit(2)  # Typer has printed the help
        if not _is_usage_error(exc):
            raise
        # One line, like every other user error, instead of a boxed panel.
        command = getattr(getattr(exc, "ctx", None), "command_path", None)
        hint = f" (see `{command} --help`)" if command else ""
        err_console.print(error_line(f"{exc.format_message()}{hint}"), soft_wrap=True)  # type: ignore[attr-defined]
        sys.exit(exc.exit_code)  # type: ignore[attr-defined]
    sys.exit(code if isinstance(code, int) else 0)


if __name__ == "__main__":
    main()
