"""An arena's report (docs/protocol.md section 11): runs.csv, cells.csv, arena.md, the
heatmap and, where the hijack's knobs vary, frontier.csv and frontier.png, all from the pure
verdicts of engine/sweeps/verdicts.py."""
from __future__ import annotations

import csv
from pathlib import Path
from typing import Any, Mapping

from engine.sweeps.verdicts import (CDA_SLACK, CELL_COLUMNS, FRONTIER_COLUMNS, HONEST_SERVER_ATTACKS, RUN_COLUMNS,
                                    SETTING, WORKING_ASR, cell_rows, frontier_rows, run_rows)

from ..format import arena_cells, fmt_attack_setting, frontier_lines

# arena.md's columns: cells.csv's numbers as text (sltui.format.arena_cells).
TABLE_LABELS = {
    "attack": "attack", "detector": "detector", "detection": "detected (95% CI)",
    "false_accusation": "false accusations (95% CI)",
    "false_accusation_epochs": "honest epochs flagged (95% CI)", "latency": "latency, epochs",
    "before_live": "caught before live", "as_live": "caught as it went live", "cost": "CDA cost, points",
    "asr": "ASR %", "cda": "CDA %",
}
# With reacting runs (--on-flags stop): what the honest clients deploy after stopping at a flag.
REACTING_LABELS = {"asr_reacting": "ASR % after reacting"}


def markdown(cells: list[Mapping[str, Any]], title: str, runs: int, left_out: int) -> str:
    """arena.md: per setting, one table of the cells (sltui.format.arena_cells)."""
    epochs = sorted({c["epochs"] for c in cells})
    lines = [f"# {title}: attacks against client-side detectors", "",
             f"{runs} runs of {', '.join(map(str, epochs))} epochs, one per point and seed (the newest); "
             f"{left_out} older rerun(s) of a point left out. Verdicts follow docs/protocol.md section 11: a flag "
             "counts as a detection only while the server is malicious (from the attack's start epoch); a flag on "
             "an honest server (`none` and `client` runs, the hijack's warm-up) is a false accusation. Rates are "
             "k/n with a 95% Wilson interval; means are mean ± std (n). Detected counts runs whose server turned "
             "malicious; false accusations count runs, honest epochs flagged count the epochs a run trained while "
             "its server was honest in which the detector flagged at some step (the unit SplitOut's authors count; "
             "epochs of one run are not independent, and a cell counts them only when every run's file says which "
             "epochs were flagged); latency is epochs from the attack's start to the first flag; caught before live "
             "counts detections whose first flag came in an epoch before the first epoch with ASR >= 50%, caught as "
             "it went live those whose first flag came in that epoch; CDA cost is the final CDA with the detector "
             "minus without, same point and seed. Per run: runs.csv; per cell: cells.csv.", ""]
    labels = dict(TABLE_LABELS, **(REACTING_LABELS if any(c.get("asr_reacting_n") for c in cells) else {}))
    settings = list(dict.fromkeys(tuple(c[k] for k in SETTING) for c in cells))
    for setting in settings:
        dataset, model, cut, clients = setting
        lines += [f"## {dataset} {model}, cut {cut}, K={clients}", "",
                  "| " + " | ".join(labels.values()) + " |", "|" + "---|" * len(labels)]
        for cell in (c for c in cells if tuple(c[k] for k in SETTING) == setting):
            text = arena_cells(cell)
            attack = cell["attack"] + (f" ({cell['variant']})" if cell.get("variant") else "")
            if cell["attack"] in HONEST_SERVER_ATTACKS:
                attack += " (honest server)"
            row = {"attack": attack, "detector": cell["detector"], **text}
            lines.append("| " + " | ".join(str(row[k]) for k in labels) + " |")
        lines.append("")
    lines += frontier_markdown(frontier_rows(cells))
    return "\n".join(lines)


