"""The Textual app: screens, global keys, the queue-draining timer, and `launch`.

The app never trains and never imports torch at module level: runs are threads owned by
:class:`~sltui.tui.run_manager.RunManager`, whose queues are drained here every 0.2 s.
Every notice is literal text (sltui.format.literal's rule: it may quote a run's name);
a crash leaves the terminal with one line naming the log that holds its traceback, and a
non-zero exit.
"""
from __future__ import annotations

import datetime as _dt
import importlib
import os
import signal
import sys
import tempfile
import threading
import time
import traceback
from functools import partial
from pathlib import Path
from typing import Any, Callable, Iterable

from textual.app import App, SystemCommand
from textual.binding import Binding
from textual.screen import Screen

from ..format import printable
from .messages import RunsChanged
from .run_manager import RunManager
from .runs_model import RunIndex
from .screens.arena import ArenaScreen
from .screens.browser import BrowserScreen
from .screens.help import ConfirmQuit, HelpScreen
from .screens.new_run import NewRunScreen

DRAIN_INTERVAL = 0.2
STOP_TIMEOUT = 30.0
FORM = "new-run"      # the name the one new-run form is installed under
PREBUILD_AFTER_S = 1.0  # seconds after start (and while the index catches up) before the form is built


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
                 manager: RunManager | None = None, poll_interval: float = 1.0, prebuild_form: bool = False) -> None:
        super().__init__()
        self.runs_dir = Path(runs_dir)
        self.data_root = data_root
        self.initial_config = config
        self.index = RunIndex(self.runs_dir)
        self.manager = manager or RunManager(self.index.store)
        self.poll_interval = poll_interval
        self.stopping = False
        self._stop_deadline = 0.0
        self.crash_log: Path | None = None
        self.prebuild_form = prebuild_form

    # ---- lifecycle --------------------------------------------------------
    def on_mount(self) -> None:
        self.push_screen(BrowserScreen())
        if self.initial_config is not None:
            self.action_new_run(self.initial_config)
        elif self.prebuild_form:
            self.set_timer(PREBUILD_AFTER_S, self._prebuild_form)
        self.set_interval(DRAIN_INTERVAL, self.drain)

    def _prebuild_form(self) -> None:
        """Build the new-run form while the browser is idle, so that `n` and `C` show it at
        once (bench/explorer.py measures both): once the runs are listed, never while a
        screen above the browser is in use."""
        browser = self.screen
        if not isinstance(browser, BrowserScreen) or getattr(self.index, "pending", 0):
            self.set_timer(PREBUILD_AFTER_S, self._prebuild_form)
            return
        form = self.form()
        if not form.is_running:
            self._get_screen(form)   # composed and mounted now, shown at the first `n`
            self.set_timer(PREBUILD_AFTER_S, lambda: self._lay_out_form(form))

    def _lay_out_form(self, form: NewRunScreen) -> None:
        """Show the prebuilt form and take it away again at once, before anything is
        drawn: what a screen's first showing costs (its styles resolved, its layout for
        the terminal's size) is then paid while the browser is idle."""
        if form.is_mounted and form not in self.screen_stack and isinstance(self.screen, BrowserScreen):
            self.push_screen(form)
            self.pop_screen()

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

    def notify(self, message: str, *, title: str = "", severity: Any = "information",
               timeout: float | None = None, markup: bool = True) -> None:
        """Every notice as literal text: they quote run ids, names and errors (`markup` is
        ignored)."""
        super().notify(printable(message), title=printable(title), severity=severity, timeout=timeout,
                       markup=False)

    def _handle_exception(self, error: Exception) -> None:
        # Textual's one place for an exception nothing handled: it exits with code 1 and
        # prints a traceback with the locals. The traceback goes to a log instead, and
        # launch says where in one line.
        self.crash_log = write_crash_log(error)
        super()._handle_exception(error)
        self._exit_renderables.clear()

    # ---- leaving a screen that holds unsaved input ----------------------------
    def leave(self, then: Callable[[], Any]) -> None:
        """Call `then` (an action that leaves the screen shown), after asking first where
        the screen holds unsaved input (the new-run form with changes)."""
        leave = getattr(self.screen, "leave", None)
        if leave is None:
            then()
        else:
            leave(then)

    # ---- actions ----------------------------------------------------------
    def action_help(self) -> None:
        if not isinstance(self.screen, HelpScreen):
            self.push_screen(HelpScreen())

    def form(self) -> NewRunScreen:
        """The new-run form, built once (at its first showing) and shown again after."""
        if not self.is_screen_installed(FORM):
            self.install_screen(NewRunScreen(), FORM)
        return self.get_screen(FORM)  # type: ignore[return-value]

    def action_new_run(self, config: Any = None) -> None:
        """Show the new-run form, empty or (a clone) holding `config`."""
        form = self.form()
        if form in self.screen_stack:
            if self.screen is form and config is not None:
                form.leave(lambda: form.load(config))
            return
        def show() -> None:
            if form.is_mounted:
                form.load(config)
            else:
                form.initial = config
            self.push_screen(form)
        self.leave(show)

    def action_arena(self) -> None:
        if not isinstance(self.screen, ArenaScreen):
            self.leave(lambda: self.push_screen(ArenaScreen()))

    def check_action(self, action: str, parameters: tuple[object, ...]) -> bool | None:
        """`a` leaves the footer while the arena view is the screen."""
        if action == "arena" and isinstance(self.screen, ArenaScreen):
            return False
        return True

    def action_browser(self) -> None:
        def back() -> None:
            while len(self.screen_stack) > 2 and not isinstance(self.screen, BrowserScreen):
                self.pop_screen()
        self.leave(back)

    def action_open_run(self, run_id: str) -> None:
        from .screens.live_run import LiveRunScreen

        self.push_screen(LiveRunScreen(run_id))

    async def action_quit(self) -> None:
        if self.stopping or isinstance(self.screen, ConfirmQuit):
            return
        self.leave(self._quit)

    def _quit(self) -> None:
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


