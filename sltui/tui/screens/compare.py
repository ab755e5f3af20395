"""Compare runs: each labelled by the config fields that differ between them (`cut=1 seed=2`),
final and best metrics, the paper's value for the same setting (toggle; marked where the
paper trained longer or shorter than the run), CDA and ASR curves overlaid, CSV export."""
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
from ...format import DETECTOR_SHORT, fmt_cell, literal, printable
from ..runs_model import (COLUMN_LABELS, agreement_lines, METRIC_COLUMNS, PAPER_COLUMNS, PAPER_MARK, compare_rows, paper_differs,
                          paper_footnote, run_labels, seed_summary, series, table_columns_wrapping, write_csv,
                          defense_series)
from ...tables import Column
from ..widgets.charts import MetricChart
from ..widgets.fitted_table import add_fitted_columns

SCROLLBAR = 2
# The screen's table: the run's number (the charts' legend falls back to it where the labels
# do not fit), label and status always; then final, paper and best values.
TABLE_COLUMNS = (
    Column("n", "#", 0, "right"), Column("run", "run"), Column("status", "status"),
    Column("final_cda", COLUMN_LABELS["final_cda"], 1, "right"), Column("final_asr", COLUMN_LABELS["final_asr"], 1, "right"),
    Column("best_cda", COLUMN_LABELS["best_cda"], 3, "right"), Column("best_asr", COLUMN_LABELS["best_asr"], 3, "right"),
    Column("paper_cda", COLUMN_LABELS["paper_cda"], 2, "right"), Column("paper_asr", COLUMN_LABELS["paper_asr"], 2, "right"),
)


def table_columns_for(best: bool) -> list[Column]:
    """TABLE_COLUMNS, or with best-validation metrics (m) before the final ones and kept
    longest instead of them when the width runs out."""
    if not best:
        return list(TABLE_COLUMNS)
    swap = {"final_cda": 3, "final_asr": 3, "best_cda": 1, "best_asr": 1}
    cols = [Column(c.key, c.header, swap.get(c.key, c.priority), c.align) for c in TABLE_COLUMNS]
    order = ["n", "run", "status", "best_cda", "best_asr", "final_cda", "final_asr", "paper_cda", "paper_asr"]
    return sorted(cols, key=lambda c: order.index(c.key))


