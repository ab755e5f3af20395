"""Line charts of per-epoch metrics (textual-plotext), redrawn only when data changes."""
from __future__ import annotations

import math
from typing import Sequence

from textual_plotext import PlotextPlot

from ...format import printable

# Distinct markers keep overlaid lines apart without colour (NO_COLOR terminals).
MARKERS = ("braille", "dot", "+", "x", "*", "o", "#", "@")
# Cells of a chart's width that a legend line needs besides its text: the y-axis labels,
# the frame and the marker. plotext leaves out the whole legend when a line is longer.
LEGEND_MARGIN = 12
# Rows of a chart that are not its plotting area: the title, the frame's two lines, the
# x tick labels and the x label. Columns: the frame's two (the y labels are measured).
CHART_ROWS_OUTSIDE = 5
CHART_COLUMNS_OUTSIDE = 2
# Cells a legend line takes besides its name: a space, the marker (3) and two spaces.
LEGEND_EXTRA = 6
# Cells of the y axis's tick labels a title must leave free (`100.0 `): plotext draws a
# title only where it fits over the plotting area.
TITLE_LABEL_ROOM = 6


def legend_names(names: Sequence[str], width: int, short: Sequence[str] | None = None) -> list[str]:
    """The names to put in the legend of a chart `width` cells wide: as given where the
    longest fits, else `short` (the compare table's run numbers, `1 SG`), else the series'
    numbers 1, 2, ..., so the curves are never left unlabelled."""
    names = [printable(n) for n in names]
    if not names or max(map(len, names)) <= width - LEGEND_MARGIN:
        return names
    if short is not None and len(short) == len(names):
        return [printable(s) for s in short]
    return [str(i) for i in range(1, len(names) + 1)]


def nice_ticks(low: float, high: float, count: int = 4) -> list[float]:
    """`count` + 1 evenly spaced ticks from `low` to `high` (0, 25, ..., 100)."""
    step = (high - low) / count
    return [low + i * step for i in range(count + 1)]


def legend_top(points: Sequence[tuple[float, float]], x_range: tuple[float, float], y_range: tuple[float, float],
               canvas: tuple[int, int], legend: tuple[int, int]) -> float | None:
    """The top of the y axis that keeps the legend off the data: `y_range`'s own top where
    no point falls under the legend (the top-left `legend` = (columns, rows) of a plotting
    area `canvas` = (columns, rows)), else a higher one that leaves the legend's rows above
    every point; None where the plot is too short for that (the legend must go elsewhere).
    `points` are (x, y) in data units."""
    (x0, x1), (y0, y1) = x_range, y_range
    (width, height), (cols, rows) = canvas, legend
    if rows <= 0 or y1 <= y0 or x1 <= x0:
        return y1
    # The legend's top-left block, with one cell of margin, in data units.
    right = x0 + (x1 - x0) * (cols + 1) / max(1, width - 1)
    bottom = y0 + (y1 - y0) * (height - rows - 1.5) / max(1, height - 1)
    if not any(x <= right and y >= bottom for x, y in points):
        return y1
    if height - rows < 3:
        return None
    # Every point, y1 included, at least one row under the legend.
    return y0 + (y1 - y0) * (height - 1) / (height - rows - 1.5)


# What a series' marker looks like in a line of text (plotext's legend shows the same).
MARKER_GLYPHS = {"braille": "⢕", "dot": "•"}


