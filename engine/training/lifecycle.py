"""The life of a run, once it has started: RunStarted, the work, then exactly one
RunFinished (completed or cancelled) or RunFailed. Shared by a training run (runner.py)
and the transfer check (transfer.py)."""
from __future__ import annotations

import traceback
from dataclasses import dataclass, field
from typing import Any, Callable

from ..events import Event, RunFailed, RunFinished, RunStarted
from .context import Cancelled


@dataclass
class RunResult:
    run_id: str
    status: str
    final: dict[str, Any] | None = None
    best: dict[str, Any] | None = None
    epochs: list[dict[str, Any]] = field(default_factory=list)
    error: str | None = None
    stopped_early: bool = False
    # The detectors' last report (events.DefenseScores.defenses), {} without detectors.
    defenses: dict[str, Any] = field(default_factory=dict)
    # With --on-flag stop, once a detector flagged: the local models (events.Reaction's fields).
    reaction: dict[str, Any] | None = None


def run_lifecycle(started: RunStarted, emit: Callable[[Event], None], work: Callable[[RunResult], None],
                  finished: Callable[[RunResult], RunFinished]) -> RunResult:
    """Emit `started`, then `work(result)`, which fills in the result's epochs as it goes.
    Its end is `finished(result)` with status "completed" or, if it raised Cancelled,
    "cancelled"; any other exception ends the run as RunFailed with its traceback (the
    run file must say what happened) and is not raised."""
    emit(started)
    result = RunResult(started.run_id, "running")
    try:
        try:
            work(result)
            result.status = "completed"
        except Cancelled:
            result.status = "cancelled"
        emit(finished(result))
    except Exception as exc:
        result.status = "failed"
        result.error = f"{type(exc).__name__}: {exc}"
        emit(RunFailed(started.run_id, result.error + "\n" + traceback.format_exc()))
    return result