class CompareScreen(Screen[None]):
    BINDINGS = [
        Binding("escape", "back", "Back"),
        Binding("p", "toggle_paper", "Paper values"),
        Binding("m", "toggle_best", "Final/best", show=False),
        Binding("e", "export", "Export CSV"),
        Binding("r", "reload", "Refresh", show=False),
    ]
    PALETTE = (
        ("Toggle paper values", "Show the authors' CDA/ASR for each run's setting (p)", "toggle_paper"),
        ("Export comparison as CSV", "Write the table into the runs folder (e)", "export"),
        ("Final or best metrics first", "Best-validation CDA/ASR before the final ones (m)", "toggle_best"),
    )

    class Exported(Message):
        def __init__(self, path: Path) -> None:
            super().__init__()
            self.path = path

    def __init__(self, run_ids: list[str], show_paper: bool = False) -> None:
        super().__init__()
        self.run_ids = list(run_ids)
        self.show_paper = show_paper
        self.best = False
        self.docs: list[dict[str, Any]] = []
        self.columns: list[str] = []
        self.rows: list[dict[str, Any]] = []
        self.labels: list[str] = []
        self.last_export: Path | None = None

    def compose(self) -> ComposeResult:
        yield Header()
        yield DataTable(id="compare-table", cursor_type="row", zebra_stripes=True)
        yield Static("", id="compare-note")
        yield Static("", id="compare-seeds")
        with Horizontal(id="compare-charts"):
            yield MetricChart("CDA % per epoch", ylim=(0, 100), short_title="CDA", id="chart-cda")
            yield MetricChart("ASR % per epoch", ylim=(0, 100), short_title="ASR", id="chart-asr")
            yield MetricChart("detector scores (1 = honest)", ylim=(0, 1), short_title="score", id="chart-defense")
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
        self.labels = run_labels(self.docs)
        self._render_table()
        labels = self.labels
        numbers = [str(n) for n in range(1, len(self.docs) + 1)]   # the table's `#` column
        self.query_one("#chart-cda", MetricChart).set_series(
            [(label, *series(d, "cda")) for label, d in zip(labels, self.docs)], short=numbers)
        self.query_one("#chart-asr", MetricChart).set_series(
            [(label, *series(d, "asr")) for label, d in zip(labels, self.docs)], short=numbers)
        pairs = [(n, label, d, name) for n, label, d in zip(numbers, labels, self.docs) for name in (d.get("defenses") or {})]
        chart = self.query_one("#chart-defense", MetricChart)
        chart.display = bool(pairs)
        chart.set_series([(f"{label} {name}", *defense_series(d, name)) for _, label, d, name in pairs],
                         short=[f"{n} {DETECTOR_SHORT.get(name, name)}" for n, _, _, name in pairs])

    def on_resize(self) -> None:
        if self.docs:
            self._render_table()

    def table_cells(self) -> list[dict[str, str]]:
        """The table's cells: the run's label, its status and metrics; paper values carry
        PAPER_MARK where the paper trained for another number of epochs than the run."""
        cells = []
        for n, (label, row) in enumerate(zip(self.labels, self.rows), 1):
            cell = {"n": str(n), "run": printable(label), "status": fmt_cell("status", row.get("status"))}
            cell.update({k: fmt_cell(k, row.get(k)) for k in METRIC_COLUMNS})
            mark = PAPER_MARK if paper_differs(row) else ""
            cell.update({k: fmt_cell(k, row.get(k)) + (mark if row.get(k) is not None else "") for k in PAPER_COLUMNS})
            cells.append(cell)
        return cells

    def table_layout(self) -> tuple[list[Column], list[dict[str, str]]]:
        """(the table's columns at the screen's width, its cells): paper values only when
        toggled on; run labels wrapped at spaces where whole labels would push the status
        and metrics off the screen (runs_model.table_columns_wrapping)."""
        columns = [c for c in table_columns_for(self.best) if self.show_paper or c.key not in PAPER_COLUMNS]
        width = (self.size.width or self.app.size.width) - SCROLLBAR
        return table_columns_wrapping(columns, self.table_cells(), width, "run")

    def shown_columns(self) -> list[str]:
        """The keys of the table's columns at the screen's width."""
        return [c.key for c in self.table_layout()[0]]

    def _render_table(self) -> None:
        table = self.query_one("#compare-table", DataTable)
        table.clear(columns=True)
        columns, cells = self.table_layout()
        add_fitted_columns(table, columns, cells)
        for row, cell in zip(self.rows, cells):
            table.add_row(*[literal(cell[c.key], justify="right" if c.align == "right" else None, lines=True)
                            for c in columns], key=str(row["id"]), height=cell["run"].count("\n") + 1)
        note = f"{len(self.rows)} runs"
        hidden = len([c for c in TABLE_COLUMNS if self.show_paper or c.key not in PAPER_COLUMNS]) - len(columns)
        if self.best:
            note += "  |  best-val metrics first"
        if hidden:
            note += f", {hidden} columns hidden"
        if self.show_paper:
            note += "  |  paper: authors' last epoch, - = none"
            footnote = paper_footnote(self.rows)
            if footnote:
                note += "\n" + footnote
        self.query_one("#compare-note", Static).update(literal(note, lines=True))
        seeds = self.query_one("#compare-seeds", Static)
        lines = seed_summary(self.docs, self.best) + agreement_lines(self.docs)
        seeds.update(Text("\n").join(literal(line) for line in lines))
        seeds.display = bool(lines)  # several seeds of one setting, or settings the authors published

    # ---- actions ----------------------------------------------------------
    def action_back(self) -> None:
        self.app.pop_screen()

    def action_reload(self) -> None:
        self.reload()

    def action_toggle_best(self) -> None:
        self.best = not self.best
        self._render_table()

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
