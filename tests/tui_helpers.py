"""Shared test helpers: pre-written run files and a pre-filled event queue."""
from __future__ import annotations

import queue
import tempfile
import threading
from pathlib import Path
from typing import Any

from engine.config import RunConfig
from engine.events import EpochMetrics, PhaseProgress, RunFinished, RunStarted
from engine.store import RunStore


def epoch_metrics(run_id: str, epoch: int, cda: float = 90.0, asr: float = 10.0) -> EpochMetrics:
    return EpochMetrics(run_id=run_id, epoch=epoch, train_loss=1.0 / epoch, train_loss_clean=0.8 / epoch,
                        train_loss_malicious=0.2 / epoch, val_loss=1.2 / epoch, val_acc=cda - 1,
                        cda=cda, asr=asr, lr=1e-3, seconds=2.0, samples_per_s=1000.0)


def write_run(root: Path, run_id: str, *, status: str = "completed", epochs: int = 3,
              created: str = "2025-01-01T00:00:00+00:00", cda0: float = 80.0, asr0: float = 10.0,
              **config: Any) -> Path:
    """Write a run file the way the engine's recorder would, without training. The
    document is built by a recorder of its own (which never replaces a run file) and then
    saved over `root/run_id/run.json` in one atomic write, as a live run updates its file."""
    store = RunStore(root)
    cfg = RunConfig(**{"dataset": "mnist", "epochs": epochs, **config})
    scratch = tempfile.TemporaryDirectory(prefix="sltui-write-run-")
    recorder = RunStore(scratch.name).recorder()
    recorder(RunStarted(run_id=run_id, config=cfg.to_dict(), env={"python": "3"}, total_epochs=epochs,
                        samples_per_epoch=1000))
    for e in range(1, epochs + 1):
        recorder(epoch_metrics(run_id, e, cda=cda0 + 5 * e, asr=asr0 + 20 * e))
    if status != "running":
        last = recorder.doc["epochs"][-1] if recorder.doc["epochs"] else None
        recorder(RunFinished(run_id=run_id, status=status, final=last, best=last))
    doc = recorder.doc
    doc["created"] = created
    doc["pid"] = None
    store.save(doc)
    scratch.cleanup()
    return store.path(run_id)


def prefilled_queue(run_id: str, epochs: int, total: int, *, phase: bool = False,
                    finished: bool = False) -> "queue.Queue[Any]":
    q: "queue.Queue[Any]" = queue.Queue()
    cfg = RunConfig(dataset="synthetic", epochs=total, attack="autoencoder" if phase else "none")
    q.put(RunStarted(run_id=run_id, config=cfg.to_dict(), env={}, total_epochs=total, samples_per_epoch=500))
    if phase:
        q.put(PhaseProgress(run_id=run_id, phase="phase3-autoencoder", epoch=4, epochs=10, loss=0.0123))
    for e in range(1, epochs + 1):
        q.put(epoch_metrics(run_id, e, cda=50.0 + 10 * e, asr=5.0 * e))
    if finished:
        q.put(RunFinished(run_id=run_id, status="completed", final=None, best=None))
    return q


class IdleThread(threading.Thread):
    """A stand-in for a run thread that ends as soon as its stop event is set."""

    def __init__(self, stop: threading.Event) -> None:
        super().__init__(daemon=True)
        self.stop = stop

    def run(self) -> None:
        self.stop.wait(30)


def screen_lines(app) -> list[str]:
    """The text of the app's screen as a user sees it, one string per terminal line."""
    return [strip.text for strip in app.screen._compositor.render_strips()]


EXAMPLE_RUNS = Path(__file__).resolve().parent.parent / "examples" / "runs"
