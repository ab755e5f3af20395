"""The arena view's tables: the arena sweeps of a runs folder, how far each has got, its
matrix per (attack, detector), with the cells that still lack runs marked, and its
attacker's frontier (`f`).

Pure Python (no Textual): the screen only renders what these functions return. The
numbers come from engine.sweeps.arena (long_rows, matrix_rows), the functions `sltui
arena` writes arena.md with; this module picks the sweeps, counts their runs and
formats the cells.
"""
from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterable, Mapping, Sequence

from engine.errors import ConfigError
from engine.store import RunEntry
from engine.sweeps.arena import is_arena, planned_cells, planned_variants
from engine.sweeps.executors import SWEEPS_DIR, load_sweep_doc, point_key, point_run_docs, runs_by_key
from engine.sweeps.grid import NOT_EXPERIMENT
from engine.sweeps.verdicts import CDA_SLACK, WORKING_ASR, cell_rows, frontier_rows, run_rows, stealthiest

from ..format import MISSING, arena_cells, fmt_attack_setting, fmt_mean_n, fmt_rate, frontier_lines
from ..tables import Column

# A point of the sweep is in one of these states, from the runs the folder holds for it.
DONE, RUNNING, STOPPED, NOT_STARTED = "done", "running", "stopped", "not started"
# The arena as a whole.
COMPLETE, INCOMPLETE = "complete", "incomplete"

# The list of arenas: id, state and runs always; the setting and the time as width allows.
LIST_COLUMNS: tuple[Column, ...] = (
    Column("id", "arena"),
    Column("state", "state"),
    Column("runs", "runs", 0, "right"),
    Column("setting", "setting", 1),
    Column("updated", "updated", 2),
)
# The matrix: which cell and how many of its runs are done always, and both verdicts
# (detections of a malicious server, false accusations of an honest one); then latency,
# caught before live and as it went live, honest epochs flagged, cost, ASR and CDA as width
# allows.
MATRIX_VIEW_COLUMNS: tuple[Column, ...] = (
    Column("attack", "attack"),
    Column("detector", "detector"),
    Column("runs", "runs", 0, "right"),
    Column("detection", "detected", 0, "right"),
    Column("false_accusation", "false acc.", 0, "right"),
    Column("latency", "latency", 2, "right"),
    Column("before_live", "pre-live", 2, "right"),
    Column("as_live", "as live", 2, "right"),
    Column("false_accusation_epochs", "FA epochs", 3, "right"),
    Column("cost", "CDA cost", 3, "right"),
    Column("asr", "ASR", 3, "right"),
    Column("cda", "CDA", 4, "right"),
)
LEGEND = ("detected: k/n runs of a malicious server flagged (95% CI)  false acc.: k/n runs flagged while the "
          "server was honest  latency: epochs from the attack's start to the flag  pre-live: detections flagged "
          "an epoch or more before ASR reached 50%  as live: flagged in that epoch  FA epochs: k/n epochs of an "
          "honest server with a flag  cost: CDA with minus without the detector  mean ± std (n)  runs 1/2: 1 of "
          "2 done")
# The frontier (`f`): per malicious cell, how often its detector caught it against how well
# the attack worked; the attack and detector always, the rest as width allows.
FRONTIER_VIEW_COLUMNS: tuple[Column, ...] = (
    Column("attack", "attack"),
    Column("detector", "detector"),
    Column("detection", "detected", 0, "right"),
    Column("works", "works", 0),
    Column("asr", "ASR", 1, "right"),
    Column("cda_gap", "CDA vs clean", 2, "right"),
)
FRONTIER_LEGEND = (f"works: mean ASR >= {WORKING_ASR:.0f}% and CDA within {CDA_SLACK:.0f} points of the clean "
                   "runs'; stealthiest: the working one its detector caught least; rows by detector, least "
                   "detected first  f: the matrix")
# Config fields every arena setting names first (the rest: the fields its command gave).
HEADLINE = ("dataset", "model", "cut", "clients", "epochs")


@dataclass(frozen=True)
class Arena:
    """One arena sweep: its file, the runs of its points, and each point's state."""
    id: str
    path: Path
    doc: dict[str, Any]
    docs: list[dict[str, Any]] = field(default_factory=list)
    points: Counter = field(default_factory=Counter)

    @property
    def planned(self) -> int:
        return sum(self.points.values())

    @property
    def state(self) -> str:
        """`complete` when every point has a completed run, `running` while one of its runs
        is, else `incomplete` (the sweep file's own status stays `running` when its
        command was killed, so the runs folder decides)."""
        if self.points[DONE] == self.planned:
            return COMPLETE
        return RUNNING if self.points[RUNNING] else INCOMPLETE


def point_state(runs: Sequence[Mapping[str, Any]]) -> str:
    """A sweep point's state from its runs (effective statuses): done once one completed."""
    statuses = {r.get("status") for r in runs}
    if "completed" in statuses:
        return DONE
    if "running" in statuses:
        return RUNNING
    return STOPPED if runs else NOT_STARTED


def find_arenas(root: Path, entries: Iterable[RunEntry]) -> tuple[list[Arena], int]:
    """(the arena sweeps under `root`/sweeps, newest first; how many sweep files could not
    be read). `entries` are the folder's runs, read once for every sweep."""
    folder = Path(root) / SWEEPS_DIR
    try:
        paths = sorted(folder.glob("*.json")) if folder.is_dir() else []
    except OSError:
        paths = []
    have = runs_by_key(list(entries))
    arenas, unreadable = [], 0
    for path in paths:
        try:
            doc = load_sweep_doc(path)
        except ConfigError:
            unreadable += 1
            continue
        if not is_arena(doc):
            continue
        points = Counter(point_state(have.get(point_key(p), [])) for p in doc["points"] if isinstance(p, dict))
        arenas.append(Arena(str(doc.get("id") or path.stem), path, doc, point_run_docs(doc, have, continue_twins=True), points))
    arenas.sort(key=lambda a: (str(a.doc.get("updated") or a.doc.get("created") or ""), a.id), reverse=True)
    return arenas, unreadable


