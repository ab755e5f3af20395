"""`sltui reproduce`: the paper on record (docs/protocol.md section 13).

`run` runs the reproduction's parts as one resumable sweep (engine/sweeps/reproduction.py);
`report` turns the run files into cells.csv, the paper-layout figures and
docs/reproduction.md by the comparison rules fixed before the runs (engine/sweeps/agreement.py)."""
from __future__ import annotations

import subprocess
import sys
from pathlib import Path
from typing import Any, Optional

import typer

from engine.config import DEVICES
from engine.errors import ConfigError
from engine.sweeps.grid import parse_list
from engine.files import make_folder
from engine.store import RunStore
from engine.sweeps.reproduction import (PARTS, TRANSFER_EPOCHS, TRANSFER_TARGETS, more_seeds_points, parse_parts,
                                        reproduction_sweep, transfer_sources)

from .batch import (DRY_RUN_OPTION, unreadable_warnings, EXECUTOR_OPTION, JOBS_OPTION, RAY_ADDRESS_OPTION, RUNS_DIR_OPTION,
                    WIDE_DRY_RUN_OPTION, check_executor, gpu_share, launch, summarize)
from .config_flags import HelpTyper

PARTS_HELP = ("comma list of parts (default: the paper at K = 1, every part but `clients`; `all`: every part): "
              + "; ".join(f"{p.name}: {p.what}" for p in PARTS))


def register(app: typer.Typer, console: Any, default_runs_dir: Any, default_data_root: Any) -> None:
    reproduce_app = HelpTyper(help="The paper on record: run its grid with seeds, compare it cell by cell.",
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
        kept = parse_list("datasets", datasets) if datasets else None
        sweep, points = reproduction_sweep(parse_parts(parts), base, kept)
        root = default_runs_dir(runs_dir)
        names = parse_parts(parts)
        if "clients-seeds" in names:
            points += [p for p in more_seeds_points(clients_results(root), base)
                       if kept is None or p.config.dataset in kept]
        ran = launch("reproduction", sweep, points, root, jobs, executor, ray_address,
                     gpu_share(None, jobs, device), dry_run, wide, console) if points else None
        if "table3" in names and not dry_run:
            run_transfers(root, device, base.get("data_root"), console)
        if ran is not None:
            summarize(console, *ran, kind="reproduction")

    @reproduce_app.command("report")
    def report_command(
        runs_dir: Optional[Path] = RUNS_DIR_OPTION,
        out: Optional[Path] = typer.Option(None, "--out", help="folder for cells.csv, transfers.csv and the figures "
                                                               "(default <runs folder>/report)"),
        doc: Optional[Path] = typer.Option(None, "--doc", help="the Markdown report (default <out>/reproduction.md)"),
    ) -> None:
        """cells.csv, the figures in the paper's layout and the report (headline counts, the
        paper's claims with verdicts, one table per figure), from the run files alone."""
        from ..reports.reproduction import write_reproduction

        root = default_runs_dir(runs_dir)
        # Whole run files (the run index's summaries leave out the environment, which names the device).
        entries = RunStore(root).entries()
        unreadable_warnings(entries, "left out")
        docs = [{**e.doc, "status": e.status} for e in entries if e.doc is not None]
        if not any(d.get("status") == "completed" for d in docs):
            raise ConfigError(f"no completed runs under {root}: run `sltui reproduce run` first")
        folder = out or root / "report"
        target = doc or folder / "reproduction.md"
        make_folder(folder, "the report folder (--out)")
        make_folder(target.parent, "the folder of --doc")
        command = "sltui reproduce report" + "".join(
            f" {flag} {value}" for flag, value in (("--runs-dir", runs_dir), ("--out", out), ("--doc", doc)) if value)
        for path in write_reproduction(docs, folder, target, command):
            console.print(str(path), highlight=False, soft_wrap=True)


def clients_results(root: Path) -> list[tuple[dict[str, Any], float, float | None]]:
    """(config, final ASR, the authors' ASR) of each completed run with K > 1 under `root`."""
    from ..reference import lookup

    out = []
    for entry in RunStore(root).entries():
        doc = entry.doc or {}
        config, final = doc.get("config"), doc.get("final") or {}
        if entry.status == "completed" and isinstance(config, dict) and isinstance(final.get("asr"), (int, float)) \
                and int(config.get("clients", 1)) > 1 and config.get("attack") == "surrogate":
            ref = lookup(config)
            out.append((config, float(final["asr"]), None if ref is None else ref.asr))
    return out


def run_transfers(root: Path, device: str, data_root: Optional[str], console: Any) -> None:
    """Table 3: each completed fig34 MNIST cut-1 run with stored weights, checked on each target
    dataset where it has no completed transfer yet (`sltui transfer`, one at a time)."""
    store = RunStore(root)
    entries = [e for e in store.entries() if e.doc is not None]
    done = {(str(e.doc.get("source_run")), str((e.doc.get("config") or {}).get("dataset")))
            for e in entries if e.doc.get("source_run") and e.status == "completed"}
    sources = sorted(str(e.doc.get("id")) for e in entries if e.status == "completed" and not e.doc.get("source_run")
                     and transfer_sources(e.doc.get("config") or {}) and store.weights_path(str(e.doc.get("id"))).is_file())
    for run_id in sources:
        for dataset in TRANSFER_TARGETS:
            if (run_id, dataset) in done:
                continue
            command = [sys.executable, "-m", "sltui", "transfer", run_id, "--dataset", dataset, "--epochs",
                       str(TRANSFER_EPOCHS), "--runs-dir", str(root), "--device", device]
            if data_root:
                command += ["--data-root", str(data_root)]
            code = subprocess.run(command, stdout=subprocess.DEVNULL).returncode
            console.print(f"transfer {run_id} -> {dataset}: {'completed' if code == 0 else f'exit {code}'}",
                          highlight=False, soft_wrap=True)
            if code == 130:
                raise typer.Exit(130)
