"""Line charts of per-epoch metrics (textual-plotext), redrawn only when data changes."""
from __future__ import annotations

from typing import Sequence

from textual_plotext import PlotextPlot

# Distinct markers keep overlaid lines apart without colour (NO_COLOR terminals).
MARKERS = ("braille", "dot", "+", "x", "*", "o", "#", "@")
# Cells of a chart's width that a legend line needs besides its text: the y-axis labels,
# the frame and the marker. plotext leaves out the whole legend when a line is longer.
LEGEND_MARGIN = 12


def legend_names(names: Sequence[str], width: int) -> list[str]:
    """The names to put in the legend of a chart `width` cells wide: as given where the
    longest fits, else the series' numbers 1, 2, ... (a table beside the chart then says
    which is which), so the curves are never left unlabelled."""
    if not names or max(map(len, names)) <= width - LEGEND_MARGIN:
        return list(names)
    return [str(i) for i in range(1, len(names) + 1)]


class MetricChart(PlotextPlot):
    """One chart: a title, an optional fixed y range, and named series of (epochs, values)."""

    def __init__(self, title: str, *, ylim: tuple[float, float] | None = None,
                 id: str | None = None, classes: str | None = None) -> None:  # noqa: A002
        super().__init__(id=id, classes=classes)
        self.chart_title = title
        self.ylim = ylim
        self._series: list[tuple[str, list[int], list[float]]] = []
        self._key: object = None
        self.log_y = False

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

    def set_series(self, series: Sequence[tuple[str, Sequence[int], Sequence[float]]]) -> None:
        key = tuple((name, tuple(xs), tuple(ys)) for name, xs, ys in series)
        if key == self._key:
            return
        self._key = key
        self._series = [(name, list(xs), list(ys)) for name, xs, ys in series]
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
        plt.clear_data()
        plt.title(self.chart_title)
        plt.xlabel("epoch")
        plt.yscale("log" if self.log_y else "linear")
        if self.ylim is not None:
            plt.ylim(*self.ylim)
        drawn = 0
        names = legend_names([name for name, _, _ in self._series], self.size.width)
        for i, ((_, xs, ys), name) in enumerate(zip(self._series, names)):
            if self.log_y:     # a log axis has no place for zero or less
                xs, ys = [x for x, y in zip(xs, ys) if y > 0], [y for y in ys if y > 0]
            if not xs:
                continue
            plt.plot(xs, ys, label=name, marker=MARKERS[i % len(MARKERS)])
            drawn = max(drawn, max(xs))
        if drawn:
            plt.xlim(1, max(2, drawn))
            step = max(1, -(-drawn // 8))
            plt.xticks(list(range(1, drawn + 1, step)))
        self.refresh()
