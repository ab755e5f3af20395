"""Rewrite the generated tables in docs/detectors.md from an arena report.

The tables between `<!-- NAME ... -->` and `<!-- /NAME -->` markers are built from a report's
`cells.csv` and `frontier.csv` (`sltui report ... --out DIR`), so the page quotes exactly what
the report holds and can be regenerated after new runs land:

    python bench/doc_tables.py examples/arena/report docs/detectors.md

Markers: `eval-tables` (K=1) and `eval-tables-k3` (K=3): detections and final ASR/CDA per
attack, detector and setting; `react-table`: the reacting client's cells; `frontier-table`:
SplitGuard's row of the hijack's frontier (K=1). A marker absent from the page is skipped.
"""
from __future__ import annotations

import argparse
import csv
import re
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from sltui.format import fmt_attack_setting, fmt_mean_n, fmt_rate  # noqa: E402

# The rows of the evaluation tables: the arena's default attacks and FSHA's label-blind control,
# named as the TUI and frontier.png name them (sltui.format.fmt_attack_setting).
EVAL_ATTACKS = ("none", "client", "surrogate", "autoencoder", "hijack β0.7 conditional", "hijack β0 plain")
# What a table says where a setting has no run of its row, rather than an empty cell.
NOT_RUN = "not run"


def _num(text: str | None) -> float | None:
    return float(text) if text not in ("", None) else None


def setting_label(dataset: str, cut: str, clients: str | None = None) -> str:
    name = "MNIST" if dataset == "mnist" else dataset.upper()
    return f"{name} cut {cut}" + (f" K={clients}" if clients else "")


def _settings(cells: list[dict]) -> list[tuple[str, str]]:
    return sorted({(c["dataset"], c["cut"]) for c in cells}, key=lambda s: (s[0] != "mnist", s[0], s[1]))


def _rate(cell: dict, kind: str) -> str:
    """A cell's detections (`detection`) or false accusations (`false_accusation`) as k/n
    with the interval cells.csv holds."""
    k, n = ("detected", "malicious_runs") if kind == "detection" else ("false_accusations", "runs")
    return fmt_rate(int(cell[k]), int(cell[n]), _num(cell[f"{kind}_ci_low"]), _num(cell[f"{kind}_ci_high"]))


def _detection_text(cell: dict) -> str:
    if cell["attack"] in ("none", "client"):
        return "FA " + _rate(cell, "false_accusation")
    text = _rate(cell, "detection")
    if int(cell["false_accusations"]):
        text += f"; FA {cell['false_accusations']}/{cell['runs']}"
    if int(cell["detected"]):
        text += f"; pre-live {cell['caught_before_live']}/{cell['caught_before_live_of']}"
        if int(cell.get("caught_as_live") or 0):
            text += f", as live {cell['caught_as_live']}"
    return text


def _outcome_text(cell: dict) -> str:
    text = (f"{fmt_mean_n(_num(cell['asr']), _num(cell['asr_std']), cell['runs'])} / "
            f"{fmt_mean_n(_num(cell['cda']), _num(cell['cda_std']), cell['runs'])}")
    if cell["asr_reacting_n"] not in ("", "0"):
        n = cell["asr_reacting_n"]
        text += (f"; after reacting ASR {fmt_mean_n(_num(cell['asr_reacting']), _num(cell['asr_reacting_std']), n)}, "
                 f"CDA {fmt_mean_n(_num(cell['cda_reacting']), _num(cell['cda_reacting_std']), n)}")
    return text


def eval_tables(cells: list[dict], clients: str) -> str:
    """Two tables (detections; final ASR / CDA) over every setting with `clients` clients."""
    labelled = [(fmt_attack_setting(c), c) for c in cells if c["clients"] == clients]
    chosen = [(label, c) for label, c in labelled if label in EVAL_ATTACKS]
    settings = _settings([c for _, c in chosen])
    rows: dict[tuple[str, str], dict] = {}
    for label, cell in sorted(chosen, key=lambda lc: (lc[0], lc[1]["detector"])):
        rows.setdefault((label, cell["detector"]), {})[(cell["dataset"], cell["cut"])] = cell
    header = f"| attack | detector | {' | '.join(setting_label(d, k) for d, k in settings)} |"
    rule = "|---|---|" + "---|" * len(settings)
    blocks = []
    for render, intro in (
        (_detection_text,
         "Detections of a malicious server, k/n with the 95% Wilson interval; FA: the same detector's flags "
         "while the server was still honest (the hijack's warm-up); pre-live: detections whose first flag came "
         "in an epoch before the first epoch with ASR >= 50%; as live: detections flagged in that epoch (the "
         "flag and the working backdoor arrive together). For `none` and `client` (an honest server), FA is the "
         "false-accusation rate:"),
        (_outcome_text,
         "Final ASR / CDA (%), mean ± std (n); Scrutinizer and SplitOut only watch, so their rows are the "
         "same runs (training without a detector):"),
    ):
        lines = [intro, "", header, rule]
        for (label, detector), by_setting in rows.items():
            texts = [render(by_setting[s]) if s in by_setting else NOT_RUN for s in settings]
            lines.append(f"| {label} | {detector} | " + " | ".join(texts) + " |")
        blocks.append("\n".join(lines))
    return "\n\n".join(blocks)


