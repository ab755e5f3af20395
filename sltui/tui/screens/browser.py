"""The runs browser: every run file under the runs folder, live, sortable, filterable,
seeds grouped or not; tags, notes and the trash. What it lists is browser_model.BrowserRows;
this screen renders it (only what changed, thousands of rows in batches) and sends commands."""
from __future__ import annotations

from typing import Any

from rich.text import Text
from textual import on
from textual.app import ComposeResult
from textual.binding import Binding
from textual.message import Message
from textual.screen import Screen
from textual.widgets import DataTable, Footer, Header, Input, Static

from engine.store import RunNotFound

from ...runs.annotations import add_tags, remove_tags, set_note
from ...format import clip, literal, printable
from ...runs.trash import TRASH_DIR, RunBusy, delete_run, restore_run
from ..form_model import config_from_run
from ..messages import RunsChanged
from ..browser_model import BrowserRows
from ..runs_model import GROUP_SORT_LABELS, SORT_KEYS, browser_columns, browser_layout, group_layout
from ..widgets.fitted_table import add_fitted_columns, fitted_widths
from .prompts import Confirm, TextPrompt

# Cells kept free at the right of the table for its vertical scrollbar, and taken by the
# selection mark column (one character and its padding).
SCROLLBAR = 2
MARK_WIDTH = 3
# Seconds of run-file reading per refresh while the run index catches up.
INDEX_BUDGET_S = 0.25
# Rows added before the first paint (more than a screenful), then per batch after it.
FIRST_ROWS = 80
ROW_BATCH = 200
# Seconds the filter waits for the next keystroke before it is applied.
FILTER_DELAY_S = 0.15
DEBOUNCE_FROM = 500       # runs; fewer filter at every keystroke
NAME_WIDTH = 40           # characters of a run's name in the status line
STATUS_STYLE = {"running": "bold", "completed": "", "cancelled": "italic", "failed": "reverse",
                "interrupted": "italic", "unreadable": "reverse", "starting": "bold"}


class RunsTable(DataTable):
    """The browser's table: Home and End go to the first and the last run (a DataTable's
    own Home and End scroll sideways, which a table that fits its width never needs)."""
    BINDINGS = [Binding("home", "first_row", "First", show=False), Binding("end", "last_row", "Last", show=False)]

    def action_first_row(self) -> None:
        if self.row_count:
            self.move_cursor(row=0, animate=False)

    def action_last_row(self) -> None:
        if self.row_count:
            self.move_cursor(row=self.row_count - 1, animate=False)


