"""One run: loss and accuracy charts growing per epoch, attack phase progress, ETA, cancel,
and its config. Works for runs this app started (live state from the run manager) and
for any run file (re-read while it says running, e.g. a `--headless` run elsewhere)."""
from __future__ import annotations

from typing import Any

from rich.text import Text
from textual import on
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Horizontal
from textual.screen import Screen
from textual.widgets import ContentSwitcher, DataTable, Footer, Header, Label, ProgressBar, Static

from ...runs.index import used_config
from ..messages import RunsChanged
from ..run_manager import RunState
from ...format import fmt_cell, fmt_duration, fmt_flag, fmt_num, fmt_pct, fmt_reaction, literal
from ..runs_model import defense_series, series
from ..widgets.charts import MetricChart


def view_of_state(state: RunState) -> dict[str, Any]:
    eta = state.eta_seconds()
    return {
        "id": state.run_id, "status": state.status, "config": state.config,
        "config_resolved": state.config_resolved, "epochs": state.epochs,
        "total_epochs": state.total_epochs or state.config.get("epochs"),
        "phase": (state.phase, state.phase_epoch, state.phase_epochs, state.phase_loss) if state.phase else None,
        "eta": eta, "error": state.error, "cancelling": state.cancel_requested and state.active,
        "defenses": state.defenses, "reaction": state.reaction,
    }


def view_of_doc(doc: dict[str, Any]) -> dict[str, Any]:
    epochs = doc.get("epochs") or []
    status = doc.get("status", "unknown")
    total = doc.get("total_epochs") or (doc.get("config") or {}).get("epochs")
    phase = None
    phases = doc.get("phases") or {}
    if status == "running" and phases:
        # The phase reported last, shown while no training epoch has ended since (an
        # attack's preparation before training, or the hijack attack's stages between epochs).
        name, info = list(phases.items())[-1]
        history = info.get("history") or [{}]
        if history[-1].get("after_epoch", 0) >= len(epochs):
            phase = (name, history[-1].get("epoch", 0), info.get("epochs", 0), history[-1].get("loss"))
    eta = None
    if status == "running" and epochs and total:
        mean = sum(e.get("seconds", 0.0) for e in epochs) / len(epochs)
        eta = max(0, total - epochs[-1].get("epoch", len(epochs))) * mean
    return {"id": doc.get("id"), "status": status, "config": doc.get("config") or {},
            "config_resolved": doc.get("config_resolved"), "epochs": epochs,
            "total_epochs": total, "phase": phase, "eta": eta, "error": doc.get("error"),
            "cancelling": False, "defenses": doc.get("defenses") or {}, "reaction": doc.get("reaction")}


def stats_line(view: dict[str, Any]) -> str:
    epochs = view["epochs"]
    last = epochs[-1] if epochs else {}
    parts = [f"epoch {last.get('epoch', 0)}/{view['total_epochs'] or '?'}"]
    if view["eta"] is not None:
        parts.append(f"ETA {fmt_duration(view['eta'])}")
    if last:
        parts += [f"{fmt_num(last.get('samples_per_s'), ',.0f')} samples/s",
                  f"loss {fmt_num(last.get('train_loss'), '.4f')}/{fmt_num(last.get('val_loss'), '.4f')}",
                  f"CDA {fmt_pct(last.get('cda'))}", f"ASR {fmt_pct(last.get('asr'))}"]
    return "  ".join(parts)


def verdict_lines(view: dict[str, Any]) -> list[str]:
    """One line per detector that has flagged the server."""
    return [f"{name} flagged the server at {fmt_flag(entry.get('flagged_at'))}"
            for name, entry in (view.get("defenses") or {}).items()
            if isinstance(entry, dict) and entry.get("flagged_at")]


def config_rows(config: dict[str, Any]) -> list[tuple[str, str]]:
    """(field, value) of a run's config as its run screen lists it: the fields its attack,
    trigger kind and detectors use (sltui.runs.index.used_config: a hijack run has no alpha
    to show), values as text."""
    return [(key, fmt_cell(key, value) or "-") for key, value in used_config(config).items()]