def react_table(cells: list[dict]) -> str:
    """One row per cell whose runs reacted (`--on-flag stop`): flags, ASR and CDA either way."""
    reacting = [c for c in cells if c["asr_reacting_n"] not in ("", "0")]
    order = lambda c: (c["clients"], c["dataset"] != "mnist", c["dataset"], c["cut"],  # noqa: E731
                       c["detector"] != "splitguard", c["attack"], c["variant"], c["detector"])
    lines = ["| setting | attack | detector | flagged while malicious | flagged while honest | ASR %, continuing "
             "| ASR % after stopping | CDA % after stopping | CDA %, continuing |",
             "|---|---|---|---|---|---|---|---|---|"]
    for c in sorted(reacting, key=order):
        flagged = "honest server" if c["attack"] in ("none", "client") else _rate(c, "detection")
        accused = _rate(c, "false_accusation")
        n = c["asr_reacting_n"]
        lines.append(
            f"| {setting_label(c['dataset'], c['cut'], c['clients'])} | {fmt_attack_setting(c)} | {c['detector']} "
            f"| {flagged} | {accused} | {fmt_mean_n(_num(c['asr']), _num(c['asr_std']), c['runs'])} "
            f"| {fmt_mean_n(_num(c['asr_reacting']), _num(c['asr_reacting_std']), n)} "
            f"| {fmt_mean_n(_num(c['cda_reacting']), _num(c['cda_reacting_std']), n)} "
            f"| {fmt_mean_n(_num(c['cda']), _num(c['cda_std']), c['runs'])} |")
    return "\n".join(lines)


def frontier_table(rows: list[dict]) -> str:
    """SplitGuard's frontier at K=1: per critic and beta, detections, ASR / CDA and `works`."""
    rows = [r for r in rows if r["detector"] == "splitguard" and r["attack"] == "hijack"
            and r["hijack_beta"] and r.get("clients", "1") == "1"]
    settings = _settings(rows)
    knobs = sorted({(r["hijack_critic"], float(r["hijack_beta"])) for r in rows},
                   key=lambda k: (k[0] != "conditional", k[1]))
    by = {(r["dataset"], r["cut"], r["hijack_critic"], float(r["hijack_beta"])): r for r in rows}
    lines = [f"| critic | beta | {' | '.join(setting_label(d, k) for d, k in settings)} |",
             "|---|---|" + "---|" * len(settings)]
    for critic, beta in knobs:
        texts = []
        for dataset, cut in settings:
            r = by.get((dataset, cut, critic, beta))
            if not r:
                texts.append(NOT_RUN)
                continue
            texts.append(
                f"{_rate(r, 'detection')}; "
                f"{_num(r['asr']):.1f} / {_num(r['cda']):.1f} (n={r['runs']})"
                + ("; works" if r["qualifies"] == "True" else ""))
        lines.append(f"| {critic} | {beta:g} | " + " | ".join(texts) + " |")
    return "\n".join(lines)


def fill(page: str, name: str, body: str, source: str) -> str:
    """Replace the text between the `name` markers (kept) with `body`; unchanged without them."""
    pattern = re.compile(rf"<!-- {re.escape(name)}(:[^>]*)? -->.*?<!-- /{re.escape(name)} -->", re.S)
    block = f"<!-- {name}: generated by bench/doc_tables.py from {source} -->\n{body}\n<!-- /{name} -->"
    return pattern.sub(lambda _: block, page)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("report", type=Path, help="a report folder with cells.csv and frontier.csv")
    parser.add_argument("page", type=Path, help="the markdown page to rewrite (docs/detectors.md)")
    args = parser.parse_args(argv)
    cells = list(csv.DictReader((args.report / "cells.csv").open(encoding="utf-8")))
    frontier_path = args.report / "frontier.csv"
    frontier = list(csv.DictReader(frontier_path.open(encoding="utf-8"))) if frontier_path.exists() else []
    page = args.page.read_text(encoding="utf-8")
    cells_src, frontier_src = f"{args.report.as_posix()}/cells.csv", f"{args.report.as_posix()}/frontier.csv"
    page = fill(page, "eval-tables", eval_tables(cells, "1"), cells_src)
    page = fill(page, "eval-tables-k3", eval_tables(cells, "3"), cells_src)
    page = fill(page, "react-table", react_table(cells), cells_src)
    page = fill(page, "frontier-table", frontier_table(frontier), frontier_src)
    args.page.write_text(page, encoding="utf-8")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