class BrowserScreen(Screen[None]):
    # `/`, `t` and `N` open a box to type in. They are priority bindings: the app handles
    # them as it reads them, in order with the keys typed after, so those go into the box
    # and never to the browser's shortcuts (a key a widget has already been handed is
    # handled after any action it triggers); check_action lets them through to the
    # filter while it has the focus.
    BINDINGS = [
        Binding("slash", "filter", "Filter", priority=True),
        Binding("space", "toggle_select", "Select"),
        Binding("c", "compare", "Compare"),
        Binding("s", "sort_next", "Sort"),
        Binding("S", "sort_reverse", "Reverse", show=False),
        Binding("r", "refresh_runs", "Refresh", show=False),  # it refreshes itself: the footer's room goes to the arena
        Binding("C", "clone", "Clone", show=False),
        Binding("m", "toggle_best", "Final/best", show=False),
        Binding("g", "toggle_groups", "Group seeds", show=False),
        Binding("t", "tag", "Tag", show=False, priority=True),
        Binding("N", "note", "Note", show=False, priority=True),
        Binding("d", "delete", "Delete", show=False),
        Binding("u", "restore", "Restore", show=False),
        Binding("escape", "clear", "Clear", show=False),
    ]
    PALETTE = (
        ("Filter runs", "Type words every shown row must contain (/)", "filter"),
        ("Select run", "Select or unselect the run under the cursor (space)", "toggle_select"),
        ("Compare selected runs", "Table and charts of the selected runs (c)", "compare"),
        ("Sort by next column", "Cycle the sort column (s; S reverses)", "sort_next"),
        ("Refresh runs", "Re-read the runs folder (r)", "refresh_runs"),
        ("Clone run config", "Open the new-run form with this run's config (C)", "clone"),
        ("Final or best metrics", "CDA/ASR of the last epoch or of the best-validation epoch (m)", "toggle_best"),
        ("Group seeds", "One row per setting: n, CDA and ASR mean ± std over seeds (g)", "toggle_groups"),
        ("Tag runs", "Add tags to the selected runs or the one under the cursor; -tag removes (t)", "tag"),
        ("Note on a run", "Write a note on the run under the cursor (N)", "note"),
        ("Delete runs", "Move the selected runs (or the one under the cursor) to the trash, after asking (d)", "delete"),
        ("Restore deleted runs", "Bring the runs deleted last back from the trash, after asking (u)", "restore"),
    )

    class RunOpened(Message):
        def __init__(self, run_id: str) -> None:
            super().__init__()
            self.run_id = run_id

    def __init__(self) -> None:
        super().__init__()
        self.view = BrowserRows()          # what is listed (browser_model): rows, filter, sort, toggles
        self.selected: set[str] = set()
        self.pending = 0                   # run files the index has still to read
        self._shown: tuple = ()
        self._layout_memo: tuple = (None, None)
        self._columns: list = []
        self._to_add: list = []
        self._cursor_to: str | None = None
        self._filter_timer = None
        self.deleted: list[str] = []       # the runs the last delete moved to the trash (u restores them)

    def check_action(self, action: str, parameters: tuple[object, ...]) -> bool | None:
        """`/`, `t` and `N` are typed into the filter while it has the focus."""
        if action in ("filter", "tag", "note") and self.is_mounted:
            try:
                return not self.query_one("#filter", Input).has_focus
            except Exception:  # noqa: BLE001 - not composed yet
                return True
        return True

    @property
    def rows(self) -> list[dict[str, Any]]:
        return self.view.rows

    @property
    def sort_key(self) -> str:
        return self.view.sort_key

    def compose(self) -> ComposeResult:
        yield Header()
        yield RunsTable(id="runs", cursor_type="row", zebra_stripes=True)
        yield Input(placeholder="filter: words, attack=hijack cut>=2 asr>90 tag:paper (esc closes)", id="filter", compact=True)
        yield Static("", id="browser-status")
        yield Footer()

    def on_mount(self) -> None:
        self.title = "runs"
        self.query_one("#filter").display = False
        self.refresh_runs()
        self.set_interval(getattr(self.app, "poll_interval", 1.0), self.refresh_runs)
        self.query_one("#runs", DataTable).focus()

    # ---- data -------------------------------------------------------------
    def refresh_runs(self) -> None:
        index = getattr(self.app, "index", None)
        entries = []
        if index is not None:
            # A bounded slice of the work per call, so the first rows show at once even
            # when thousands of run files are new to the index; the rest follow.
            if index.refresh(budget_s=INDEX_BUDGET_S):
                self.set_timer(0.05, self.refresh_runs)
            entries = index.entries()
        self.pending = index.pending if index is not None else 0
        if self.view.update(entries, getattr(index, "version", None)):
            self._render_rows()
        else:
            self._update_status()

    def on_resize(self) -> None:
        self._render_rows()

    def _layout(self, width: int):
        """(columns, cells, widths): runs_model.browser_layout (or group_layout) of the current
        rows and the columns' widths, computed once per rows and width."""
        key = (id(self.view.rows), width, self.view.best, self.view.grouped)
        if self._layout_memo[0] != key:
            columns, cells = (group_layout(self.view.rows, width) if self.view.grouped else
                              browser_layout(self.view.rows, width, browser_columns(self.view.best), self.view.short))
            self._layout_memo = (key, (columns, cells, fitted_widths(columns, cells)))
        return self._layout_memo[1]

    def _render_rows(self) -> None:
        """Fill the table for the screen's width: which columns show and how ids are
        written follow the width (runs_model.browser_layout). Only what changed is redrawn:
        changed cells in place when the columns and the order of the runs are the same,
        else the whole table, a screenful first and the rest in batches (add_row and the
        table's measuring of thousands of rows would otherwise hold up the first paint)."""
        table = self.query_one("#runs", DataTable)
        width = (self.size.width or self.app.size.width) - SCROLLBAR - MARK_WIDTH
        columns, cells, widths = self._layout(width)
        head = tuple(c.key for c in columns) + widths
        body = [(row["id"], row["id"] in self.selected, tuple(cell[c.key] for c in columns))
                for row, cell in zip(self.view.rows, cells)]
        old_head, old_body = self._shown or (None, [])
        self._columns = columns
        if head == old_head and [b[0] for b in body] == [b[0] for b in old_body] and not self._to_add:
            for new, old in zip(body, old_body):
                if new != old:
                    table.update_cell(new[0], "sel", "*" if new[1] else " ")
                    for col, value, before in zip(columns, new[2], old[2]):
                        if value != before:
                            table.update_cell(new[0], col.key, self._styled(col, value))
            self._shown = (head, body)
            self._update_status()
            return
        self._cursor_to = self.current_id() if self._cursor_to is None else self._cursor_to
        self._shown = (head, body)
        table.clear(columns=head != old_head)
        if head != old_head:
            table.add_column(" ", key="sel", width=1)
            add_fitted_columns(table, columns, cells, widths)
        self._to_add = list(body)
        self._add_rows(FIRST_ROWS)
        self._update_status()

    def _styled(self, col, value: str) -> Text:
        """A cell as literal text (sltui.format.literal): names, tags and ids are data; a
        group's setting may be wrapped onto several lines (runs_model.group_layout)."""
        return literal(value, style=STATUS_STYLE.get(value, "") if col.key == "status" else "",
                       justify="right" if col.align == "right" else None, lines=col.key == "setting")

    def _add_rows(self, count: int = 0) -> None:
        """Add the next `count` (default ROW_BATCH) rows waiting to be shown; schedule the rest."""
        table = self.query_one("#runs", DataTable)
        batch, self._to_add = self._to_add[:count or ROW_BATCH], self._to_add[count or ROW_BATCH:]
        for run_id, selected, values in batch:
            table.add_row("*" if selected else " ", *[self._styled(c, v) for c, v in zip(self._columns, values)],
                          key=run_id, height=1 + max(v.count("\n") for v in values))
        if self._cursor_to is not None:
            try:
                row = table.get_row_index(self._cursor_to)
            except Exception:  # noqa: BLE001 - not added yet, or gone
                row = None
            if row is not None:
                table.move_cursor(row=row, animate=False)
                self._cursor_to = None
            elif not self._to_add:
                self._cursor_to = None
        if self._to_add:
            self.set_timer(0.01, self._add_rows)

    def _update_status(self) -> None:
        sort_key, reverse = self.view.sort()
        arrow = "desc" if reverse else "asc"
        label = SORT_KEYS.get(sort_key) or GROUP_SORT_LABELS.get(sort_key, sort_key)
        parts = [f"{len(self.view.rows)}/{self.view.all_count} runs", f"sort {label} {arrow}"]
        if self.view.best:
            parts.append("best-val metrics")
        if self.view.grouped:
            parts[0] = f"{len(self.view.rows)} settings (seeds grouped; completed runs)"
        if self.view.group_runs is not None:
            parts.append(f"group '{self.view.group_runs[0]}' (esc: back to groups)")
        if self.pending:
            parts.insert(1, f"reading {self.pending} more run files")
        if self.view.query_error:
            parts.append(f"filter: {self.view.query_error}")
        elif self.view.query_text:
            parts.append(f"filter '{self.view.query_text}'")
        if self.selected:
            parts.append(f"{len(self.selected)} selected")
        row = None if self.view.grouped else self.current_row()
        if row is not None and (row.get("name") or row.get("tags") or row.get("note")):
            name = f"“{clip(printable(row['name']), NAME_WIDTH)}”" if row.get("name") else ""
            mark = " ".join(f"#{t}" for t in row.get("tags") or [])
            parts.append(" ".join(p for p in (name, mark, row.get("note") or "") if p))
        root = getattr(self.app, "runs_dir", "")
        parts.append(str(root))
        self.query_one("#browser-status", Static).update(literal("  |  ".join(parts)))

    def current_id(self) -> str | None:
        table = self.query_one("#runs", DataTable)
        if table.row_count == 0:
            return None
        try:
            return str(table.coordinate_to_cell_key(table.cursor_coordinate).row_key.value)
        except Exception:  # noqa: BLE001
            return None

    def current_row(self) -> dict[str, Any] | None:
        return self.view.row(self.current_id())

    @on(RunsChanged)
    def _runs_changed(self) -> None:
        self.refresh_runs()

    def on_screen_suspend(self) -> None:
        self._left = True

    def on_screen_resume(self) -> None:
        if not getattr(self, "_left", False):
            return                 # the first showing: on_mount has just read the runs
        self._invalidate()         # tags, notes or deletions from another screen
        self.refresh_runs()

    # ---- table events -----------------------------------------------------
    @on(DataTable.RowSelected, "#runs")
    def _open(self, event: DataTable.RowSelected) -> None:
        run_id = str(event.row_key.value)
        if self.view.grouped:       # a group: list its runs
            if self.view.open_group(run_id):
                self.selected.clear()
                self.refresh_runs()
            return
        row = self.view.row(run_id)
        if row is not None and row["status"] == "unreadable":
            self.notify(f"unreadable run file: {row.get('error')}", severity="error", timeout=6)
            return
        self.post_message(self.RunOpened(run_id))
        self.app.action_open_run(run_id)  # type: ignore[attr-defined]

    @on(DataTable.RowHighlighted, "#runs")
    def _cursor_moved(self) -> None:
        self._update_status()       # the tags and note of the run under the cursor

    @on(DataTable.HeaderSelected, "#runs")
    def _header(self, event: DataTable.HeaderSelected) -> None:
        key = str(event.column_key.value)
        if key == "sel":
            return
        key = {"cda_pm": "cda", "asr_pm": "asr"}.get(key, key)   # a group's mean ± std sorts by its mean
        now, reverse = self.view.sort()
        self.sort_by(key, not reverse if key == now else False)

    # ---- actions ----------------------------------------------------------
    def sort_by(self, key: str, reverse: bool = False) -> None:
        self.view.sort_key, self.view.sort_reverse = key, reverse
        self.refresh_runs()

    def action_sort_next(self) -> None:
        keys = self.view.sort_keys()
        now = self.view.sort()[0]
        self.sort_by(keys[(keys.index(now) + 1) % len(keys)] if now in keys else keys[0], False)

    def action_sort_reverse(self) -> None:
        key, reverse = self.view.sort()
        self.sort_by(key, not reverse)

    def action_toggle_best(self) -> None:
        self.view.best = not self.view.best
        self.refresh_runs()

    def _invalidate(self) -> None:
        """Forget the rows built so far: the next refresh builds them again."""
        self.view.invalidate()

    def action_refresh_runs(self) -> None:
        self._invalidate()         # re-read every row, even if no file changed
        self.refresh_runs()

    def action_filter(self) -> None:
        box = self.query_one("#filter", Input)
        box.display = True
        # At once, not at the next idle moment (Widget.focus): keys typed right after `/`
        # go into the filter, never to the browser's shortcuts.
        self.set_focus(box)

    @on(Input.Changed, "#filter")
    def _filter_changed(self, event: Input.Changed) -> None:
        # Applied once typing pauses: each keystroke re-filtering thousands of rows
        # would make the box lag behind the keys.
        self.view.query_text = event.value.strip()
        if self._filter_timer is not None:
            self._filter_timer.stop()
            self._filter_timer = None
        if self.view.all_count < DEBOUNCE_FROM:
            self.refresh_runs()
        else:
            self._filter_timer = self.set_timer(FILTER_DELAY_S, self.refresh_runs)

    @on(Input.Submitted, "#filter")
    def _filter_done(self) -> None:
        if self._filter_timer is not None:     # enter applies a filter still waiting
            self._filter_timer.stop()
            self._filter_timer = None
            self.refresh_runs()
        self._close_filter()

    def _close_filter(self) -> None:
        box = self.query_one("#filter", Input)
        box.display = bool(self.view.query_text)
        self.query_one("#runs").focus()

    def action_clear(self) -> None:
        box = self.query_one("#filter", Input)
        if box.has_focus:
            self._close_filter()
        elif self.view.close_group():
            self.refresh_runs()
        elif self.view.query_text:
            box.value = ""
            self.view.query_text = ""
            box.display = False
            self.refresh_runs()
        elif self.selected:
            self.selected.clear()
            self._render_rows()

    def action_toggle_select(self) -> None:
        run_id = self.current_id()
        if run_id is None:
            return
        self.selected.symmetric_difference_update({run_id})
        self._render_rows()
        table = self.query_one("#runs", DataTable)
        if table.cursor_row < table.row_count - 1:
            table.move_cursor(row=table.cursor_row + 1)

    def action_toggle_groups(self) -> None:
        self.view.grouped = not self.view.grouped
        self.selected.clear()      # run ids and group keys are not to be mixed
        self.refresh_runs()

    def action_compare(self) -> None:
        ids = self.view.compare_ids(self.selected)
        if len(ids) < 2:
            self.notify("select at least two runs with space first", severity="warning", timeout=3)
            return
        from .compare import CompareScreen

        self.app.push_screen(CompareScreen(ids))

    # ---- tags, notes, the trash (sltui.runs.annotations, sltui.runs.trash) ------------------
    def target_ids(self) -> list[str]:
        """The runs an action applies to: the selected ones, else the one under the cursor
        (none in the grouped view, whose rows are settings)."""
        if self.view.grouped:
            self.notify("tags, notes and delete work on runs: g shows them", severity="warning", timeout=3)
            return []
        readable = [r["id"] for r in self.view.rows if r["status"] != "unreadable"]
        ids = [i for i in readable if i in self.selected]
        current = self.current_id()
        return ids or ([current] if current in readable else [])

    def _changed(self) -> None:
        self._invalidate()
        self.refresh_runs()

    def action_tag(self) -> None:
        ids = self.target_ids()
        if not ids:
            return
        entry = self.app.index.get(ids[0]) if len(ids) == 1 else None  # type: ignore[attr-defined]
        have = " ".join((entry.doc or {}).get("tags") or []) if entry else ""
        what = ids[0] if len(ids) == 1 else f"{len(ids)} runs"
        self.app.push_screen(TextPrompt(f"Tags for {what}: words to add, -word to remove" + (f" (now: {have})" if have else ""),
                                        placeholder="e.g. paper -draft"), lambda text: self._apply_tags(ids, text))

    def _apply_tags(self, ids: list[str], text: str | None) -> None:
        if not text or not text.split():
            return
        words = text.split()
        add = [w for w in words if not w.startswith("-")]
        drop = [w[1:] for w in words if w.startswith("-") and len(w) > 1]
        store = self.app.index.store  # type: ignore[attr-defined]
        try:
            for run_id in ids:
                if add:
                    add_tags(store, run_id, add)
                if drop:
                    remove_tags(store, run_id, drop)
        except (ValueError, OSError, RunNotFound) as exc:
            self.notify(f"tags not saved: {exc}", severity="error", timeout=6)
        self._changed()

    def action_note(self) -> None:
        ids = self.target_ids()
        if len(ids) != 1:
            if ids:
                self.notify("a note is for one run: put the cursor on it (no selection)", severity="warning", timeout=3)
            return
        entry = self.app.index.get(ids[0])  # type: ignore[attr-defined]
        note = (entry.doc or {}).get("note") or "" if entry else ""
        self.app.push_screen(TextPrompt(f"Note on {ids[0]} (empty clears it)", printable(note)),
                             lambda text: self._apply_note(ids[0], text))

    def _apply_note(self, run_id: str, text: str | None) -> None:
        if text is None:
            return
        try:
            set_note(self.app.index.store, run_id, text)  # type: ignore[attr-defined]
        except (OSError, RunNotFound) as exc:
            self.notify(f"note not saved: {exc}", severity="error", timeout=6)
        self._changed()

    def action_delete(self) -> None:
        ids = self.target_ids()
        if not ids:
            return
        running = [r["id"] for r in self.view.rows if r["id"] in ids and r["status"] in ("running", "starting")]
        if running:
            self.notify(f"{len(running)} of them still running: cancel first", severity="warning", timeout=4)
            return
        what = ids[0] if len(ids) == 1 else f"{len(ids)} runs"
        trash = self.app.index.root / TRASH_DIR  # type: ignore[attr-defined]
        question = Text.assemble("Move ", literal(what), " to ", literal(trash),
                                 "?\n`sltui runs restore ID` brings a run back.")
        self.app.push_screen(Confirm(question, yes="Delete (y)", no="Keep (n)"), lambda yes: self._apply_delete(ids, yes))

    def _apply_delete(self, ids: list[str], yes: bool | None) -> None:
        if not yes:
            return
        store = self.app.index.store  # type: ignore[attr-defined]
        done = 0
        for run_id in ids:
            try:
                delete_run(store, run_id)
                done += 1
            except (OSError, RunNotFound, RunBusy) as exc:
                self.notify(f"{run_id} not deleted: {exc}", severity="error", timeout=6)
        self.selected.difference_update(ids)
        self.deleted = [i for i in ids if (self.app.index.root / TRASH_DIR / i).is_dir()]  # type: ignore[attr-defined]
        self.notify(f"moved {done} run(s) to the trash (u brings them back)", timeout=4)
        self._changed()

    def action_restore(self) -> None:
        if not self.deleted:
            self.notify("nothing deleted here to restore; sltui runs restore ID for older ones", timeout=4)
            return
        what = self.deleted[0] if len(self.deleted) == 1 else f"{len(self.deleted)} runs"
        self.app.push_screen(Confirm(f"Bring {what} back from the trash?", yes="Restore (y)", no="Leave (n)"),
                             self._apply_restore)

    def _apply_restore(self, yes: bool | None) -> None:
        if not yes:
            return
        store = self.app.index.store  # type: ignore[attr-defined]
        for run_id in list(self.deleted):
            try:
                restore_run(store, run_id)
                self.deleted.remove(run_id)
            except (OSError, RunNotFound) as exc:
                self.notify(f"{run_id} not restored: {exc}", severity="error", timeout=6)
        self._changed()

    def action_clone(self) -> None:
        row = self.current_row()
        entry = self.app.index.get(row["id"]) if row else None  # type: ignore[attr-defined]
        cfg = config_from_run(entry.doc) if entry and entry.doc else None
        if cfg is None:
            self.notify("no readable config to clone here", severity="warning", timeout=3)
            return
        self.app.action_new_run(cfg)  # type: ignore[attr-defined]
