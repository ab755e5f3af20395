"""Runs started from the TUI: their threads, queues, stop events and drained state.

Pure Python (no Textual, no torch at import): the app calls :meth:`RunManager.drain`
on a timer and renders :class:`RunState`; a run's thread only ever puts on its queue.
The engine is imported lazily by the default starter, when the first run starts.
"""
from __future__ import annotations

import queue
import threading
import time
from dataclasses import dataclass, field
from typing import Any, Callable

from engine.events import DefenseScores, EpochMetrics, PhaseProgress, Reaction, RunFailed, RunFinished, RunStarted
from engine.store import record_defenses

ACTIVE = ("starting", "running")


@dataclass
class RunState:
    """What the UI knows about one run it started: rebuilt from the events it drained."""
    run_id: str
    config: dict[str, Any]
    config_resolved: list[str] | None = None  # fields filled from dataset/model defaults
    status: str = "starting"          # starting, running, completed, cancelled, failed
    total_epochs: int | None = None
    samples_per_epoch: int | None = None
    epochs: list[dict[str, Any]] = field(default_factory=list)
    phase: str | None = None          # current attack preparation phase, None while training
    phase_epoch: int = 0
    phase_epochs: int = 0
    phase_loss: float | None = None
    final: dict[str, Any] | None = None
    best: dict[str, Any] | None = None
    error: str | None = None
    started_at: float = field(default_factory=time.monotonic)
    ended_at: float | None = None
    cancel_requested: bool = False
    defenses: dict[str, Any] = field(default_factory=dict)  # as the run file's `defenses`
    reaction: dict[str, Any] | None = None  # as the run file's `reaction` (--on-flag stop)

    @property
    def active(self) -> bool:
        return self.status in ACTIVE

    @property
    def epoch(self) -> int:
        return self.epochs[-1]["epoch"] if self.epochs else 0

    @property
    def samples_per_s(self) -> float | None:
        return self.epochs[-1].get("samples_per_s") if self.epochs else None

    def eta_seconds(self) -> float | None:
        """Remaining training time from the mean epoch time so far (None until known)."""
        if not self.active or not self.epochs or not self.total_epochs:
            return None
        mean = sum(e.get("seconds", 0.0) for e in self.epochs) / len(self.epochs)
        return max(0, self.total_epochs - self.epoch) * mean

    def elapsed(self, now: float | None = None) -> float:
        end = self.ended_at if self.ended_at is not None else (now if now is not None else time.monotonic())
        return end - self.started_at

    def apply(self, item: Any) -> None:
        """Fold one queue item (an engine event, a RunResult, a StartError) into the state."""
        if isinstance(item, RunStarted):
            self.status = "running"
            self.config = item.config
            self.config_resolved = item.config_resolved
            self.total_epochs = item.total_epochs
            self.samples_per_epoch = item.samples_per_epoch
        elif isinstance(item, PhaseProgress):
            self.phase, self.phase_epoch, self.phase_epochs = item.phase, item.epoch, item.epochs
            self.phase_loss = item.loss
        elif isinstance(item, DefenseScores):
            record_defenses(self.defenses, item)
        elif isinstance(item, Reaction):
            self.reaction = item.record()
        elif isinstance(item, EpochMetrics):
            self.phase = None
            self.epochs.append({k: v for k, v in item.to_dict().items() if k != "run_id"})
        elif isinstance(item, RunFinished):
            self._end(item.status)
            self.final, self.best = item.final, item.best
        elif isinstance(item, RunFailed):
            self._end("failed")
            self.error = item.error
        elif type(item).__name__ == "StartError":   # raised before RunStarted: bad data, device...
            self._end("failed")
            err = getattr(item, "error", item)
            self.error = str(err) or type(err).__name__
        elif type(item).__name__ == "RunResult":
            if self.active:
                self._end(getattr(item, "status", "failed"))
                self.error = self.error or getattr(item, "error", None)

    def _end(self, status: str) -> None:
        self.status = status
        self.phase = None
        if self.ended_at is None:
            self.ended_at = time.monotonic()


