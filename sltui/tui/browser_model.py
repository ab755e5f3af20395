"""What the runs browser lists: its rows from the run index's entries, filtered (sltui.runs.query),
one per run or one per setting (seeds grouped), with final or best metrics, sorted.

Pure Python (no Textual): the browser screen sets the view's fields from keys and renders
`rows`. The rows are built again only when something they show can have changed (the
index, the status of a run whose file says running, the filter, the sort, a toggle), so
the browser's poll over thousands of unchanged runs costs little more than their stat calls.
"""
from __future__ import annotations

from typing import Any, Iterable, Sequence

from engine.store import RunEntry

from ..runs.query import QueryError, parse_query
from ..runs.index import short_run_ids
from .runs_model import GROUP_SORT_KEYS, SORT_KEYS, best_metrics, browser_row, group_rows, sort_rows


class BrowserRows:
    """The browser's view of the runs: its settings (query_text, sort_key, sort_reverse,
    best, grouped, group_runs) and what follows from them (rows, all_count, query_error)."""

    def __init__(self) -> None:
        self.query_text = ""
        self.sort_key = "id"
        self.sort_reverse = True       # newest first: ids start with a timestamp
        self.best = False              # CDA/ASR of the best-validation epoch instead of the last
        self.grouped = False           # one row per setting (seeds grouped)
        self.group_runs: tuple[str, frozenset[str]] | None = None   # (setting, run ids): one group's runs
        self.filter_query = parse_query("")
        self.query_error = ""
        self.rows: list[dict[str, Any]] = []
        self.all_count = 0
        self.short: dict[str, str] = {}  # run id -> short id, over every run (sltui.runs.index.short_run_ids)
        self._key: tuple | None = None
        self._all: tuple = (None, [])

    def invalidate(self) -> None:
        """Build every row again at the next update, even if no file changed (tags and notes
        written here, `r`)."""
        self._key = None
        self._all = (None, [])

    def update(self, entries: Sequence[RunEntry], version: Any = None) -> bool:
        """Rebuild `rows` from the index's `entries` (`version`: the index's change counter)
        if anything they show changed; returns whether it did."""
        live = tuple(e.status for e in entries if e.doc is not None and e.doc.get("status") == "running")
        source = (version, len(entries), live, self.best)
        key = (*source, self.query_text, self.sort_key, self.sort_reverse, self.grouped, self.group_runs)
        if key == self._key:
            return False
        self._key = key
        if self._all[0] != source:                 # the runs' rows, before filter and sort
            rows = [browser_row(e) for e in entries]
            self._all = (source, [best_metrics(r) for r in rows] if self.best else rows)
            ids = tuple(e.run_id for e in entries)
            if ids != getattr(self, "_short_for", None):
                self.short, self._short_for = short_run_ids(ids), ids
        rows = self._all[1]
        self.all_count = len(rows)
        try:
            self.filter_query = parse_query(self.query_text)
            self.query_error = ""
        except QueryError as exc:   # keep the last filter that could be read; say why not this one
            self.query_error = str(exc)
        rows = [r for r in rows if self.filter_query.matches(r)]
        if self.group_runs is not None:
            rows = [r for r in rows if r["id"] in self.group_runs[1]]
        if self.grouped:
            chosen = {r["id"] for r in rows}
            rows = group_rows(self._docs(entries, chosen), self.best)
        self.rows = sort_rows(rows, *self.sort())
        return True

    def sort(self) -> tuple[str, bool]:
        """(key, reverse) the rows are sorted by: the chosen sort, or with seeds grouped, the
        setting where the chosen key is no column of the groups (a run's id, status)."""
        if self.grouped and self.sort_key not in GROUP_SORT_KEYS:
            return "setting", False
        return self.sort_key, self.sort_reverse

    def sort_keys(self) -> list[str]:
        """The keys `s` cycles through in this view."""
        return list(GROUP_SORT_KEYS) if self.grouped else list(SORT_KEYS)

    @staticmethod
    def _docs(entries: Iterable[RunEntry], ids: set[str]) -> Iterable[dict[str, Any]]:
        return ({**e.doc, "status": e.status} for e in entries if e.doc is not None and e.run_id in ids)

    def row(self, row_id: str | None) -> dict[str, Any] | None:
        return next((r for r in self.rows if r["id"] == row_id), None)

    def open_group(self, row_id: str) -> bool:
        """Enter on a group: list its runs. False if `row_id` is no group shown."""
        group = self.row(row_id) if self.grouped else None
        if group is None:
            return False
        self.group_runs = (group["setting"], frozenset(group["runs"]))
        self.grouped = False
        return True

    def close_group(self) -> bool:
        """Esc after opening a group: back to the groups. False if no group is open."""
        if self.group_runs is None:
            return False
        self.group_runs = None
        self.grouped = True
        return True

    def compare_ids(self, selected: set[str]) -> list[str]:
        """The runs to compare: the selected readable runs, or the runs of the selected groups."""
        if self.grouped:
            return [run for r in self.rows if r["id"] in selected for run in r["runs"]]
        return [r["id"] for r in self.rows if r["id"] in selected and r["status"] != "unreadable"]
