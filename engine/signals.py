"""The signals that cancel a run, in one place: SIGINT (Ctrl-C), SIGTERM (a scheduler or
`kill`) and SIGHUP (the terminal or SSH session went away) all set the run's stop event,
so the engine ends the run at its next batch and the run file says `cancelled` with the
metrics it reached. SIGPIPE is ignored (Python's own default, made explicit here so that
no library's native code can die of it): a closed pipe then shows up as an error on the
write (BrokenPipeError), which the command line turns into the same cancellation
(sltui/cli/signals.py). Standard library only."""
from __future__ import annotations

import contextlib
import signal
import threading
from typing import Iterator

CANCEL_SIGNALS = tuple(getattr(signal, name) for name in ("SIGINT", "SIGTERM", "SIGHUP") if hasattr(signal, name))


@contextlib.contextmanager
def stop_on_signals(stop: threading.Event) -> Iterator[None]:
    """Inside the block, each of CANCEL_SIGNALS sets `stop` instead of ending the process,
    and SIGPIPE is ignored; the previous handlers are restored on exit. Main thread only
    (Python delivers signals there); elsewhere it does nothing."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    handler = lambda signum, frame: stop.set()  # noqa: E731
    previous = {sig: signal.signal(sig, handler) for sig in CANCEL_SIGNALS}
    if hasattr(signal, "SIGPIPE"):
        previous[signal.SIGPIPE] = signal.signal(signal.SIGPIPE, signal.SIG_IGN)
    try:
        yield
    finally:
        for sig, old in previous.items():
            signal.signal(sig, old)