class MetricChart(PlotextPlot):
    """One chart: a title, an optional fixed y range, and named series of (epochs, values).
    The legend (plotext draws it at the top left, over the plot) never hides a point where
    there is room: where it would, it goes into the title line if it fits there, else the y
    axis grows above the data's range to make room (its ticks staying within it)."""

    def __init__(self, title: str, *, ylim: tuple[float, float] | None = None, short_title: str | None = None,
                 id: str | None = None, classes: str | None = None) -> None:  # noqa: A002
        super().__init__(id=id, classes=classes)
        self.chart_title = title
        self.short_title = short_title or title    # before a legend in the title line
        self.ylim = ylim
        self._series: list[tuple[str, list[int], list[float]]] = []
        self._short: list[str] | None = None
        self._key: object = None
        self.log_y = False
        self.y_top: float | None = None     # the y axis's top as last drawn (tests read it)

    def set_log_y(self, on: bool) -> None:
        """A logarithmic y axis (losses that fall by orders of magnitude), or a linear one."""
        if on != self.log_y:
            self.log_y = on
            self._redraw()

    @property
    def series(self) -> list[tuple[str, list[int], list[float]]]:
        return list(self._series)

    @property
    def points(self) -> int:
        """The number of points drawn, over all series (what tests check grows)."""
        return sum(len(xs) for _, xs, _ in self._series)

    def set_series(self, series: Sequence[tuple[str, Sequence[int], Sequence[float]]],
                   short: Sequence[str] | None = None) -> None:
        """Named series of (epochs, values); `short`: a shorter name per series for the
        legend where the names do not fit (legend_names)."""
        key = (tuple((name, tuple(xs), tuple(ys)) for name, xs, ys in series), tuple(short or ()))
        if key == self._key:
            return
        self._key = key
        self._series = [(name, list(xs), list(ys)) for name, xs, ys in series]
        self._short = list(short) if short is not None else None
        self._redraw()

    def on_mount(self) -> None:
        super().on_mount()
        if self.app.no_color:
            self.theme = "clear"
        self._redraw()

    def on_resize(self) -> None:
        self._redraw()   # the legend's names depend on the width

    def _redraw(self) -> None:
        plt = self.plt
        plt.clear_figure()     # data, limits and ticks of the last drawing (render sets the theme)
        plt.xlabel("epoch")
        plt.yscale("log" if self.log_y else "linear")
        drawn = 0
        names = legend_names([name for name, _, _ in self._series], self.size.width, self._short)
        shown: list[tuple[str, list, list, str]] = []
        for i, ((_, xs, ys), name) in enumerate(zip(self._series, names)):
            if self.log_y:     # a log axis has no place for zero or less
                xs, ys = [x for x, y in zip(xs, ys) if y > 0], [y for y in ys if y > 0]
            if xs:
                shown.append((name, xs, ys, MARKERS[i % len(MARKERS)]))
                drawn = max(drawn, max(xs))
        title = self.chart_title
        inline = self._inline_title([(name, marker) for name, _, _, marker in shown])
        if self._set_y_axis(shown, max(2, drawn), inline is not None) == "title":
            # The legend would cover a point: it goes into the title line, which costs the
            # plot nothing (else the y axis has grown above the data to make room).
            title, shown = inline, [(None, xs, ys, marker) for _, xs, ys, marker in shown]
        plt.title(title)
        for name, xs, ys, marker in shown:
            plt.plot(xs, ys, label=name, marker=marker)
        if drawn:
            plt.xlim(1, max(2, drawn))
            step = max(1, -(-drawn // 8))
            plt.xticks(list(range(1, drawn + 1, step)))
        self.refresh()

    def _inline_title(self, legend: list[tuple[str, str]]) -> str | None:
        """The title with the legend after it (marker and name: `CDA ⢕1 •2`), where that fits
        over the plot (plotext draws no title that does not); else None."""
        if not legend:
            return None
        inline = " ".join(f"{MARKER_GLYPHS.get(marker, marker)}{name}" for name, marker in legend)
        room = self.size.width - CHART_COLUMNS_OUTSIDE - TITLE_LABEL_ROOM   # plotext centres it over the plot
        fits = [t for t in (f"{self.chart_title}  {inline}", f"{self.short_title} {inline}") if len(t) <= room]
        return fits[0] if fits else None

    def _set_y_axis(self, shown: list[tuple[str, list, list, str]], x_max: int, inline_ok: bool) -> str:
        """The y range: the fixed one, else the data's (linear axes). Where the legend would
        cover a point (legend_top): "title" where `inline_ok` (the legend goes into the
        title), else the axis grown above the data's range to make room for it, its ticks
        staying within the data's; "plot" otherwise (where the chart is too short even for
        that, the legend stays over the data)."""
        plt = self.plt
        values = [y for _, _, ys, _ in shown for y in ys if math.isfinite(y)]
        if self.ylim is not None:
            low, high = self.ylim
        elif values and not self.log_y:
            low, high = min(values), max(values)
        else:
            self.y_top = None
            return "plot"
        top: float | None = high
        if shown and not self.log_y and high > low:
            label_width = len(f"{high:.1f}") + 1
            canvas = (self.size.width - CHART_COLUMNS_OUTSIDE - label_width, self.size.height - CHART_ROWS_OUTSIDE)
            legend = (max(len(name) for name, _, _, _ in shown) + LEGEND_EXTRA, len(shown))
            points = [(x, y) for _, xs, ys, _ in shown for x, y in zip(xs, ys)]
            top = legend_top(points, (1, x_max), (low, high), canvas, legend)
        placement = "plot"
        if top != high and inline_ok:
            top, placement = high, "title"
        top = high if top is None else top
        if self.ylim is not None or top > high:     # else plotext's own range, the data's
            plt.ylim(low, top)
            plt.yticks(nice_ticks(low, high))
        self.y_top = top
        return placement
