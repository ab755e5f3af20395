"""Deleting runs without losing them: a deleted run's folder moves to `<runs>/.trash/`, and
`restore` moves it back. The index and every listing skip folders whose name starts with
a dot, so a run in the trash is out of sight but whole. Emptying the trash is left to the
user (`rm -r runs/.trash`)."""
from __future__ import annotations

import os
from pathlib import Path

from engine.store import RUN_FILE, RunNotFound, RunStore, RunUnreadable

TRASH_DIR = ".trash"


def _valid(run_id: str) -> bool:
    return bool(run_id) and "/" not in run_id and not run_id.startswith(".")


def trash_path(store: RunStore, run_id: str) -> Path:
    return store.root / TRASH_DIR / run_id


class RunBusy(RuntimeError):
    """The run is still being written: moving its folder would only make its writer
    create it again at its next epoch."""


def delete_run(store: RunStore, run_id: str) -> Path:
    """Move run `run_id`'s folder into the trash; returns where it now is. RunNotFound if
    there is no such run; RunBusy if its writer is still running; FileExistsError if the
    trash already holds a run of that id."""
    if not _valid(run_id) or not (store.root / run_id / RUN_FILE).exists():
        raise RunNotFound(run_id)
    try:
        status = store.load(run_id).get("status")
    except RunUnreadable:
        status = "unreadable"      # a spoilt file can go to the trash too
    if status == "running":
        raise RunBusy(f"run {run_id!r} is still running: cancel it first")
    target = trash_path(store, run_id)
    if target.exists():
        raise FileExistsError(f"{target} already exists: restore or remove it first")
    target.parent.mkdir(parents=True, exist_ok=True)
    os.rename(store.root / run_id, target)
    return target


def restore_run(store: RunStore, run_id: str) -> Path:
    """Move run `run_id` back from the trash; returns its folder. RunNotFound if the trash
    has no such run; FileExistsError if a run of that id exists again."""
    source = trash_path(store, run_id)
    if not _valid(run_id) or not source.is_dir():
        raise RunNotFound(run_id)
    target = store.root / run_id
    if target.exists():
        raise FileExistsError(f"{target} already exists")
    os.rename(source, target)
    return target


def trashed(store: RunStore) -> list[str]:
    """The ids of the runs in the trash."""
    folder = store.root / TRASH_DIR
    return sorted(p.name for p in folder.iterdir() if p.is_dir()) if folder.is_dir() else []
