"""`?`: the keys of every screen; and the quit confirmation."""
from __future__ import annotations

from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Vertical, VerticalScroll
from textual.screen import ModalScreen
from textual.widgets import Static

from .prompts import Confirm

HELP_TEXT = """\
[b]Everywhere[/b]
  ?          this help            ctrl+p   command palette
  n          new run              b        runs browser
  a          arena: attacks x detectors, per arena sweep (sltui arena)
  q          quit (asks first when runs are active, then cancels them)
  esc        back

[b]Runs browser[/b]
  enter      open the run's charts and config (a group: list its runs)
  space      select / unselect a run (for compare)
  c          compare the selected runs (or the selected groups' runs)
  /          filter: words, attack=hijack cut>=2 asr>90 tag:paper
  s / S      sort by the next column / reverse the order
  g          group seeds: one row per setting, n and mean ± std
  m          metrics of the final / the best-validation epoch
  t / N      tag the runs (-tag removes) / write a run's note
  d / u      move the runs to runs/.trash / bring them back (both ask)
  r          re-read the runs folder
  C          clone the run's config into the new-run form

[b]New run[/b]
  tab        next field        ctrl+s   start the run
  Only the chosen attack's fields are shown; errors show under a field.

[b]Run[/b]
  x          cancel the run    v   charts / config    C   clone config
  l          loss chart on a log / linear scale

[b]Arena[/b]
  up/down    choose the arena     tab      to its matrix and back
  r          re-read the folder   runs 1/2: a cell with runs still to do

[b]Compare[/b]
  p          show the paper authors' CDA / ASR for each setting
  m          best-validation metrics first / final first
  e          export the table as CSV (into the runs folder)
"""


class HelpScreen(ModalScreen[None]):
    BINDINGS = [Binding("escape,q,question_mark", "dismiss", "Close")]

    def compose(self) -> ComposeResult:
        with Vertical(id="help-box", classes="dialog"):
            with VerticalScroll():
                yield Static(HELP_TEXT, id="help-text")
            yield Static("esc closes", classes="hint")

    def action_dismiss(self) -> None:  # type: ignore[override]
        self.dismiss(None)


class ConfirmQuit(Confirm):
    """Asked when runs are active: quitting cancels them."""

    def __init__(self, active: int) -> None:
        runs = "1 run is" if active == 1 else f"{active} runs are"
        super().__init__(f"{runs} still training. Quit and cancel {'it' if active == 1 else 'them'}?",
                         yes="Quit (y)", no="Stay (n)")
        self.active = active
