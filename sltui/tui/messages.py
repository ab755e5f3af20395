"""App-wide messages (screen-local ones are nested in their widget or screen)."""
from __future__ import annotations

from textual.message import Message


class RunsChanged(Message):
    """The app drained new events for these runs (sent to every screen on the stack)."""

    def __init__(self, run_ids: frozenset[str]) -> None:
        super().__init__()
        self.run_ids = run_ids
