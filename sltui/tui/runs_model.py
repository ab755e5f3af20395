"""Tables over run files: the browser's rows, sort and filter, the comparison, CSV export.

Pure Python (no Textual): the screens only render what these functions return.
"""
from __future__ import annotations

import csv
import math
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterable, Mapping, Sequence

from engine.store import RunEntry, RunStore, read_run_file, RunNotFound, RunUnreadable, summary_row
from engine.sweeps.aggregate import PER_RUN, aggregate

from ..reference import lookup


@dataclass(frozen=True)
class Column:
    key: str
    label: str
    numeric: bool = False


BROWSER_COLUMNS: tuple[Column, ...] = (
    Column("status", "status"),
    Column("dataset", "dataset"),
    Column("model", "model"),
    Column("cut", "cut", True),
    Column("clients", "K", True),
    Column("attack", "attack"),
    Column("alpha", "alpha", True),
    Column("cda", "CDA", True),
    Column("asr", "ASR", True),
    Column("seconds", "time", True),
    Column("id", "id"),
)


def fmt_duration(seconds: Any) -> str:
    if not isinstance(seconds, (int, float)) or math.isnan(seconds):
        return "-"
    seconds = int(round(seconds))
    if seconds < 60:
        return f"{seconds}s"
    if seconds < 3600:
        return f"{seconds // 60}m{seconds % 60:02d}s"
    return f"{seconds // 3600}h{seconds % 3600 // 60:02d}m"


def fmt_pct(value: Any) -> str:
    if not isinstance(value, (int, float)) or isinstance(value, bool) or math.isnan(value):
        return "-"
    return f"{value:.2f}"


def fmt_cell(key: str, value: Any) -> str:
    if key in ("cda", "asr", "best_cda", "best_asr", "paper_cda", "paper_asr",
               "final_cda", "final_asr"):
        return fmt_pct(value)
    if key == "seconds":
        return fmt_duration(value)
    if value is None:
        return "-"
    return str(value)


def browser_row(entry: RunEntry) -> dict[str, Any]:
    row = summary_row(entry)
    return {c.key: row.get(c.key) for c in BROWSER_COLUMNS} | {"error": row.get("error")}


def row_text(row: Mapping[str, Any]) -> str:
    return " ".join(fmt_cell(c.key, row.get(c.key)) for c in BROWSER_COLUMNS).lower()


def matches(row: Mapping[str, Any], query: str) -> bool:
    """Every whitespace-separated term of `query` is a substring of the row's text."""
    text = row_text(row)
    return all(term in text for term in query.lower().split())


def sort_key(key: str):
    """None and unreadable values last; numbers by value, text case-insensitively."""
    def k(row: Mapping[str, Any]):
        value = row.get(key)
        if value is None or (isinstance(value, float) and math.isnan(value)):
            return (1, 0, "")
        if isinstance(value, (int, float)) and not isinstance(value, bool):
            return (0, value, "")
        return (0, 0, str(value).lower())
    return k


def sort_rows(rows: Iterable[dict[str, Any]], key: str, reverse: bool = False) -> list[dict[str, Any]]:
    rows = list(rows)
    present = [r for r in rows if sort_key(key)(r)[0] == 0]
    missing = [r for r in rows if sort_key(key)(r)[0] == 1]
    return sorted(present, key=sort_key(key), reverse=reverse) + missing


class RunIndex:
    """The run files under a folder, re-read only when a file's mtime or size changes."""

    def __init__(self, root: str | os.PathLike[str]) -> None:
        self.store = RunStore(root)
        self._cache: dict[str, tuple[tuple[int, int], RunEntry]] = {}

    @property
    def root(self) -> Path:
        return self.store.root

    def scan(self) -> list[RunEntry]:
        """Every run folder with a run file (unreadable ones included), newest first."""
        root = self.store.root
        seen: dict[str, tuple[tuple[int, int], RunEntry]] = {}
        try:
            folders = list(root.iterdir()) if root.is_dir() else []
        except OSError:
            folders = []
        for folder in folders:
            if folder.name.startswith(".") or not folder.is_dir():
                continue
            path = folder / "run.json"
            try:
                st = path.stat()
            except OSError:
                continue
            stamp = (st.st_mtime_ns, st.st_size)
            cached = self._cache.get(folder.name)
            if cached and cached[0] == stamp:
                seen[folder.name] = cached
                continue
            try:
                entry = RunEntry(folder.name, path, read_run_file(path))
            except (RunUnreadable, RunNotFound) as exc:
                entry = RunEntry(folder.name, path, None, str(exc))
            except Exception as exc:  # noqa: BLE001 - a reader never crashes on a bad file
                entry = RunEntry(folder.name, path, None, f"{path}: {exc}")
            seen[folder.name] = (stamp, entry)
        self._cache = seen
        entries = [e for _, e in seen.values()]
        entries.sort(key=lambda e: (str((e.doc or {}).get("created", "")), e.run_id), reverse=True)
        return entries

    def get(self, run_id: str) -> RunEntry | None:
        cached = self._cache.get(run_id)
        return cached[1] if cached else None


