"""Cancellation for the command line, in one place: SIGINT, SIGTERM, SIGHUP (engine/signals.py)
and a closed stdout or stderr (the reader of a pipe gone, as with `| head -1`, or the
terminal of a dropped SSH session) all set the running command's stop event, so the run
ends `cancelled` with the metrics it reached, its run file and weights written.

`guard_output()` (installed once by `main`) wraps sys.stdout and sys.stderr: a write that
fails because nobody reads any more (BrokenPipeError, EIO) stops the active runs, points
the file descriptor at /dev/null (so neither later writes nor Python's flush at exit fail)
and is otherwise swallowed. `cancellation(stop)` is the block a command runs its work in."""
from __future__ import annotations

import contextlib
import errno
import os
import sys
import threading
from typing import Any, Iterator

try:
    import termios
except ImportError:  # pragma: no cover - not on this platform
    termios = None  # type: ignore[assignment]

from engine.signals import stop_on_signals

# Errors of a write whose reader is gone: a closed pipe, a hung-up terminal.
GONE_ERRNOS = frozenset({errno.EPIPE, errno.EIO, errno.ENXIO, errno.ECONNRESET})

_active: set[threading.Event] = set()
_active_lock = threading.Lock()
_output_gone = threading.Event()


def output_gone() -> bool:
    """Whether stdout or stderr has lost its reader in this process."""
    return _output_gone.is_set()


def _reader_gone() -> None:
    _output_gone.set()
    with _active_lock:
        for stop in _active:
            stop.set()


class GuardedStream:
    """A text stream whose writes never fail because the reader is gone (see the module)."""

    def __init__(self, stream: Any) -> None:
        self._stream = stream
        self._gone = False

    def _silence(self) -> None:
        self._gone = True
        try:
            devnull = os.open(os.devnull, os.O_WRONLY)
            os.dup2(devnull, self._stream.fileno())
            os.close(devnull)
        except (OSError, ValueError, AttributeError):
            pass
        _reader_gone()

    def _guard(self, call: Any, *args: Any) -> Any:
        if self._gone:
            return None
        try:
            return call(*args)
        except OSError as exc:
            if not isinstance(exc, BrokenPipeError) and exc.errno not in GONE_ERRNOS:
                raise
            self._silence()
            return None

    def write(self, text: str) -> int:
        self._guard(self._stream.write, text)
        return len(text)

    def writelines(self, lines: Any) -> None:
        for line in lines:
            self.write(line)

    def flush(self) -> None:
        self._guard(self._stream.flush)

    def __getattr__(self, name: str) -> Any:
        return getattr(self._stream, name)


def guard_output() -> None:
    """Wrap sys.stdout and sys.stderr in GuardedStream (once)."""
    for name in ("stdout", "stderr"):
        stream = getattr(sys, name)
        if stream is not None and not isinstance(stream, GuardedStream):
            setattr(sys, name, GuardedStream(stream))


@contextlib.contextmanager
def cancellation(stop: threading.Event) -> Iterator[threading.Event]:
    """Inside the block every cause of cancellation (a signal, stdout or stderr gone) sets `stop`."""
    with _active_lock:
        _active.add(stop)
    if _output_gone.is_set():
        stop.set()
    try:
        with stop_on_signals(stop):
            yield stop
    finally:
        with _active_lock:
            _active.discard(stop)


@contextlib.contextmanager
def quiet_ctrl_c(stream: Any = None) -> Iterator[None]:
    """While a progress bar is drawn: the terminal does not echo Ctrl-C as `^C`. The echo
    lands after the bar's last character; where the bar fills the line, it wraps onto a new
    line, and the bar, redrawn there, is left twice on the screen. Nothing changes where
    `stream` (stdin) is not a terminal."""
    stream = sys.stdin if stream is None else stream
    try:
        fd = stream.fileno()
        usable = termios is not None and os.isatty(fd) and hasattr(termios, "ECHOCTL")
    except (AttributeError, OSError, ValueError):
        usable = False
    if not usable:
        yield
        return
    try:
        old = termios.tcgetattr(fd)
        new = list(old)
        new[3] &= ~termios.ECHOCTL
        termios.tcsetattr(fd, termios.TCSANOW, new)
    except termios.error:
        yield
        return
    try:
        yield
    finally:
        try:
            termios.tcsetattr(fd, termios.TCSANOW, old)
        except termios.error:
            pass
