"""Starting a run on a thread, its events wired to the run file and to a queue: what the
command line (`sltui run --headless`, `sltui transfer`) and the terminal UI share, below both.

The thread runs `engine.training.runner.run` (or any job of the same shape); every event
goes to the run file (RunStore's recorder) and to the caller's queue, then the RunResult
(or a StartError for an error raised before the run started), then DONE."""
from __future__ import annotations

import queue
import threading
from dataclasses import dataclass
from typing import Any, Callable

from engine.config import RunConfig
from engine.store import RunStore, fanout
from engine.training.runner import RunResult, new_run_id, run


@dataclass
class StartError:
    """An error raised before the run started (bad config, data, device)."""
    error: BaseException


# The end of a thread's stream of queue items.
DONE = object()


Job = Callable[[Callable[[Any], None], threading.Event], RunResult]


def start_job_thread(job: Job, store: RunStore, sink: "queue.Queue[Any]", stop: threading.Event,
                     name: str = "run", reserved: str | None = None) -> threading.Thread:
    """Run `job(emit, stop)` in a daemon thread; its events go to the run file and `sink`,
    then its RunResult (or a StartError), then a sentinel. `reserved`: the run's folder,
    made by RunStore.reserve, removed again if the job never starts."""
    emit = fanout(store.recorder(), sink.put)

    def target() -> None:
        try:
            sink.put(job(emit, stop))
        except BaseException as exc:  # noqa: BLE001 - reported through the queue
            if reserved is not None:
                store.release(reserved)
            sink.put(StartError(exc))
        finally:
            sink.put(DONE)

    thread = threading.Thread(target=target, name=name, daemon=True)
    thread.start()
    return thread


def start_run_thread(cfg: RunConfig, store: RunStore, sink: "queue.Queue[Any]",
                     stop: threading.Event, run_id: str | None = None) -> tuple[threading.Thread, str]:
    """Start `engine.training.runner.run` in a daemon thread writing the run file and
    feeding `sink`. Without `run_id`, a fresh one whose folder is reserved (RunStore.reserve)."""
    reserved = None
    if run_id is None:
        run_id = reserved = store.reserve(lambda _: new_run_id(cfg))
    thread = start_job_thread(lambda emit, stop_: run(cfg, emit, stop_, run_id), store, sink, stop, f"run-{run_id}",
                              reserved)
    return thread, run_id