# ---- compare ------------------------------------------------------------------
METRIC_COLUMNS = ("final_cda", "final_asr", "best_cda", "best_asr")
PAPER_COLUMNS = ("paper_cda", "paper_asr")
COLUMN_LABELS = {
    "final_cda": "CDA", "final_asr": "ASR", "best_cda": "best CDA", "best_asr": "best ASR",
    "paper_cda": "paper CDA", "paper_asr": "paper ASR", "clients": "K",
}


def differing_fields(configs: Sequence[Mapping[str, Any]]) -> list[str]:
    """Config fields whose values are not all the same, in field order."""
    if len(configs) < 2:
        return []
    names: list[str] = []
    for cfg in configs:
        names.extend(k for k in cfg if k not in names)
    return [n for n in names if len({repr(c.get(n)) for c in configs}) > 1]


def _metric(doc: Mapping[str, Any], which: str, name: str) -> Any:
    part = doc.get(which) or {}
    if not part and which == "final" and doc.get("epochs"):
        part = doc["epochs"][-1]
    return part.get(name)


def compare_rows(docs: Sequence[Mapping[str, Any]]) -> tuple[list[str], list[dict[str, Any]]]:
    """(columns, rows): id, status, the differing config fields, final/best metrics, paper values."""
    configs = [d.get("config") or {} for d in docs]
    diff = differing_fields(configs)
    columns = ["id", "status", *diff, *METRIC_COLUMNS, *PAPER_COLUMNS]
    rows = []
    for doc, cfg in zip(docs, configs):
        ref = lookup(cfg)
        row: dict[str, Any] = {"id": doc.get("id"), "status": doc.get("status")}
        row.update({k: cfg.get(k) for k in diff})
        row.update(final_cda=_metric(doc, "final", "cda"), final_asr=_metric(doc, "final", "asr"),
                   best_cda=_metric(doc, "best", "cda"), best_asr=_metric(doc, "best", "asr"),
                   paper_cda=ref.cda if ref else None, paper_asr=ref.asr if ref else None)
        rows.append(row)
    return columns, rows


def seed_summary(docs: Sequence[Mapping[str, Any]]) -> list[str]:
    """One line per setting that several of the completed `docs` share apart from the seed:
    mean ± sample std of their final CDA and ASR (engine.sweeps.aggregate)."""
    rows = [r for r in aggregate(docs) if r["n"] > 1]
    if not rows:
        return []
    diff = [f for f in differing_fields([d.get("config") or {} for d in docs]) if f not in PER_RUN]

    def pm(row: Mapping[str, Any], name: str) -> str:
        mean, std = row[f"{name}_mean"], row[f"{name}_std"]
        return "-" if mean is None else f"{mean:.2f} ± {std:.2f}"
    return [f"{', '.join(f'{f} {r.get(f)}' for f in diff) or 'same setting'} over seeds "
            f"{', '.join(map(str, r['seeds']))}: CDA {pm(r, 'cda')}  ASR {pm(r, 'asr')}" for r in rows]


def series(doc: Mapping[str, Any], metric: str) -> tuple[list[int], list[float]]:
    """(epochs, values) of one per-epoch metric, skipping missing or NaN values."""
    xs, ys = [], []
    for e in doc.get("epochs") or []:
        value = e.get(metric)
        if isinstance(value, (int, float)) and not (isinstance(value, float) and math.isnan(value)):
            xs.append(e.get("epoch", len(xs) + 1))
            ys.append(float(value))
    return xs, ys


def write_csv(path: str | os.PathLike[str], columns: Sequence[str], rows: Iterable[Mapping[str, Any]]) -> Path:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("w", newline="") as fh:
        writer = csv.DictWriter(fh, fieldnames=list(columns), extrasaction="ignore")
        writer.writeheader()
        for row in rows:
            writer.writerow({k: ("" if row.get(k) is None else row.get(k)) for k in columns})
    return path