class LiveRunScreen(Screen[None]):
    BINDINGS = [
        Binding("escape", "back", "Back"),
        Binding("x", "cancel_run", "Cancel run"),
        Binding("v", "toggle_view", "Charts/config"),
        Binding("l", "toggle_log", "Log loss", show=False),   # in the help and the palette: the footer is full at 80
        Binding("C", "clone", "Clone"),
    ]
    PALETTE = (
        ("Cancel this run", "Stop the run at the next batch (x)", "cancel_run"),
        ("Charts / config", "Switch between the charts and the config (v)", "toggle_view"),
        ("Loss on a log scale", "Switch the loss chart between a log and a linear y axis (l)", "toggle_log"),
        ("Clone this run's config", "Open the new-run form with this config (C)", "clone"),
    )

    def __init__(self, run_id: str) -> None:
        super().__init__()
        self.run_id = run_id
        self.view: dict[str, Any] | None = None
        self._config_shown: dict[str, Any] | None = None

    def compose(self) -> ComposeResult:
        yield Header()
        yield Static("", id="run-title")
        yield Static("", id="run-stats")
        with Horizontal(id="phase-row"):
            yield Label("", id="phase-name")
            yield ProgressBar(id="phase-bar", show_eta=False)
        with ContentSwitcher(initial="charts", id="run-switcher"):
            with Horizontal(id="charts"):
                yield MetricChart("loss (train, val)", short_title="loss", id="chart-loss")
                yield MetricChart("accuracy % (CDA, ASR)", ylim=(0, 100), short_title="%", id="chart-acc")
                yield MetricChart("detector score (1 = honest)", ylim=(0, 1), short_title="score", id="chart-defense")
            yield DataTable(id="run-config", cursor_type="row", zebra_stripes=True)
        yield Footer()

    def on_mount(self) -> None:
        self.title = "run"
        table = self.query_one("#run-config", DataTable)
        table.add_columns("field", "value")
        self.refresh_view()
        self.set_interval(getattr(self.app, "poll_interval", 1.0), self._poll_file)

    # ---- data -------------------------------------------------------------
    def _load(self) -> dict[str, Any] | None:
        manager = getattr(self.app, "manager", None)
        state = manager.get(self.run_id) if manager else None
        if state is not None:
            return view_of_state(state)
        index = getattr(self.app, "index", None)
        if index is None:
            return None
        try:
            return view_of_doc(index.store.load(self.run_id))
        except Exception as exc:  # noqa: BLE001 - an unreadable file is shown, not raised
            return {"id": self.run_id, "status": "unreadable", "config": {}, "epochs": [],
                    "total_epochs": None, "phase": None, "eta": None, "error": str(exc), "cancelling": False}

    def _poll_file(self) -> None:
        manager = getattr(self.app, "manager", None)
        if manager is not None and manager.get(self.run_id) is not None:
            return    # the app's drain timer pushes RunsChanged for our own runs
        if self.view is None or self.view["status"] in ("running", "starting"):
            self.refresh_view()

    @on(RunsChanged)
    def _runs_changed(self, message: RunsChanged) -> None:
        if self.run_id in message.run_ids:
            self.refresh_view()

    def refresh_view(self) -> None:
        view = self._load()
        if view is None:
            return
        self.view = view
        status = view["status"] + (" (cancelling...)" if view["cancelling"] else "")
        name = (view.get("config") or {}).get("name")
        self.query_one("#run-title", Static).update(Text.assemble(
            literal(view["id"], "bold"), "  ", literal(status), *(("  ", literal(name, "italic")) if name else ())))
        lines = [literal(stats_line(view))]
        lines += [literal(line, "bold red") for line in verdict_lines(view)]
        if view.get("reaction"):
            lines.append(literal(fmt_reaction(view["reaction"]), "bold"))
        if view["error"]:
            lines.append(Text.assemble(("error:", "red"), " ", literal(str(view["error"]).splitlines()[0])))
        self.query_one("#run-stats", Static).update(Text("\n").join(lines))
        phase_row = self.query_one("#phase-row")
        phase_row.display = view["phase"] is not None
        if view["phase"] is not None:
            name, epoch, total, loss = view["phase"]
            self.query_one("#phase-name", Label).update(literal(f"{name} {epoch}/{total} loss {fmt_num(loss, '.4f')}"))
            self.query_one("#phase-bar", ProgressBar).update(total=max(1, total or 1), progress=epoch)
        doc = {"epochs": view["epochs"]}
        self.query_one("#chart-loss", MetricChart).set_series(
            [("train", *series(doc, "train_loss")), ("val", *series(doc, "val_loss"))])
        self.query_one("#chart-acc", MetricChart).set_series(
            [("CDA", *series(doc, "cda")), ("ASR", *series(doc, "asr"))])
        defenses = view.get("defenses") or {}
        chart = self.query_one("#chart-defense", MetricChart)
        chart.display = bool(defenses)
        chart.set_series([(name, *defense_series(view, name)) for name in defenses])
        if view["config"] != self._config_shown:
            self._config_shown = view["config"]
            table = self.query_one("#run-config", DataTable)
            table.clear()
            for key, value in config_rows(view["config"]):
                table.add_row(literal(key), literal(value))

    # ---- actions ----------------------------------------------------------
    def action_back(self) -> None:
        self.app.pop_screen()

    def action_cancel_run(self) -> None:
        manager = getattr(self.app, "manager", None)
        if manager is not None and manager.cancel(self.run_id):
            self.notify("cancelling: the run stops at the next batch", timeout=3)
            self.refresh_view()
        elif self.view and self.view["status"] == "running":
            self.notify("this run belongs to another process; stop it there (Ctrl-C)", severity="warning")
        else:
            self.notify("the run is not active", severity="warning", timeout=3)

    def action_toggle_log(self) -> None:
        chart = self.query_one("#chart-loss", MetricChart)
        chart.set_log_y(not chart.log_y)
        self.notify(f"loss: {'log' if chart.log_y else 'linear'} scale", timeout=2)

    def action_toggle_view(self) -> None:
        switcher = self.query_one("#run-switcher", ContentSwitcher)
        switcher.current = "run-config" if switcher.current == "charts" else "charts"

    def action_clone(self) -> None:
        from ..form_model import config_from_run

        cfg = config_from_run(self.view or {})
        if cfg is None:
            self.notify("this run's config cannot be read back", severity="error")
            return
        self.app.action_new_run(cfg)  # type: ignore[attr-defined]
