"""DataTable columns sized to their content, so that no value is ever cut.

A DataTable column left to its automatic width is measured only when the table is idle;
a table filled while its screen opens can draw (and cache) its rows at the headers' widths
first, and then shows `comple` for `completed` and `89.` for `89.60` until something
redraws it. Giving every column the width of its widest cell up front avoids that, in
every state (sltui.tables.natural_widths, the rule the command line's tables follow)."""
from __future__ import annotations

from typing import Mapping, Sequence

from textual.widgets import DataTable

from ...tables import Column, natural_widths


def add_fitted_columns(table: DataTable, columns: Sequence[Column], cells: Sequence[Mapping[str, str]],
                       widths: Sequence[int] | None = None) -> tuple[int, ...]:
    """Add `columns` to `table`, each as wide as its header and widest cell in `cells`
    (`widths`: those widths, fitted_widths, where already measured); returns the widths
    (callers compare them to know when the columns must be rebuilt)."""
    widths = dict(zip((c.key for c in columns), widths)) if widths is not None else natural_widths(columns, cells)
    for col in columns:
        table.add_column(col.header, key=col.key, width=widths[col.key])
    return tuple(widths[c.key] for c in columns)


def fitted_widths(columns: Sequence[Column], cells: Sequence[Mapping[str, str]]) -> tuple[int, ...]:
    """The widths add_fitted_columns would give `columns` for `cells`."""
    widths = natural_widths(columns, cells)
    return tuple(widths[c.key] for c in columns)