def setting(arena: Arena) -> str:
    """What its runs share: `mnist lenet c1 K=1 5ep`, then the other fields its command
    set (`hijack_beta=0.0`)."""
    points = [p for p in arena.doc.get("points") or [] if isinstance(p, dict) and isinstance(p.get("config"), dict)]
    config = points[0]["config"] if points else {}
    base = arena.doc.get("base") if isinstance(arena.doc.get("base"), dict) else {}
    head = (f"{config.get('dataset', '?')} {config.get('model', '?')} c{config.get('cut', '?')} "
            f"K={config.get('clients', '?')} {config.get('epochs', '?')}ep")
    extra = [f"{k}={v}" for k, v in base.items() if k not in HEADLINE and k not in NOT_EXPERIMENT]
    return " ".join([head, *extra])


def list_cells(arena: Arena) -> dict[str, str]:
    updated = str(arena.doc.get("updated") or arena.doc.get("created") or "")
    return {"id": arena.id, "state": arena.state, "runs": f"{arena.points[DONE]}/{arena.planned}",
            "setting": setting(arena), "updated": updated[:16].replace("T", " ") or MISSING}


def progress(arena: Arena) -> str:
    """`6 of 8 runs done, 1 running, 1 not started` (stopped: failed, cancelled or interrupted)."""
    text = f"{arena.points[DONE]} of {arena.planned} runs done"
    rest = [f"{arena.points[s]} {s}" for s in (RUNNING, STOPPED, NOT_STARTED) if arena.points[s]]
    return ", ".join([text, *rest])


def detail(arena: Arena) -> str:
    """The chosen arena in a line: setting, seeds and detector sets, progress."""
    grid = arena.doc.get("grid") or {}
    seeds = ",".join(str(s) for s in grid.get("seeds") or []) or MISSING
    return f"{arena.id}: {setting(arena)}, seeds {seeds}; {progress(arena)}"


def computed_cells(arena: Arena) -> list[dict[str, Any]]:
    """The arena's cells: engine.sweeps.verdicts over its completed runs, one per point and
    seed, split by the options its points vary."""
    rows, _ = run_rows(arena.docs, planned_variants(arena.doc))
    return cell_rows(rows)


def matrix_view(arena: Arena, cells: list[dict[str, Any]] | None = None) -> list[dict[str, Any]]:
    """The arena's cells (computed_cells, or `cells` already computed), one row per planned
    (attack, variant, detector) in the sweep's order, each with `planned` and `complete`.
    A cell without a completed run yet has `runs` 0."""
    computed = {(c["attack"], c["variant"], c["detector"]): c
                for c in (computed_cells(arena) if cells is None else cells)}
    rows = []
    for (attack, variant, detector), planned in planned_cells(arena.doc).items():
        row = computed.get((attack, variant, detector)) or {"attack": attack, "variant": variant,
                                                            "detector": detector, "runs": 0}
        rows.append({**row, "planned": planned, "complete": row["runs"] >= planned})
    return rows


def matrix_cells(row: Mapping[str, Any]) -> dict[str, str]:
    """A matrix row's cells, as arena.md writes them; `runs` reads `1/2` where the cell
    lacks runs; the attack names its variant and says where the server is honest."""
    cells = {"attack": fmt_attack_setting(row), "detector": str(row["detector"]), "runs": str(row.get("runs", 0)),
             **(arena_cells(row) if row.get("runs") else {})}
    cells = {c.key: cells.get(c.key, MISSING) for c in MATRIX_VIEW_COLUMNS}
    if not row.get("complete"):
        cells["runs"] = f"{row.get('runs', 0)}/{row.get('planned')}"
    return cells


def frontier_view(cells: list[dict[str, Any]]) -> tuple[list[dict[str, Any]], list[str]]:
    """(engine.sweeps.verdicts.frontier_rows of an arena's cells, by detector and then least
    detected first, more ASR first, each with `stealthiest` where it is the working setting
    its detector caught least, as arena.md names it; the sentences arena.md writes on
    whether a working setting evades every detector). ([], []) where no malicious cell has
    runs."""
    rows = frontier_rows(cells)
    if not rows:
        return [], []
    chosen = {id(f) for f in stealthiest(rows)["per_detector"]}
    rows = [{**f, "stealthiest": id(f) in chosen} for f in rows]
    rows.sort(key=lambda f: (f["detector"], f["detection_rate"] if f["detection_rate"] is not None else 2.0,
                             -(f["asr"] or 0.0)))
    _, evading = frontier_lines(rows)
    return rows, evading


def frontier_cells(row: Mapping[str, Any]) -> dict[str, str]:
    """A frontier row as text: the detection rate with its interval, whether the attack
    works (`stealthiest` for the working setting its detector caught least), ASR as
    mean ± std (n), and its CDA's gap to clean."""
    works = "stealthiest" if row.get("stealthiest") else "yes" if row.get("qualifies") else "no"
    return {"attack": fmt_attack_setting(row), "detector": str(row["detector"]), "works": works,
            "detection": fmt_rate(row.get("detected"), row.get("malicious_runs"), row.get("detection_ci_low"),
                                  row.get("detection_ci_high")),
            "asr": fmt_mean_n(row.get("asr"), row.get("asr_std"), row.get("runs")),
            "cda_gap": f"{row['cda_gap']:+.2f}" if row.get("cda_gap") is not None else MISSING}
