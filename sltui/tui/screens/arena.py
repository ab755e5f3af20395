"""`a`: the arena view. The arena sweeps of the runs folder (`sltui arena`) and the chosen
one's matrix per attack and detector, re-read while its runs finish; cells that still
lack runs read `1/2` and show in italics. `f` swaps the matrix for the attacker's
frontier (detection rate against ASR per attack setting, and the sentences arena.md
writes about it). The tables come from arena_model."""
from __future__ import annotations

from typing import Any

from rich.text import Text
from textual import on
from textual.app import ComposeResult
from textual.binding import Binding
from textual.screen import Screen
from textual.widgets import DataTable, Footer, Header, Static

from ...format import literal
from ..arena_model import (COMPLETE, FRONTIER_LEGEND, FRONTIER_VIEW_COLUMNS, LEGEND, LIST_COLUMNS,
                           MATRIX_VIEW_COLUMNS, Arena, computed_cells, detail, find_arenas, frontier_cells,
                           frontier_view, list_cells, matrix_cells, matrix_view)
from ..messages import RunsChanged
from ..runs_model import table_columns

SCROLLBAR = 2


def empty_text(root: Any, unreadable: int) -> str:
    """What the view says when the runs folder holds no arena sweep: how to start one."""
    text = (f"No arena sweeps in {root}/sweeps.\n\n"
            "An arena runs every attack against every client-side detector, e.g.\n\n"
            "  sltui arena --attacks none,hijack \\\n"
            "      --defenses splitguard,scrutinizer,splitout --seeds 1,2 \\\n"
            f"      --runs-dir {root}\n\n"
            "Its matrix shows here while its runs finish (r re-reads the folder).")
    if unreadable:
        text += f"\n\n{unreadable} sweep file(s) there could not be read."
    return text


def _styled(cells: dict[str, str], columns: list, italic: bool) -> list[Any]:
    return [literal(cells[c.key], "italic" if italic else "", "right" if c.align == "right" else "left")
            for c in columns]


