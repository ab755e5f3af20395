"""The new-run form: one row per RunConfig field, validated as you type, then Start.

The app builds the form once and shows the same screen again for every new run and clone
(`load` fills it in): building its hundreds of widgets takes seconds on a slow machine,
filling them in a moment. While the form is shown, letters go to it and never to the app's
single-letter shortcuts (prompts.LettersStayHere); leaving it with changes asks first."""
from __future__ import annotations

from typing import Any

from rich.text import Text
from textual import events, on
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Horizontal, VerticalScroll
from textual.message import Message
from textual.screen import Screen
from textual.widget import Widget
from textual.widgets import Button, Checkbox, Header, Input, Label, Select, Static

from engine.config import RunConfig

from ...format import literal, printable
from ..form_model import CHOICES, SPECS, FieldSpec, build, defenses_named, to_text, visible
from .prompts import Confirm, LettersStayHere

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


class NewRunScreen(LettersStayHere, Screen[None]):
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
        self.baseline: dict[str, Any] = {}   # the values `load` put in: what "changed" is measured against
        self._styled_as: tuple | None = None  # (theme, css version) the widgets were last styled for

    # ---- layout -----------------------------------------------------------
    def compose(self) -> ComposeResult:
        values = to_text(self._start_config(self.initial))
        yield Header()
        # Not focusable itself: the first field has the focus, and moving it never
        # restyles the whole form.
        with VerticalScroll(id="form", can_focus=False):
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
        # No footer: the app's single-letter keys do nothing here (letters go to the form),
        # and the buttons name the form's own keys.

    def _start_config(self, config: RunConfig | None) -> RunConfig:
        """The config the form opens with: `config`, else a short synthetic run; the app's
        --data-root where the config names none."""
        cfg = config or RunConfig(dataset="synthetic", epochs=3)
        if cfg.data_root is None and getattr(self.app, "data_root", None):
            cfg = RunConfig(**{**cfg.to_dict(), "lr_milestones": cfg.lr_milestones,
                               "data_root": str(self.app.data_root)})
        return cfg

    def _widget(self, spec: FieldSpec, value: Any) -> Widget:
        wid = f"f-{spec.name}"
        if spec.kind == "select":
            options = [(str(choice), choice) for choice in CHOICES[spec.name]]
            return Select(options, value=value, allow_blank=False, id=wid, compact=True,
                          classes="field-input", tooltip=spec.help)
        if spec.kind == "bool":
            return Checkbox(spec.help, value=bool(value), id=wid, compact=True, classes="field-input")
        return Input(value=printable(value), placeholder=PLACEHOLDERS.get(spec.name, spec.help), id=wid,
                     compact=True, classes="field-input", tooltip=spec.help, select_on_focus=False)

    def on_mount(self) -> None:
        self.title = "new run"
        self.load(self.initial)
        self._styled_as = self._style_version()   # its widgets were styled as they were mounted

    def on_screen_resume(self) -> None:
        preload = getattr(self.app, "preload_engine", None)
        if preload and self.app.screen is self:   # not for the prebuilt form's trial showing
            preload()       # the engine and torch, so that Start does not stall the UI

    def load(self, config: RunConfig | None = None) -> None:
        """Fill the built form with `config` (a clone's) or the defaults, as if it had just
        been opened: no errors left from before, the first field focused, nothing changed."""
        self.initial = config
        values = to_text(self._start_config(config))
        with self.prevent(Input.Changed, Select.Changed, Checkbox.Changed):
            for spec in SPECS:
                value = values[spec.name]
                self.field(spec.name).value = bool(value) if spec.kind == "bool" else (  # type: ignore[attr-defined]
                    value if spec.kind == "select" else printable(value))
        self.query_one("#form", VerticalScroll).scroll_home(animate=False)
        self._show_attack_fields()
        self.validate_form()
        self.baseline = self.values()
        self.set_focus(self.query_one("#f-dataset"))

    def _on_screen_resume(self, event: events.ScreenResume) -> None:
        # Shown (again: the app keeps one form): its widgets' styles are those they were
        # given when mounted or last shown, unless the theme or the stylesheet changed
        # since. Restyling hundreds of widgets for nothing is most of what opening the form
        # would cost (Textual skips it the same way for a screen uncovered by closing the
        # one above it).
        styled_as = self._style_version()
        if self._styled_as == styled_as:
            event.refresh_styles = False
        self._styled_as = styled_as

    def _style_version(self) -> tuple:
        return (self.app.theme, self.app._css_update_count)

    def unsaved(self) -> bool:
        """Whether the form holds changes that leaving it would throw away."""
        return bool(self.baseline) and self.values() != self.baseline

    # ---- state ------------------------------------------------------------
    def field(self, name: str) -> Widget:
        """The widget of field `name` (looked up once: the form has hundreds of widgets)."""
        fields = getattr(self, "_fields", None)
        if fields is None:
            fields = self._fields = {spec.name: self.query_one(f"#f-{spec.name}") for spec in SPECS}
        return fields[name]

    def values(self) -> dict[str, Any]:
        return {spec.name: self.field(spec.name).value for spec in SPECS}  # type: ignore[attr-defined]

    @property
    def attack(self) -> str:
        return str(self.field("attack").value)  # type: ignore[attr-defined]

    @property
    def trigger(self) -> str:
        return str(self.field("trigger").value)  # type: ignore[attr-defined]

    @property
    def defenses(self) -> tuple[str, ...]:
        return defenses_named(self.field("defenses").value)  # type: ignore[attr-defined]

    def _show_attack_fields(self) -> None:
        attack, trigger, defenses = self.attack, self.trigger, self.defenses
        for spec in SPECS:
            shown = visible(spec.name, attack, trigger, defenses)
            self.query_one(f"#row-{spec.name}").display = shown
            self.query_one(f"#err-{spec.name}").display = shown and spec.name in self.errors

    def validate_form(self) -> RunConfig | None:
        """Re-check the whole form; show each message under its field. Returns the config."""
        values = self.values()
        cfg, errors = build(values)
        self._validated = values
        self.errors = errors
        attack, trigger, defenses = self.attack, self.trigger, self.defenses
        general = []
        shown = getattr(self, "_messages", {})
        for spec in SPECS:
            message = errors.get(spec.name, "")
            label = self.query_one(f"#err-{spec.name}", Static)
            if shown.get(spec.name) != message:      # an update lays the whole form out again
                label.update(literal(message))       # it quotes what was typed
            label.display = bool(message) and visible(spec.name, attack, trigger, defenses)
            self.field(spec.name).set_class(bool(message), "-invalid-field")
            if message and not visible(spec.name, attack, trigger, defenses):
                general.append(message)
        if "" in errors:
            general.append(errors[""])
        self._messages = {spec.name: errors.get(spec.name, "") for spec in SPECS}
        form_error = self.query_one("#form-error", Static)
        if general != getattr(self, "_general", None):
            form_error.update(Text("\n").join(literal(line) for line in general))
            self._general = general
        form_error.display = bool(general)
        self.query_one("#start", Button).disabled = cfg is None
        return cfg

    def _revalidate(self) -> None:
        """validate_form after an edit; nothing to do where the values are those last checked
        (the Changed messages that filling the form in sends)."""
        if self.values() != getattr(self, "_validated", None):
            self.validate_form()

    @on(Input.Changed)
    @on(Checkbox.Changed)
    def _changed(self, event: Input.Changed | Checkbox.Changed) -> None:
        if getattr(event, "input", None) is not None and event.input.id == "f-defenses":  # type: ignore[union-attr]
            self._show_attack_fields()
        self._revalidate()

    @on(Select.Changed)
    def _select_changed(self, event: Select.Changed) -> None:
        if event.select.id in ("f-attack", "f-trigger"):
            self._show_attack_fields()
        self._revalidate()

    # ---- actions ----------------------------------------------------------
    @on(Button.Pressed, "#start")
    def action_start(self) -> None:
        cfg = self.validate_form()
        if cfg is None:
            first = next((s.name for s in SPECS
                          if s.name in self.errors and visible(s.name, self.attack, self.trigger, self.defenses)), None)
            if first:
                self.set_focus(self.field(first))
            self.notify("fix the highlighted field first", severity="error", timeout=3)
            return
        self.post_message(self.Submitted(cfg))
        start = getattr(self.app, "start_run", None)
        if start is None:
            return
        run_id = start(cfg)
        if run_id is not None:
            from .live_run import LiveRunScreen

            self.baseline = {}      # started: nothing left to lose
            self.app.switch_screen(LiveRunScreen(run_id))

    @on(Button.Pressed, "#back")
    def action_back(self) -> None:
        self.leave(self.app.pop_screen)

    def leave(self, then: Any) -> None:
        """Call `then` (what leaves the form), after asking where the form holds changes."""
        if not self.unsaved():
            then()
            return
        self.app.push_screen(Confirm("Leave the new-run form? Its changes are lost.", yes="Leave (y)",
                                     no="Stay (n)"), lambda yes: then() if yes else None)
