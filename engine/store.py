"""Run files: ``<runs>/<id>/run.json``, rewritten atomically after every event.

A reader never crashes on a bad file: it reports it as unreadable and goes on.
Nothing here unpickles anything.
"""
from __future__ import annotations

import datetime as _dt
import json
import os
import secrets
import socket
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

from .config import attack_start_epoch
from .files import read_json
from .events import (DefenseScores, EpochMetrics, Event, PhaseProgress, Reaction, RunFailed, RunFinished, RunStarted,
                     WeightsReady)

SCHEMA = 1
RUN_FILE = "run.json"
WEIGHTS_FILE = "model.pt"
STATUSES = ("running", "completed", "failed", "cancelled", "interrupted")


class RunNotFound(LookupError):
    pass


class RunUnreadable(ValueError):
    pass


class RunIdTaken(FileExistsError):
    """A new run's id names a folder that already holds a run."""


def new_run_id(cfg: Any) -> str:
    """`<date>-<time>-<dataset>-<model>-c<cut>-k<K>-<attack>-<4 hex>` for a RunConfig."""
    stamp = _dt.datetime.now().strftime("%Y%m%d-%H%M%S")
    return f"{stamp}-{cfg.dataset}-{cfg.model}-c{cfg.cut}-k{cfg.clients}-{cfg.attack}-{secrets.token_hex(2)}"


def now_iso() -> str:
    return _dt.datetime.now(_dt.timezone.utc).astimezone().isoformat(timespec="seconds")


