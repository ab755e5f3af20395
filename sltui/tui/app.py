"""The Textual app: screens, global keys, the queue-draining timer, and `launch`.

The app never trains and never imports torch at module level: runs are threads owned by
:class:`~sltui.tui.run_manager.RunManager`, whose queues are drained here every 0.2 s.
"""
from __future__ import annotations

import importlib
import signal
import threading
import time
from functools import partial
from pathlib import Path
from typing import Any, Iterable

from textual.app import App, SystemCommand
from textual.binding import Binding
from textual.screen import Screen

from .messages import RunsChanged
from .run_manager import RunManager
from .runs_model import RunIndex
from .screens.arena import ArenaScreen
from .screens.browser import BrowserScreen
from .screens.help import ConfirmQuit, HelpScreen
from .screens.new_run import NewRunScreen

DRAIN_INTERVAL = 0.2
STOP_TIMEOUT = 30.0


class SlTuiApp(App[None]):
    """Run, watch and compare split-learning backdoor experiments."""

    CSS_PATH = str(Path(__file__).with_name("app.tcss"))
    TITLE = "sltui"
    ENABLE_COMMAND_PALETTE = True
    BINDINGS = [
        Binding("q", "quit", "Quit"),
        Binding("ctrl+q", "quit", "Quit", show=False, priority=True),
        Binding("question_mark", "help", "Help"),
        # Before the new run (which the browser's footer has no room for at 80 columns).
        Binding("a", "arena", "Arena"),
        Binding("n", "new_run", "New run"),
        Binding("b", "browser", "Runs", show=False),
    ]

    def __init__(self, runs_dir: str | Path = "runs", data_root: str | None = None, config: Any = None,
                 manager: RunManager | None = None, poll_interval: float = 1.0) -> None:
        super().__init__()
        self.runs_dir = Path(runs_dir)
        self.data_root = data_root
        self.initial_config = config
        self.index = RunIndex(self.runs_dir)
        self.manager = manager or RunManager(self.index.store)
        self.poll_interval = poll_interval
        self.stopping = False
        self._stop_deadline = 0.0

    # ---- lifecycle --------------------------------------------------------
    def on_mount(self) -> None:
        self.push_screen(BrowserScreen())
        if self.initial_config is not None:
            self.push_screen(NewRunScreen(self.initial_config))
        self.set_interval(DRAIN_INTERVAL, self.drain)

    def drain(self) -> None:
        """Apply queued run events and tell every screen which runs changed."""
        changed = self.manager.drain()
        active = len(self.manager.active())
        self.sub_title = f"{active} run{'s' if active != 1 else ''} training" if active else ""
        if changed:
            message_ids = frozenset(changed)
            for screen in self.screen_stack:
                screen.post_message(RunsChanged(message_ids))

    def preload_engine(self) -> None:
        """Import the engine (and torch) in the background so Start does not stall the UI."""
        def load() -> None:
            try:
                importlib.import_module("sltui.cli.headless")
            except Exception:  # noqa: BLE001 - reported when a run actually starts
                pass
        threading.Thread(target=load, name="sltui-preload", daemon=True).start()

    def start_run(self, cfg: Any) -> str | None:
        try:
            run_id = self.manager.start(cfg)
        except Exception as exc:  # noqa: BLE001 - shown to the user, never a crash
            self.notify(f"could not start the run: {exc}", severity="error", timeout=8)
            return None
        self.notify(f"started {run_id}", timeout=3)
        return run_id

    # ---- actions ----------------------------------------------------------
    def action_help(self) -> None:
        if not isinstance(self.screen, HelpScreen):
            self.push_screen(HelpScreen())

    def action_new_run(self, config: Any = None) -> None:
        if not isinstance(self.screen, NewRunScreen) or config is not None:
            self.push_screen(NewRunScreen(config))

    def action_arena(self) -> None:
        if not isinstance(self.screen, ArenaScreen):
            self.push_screen(ArenaScreen())

    def check_action(self, action: str, parameters: tuple[object, ...]) -> bool | None:
        """`a` leaves the footer while the arena view is the screen."""
        if action == "arena" and isinstance(self.screen, ArenaScreen):
            return False
        return True

    def action_browser(self) -> None:
        while len(self.screen_stack) > 2 and not isinstance(self.screen, BrowserScreen):
            self.pop_screen()

    def action_open_run(self, run_id: str) -> None:
        from .screens.live_run import LiveRunScreen

        self.push_screen(LiveRunScreen(run_id))

    async def action_quit(self) -> None:
        if self.stopping or isinstance(self.screen, ConfirmQuit):
            return
        active = self.manager.active()
        if not active:
            self.exit()
            return
        self.push_screen(ConfirmQuit(len(active)), self._quit_confirmed)

    def _quit_confirmed(self, yes: bool | None) -> None:
        if yes:
            self.stop_runs_and_exit()

    def stop_runs_and_exit(self, timeout: float = STOP_TIMEOUT) -> None:
        """Set every run's stop event, wait (without blocking the UI) for the threads, exit."""
        self.stopping = True
        count = self.manager.request_stop_all()
        self.notify(f"cancelling {count} run(s)...", timeout=timeout)
        self._stop_deadline = time.monotonic() + timeout
        self.set_interval(0.1, self._exit_when_stopped)

    def _exit_when_stopped(self) -> None:
        self.manager.drain()
        if not self.manager.alive() or time.monotonic() > self._stop_deadline:
            self.exit()

    # ---- command palette --------------------------------------------------
    def get_system_commands(self, screen: Screen) -> Iterable[SystemCommand]:
        yield SystemCommand("New run", "Open the form for a new run (n)", self.action_new_run)
        yield SystemCommand("Runs browser", "Back to the table of runs (b)", self.action_browser)
        yield SystemCommand("Arena", "Attacks against detectors: the arena sweeps' matrices (a)", self.action_arena)
        yield SystemCommand("Help", "Show the keys (?)", self.action_help)
        for title, help_text, action in getattr(screen, "PALETTE", ()):
            yield SystemCommand(title, help_text, partial(screen.run_action, action))
        yield SystemCommand("Quit", "Quit; cancels active runs after asking (q)", self.action_quit)
        yield from (c for c in super().get_system_commands(screen) if c.title in ("Theme", "Keys"))


def launch(runs_dir: str | Path = "runs", data_root: str | None = None, config: Any = None) -> None:
    """Open the terminal UI; on exit, make sure no run thread is left behind."""
    app = SlTuiApp(runs_dir=runs_dir, data_root=data_root, config=config)

    def hang_up(signum: int, frame: Any) -> None:
        # SSH connection lost or `kill`: cancel the runs (their files say cancelled), then exit.
        app.manager.request_stop_all()
        app.exit()

    previous = {sig: signal.signal(sig, hang_up) for sig in (signal.SIGHUP, signal.SIGTERM)}
    try:
        app.run()
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)
        left = app.manager.shutdown(timeout=STOP_TIMEOUT)
        if left:
            print(f"sltui: {len(left)} run(s) did not stop within {STOP_TIMEOUT:.0f}s: {', '.join(left)}")