class ArenaScreen(Screen[None]):
    BINDINGS = [
        Binding("escape", "back", "Back"),
        Binding("r", "reload", "Refresh"),
        Binding("f", "frontier", "Frontier/matrix"),
    ]
    PALETTE = (("Refresh arenas", "Re-read the arena sweeps and their runs (r)", "reload"),
               ("Arena frontier", "Swap the matrix for the attacker's frontier and back (f)", "frontier"))

    def __init__(self) -> None:
        super().__init__()
        self.arenas: list[Arena] = []
        self.unreadable = 0
        self.chosen: str | None = None
        self._shown_list: tuple = ()
        self._shown_matrix: tuple = ()
        self.frontier = False   # the lower table shows the frontier instead of the matrix

    def compose(self) -> ComposeResult:
        yield Header()
        yield Static("", id="arena-empty")
        yield DataTable(id="arena-list", cursor_type="row")
        yield Static("", id="arena-detail")
        yield DataTable(id="arena-matrix", cursor_type="row", zebra_stripes=True)
        yield Static(Text(LEGEND), id="arena-legend")
        yield Footer()

    def on_mount(self) -> None:
        self.title = "arena"
        self.reload()
        self.set_interval(getattr(self.app, "poll_interval", 1.0), self.reload)
        self.query_one("#arena-list", DataTable).focus()

    # ---- data -------------------------------------------------------------
    def reload(self) -> None:
        index = self.app.index  # type: ignore[attr-defined]
        self.arenas, self.unreadable = find_arenas(index.root, index.scan())
        if self.chosen not in {a.id for a in self.arenas}:
            self.chosen = self.arenas[0].id if self.arenas else None
        self._redraw()

    def arena(self) -> Arena | None:
        return next((a for a in self.arenas if a.id == self.chosen), None)

    def _width(self) -> int:
        return (self.size.width or self.app.size.width) - SCROLLBAR

    def _redraw(self) -> None:
        empty = not self.arenas
        self.query_one("#arena-empty", Static).display = empty
        for name in ("#arena-list", "#arena-detail", "#arena-matrix", "#arena-legend"):
            self.query_one(name).display = not empty
        if empty:
            root = self.app.index.root  # type: ignore[attr-defined]
            self.query_one("#arena-empty", Static).update(literal(empty_text(root, self.unreadable), lines=True))
            return
        self._render_list()
        self._render_matrix()

    def _render_list(self) -> None:
        table = self.query_one("#arena-list", DataTable)
        cells = [list_cells(a) for a in self.arenas]
        columns = table_columns(LIST_COLUMNS, cells, self._width())
        shown = (tuple(c.key for c in columns), tuple(tuple(cell[c.key] for c in columns) for cell in cells))
        if shown == self._shown_list:
            return
        self._shown_list = shown
        table.clear(columns=True)
        for col in columns:
            table.add_column(col.header, key=col.key)
        for arena, cell in zip(self.arenas, cells):
            table.add_row(*_styled(cell, columns, arena.state != COMPLETE), key=arena.id)
        ids = [a.id for a in self.arenas]
        table.move_cursor(row=ids.index(self.chosen) if self.chosen in ids else 0, animate=False)

    def _render_matrix(self) -> None:
        arena = self.arena()
        if arena is None:
            return
        table = self.query_one("#arena-matrix", DataTable)
        cells_all = computed_cells(arena)
        if self.frontier:
            rows, sentences = frontier_view(cells_all)
            view_columns, cells = FRONTIER_VIEW_COLUMNS, [frontier_cells(r) for r in rows]
            rows = [{**r, "complete": True} for r in rows]
            legend = "\n".join([*sentences, FRONTIER_LEGEND]) if rows else (
                "No malicious cell has runs yet: the frontier needs attack runs.  f: back to the matrix")
        else:
            rows = matrix_view(arena, cells_all)
            view_columns, cells, legend = MATRIX_VIEW_COLUMNS, [matrix_cells(r) for r in rows], LEGEND
        columns = table_columns(view_columns, cells, self._width())
        text = detail(arena) + ("; the attacker's frontier" if self.frontier else "")
        hidden = len(view_columns) - len(columns)
        if hidden:
            text += f" ({hidden} column(s) hidden for width)"
        self.query_one("#arena-detail", Static).update(literal(text))
        self.query_one("#arena-legend", Static).update(literal(legend, lines=True))
        shown = (arena.id, self.frontier, tuple(c.key for c in columns),
                 tuple((row["complete"], tuple(cell[c.key] for c in columns)) for row, cell in zip(rows, cells)))
        if shown == self._shown_matrix:
            return
        same_view = bool(self._shown_matrix) and self._shown_matrix[:2] == (arena.id, self.frontier)
        keep = table.cursor_row if same_view else 0
        self._shown_matrix = shown
        table.clear(columns=True)
        for col in columns:
            table.add_column(col.header, key=col.key)
        for row, cell in zip(rows, cells):
            table.add_row(*_styled(cell, columns, not row["complete"]),
                          key=f"{row['attack']}/{row.get('variant', '')}/{row['detector']}")
        if table.row_count:
            table.move_cursor(row=min(keep, table.row_count - 1), animate=False)

    def on_resize(self) -> None:
        if self.arenas:
            self._redraw()

    @on(RunsChanged)
    def _runs_changed(self) -> None:
        self.reload()

    @on(DataTable.RowHighlighted, "#arena-list")
    def _chosen(self, event: DataTable.RowHighlighted) -> None:
        chosen = str(event.row_key.value)
        if chosen != self.chosen:
            self.chosen = chosen
            self._render_matrix()

    # ---- actions ----------------------------------------------------------
    def action_back(self) -> None:
        self.app.pop_screen()

    def action_reload(self) -> None:
        self.reload()

    def action_frontier(self) -> None:
        self.frontier = not self.frontier
        self._render_matrix()