Starter = Callable[..., tuple[threading.Thread, str]]


def default_starter(cfg: Any, store: Any, sink: "queue.Queue[Any]", stop: threading.Event,
                    run_id: str | None = None) -> tuple[threading.Thread, str]:
    """Start a real run: imports the engine (and torch) only now."""
    from ..runs.threads import start_run_thread

    return start_run_thread(cfg, store, sink, stop, run_id)


def default_share_threads(concurrent_runs: int) -> None:
    """Give each of the process's training runs its share of the cores (engine imported lazily)."""
    from engine.speed.device import share_cpu_threads

    share_cpu_threads(concurrent_runs)


@dataclass
class _Handle:
    state: RunState
    queue: "queue.Queue[Any]"
    stop: threading.Event
    thread: threading.Thread | None
    done: bool = False      # the thread's end-of-stream sentinel was drained


class RunManager:
    """Starts runs, drains their queues and stops them; the app owns one."""

    def __init__(self, store: Any, starter: Starter = default_starter,
                 share_threads: Callable[[int], None] = default_share_threads) -> None:
        self.store = store
        self.starter = starter
        self.share_threads = share_threads
        self._runs: dict[str, _Handle] = {}

    # ---- commands ---------------------------------------------------------
    def start(self, cfg: Any, run_id: str | None = None) -> str:
        sink: "queue.Queue[Any]" = queue.Queue()
        stop = threading.Event()
        self.share_threads(len(self.active()) + 1)
        thread, run_id = self.starter(cfg, self.store, sink, stop, run_id)
        return self.attach(run_id, sink, stop, thread, cfg.to_dict())

    def attach(self, run_id: str, sink: "queue.Queue[Any]", stop: threading.Event | None = None,
               thread: threading.Thread | None = None, config: dict[str, Any] | None = None) -> str:
        """Track a run fed through `sink` (used by `start`, and by tests with a pre-filled queue)."""
        self._runs[run_id] = _Handle(RunState(run_id, dict(config or {})), sink,
                                     stop or threading.Event(), thread)
        return run_id

    def cancel(self, run_id: str) -> bool:
        handle = self._runs.get(run_id)
        if handle is None or not handle.state.active:
            return False
        handle.stop.set()
        handle.state.cancel_requested = True
        return True

    def request_stop_all(self) -> int:
        return sum(self.cancel(run_id) for run_id in list(self._runs))

    def shutdown(self, timeout: float = 30.0) -> list[str]:
        """Stop every run and wait for its thread; return the ids still alive after `timeout`."""
        self.request_stop_all()
        deadline = time.monotonic() + timeout
        for handle in self._runs.values():
            if handle.thread is not None:
                handle.thread.join(max(0.0, deadline - time.monotonic()))
        self.drain()
        return self.alive()

    # ---- state ------------------------------------------------------------
    def drain(self, limit: int = 10_000) -> set[str]:
        """Apply every queued item without blocking; return the ids of runs that changed."""
        changed: set[str] = set()
        active_before = len(self.active())
        for run_id, handle in self._runs.items():
            for _ in range(limit):
                try:
                    item = handle.queue.get_nowait()
                except queue.Empty:
                    break
                changed.add(run_id)
                if type(item) is object:    # start_run_thread's end-of-stream sentinel
                    handle.done = True
                    if handle.state.active:
                        handle.state._end("cancelled" if handle.state.cancel_requested else "failed")
                    continue
                handle.state.apply(item)
        active_now = len(self.active())
        if 0 < active_now < active_before:
            self.share_threads(active_now)  # the runs left take over the cores freed
        return changed

    def get(self, run_id: str) -> RunState | None:
        handle = self._runs.get(run_id)
        return handle.state if handle else None

    def states(self) -> list[RunState]:
        return [h.state for h in self._runs.values()]

    def active(self) -> list[RunState]:
        return [h.state for h in self._runs.values() if h.state.active]

    def alive(self) -> list[str]:
        """Ids whose thread is still running (what must end before the process exits)."""
        return [run_id for run_id, h in self._runs.items() if h.thread is not None and h.thread.is_alive()]
