"""Small dialogs: a line of text (a run's tags or note) and a yes/no question (deleting runs,
leaving a changed form); and the rule every screen where one types follows (LettersStayHere)."""
from __future__ import annotations

from typing import Union

from rich.text import Text
from textual import events, on
from textual.app import App, ComposeResult
from textual.binding import Binding
from textual.containers import Horizontal, Vertical
from textual.screen import ModalScreen
from textual.widgets import Button, Input, Static

from ...format import literal

# A dialog's question: a Text as its caller built it (literal() around what came from a
# run folder), or a str, which is shown literally.
Question = Union[str, Text]


def as_text(question: Question) -> Text:
    return question if isinstance(question, Text) else literal(question)


class LettersStayHere:
    """For a screen where one types (the new-run form, a prompt): a printable key (a letter,
    `?`, `/`) that neither the focused widget nor the screen binds stops here, whatever has
    focus (an input, a select, a checkbox, a button), so it never reaches the app's
    single-letter shortcuts (`b` back to the runs, `a` arena, `n`, `q`, `?`). Keys the
    widget itself binds (space on a checkbox) and the screen's own (`y`/`n` in a question)
    still work; esc, tab and ctrl keys are not printable and pass."""

    def on_key(self, event: events.Key) -> None:
        if not event.is_printable:
            return
        active = self.app.active_bindings.get(event.key)  # type: ignore[attr-defined]
        if active is not None and not isinstance(active.node, App) and active.enabled:
            return       # the focused widget's or the screen's own key
        event.stop()
        event.prevent_default()


class TextPrompt(LettersStayHere, ModalScreen["str | None"]):
    """Ask for one line of text; enter answers it, esc answers None (after asking, when
    something was typed: what was typed is not thrown away by one key)."""
    BINDINGS = [Binding("escape", "cancel", "Cancel")]

    def __init__(self, question: Question, value: str = "", placeholder: str = "") -> None:
        super().__init__()
        self.question, self.value, self.placeholder = question, value, placeholder

    def compose(self) -> ComposeResult:
        with Vertical(classes="dialog"):
            yield Static(as_text(self.question), id="prompt-text")
            yield Input(self.value, placeholder=self.placeholder, id="prompt-input", compact=True)
            yield Static("enter saves, esc cancels", classes="hint")

    def on_mount(self) -> None:
        self.set_focus(self.query_one("#prompt-input", Input))

    def on_key(self, event: events.Key) -> None:
        # The input handles what is typed into it (and stops it there), so a printable key
        # that reaches the dialog was typed as it opened, before the input had the focus:
        # it goes into the input too, never to a shortcut.
        if event.is_printable and event.character:
            box = self.query_one("#prompt-input", Input)
            self.set_focus(box)
            box.insert_text_at_cursor(event.character)
            event.stop()
            event.prevent_default()
            return
        super().on_key(event)

    @property
    def changed(self) -> bool:
        """Whether the text differs from what the dialog opened with."""
        return self.query_one("#prompt-input", Input).value != self.value

    @on(Input.Submitted, "#prompt-input")
    def _submitted(self, event: Input.Submitted) -> None:
        self.dismiss(event.value)

    def action_cancel(self) -> None:
        if not self.changed:
            self.dismiss(None)
            return
        self.app.push_screen(Confirm("Throw away what you typed here?", yes="Discard (y)", no="Keep typing (n)"),
                             lambda yes: self.dismiss(None) if yes else None)


class Confirm(LettersStayHere, ModalScreen[bool]):
    """A yes/no question: y or the yes button answers True; n, esc or the no button False."""
    BINDINGS = [Binding("y", "answer(True)", "Yes"), Binding("n,escape", "answer(False)", "No")]

    def __init__(self, question: Question, yes: str = "Yes (y)", no: str = "No (n)") -> None:
        super().__init__()
        self.question, self.yes, self.no = question, yes, no

    def compose(self) -> ComposeResult:
        with Vertical(classes="dialog"):
            yield Static(as_text(self.question), id="confirm-text")
            with Horizontal(classes="buttons"):
                yield Button(self.yes, id="yes", variant="error")
                yield Button(self.no, id="no", variant="primary")

    def on_mount(self) -> None:
        self.set_focus(self.query_one("#no", Button))

    def action_answer(self, answer: bool) -> None:
        self.dismiss(answer)

    @on(Button.Pressed)
    def _pressed(self, event: Button.Pressed) -> None:
        self.dismiss(event.button.id == "yes")
