"""Plain aligned tables for the command line, laid out like `docker ps` or `kubectl get`.

Every table the CLI prints goes through `render_table`: a header row, columns separated by
two spaces, and no cell ever cut. When the terminal is too narrow, whole columns are left
out instead, least important first (each column has a priority; priority 0 is always
shown, so ids and statuses stay readable even if the line then runs past the edge).
`wide=True` keeps every column whatever the width. Output that is not a terminal (a pipe,
a file) is laid out for 80 columns, as Rich and most tools assume.

Pure Python: callers pass cells already formatted (sltui.format).
"""
from __future__ import annotations

import shutil
import sys
import textwrap
from dataclasses import dataclass
from typing import Any, Mapping, Sequence, TextIO

from .format import printable

# What `--wide` does, for every command that prints a table.
WIDE_HELP = "show every column, however wide (by default columns are left out to fit the terminal)"

GAP = "  "
PIPED_WIDTH = 80


@dataclass(frozen=True)
class Column:
    """One column of a table. `priority` 0: never left out; among the others the highest
    number goes first when the width runs out (ties: the rightmost first)."""
    key: str
    header: str
    priority: int = 0
    align: str = "left"     # "left" or "right" (numbers)

    def __post_init__(self) -> None:
        if self.align not in ("left", "right"):
            raise ValueError(f"align must be left or right, not {self.align!r}")
        if self.priority < 0:
            raise ValueError(f"priority must be 0 or more, not {self.priority}")


def terminal_width() -> int:
    """The width to lay tables out for: $COLUMNS if set, else the terminal's, else 80
    (stdout is a pipe or a file)."""
    return shutil.get_terminal_size((PIPED_WIDTH, 24)).columns


def _cell(row: Mapping[str, Any], key: str) -> str:
    """A cell's text, each of its lines made safe to print (a line break is the table's
    own, where a wrapped cell goes on)."""
    value = row.get(key)
    return "-" if value is None else "\n".join(printable(line) for line in str(value).split("\n"))


def _natural_widths(columns: Sequence[Column], rows: Sequence[Mapping[str, Any]], header: bool) -> list[int]:
    """Each column's width: its widest cell (and header), so that no cell is ever cut."""
    widths = []
    for col in columns:
        cells = [max(map(len, _cell(row, col.key).split("\n"))) for row in rows]
        widths.append(max([len(col.header) if header else 0, *cells]))
    return widths


def natural_widths(columns: Sequence[Column], rows: Sequence[Mapping[str, Any]], header: bool = True) -> dict[str, int]:
    """{column key: the width that shows its widest cell whole}: what a table that must never
    cut a value (the CLI's, and the terminal UI's DataTables) sizes each column to."""
    return dict(zip((c.key for c in columns), _natural_widths(columns, rows, header)))


def _line_width(widths: Sequence[int]) -> int:
    return sum(widths) + len(GAP) * max(0, len(widths) - 1)


def fit_columns(columns: Sequence[Column], rows: Sequence[Mapping[str, Any]], width: int,
                wide: bool = False, header: bool = True, widths: Mapping[str, int] | None = None) -> list[Column]:
    """The columns to show, in their given order: all of them with `wide` or when they fit
    in `width`; otherwise the least important are left out, one at a time, until the rest
    fit or only priority-0 columns remain. `widths`: natural_widths of `rows`, where the
    caller has them already (thousands of rows take a moment to measure)."""
    if wide:
        return list(columns)
    if widths is None:
        widths = dict(zip((c.key for c in columns), _natural_widths(columns, rows, header)))
    kept = list(columns)
    # Least important first; among equals, the rightmost first.
    order = sorted((c for c in columns if c.priority > 0),
                   key=lambda c: (c.priority, columns.index(c)), reverse=True)
    for candidate in order:
        if _line_width([widths[c.key] for c in kept]) <= width:
            break
        kept.remove(candidate)
    return kept


def fit_columns_wrapping(columns: Sequence[Column], rows: Sequence[Mapping[str, Any]], width: int,
                         wrap_key: str, min_width: int = 0) -> tuple[list[Column], list[dict[str, Any]]]:
    """fit_columns for a table whose `wrap_key` column holds words (a run's label) that may
    go on several lines rather than push the other columns off the edge. Where the table
    fits with whole one-line cells (left-out columns giving way first), it is left so.
    Otherwise the columns are chosen as if that column were only as wide as its longest
    word (or `min_width`, where its cells are that long: the other columns give way before
    it is wrapped narrower), and its cells are wrapped (at spaces, never inside a word) to
    the room the other columns leave. Returns (columns, rows with the wrapped cells)."""
    shown = fit_columns(columns, rows, width)
    if _line_width(_natural_widths(shown, rows, True)) <= width:
        return shown, [dict(row) for row in rows]

    def longest_word(text: str) -> str:
        word = max(text.split() or [""], key=len)
        return word.ljust(min(min_width, len(text)))
    narrow = [{**row, wrap_key: longest_word(_cell(row, wrap_key))} for row in rows]
    shown = fit_columns(columns, narrow, width)
    widths = natural_widths(shown, rows)
    minimum = natural_widths(shown, narrow)[wrap_key] if wrap_key in widths else 0
    others = [widths[c.key] for c in shown if c.key != wrap_key]
    room = width - _line_width([*others, 0])
    target = max(minimum, min(widths.get(wrap_key, 0), room))
    out = []
    for row in rows:
        text = _cell(row, wrap_key)
        lines = textwrap.wrap(text, target, break_long_words=False, break_on_hyphens=False) or [text]
        out.append({**row, wrap_key: "\n".join(lines)})
    return shown, out


def render_table(columns: Sequence[Column], rows: Sequence[Mapping[str, Any]], width: int | None = None,
                 wide: bool = False, header: bool = True) -> str:
    """The table as text, one line per row (after the header row unless `header` is False),
    laid out for `width` columns (default: `terminal_width()`). Cells are `row[column.key]`,
    '-' where missing; no line ends in spaces."""
    width = terminal_width() if width is None else width
    shown = fit_columns(columns, rows, width, wide, header)
    widths = _natural_widths(shown, rows, header)
    lines = []
    source: list[Mapping[str, Any]] = list(rows)
    if header:
        source.insert(0, {c.key: c.header for c in shown})
    for row in source:
        cells = [_cell(row, c.key).rjust(w) if c.align == "right" else _cell(row, c.key).ljust(w)
                 for c, w in zip(shown, widths)]
        lines.append(GAP.join(cells).rstrip())
    return "\n".join(lines)


def print_table(columns: Sequence[Column], rows: Sequence[Mapping[str, Any]], wide: bool = False,
                header: bool = True, out: TextIO | None = None, err: TextIO | None = None) -> None:
    """Print `render_table` for the terminal's width on `out` (stdout); where columns were
    left out, say which on `err` (stderr), so piped output stays only the table."""
    out = out or sys.stdout
    err = err or sys.stderr
    width = terminal_width()
    print(render_table(columns, rows, width, wide, header), file=out)
    shown = {c.key for c in fit_columns(columns, rows, width, wide, header)}
    hidden = [c.header for c in columns if c.key not in shown]
    if hidden:
        print(f"({len(hidden)} column(s) left out for width: {', '.join(hidden)}; --wide shows all)", file=err)