def frontier_markdown(frontier: list[Mapping[str, Any]]) -> list[str]:
    """The stealthiest working attack setting per detector, and whether one evades all."""
    if not frontier:
        return []
    lines = ["## The attacker's frontier", "",
             f"An attack setting works when its mean ASR is at least {WORKING_ASR:.0f}% with CDA within "
             f"{CDA_SLACK:.0f} points of the clean runs' (frontier.csv, frontier.png). Per detector, the working "
             "setting it detected least:", ""]
    per_detector, evading = frontier_lines(frontier)
    lines += [f"- {line}" for line in per_detector] + ([""] if per_detector else []) + evading
    return lines + [""]


def write_csv(path: Path, columns: tuple[str, ...], rows: list[Mapping[str, Any]]) -> Path:
    with path.open("w", newline="") as fh:
        writer = csv.DictWriter(fh, fieldnames=list(columns), extrasaction="ignore")
        writer.writeheader()
        for row in rows:
            writer.writerow({k: "" if row.get(k) is None else row.get(k) for k in columns})
    return path


def heatmap(cells: list[Mapping[str, Any]], path: Path, title: str) -> Path:
    """Rows: attack (and variant) per setting; columns: detectors. A malicious server's cell
    is coloured by its detection rate (red 0% to green 100%) and reads `k/n (low-high%)`; an
    honest server's cell (`none`, `client`) is never coloured as a success: it reads
    `FA k/n (low-high%)`, white when nobody was accused, red as false accusations grow."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import numpy as np

    def row_label(c: Mapping[str, Any]) -> str:
        setting = f"{c['dataset']} c{c['cut']} K{c['clients']}"
        variant = f" {c['variant']}" if c.get("variant") else ""
        honest = " (honest server)" if c["attack"] in HONEST_SERVER_ATTACKS else ""
        return f"{setting} {c['attack']}{variant}{honest}"

    rows = list(dict.fromkeys(row_label(c) for c in cells))
    detectors = list(dict.fromkeys(c["detector"] for c in cells))
    detect = np.full((len(rows), len(detectors)), np.nan)
    accuse = np.full((len(rows), len(detectors)), np.nan)
    notes = [["" for _ in detectors] for _ in rows]
    for c in cells:
        i, j = rows.index(row_label(c)), detectors.index(c["detector"])
        text = arena_cells(c)
        if c["attack"] in HONEST_SERVER_ATTACKS:
            accuse[i, j] = 100 * c["false_accusation_rate"]
            notes[i][j] = f"FA {text['false_accusation']}"
        else:
            if c["detection_rate"] is not None:
                detect[i, j] = 100 * c["detection_rate"]
            notes[i][j] = text["detection"] + (f"\nFA {text['false_accusation']}" if c["false_accusations"] else "")
    fig, ax = plt.subplots(figsize=(2.6 * len(detectors) + 3.5, 0.55 * len(rows) + 1.6))
    image = ax.imshow(detect, cmap="RdYlGn", vmin=0, vmax=100, aspect="auto")
    ax.imshow(accuse, cmap="Reds", vmin=0, vmax=100, aspect="auto")
    ax.set_xticks(range(len(detectors)), detectors)
    ax.set_yticks(range(len(rows)), rows, fontsize=7)
    for i in range(len(rows)):
        for j in range(len(detectors)):
            ax.text(j, i, notes[i][j], ha="center", va="center", fontsize=7)
    fig.colorbar(image, ax=ax, label="detection rate, malicious servers (%)")
    ax.set_title(f"{title}: detections (k/n, 95% CI); FA = false accusations of an honest server", fontsize=9)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


def frontier_plot(frontier: list[Mapping[str, Any]], path: Path, title: str) -> Path:
    """Per (dataset, cut, K) a panel: detection rate (95% interval) against mean ASR, one
    point per attack setting, one colour per detector, the hijack's critic as the marker;
    working settings filled."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    panels = list(dict.fromkeys(tuple(f[k] for k in SETTING) for f in frontier))
    detectors = list(dict.fromkeys(f["detector"] for f in frontier))
    colours = {d: plt.get_cmap("tab10")(i) for i, d in enumerate(detectors)}
    markers = {"conditional": "o", "plain": "s"}
    ncols = min(len(panels), 2)
    nrows = -(-len(panels) // ncols)
    fig, axes = plt.subplots(nrows, ncols, figsize=(5.6 * ncols, 4.4 * nrows + 0.9), squeeze=False)
    for ax in axes.flat[len(panels):]:
        ax.set_visible(False)
    for ax, panel in zip(axes.flat, panels):
        for f in (f for f in frontier if tuple(f[k] for k in SETTING) == panel and f["detection_rate"] is not None):
            rate, colour = 100 * f["detection_rate"], colours[f["detector"]]
            err = [[rate - 100 * f["detection_ci_low"]], [100 * f["detection_ci_high"] - rate]]
            marker = markers.get(f.get("hijack_critic") or "", "^") if f["attack"] == "hijack" else "D"
            ax.errorbar(f["asr"], rate, yerr=err, fmt=marker, color=colour, capsize=3, alpha=0.85,
                        markerfacecolor=colour if f["qualifies"] else "white")
            ax.annotate(fmt_attack_setting(f, attack=False), (f["asr"], rate), fontsize=5, xytext=(3, 2), textcoords="offset points",
                        rotation=30, color=colour)
        ax.set_title(f"{panel[0]} {panel[1]} cut {panel[2]} K={panel[3]}", fontsize=9)
        ax.set_xlabel("final ASR (%)")
        ax.set_ylabel("detection rate (%), 95% CI")
        ax.set_xlim(-5, 108)
        ax.set_ylim(-5, 108)
        ax.axvline(WORKING_ASR, color="grey", lw=0.6, ls="--")
    handles = [plt.Line2D([], [], marker="o", ls="", color=colours[d], label=d) for d in detectors]
    handles += [plt.Line2D([], [], marker=m, ls="", color="grey", markerfacecolor="white", label=f"critic {c}")
                for c, m in markers.items() if any(f.get("hijack_critic") == c for f in frontier)]
    fig.legend(handles=handles, loc="lower center", ncol=len(handles), fontsize=7, frameon=False)
    fig.suptitle(f"{title}: the attacker's frontier\n(filled: ASR >= {WORKING_ASR:.0f}% and CDA within "
                 f"{CDA_SLACK:.0f} points of clean)", fontsize=9)
    fig.tight_layout(rect=(0, 0.06, 1, 1))
    fig.savefig(path, dpi=130)
    plt.close(fig)
    return path


def write_arena_report(docs: list[Mapping[str, Any]], out: Path, title: str,
                       varying: Mapping[str, tuple[str, ...]] | None = None) -> list[Path]:
    """runs.csv, cells.csv, arena.md and arena-heatmap.png under `out` ([] without
    completed runs), and where attacks ran frontier.csv and frontier.png, all from
    engine.sweeps.verdicts."""
    rows, left_out = run_rows(docs, varying)
    if not rows:
        return []
    cells = cell_rows(rows)
    out.mkdir(parents=True, exist_ok=True)
    summary = out / "arena.md"
    summary.write_text(markdown(cells, title, len({r["run_id"] for r in rows}), left_out))
    paths = [write_csv(out / "runs.csv", RUN_COLUMNS, rows), write_csv(out / "cells.csv", CELL_COLUMNS, cells),
             summary, heatmap(cells, out / "arena-heatmap.png", title)]
    frontier = frontier_rows(cells)
    if frontier:
        paths += [write_csv(out / "frontier.csv", FRONTIER_COLUMNS, frontier),
                  frontier_plot(frontier, out / "frontier.png", title)]
    return paths