def log_folder() -> Path:
    """Where a crash's traceback is written: $XDG_CACHE_HOME/sltui/logs (~/.cache/sltui/logs),
    else the system's temporary folder."""
    base = Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "sltui" / "logs"
    try:
        base.mkdir(parents=True, exist_ok=True)
        return base
    except OSError:
        return Path(tempfile.gettempdir())


def write_crash_log(error: BaseException) -> Path | None:
    """Write `error`'s traceback to a new file in log_folder(); its path (None if nothing
    could be written)."""
    stamp = _dt.datetime.now().strftime("%Y%m%d-%H%M%S")
    text = "".join(traceback.format_exception(type(error), error, error.__traceback__))
    for folder in (log_folder(), Path(tempfile.gettempdir())):
        path = folder / f"tui-crash-{stamp}-{os.getpid()}.log"
        try:
            path.write_text(f"sltui terminal UI crashed at {stamp}\n{text}")
            return path
        except OSError:
            continue
    return None


def crash_line(app: SlTuiApp) -> str:
    """The one line a crash leaves on the terminal."""
    error = app._exception
    what = printable(f"{type(error).__name__}: {error}") if error is not None else "an error"
    where = f"; the traceback is in {printable(app.crash_log)}" if app.crash_log else ""
    return f"sltui: the terminal UI stopped on {what}{where}"


def launch(runs_dir: str | Path = "runs", data_root: str | None = None, config: Any = None,
           headless: bool = False) -> int:
    """Open the terminal UI; on exit, make sure no run thread is left behind. Returns the
    exit code: 0, or 1 after a crash (which printed one line naming its log)."""
    app = SlTuiApp(runs_dir=runs_dir, data_root=data_root, config=config, prebuild_form=True)

    def hang_up(signum: int, frame: Any) -> None:
        # SSH connection lost or `kill`: cancel the runs (their files say cancelled), then exit.
        app.manager.request_stop_all()
        app.exit()

    previous = {sig: signal.signal(sig, hang_up) for sig in (signal.SIGHUP, signal.SIGTERM)}
    try:
        app.run(headless=headless)
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)
        left = app.manager.shutdown(timeout=STOP_TIMEOUT)
        if left:
            print(f"sltui: {len(left)} run(s) did not stop within {STOP_TIMEOUT:.0f}s: {', '.join(left)}")
    code = app.return_code or 0
    if code:
        print(crash_line(app), file=sys.stderr)
    return code
