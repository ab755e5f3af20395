"""`sltui arena`: every attack against every detector over seeds (docs/protocol.md section
11), on the sweep machinery (resumable, parallel, --dry-run), then the matrix as Markdown,
CSV and a heatmap under the sweep's report folder."""
from __future__ import annotations

import csv
from pathlib import Path
from typing import Any, Mapping, Optional

import typer

from engine.config import ATTACKS, DEFENSES
from engine.errors import ConfigError
from engine.sweeps.arena import LONG_COLUMNS, MATRIX_COLUMNS, arena_sweep, long_rows, matrix_rows
from engine.sweeps.executors import sweep_run_docs

from ..format import fmt_arena_cell
from .config_flags import given_fields, with_config_flags

MATRIX_LABELS = {
    "attack": "attack", "detector": "detector", "runs": "runs", "detection_rate": "detection rate",
    "false_positive_rate": "false-positive rate", "mean_detection_epoch": "mean detection epoch",
    "cda_cost": "CDA cost (points)", "asr": "ASR %", "cda": "CDA %",
}


def parse_defenses_list(text: str) -> tuple[str, ...]:
    names = tuple(dict.fromkeys(part.strip() for part in text.split(",") if part.strip()))
    if not names:
        raise ConfigError("--defenses needs at least one detector")
    for name in names:
        if name not in DEFENSES:
            raise ConfigError(f"--defenses: unknown detector {name!r}; choose from {', '.join(DEFENSES)}")
    return names


def markdown(matrix: list[Mapping[str, Any]], title: str, runs: int) -> str:
    lines = [f"# {title}: attacks against client-side detectors", "",
             f"{runs} runs. Per attack and detector: the share of its runs the detector flagged (detection "
             "rate), the share of `none` runs it flagged (false-positive rate), the mean epoch of the first "
             "flag over flagged runs, the final CDA with the detector minus without (same attack and seed), "
             "and the mean final ASR and CDA of its runs. The long table is arena-long.csv.", "",
             "| " + " | ".join(MATRIX_LABELS[c] for c in MATRIX_COLUMNS) + " |",
             "|" + "---|" * len(MATRIX_COLUMNS)]
    for row in matrix:
        lines.append("| " + " | ".join(fmt_arena_cell(c, row.get(c)) for c in MATRIX_COLUMNS) + " |")
    return "\n".join(lines) + "\n"


def write_csv(path: Path, columns: tuple[str, ...], rows: list[Mapping[str, Any]]) -> Path:
    with path.open("w", newline="") as fh:
        writer = csv.DictWriter(fh, fieldnames=list(columns), extrasaction="ignore")
        writer.writeheader()
        for row in rows:
            writer.writerow({k: "" if row.get(k) is None else row.get(k) for k in columns})
    return path


def heatmap(matrix: list[Mapping[str, Any]], path: Path, title: str) -> Path:
    """Attacks x detectors, each cell annotated with the share of runs flagged (the `none`
    row: the false-positive rate), the mean detection epoch and the CDA cost, and coloured
    green where that is good for the client (attacks flagged, `none` runs not)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import numpy as np

    attacks = list(dict.fromkeys(r["attack"] for r in matrix))
    detectors = list(dict.fromkeys(r["detector"] for r in matrix))
    grid = np.full((len(attacks), len(detectors)), np.nan)
    notes = [["" for _ in detectors] for _ in attacks]
    for row in matrix:
        i, j = attacks.index(row["attack"]), detectors.index(row["detector"])
        rate = row["false_positive_rate"] if row["attack"] == "none" else row["detection_rate"]
        if rate is not None:
            grid[i, j] = 100 * (1 - rate if row["attack"] == "none" else rate)
        epoch = row.get("mean_detection_epoch")
        notes[i][j] = (f"{fmt_arena_cell('detection_rate', rate)}" + (f"\nepoch {epoch:.1f}" if epoch is not None else "")
                       + (f"\nCDA {row['cda_cost']:+.2f}" if row.get("cda_cost") is not None else ""))
    fig, ax = plt.subplots(figsize=(1.9 * len(detectors) + 2.2, 0.9 * len(attacks) + 1.6))
    image = ax.imshow(grid, cmap="RdYlGn", vmin=0, vmax=100, aspect="auto")
    ax.set_xticks(range(len(detectors)), detectors)
    ax.set_yticks(range(len(attacks)), [a + (" (false pos.)" if a == "none" else "") for a in attacks])
    for i in range(len(attacks)):
        for j in range(len(detectors)):
            ax.text(j, i, notes[i][j], ha="center", va="center", fontsize=8)
    fig.colorbar(image, ax=ax, label="right verdicts (%)")
    ax.set_title(f"{title}: share of runs flagged", fontsize=10)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


def write_arena_report(docs: list[Mapping[str, Any]], out: Path, title: str) -> list[Path]:
    """arena-long.csv, arena-matrix.csv, arena.md and arena-heatmap.png under `out` ([]
    without completed runs)."""
    rows = long_rows(docs)
    if not rows:
        return []
    matrix = matrix_rows(rows)
    out.mkdir(parents=True, exist_ok=True)
    runs = len({r["run"] for r in rows})
    summary = out / "arena.md"
    summary.write_text(markdown(matrix, title, runs))
    return [write_csv(out / "arena-long.csv", LONG_COLUMNS, rows),
            write_csv(out / "arena-matrix.csv", MATRIX_COLUMNS, matrix),
            summary, heatmap(matrix, out / "arena-heatmap.png", title)]


def register(app: typer.Typer, console: Any, default_runs_dir: Any) -> None:
    """Add `sltui arena` to the app."""
    from .sweep import (DRY_RUN_OPTION, EXECUTOR_OPTION, GPUS_PER_JOB_OPTION, JOBS_OPTION, RAY_ADDRESS_OPTION,
                        RUNS_DIR_OPTION, WIDE_DRY_RUN_OPTION, check_executor, gpu_share, launch,
                        summarize)

    def arena_command(
        attacks: str = typer.Option(",".join(ATTACKS), "--attacks",
                                    help="comma list of attacks; `none` gives the false-positive rate"),
        defenses: str = typer.Option(",".join(DEFENSES), "--defenses", help="comma list: " + ", ".join(DEFENSES)),
        seeds: str = typer.Option("1,2,3", "--seeds", help="comma list, e.g. 1,2,3"),
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
        sweep, points = arena_sweep(attacks, parse_defenses_list(defenses), seeds, base)
        share = gpu_share(gpus_per_job, jobs, base.get("device"))
        root = default_runs_dir(runs_dir)
        ran = launch("arena", sweep, points, root, jobs, executor, ray_address, share, dry_run, wide, console)
        if ran is None:
            return
        record, results = ran
        folder = record.path.parent / record.doc["id"] / "report"
        for path in write_arena_report(sweep_run_docs(root, record.doc), folder, record.doc["id"]):
            console.print(str(path), highlight=False, soft_wrap=True)
        summarize(console, record, results, "arena")

    app.command("arena", context_settings={"help_option_names": ["-h", "--help"]})(
        with_config_flags(arena_command, exclude=("attack", "seed", "defenses")))
