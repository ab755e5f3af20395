"""The new-run form: one row per RunConfig field, validated as you type, then Start."""
from __future__ import annotations

from typing import Any

from textual import on
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Horizontal, VerticalScroll
from textual.message import Message
from textual.screen import Screen
from textual.widget import Widget
from textual.widgets import Button, Checkbox, Footer, Header, Input, Label, Select, Static

from engine.config import RunConfig

from ..form_model import CHOICES, SPECS, FieldSpec, build, defenses_named, to_text, visible

PLACEHOLDERS = {
    "epochs": "default: 90 (140 CIFAR-10)",
    "patience": "default: 70 (90 CIFAR-10); 0 = off",
    "lr_milestones": "default per model; e.g. 26,41,56,71 or none",
    "trigger_col": "default: upper middle",
    "ae_phase1_epochs": "default: 70 (100 CIFAR-10)",
    "ae_epochs": "default: 100 (180 CIFAR-10)",
    "data_root": "default: $SLTUI_DATA or ~/.cache/sltui/data",
    "train_limit": "all",
    "eval_limit": "all",
    "name": "free label",
    "defenses": "none; e.g. splitguard,scrutinizer,splitout",
}


# The labels' column: the longest label and a space, so no label runs into its value.
LABEL_WIDTH = max(len(spec.label) for spec in SPECS) + 1


class NewRunScreen(Screen[None]):
    """Fill in a RunConfig; Start hands it to the app's run manager."""

    BINDINGS = [
        Binding("escape", "back", "Back"),
        Binding("ctrl+s", "start", "Start"),
    ]
    PALETTE = (("Start run", "Start the run in the form (ctrl+s)", "start"),)

    class Submitted(Message):
        """A valid config was submitted (before the run starts)."""

        def __init__(self, config: RunConfig) -> None:
            super().__init__()
            self.config = config

    def __init__(self, config: RunConfig | None = None) -> None:
        super().__init__()
        self.initial = config
        self.errors: dict[str, str] = {}

    # ---- layout -----------------------------------------------------------
    def compose(self) -> ComposeResult:
        cfg = self.initial or RunConfig(dataset="synthetic", epochs=3)
        if cfg.data_root is None and getattr(self.app, "data_root", None):
            cfg = RunConfig(**{**cfg.to_dict(), "lr_milestones": cfg.lr_milestones,
                               "data_root": str(self.app.data_root)})
        values = to_text(cfg)
        yield Header()
        with VerticalScroll(id="form"):
            for spec in SPECS:
                with Horizontal(classes="field-row", id=f"row-{spec.name}"):
                    label = Label(spec.label, classes="field-label")
                    label.styles.width = LABEL_WIDTH
                    yield label
                    yield self._widget(spec, values[spec.name])
                error = Static("", classes="field-error", id=f"err-{spec.name}")
                error.styles.padding = (0, 0, 0, LABEL_WIDTH)
                yield error
        yield Static("", id="form-error")
        with Horizontal(id="form-buttons"):
            yield Button("Start (ctrl+s)", id="start", variant="primary")
            yield Button("Back (esc)", id="back")
        yield Footer()

    def _widget(self, spec: FieldSpec, value: Any) -> Widget:
        wid = f"f-{spec.name}"
        if spec.kind == "select":
            options = [(str(choice), choice) for choice in CHOICES[spec.name]]
            return Select(options, value=value, allow_blank=False, id=wid, compact=True,
                          classes="field-input", tooltip=spec.help)
        if spec.kind == "bool":
            return Checkbox(spec.help, value=bool(value), id=wid, compact=True, classes="field-input")
        return Input(value=str(value), placeholder=PLACEHOLDERS.get(spec.name, spec.help), id=wid,
                     compact=True, classes="field-input", tooltip=spec.help, select_on_focus=False)

    def on_mount(self) -> None:
        self.title = "new run"
        self._show_attack_fields()
        self.validate_form()
        self.query_one("#f-dataset").focus()
        preload = getattr(self.app, "preload_engine", None)
        if preload:
            preload()

    # ---- state ------------------------------------------------------------
    def values(self) -> dict[str, Any]:
        out: dict[str, Any] = {}
        for spec in SPECS:
            widget = self.query_one(f"#f-{spec.name}")
            out[spec.name] = widget.value  # type: ignore[attr-defined]
        return out

    @property
    def attack(self) -> str:
        return str(self.query_one("#f-attack", Select).value)

    @property
    def trigger(self) -> str:
        return str(self.query_one("#f-trigger", Select).value)

    @property
    def defenses(self) -> tuple[str, ...]:
        return defenses_named(self.query_one("#f-defenses", Input).value)

    def _show_attack_fields(self) -> None:
        attack, trigger, defenses = self.attack, self.trigger, self.defenses
        for spec in SPECS:
            shown = visible(spec.name, attack, trigger, defenses)
            self.query_one(f"#row-{spec.name}").display = shown
            self.query_one(f"#err-{spec.name}").display = shown and spec.name in self.errors

    def validate_form(self) -> RunConfig | None:
        """Re-check the whole form; show each message under its field. Returns the config."""
        cfg, errors = build(self.values())
        self.errors = errors
        attack, trigger, defenses = self.attack, self.trigger, self.defenses
        general = []
        for spec in SPECS:
            message = errors.get(spec.name, "")
            label = self.query_one(f"#err-{spec.name}", Static)
            label.update(message)
            label.display = bool(message) and visible(spec.name, attack, trigger, defenses)
            self.query_one(f"#f-{spec.name}").set_class(bool(message), "-invalid-field")
            if message and not visible(spec.name, attack, trigger, defenses):
                general.append(message)
        if "" in errors:
            general.append(errors[""])
        form_error = self.query_one("#form-error", Static)
        form_error.update("\n".join(general))
        form_error.display = bool(general)
        self.query_one("#start", Button).disabled = cfg is None
        return cfg

    @on(Input.Changed)
    @on(Checkbox.Changed)
    def _changed(self, event: Input.Changed | Checkbox.Changed) -> None:
        if getattr(event, "input", None) is not None and event.input.id == "f-defenses":  # type: ignore[union-attr]
            self._show_attack_fields()
        self.validate_form()

    @on(Select.Changed)
    def _select_changed(self, event: Select.Changed) -> None:
        if event.select.id in ("f-attack", "f-trigger"):
            self._show_attack_fields()
        self.validate_form()

    # ---- actions ----------------------------------------------------------
    @on(Button.Pressed, "#start")
    def action_start(self) -> None:
        cfg = self.validate_form()
        if cfg is None:
            first = next((s.name for s in SPECS
                          if s.name in self.errors and visible(s.name, self.attack, self.trigger, self.defenses)), None)
            if first:
                self.query_one(f"#f-{first}").focus()
            self.notify("fix the highlighted field first", severity="error", timeout=3)
            return
        self.post_message(self.Submitted(cfg))
        start = getattr(self.app, "start_run", None)
        if start is None:
            return
        run_id = start(cfg)
        if run_id is not None:
            from .live_run import LiveRunScreen

            self.app.switch_screen(LiveRunScreen(run_id))

    @on(Button.Pressed, "#back")
    def action_back(self) -> None:
        self.app.pop_screen()
