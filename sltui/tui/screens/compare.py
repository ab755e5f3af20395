"""Compare runs: the config fields that differ, final and best metrics, the paper's value
for the same setting (toggle), CDA and ASR curves overlaid, CSV export."""
from __future__ import annotations

import datetime as _dt
from pathlib import Path
from typing import Any

from rich.text import Text
from textual import on
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Horizontal
from textual.message import Message
from textual.screen import Screen
from textual.widgets import DataTable, Footer, Header, Static

from ..messages import RunsChanged
from ..runs_model import COLUMN_LABELS, PAPER_COLUMNS, compare_rows, fmt_cell, seed_summary, series, write_csv
from ..widgets.charts import MetricChart


def short_id(run_id: str, width: int = 14) -> str:
    """The distinguishing tail of a run id (its random suffix and the setting before it)."""
    return run_id if len(run_id) <= width else "…" + run_id[-(width - 1):]


class CompareScreen(Screen[None]):
    BINDINGS = [
        Binding("escape", "back", "Back"),
        Binding("p", "toggle_paper", "Paper values"),
        Binding("e", "export", "Export CSV"),
        Binding("r", "reload", "Refresh", show=False),
    ]
    PALETTE = (
        ("Toggle paper values", "Show the authors' CDA/ASR for each run's setting (p)", "toggle_paper"),
        ("Export comparison as CSV", "Write the table into the runs folder (e)", "export"),
    )

    class Exported(Message):
        def __init__(self, path: Path) -> None:
            super().__init__()
            self.path = path

    def __init__(self, run_ids: list[str], show_paper: bool = False) -> None:
        super().__init__()
        self.run_ids = list(run_ids)
        self.show_paper = show_paper
        self.docs: list[dict[str, Any]] = []
        self.columns: list[str] = []
        self.rows: list[dict[str, Any]] = []
        self.last_export: Path | None = None

    def compose(self) -> ComposeResult:
        yield Header()
        yield DataTable(id="compare-table", cursor_type="row", zebra_stripes=True)
        yield Static("", id="compare-note")
        yield Static("", id="compare-seeds")
        with Horizontal(id="compare-charts"):
            yield MetricChart("CDA % per epoch", ylim=(0, 100), id="chart-cda")
            yield MetricChart("ASR % per epoch", ylim=(0, 100), id="chart-asr")
        yield Footer()

    def on_mount(self) -> None:
        self.title = "compare"
        self.reload()
        self.set_interval(getattr(self.app, "poll_interval", 1.0), self._poll)

    def _load_docs(self) -> list[dict[str, Any]]:
        docs = []
        store = self.app.index.store  # type: ignore[attr-defined]
        for run_id in self.run_ids:
            try:
                docs.append(store.load(run_id))
            except Exception:  # noqa: BLE001 - a run that became unreadable is left out
                continue
        return docs

    def _poll(self) -> None:
        if any(d.get("status") == "running" for d in self.docs):
            self.reload()

    @on(RunsChanged)
    def _runs_changed(self, message: RunsChanged) -> None:
        if message.run_ids & set(self.run_ids):
            self.reload()

    def reload(self) -> None:
        self.docs = self._load_docs()
        self.columns, self.rows = compare_rows(self.docs)
        self._render_table()
        labels = [short_id(d.get("id", "?")) for d in self.docs]
        self.query_one("#chart-cda", MetricChart).set_series(
            [(label, *series(d, "cda")) for label, d in zip(labels, self.docs)])
        self.query_one("#chart-asr", MetricChart).set_series(
            [(label, *series(d, "asr")) for label, d in zip(labels, self.docs)])

    def shown_columns(self) -> list[str]:
        return [c for c in self.columns if self.show_paper or c not in PAPER_COLUMNS]

    def _render_table(self) -> None:
        table = self.query_one("#compare-table", DataTable)
        table.clear(columns=True)
        columns = self.shown_columns()
        for key in columns:
            table.add_column(COLUMN_LABELS.get(key, key.replace("_", " ")), key=key)
        for row in self.rows:
            cells = []
            for key in columns:
                text = short_id(str(row[key])) if key == "id" else fmt_cell(key, row.get(key))
                numeric = isinstance(row.get(key), (int, float)) and not isinstance(row.get(key), bool)
                cells.append(Text(text, justify="right") if numeric else text)
            table.add_row(*cells, key=str(row["id"]))
        diff = [c for c in self.columns if c not in ("id", "status", "final_cda", "final_asr", "best_cda",
                                                      "best_asr", *PAPER_COLUMNS)]
        note = f"{len(self.rows)} runs; differing fields: {', '.join(diff) if diff else 'none'}"
        if self.show_paper:
            note += "  |  paper: authors' single run, last epoch ('-' = no such setting)"
        self.query_one("#compare-note", Static).update(note)
        seeds = self.query_one("#compare-seeds", Static)
        lines = seed_summary(self.docs)
        seeds.update("\n".join(lines))
        seeds.display = bool(lines)  # only where several seeds of one setting are selected

    # ---- actions ----------------------------------------------------------
    def action_back(self) -> None:
        self.app.pop_screen()

    def action_reload(self) -> None:
        self.reload()

    def action_toggle_paper(self) -> None:
        self.show_paper = not self.show_paper
        self._render_table()

    def action_export(self) -> Path | None:
        stamp = _dt.datetime.now().strftime("%Y%m%d-%H%M%S")
        root = Path(self.app.index.root)  # type: ignore[attr-defined]
        path = root / f"compare-{stamp}.csv"
        try:
            write_csv(path, self.columns, self.rows)
        except OSError as exc:
            self.notify(f"export failed: {exc}", severity="error")
            return None
        self.last_export = path
        self.post_message(self.Exported(path))
        self.notify(f"exported {len(self.rows)} runs to {path}", timeout=6)
        return path
