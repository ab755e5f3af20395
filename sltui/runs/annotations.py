"""A run's tags and note: a small file beside its run file, `<runs>/<id>/notes.json`.

Why a sidecar and not the run file: a running run's recorder rewrites run.json whole after
every epoch from the document it keeps in memory, so anything another process wrote into
run.json would be lost at the next epoch. The sidecar has one writer at a time (an
exclusive lock on `<id>/.notes.lock` around each read-modify-write) and is replaced
atomically; readers (sltui.runs.index) merge it into the run's summary. Deleting it loses
the tags and the note, nothing else.
"""
from __future__ import annotations

import contextlib
import fcntl
import json
from pathlib import Path
from typing import Any, Iterable, Iterator

from engine.store import RunNotFound, RunStore, write_json_atomic

ANNOTATIONS_FILE = "notes.json"
LOCK_FILE = ".notes.lock"


def read_annotations(folder: Path) -> dict[str, Any]:
    """{"tags": [...], "note": text or None} from a run folder; {} when it has none (or an
    unreadable one: tags are a convenience, never a reason to fail)."""
    try:
        data = json.loads((folder / ANNOTATIONS_FILE).read_text())
    except (OSError, ValueError):
        return {}
    if not isinstance(data, dict):
        return {}
    tags = data.get("tags")
    tags = [str(t) for t in tags] if isinstance(tags, list) else []
    note = data.get("note")
    return {"tags": tags, "note": note if isinstance(note, str) and note else None}


@contextlib.contextmanager
def _locked(folder: Path) -> Iterator[None]:
    with open(folder / LOCK_FILE, "a") as fh:
        fcntl.flock(fh, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(fh, fcntl.LOCK_UN)


def _update(store: RunStore, run_id: str, change) -> dict[str, Any]:
    folder = store.path(run_id).parent
    if not run_id or "/" in run_id or run_id.startswith(".") or not store.path(run_id).is_file():
        raise RunNotFound(run_id)
    with _locked(folder):
        data = {"tags": [], "note": None, **read_annotations(folder)}
        change(data)
        write_json_atomic(folder / ANNOTATIONS_FILE, data)
    return data


def clean_tag(tag: str) -> str:
    """A tag as stored: lower case, no spaces (so `tag:NAME` in a filter can name it)."""
    tag = str(tag).strip().lower()
    if not tag or any(c.isspace() for c in tag) or ":" in tag:
        raise ValueError(f"a tag is one word without ':' (got {tag!r})")
    return tag


def add_tags(store: RunStore, run_id: str, tags: Iterable[str]) -> list[str]:
    """Add `tags` to run `run_id` (each once); returns its tags."""
    new = [clean_tag(t) for t in tags]
    return _update(store, run_id, lambda d: d.update(tags=list(dict.fromkeys([*d["tags"], *new]))))["tags"]


def remove_tags(store: RunStore, run_id: str, tags: Iterable[str]) -> list[str]:
    """Take `tags` off run `run_id`; returns its tags."""
    gone = {clean_tag(t) for t in tags}
    return _update(store, run_id, lambda d: d.update(tags=[t for t in d["tags"] if t not in gone]))["tags"]


def set_note(store: RunStore, run_id: str, text: str) -> str | None:
    """Set (or with '' clear) run `run_id`'s note; returns it."""
    return _update(store, run_id, lambda d: d.update(note=text.strip() or None))["note"]