def write_json_atomic(path: Path, data: dict[str, Any], exclusive: bool = False) -> None:
    """Write JSON to a temp file beside `path`, then rename it over `path`. `exclusive`:
    only if there is no `path` yet (FileExistsError otherwise): the file appears whole,
    by a hard link, and never replaces another writer's."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=".run-", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as fh:
            json.dump(data, fh, indent=1, allow_nan=True)
            fh.flush()
            os.fsync(fh.fileno())
        if exclusive:
            _link_new(tmp, path)
        else:
            os.replace(tmp, path)
    except BaseException:
        try:
            os.unlink(tmp)
        except FileNotFoundError:
            pass
        raise


def _link_new(tmp: str, path: Path) -> None:
    """Give the finished temp file `tmp` the name `path` only if nothing has that name
    (FileExistsError otherwise): a hard link, or where the file system has none, an
    exclusive create of the name and then the rename over it."""
    try:
        os.link(tmp, path)
    except FileExistsError:
        raise
    except OSError:
        os.close(os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o644))
        os.replace(tmp, path)
        return
    os.unlink(tmp)


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    # A killed process that its parent has not reaped yet is a zombie: it is gone.
    try:
        with open(f"/proc/{pid}/stat") as fh:
            return fh.read().rsplit(")", 1)[1].split()[0] != "Z"
    except (OSError, IndexError):
        return True


def effective_status(doc: dict[str, Any]) -> str:
    """`running` in a file whose writer process is gone on this host reads `interrupted`."""
    status = doc.get("status", "unknown")
    if status == "running":
        pid, host = doc.get("pid"), doc.get("host")
        if isinstance(pid, int) and host == socket.gethostname() and not _pid_alive(pid):
            return "interrupted"
    return status


def _remove_dead_writer_temps(folder: Path) -> None:
    """A writer killed in the middle of write_json_atomic leaves its temp file behind (the
    run file itself is whole: the rename never happened). Once that writer is known to
    be gone, the temp files are litter."""
    for tmp in folder.glob(".run-*.tmp"):
        try:
            tmp.unlink()
        except OSError:
            pass


@dataclass(frozen=True)
class RunEntry:
    """One folder under the runs dir: its parsed document, or why it could not be read."""
    run_id: str
    path: Path
    doc: dict[str, Any] | None
    error: str | None = None

    @property
    def readable(self) -> bool:
        return self.doc is not None

    @property
    def status(self) -> str:
        return effective_status(self.doc) if self.doc is not None else "unreadable"


def read_run_file(path: Path) -> dict[str, Any]:
    """A run file's document; RunNotFound if there is none, RunUnreadable (one line
    naming the file) if it is not UTF-8 JSON of a run."""
    doc = read_json(path, "run file", RunUnreadable, RunNotFound)
    if not isinstance(doc, dict) or "id" not in doc or not isinstance(doc.get("config"), dict):
        raise RunUnreadable(f"{path}: not an sltui run file")
    epochs = doc.get("epochs", [])
    if not isinstance(epochs, list) or not all(isinstance(e, dict) for e in epochs):
        raise RunUnreadable(f"{path}: 'epochs' is not a list of metric objects")
    for key in ("final", "best", "env", "phases"):
        if doc.get(key) is not None and not isinstance(doc[key], dict):
            raise RunUnreadable(f"{path}: {key!r} is not an object")
    return doc


def save_weights(path: Path, state: dict[str, Any]) -> None:
    import torch

    tmp = path.with_suffix(".tmp")
    torch.save(state, tmp)
    os.replace(tmp, path)


def load_weights(path: Path) -> dict[str, Any]:
    """State dicts of tensors only: never unpickles arbitrary objects."""
    import torch

    try:
        return torch.load(path, map_location="cpu", weights_only=True)
    except FileNotFoundError:
        raise RunNotFound(str(path)) from None
    except Exception as exc:
        raise RunUnreadable(f"{path}: not a weights file ({type(exc).__name__})") from None


class RunStore:
    def __init__(self, root: str | os.PathLike[str]) -> None:
        self.root = Path(root)

    def path(self, run_id: str) -> Path:
        return self.root / run_id / RUN_FILE

    def exists(self, run_id: str) -> bool:
        return self.path(run_id).exists()

    def save(self, doc: dict[str, Any], create: bool = False) -> None:
        """Write a run's file; `create`: its first write, which never replaces another
        run's file of the same id (RunIdTaken)."""
        doc["updated"] = now_iso()
        try:
            write_json_atomic(self.path(doc["id"]), doc, exclusive=create)
        except FileExistsError:
            raise RunIdTaken(f"{self.path(doc['id'])} already holds another run") from None

    def reserve(self, make_id: Callable[[int], str], attempts: int = 50) -> str:
        """A new run id whose folder this call created (so no other run can have it):
        `make_id(0)`, else `make_id(1)`, ... while their folders exist. An OSError when
        the runs folder cannot be made."""
        self.root.mkdir(parents=True, exist_ok=True)
        for attempt in range(attempts):
            run_id = make_id(attempt)
            try:
                (self.root / run_id).mkdir()
            except FileExistsError:
                continue
            return run_id
        raise RunIdTaken(f"no free run id under {self.root} after {attempts} tries")

    def release(self, run_id: str) -> None:
        """Remove a reserved run folder that never received a run file (the run did not start)."""
        try:
            (self.root / run_id).rmdir()
        except OSError:
            pass

    def load(self, run_id: str) -> dict[str, Any]:
        if not run_id or "/" in run_id or run_id.startswith("."):
            raise RunNotFound(run_id)
        doc = read_run_file(self.path(run_id))
        doc["status"] = effective_status(doc)
        return doc

    def entries(self) -> list[RunEntry]:
        """Every run folder, newest first; unreadable ones included, marked so."""
        if not self.root.is_dir():
            return []
        out = []
        for folder in self.root.iterdir():
            if not folder.is_dir() or folder.name.startswith("."):
                continue
            file = folder / RUN_FILE
            if not file.exists():
                continue
            try:
                entry = RunEntry(folder.name, file, read_run_file(file))
            except (RunUnreadable, RunNotFound) as exc:
                entry = RunEntry(folder.name, file, None, str(exc))
            if entry.status == "interrupted":
                _remove_dead_writer_temps(folder)
            out.append(entry)
        out.sort(key=lambda e: ((e.doc or {}).get("created", ""), e.run_id), reverse=True)
        return out

    def weights_path(self, run_id: str) -> Path:
        return self.root / run_id / WEIGHTS_FILE

    def recorder(self) -> "RunRecorder":
        return RunRecorder(self)


def new_document(started: RunStarted) -> dict[str, Any]:
    return {
        "schema": SCHEMA,
        "id": started.run_id,
        "created": now_iso(),
        "updated": now_iso(),
        "status": "running",
        "host": socket.gethostname(),
        "pid": os.getpid(),
        "config": started.config,
        "config_resolved": started.config_resolved,
        # The first epoch of a malicious server (None: honest throughout), docs/protocol.md section 11.
        "attack_start_epoch": attack_start_epoch(started.config) if isinstance(started.config, dict) else None,
        "env": started.env,
        "total_epochs": started.total_epochs,
        "samples_per_epoch": started.samples_per_epoch,
        "phases": {},
        "epochs": [],
        "final": None,
        "best": None,
        "stopped_early": False,
        "attack_info": {},
        "defenses": {},
        # With --on-flag stop, once a detector flagged: the local models (section 12).
        "reaction": None,
        "weights": None,
        "source_run": started.source_run,
        "error": None,
    }


class RunRecorder:
    """An `emit` sink: keeps one run's document and rewrites its file on every event."""

    def __init__(self, store: RunStore) -> None:
        self.store = store
        self.doc: dict[str, Any] | None = None

    def __call__(self, event: Event) -> None:
        if isinstance(event, RunStarted):
            self.doc = new_document(event)
            self.store.save(self.doc, create=True)
            return
        if self.doc is None:
            return
        if isinstance(event, PhaseProgress):
            phase = self.doc["phases"].setdefault(event.phase, {"history": []})
            phase["epochs"] = event.epochs
            # Each entry keeps the epoch's own results (losses, diagnostics) and how many
            # training epochs had run, so a viewer knows whether the phase is the latest news.
            phase["history"].append({"epoch": event.epoch, "loss": event.loss, **event.info,
                                     "after_epoch": len(self.doc["epochs"])})
            phase.update(event.info)
        elif isinstance(event, DefenseScores):
            record_defenses(self.doc.setdefault("defenses", {}), event)
        elif isinstance(event, Reaction):
            self.doc["reaction"] = event.record()
        elif isinstance(event, EpochMetrics):
            self.doc["epochs"].append({k: v for k, v in event.to_dict().items() if k != "run_id"})
        elif isinstance(event, RunFinished):
            self.doc.update(status=event.status, final=event.final, best=event.best,
                            stopped_early=event.stopped_early, attack_info=event.attack_info)
        elif isinstance(event, RunFailed):
            self.doc.update(status="failed", error=event.error)
        elif isinstance(event, WeightsReady):
            save_weights(self.store.root / self.doc["id"] / WEIGHTS_FILE, event.state)
            self.doc["weights"] = WEIGHTS_FILE
        self.store.save(self.doc)


def record_defenses(defenses: dict[str, Any], event: DefenseScores) -> None:
    """Fold one epoch's detector report into the run file's ``defenses``: per detector,
    ``scores`` (one list of per-client scores per epoch), ``flagged_at`` and its counts,
    and with ``defense_trace`` a ``trace`` (one list of per-client traces per epoch)."""
    for name, report in event.defenses.items():
        entry = defenses.setdefault(name, {"scores": [], "flagged_at": None})
        entry["scores"].append(report.get("scores", []))
        if "trace" in report:
            entry.setdefault("trace", []).append(report["trace"])
        entry.update({k: v for k, v in report.items() if k not in ("scores", "trace")})


def fanout(*sinks):
    """One emit function that calls each sink in turn."""
    def emit(event: Event) -> None:
        for sink in sinks:
            sink(event)
    return emit


def summary_row(entry: RunEntry) -> dict[str, Any]:
    """A flat row for tables: config highlights and headline metrics."""
    if entry.doc is None:
        return {"id": entry.run_id, "status": "unreadable", "error": entry.error}
    doc, cfg = entry.doc, entry.doc.get("config", {})
    final, best = doc.get("final") or {}, doc.get("best") or {}
    epochs = doc.get("epochs") or []
    last = epochs[-1] if epochs else {}
    return {
        "id": entry.run_id,
        "status": entry.status,
        "created": doc.get("created"),
        "dataset": cfg.get("dataset"),
        "model": cfg.get("model"),
        "cut": cfg.get("cut"),
        "clients": cfg.get("clients"),
        "attack": "transfer" if doc.get("source_run") else cfg.get("attack"),
        "alpha": cfg.get("alpha") if cfg.get("attack") == "surrogate" else None,
        # Runs from before trigger kinds existed used the patch.
        "trigger": cfg.get("trigger", "patch") if cfg.get("attack") not in (None, "none") and not doc.get("source_run") else None,
        "seed": cfg.get("seed"),
        "epochs": len(epochs),
        "cda": final.get("cda", last.get("cda")),
        "asr": final.get("asr", last.get("asr")),
        "best_cda": best.get("cda"),
        "best_asr": best.get("asr"),
        "seconds": round(sum(e.get("seconds", 0.0) for e in epochs), 1),
        "detected": detected(doc),
    }


def detected(doc: dict[str, Any]) -> list[str] | None:
    """`NAME@EPOCH` for each detector of the run that flagged a malicious server (a
    detection), `NAME@EPOCH!` for a flag on an honest one (a false accusation,
    docs/protocol.md section 11), ["none"] if it ran detectors that never flagged, None if
    it ran none."""
    from .sweeps.verdicts import run_verdicts

    verdicts = run_verdicts(doc)
    if not verdicts:
        return None
    flags = [f"{name}@{v.flag_epoch}" + ("!" if v.verdict == "false_accusation" else "")
             for name, v in verdicts.items() if v.flag_epoch is not None]
    return flags or ["none"]
