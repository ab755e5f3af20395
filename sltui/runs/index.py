"""An index of run summaries beside the run files, so thousands of runs list in a moment.

`<runs>/.index.sqlite` (the standard library's sqlite3, WAL mode) keeps one row per run
folder: the run file's size and mtime, and a *summary* of the run: the run file without
its per-epoch lists and diagnostics (summarize), its table row
(engine.store.summary_row, computed from the whole file) and its tags and note
(sltui.runs.annotations). A refresh stats every run file and re-reads only those whose size
or mtime changed since they were indexed, newest first, as many as a time budget allows.

The run files stay the truth: deleting the index loses nothing. An index that cannot be
read (corrupt, another version) is rebuilt; one that cannot be written (a read-only runs
folder, a locked database) is left alone and the summaries are kept in memory only.
Nothing here holds a run's epochs: the screens that draw them read the run file itself
(RunStore.load). Pure Python, no Textual.
"""
from __future__ import annotations

import json
import os
import re
import sqlite3
import time
from collections import Counter
from pathlib import Path
from typing import Any, Iterable

from engine.store import (RUN_FILE, RunEntry, RunNotFound, RunStore, RunUnreadable, _remove_dead_writer_temps,
                          read_run_file, summary_row)
from engine.sweeps.verdicts import asr_curve

from .annotations import ANNOTATIONS_FILE, read_annotations
from ..format import fmt_setting, fmt_verdicts

INDEX_FILE = ".index.sqlite"
# Bumped whenever what a summary holds changes: an index of another version is rebuilt.
INDEX_VERSION = "4"
ROW_KEY = "_row"          # the summary's table row (summary_row of the whole file)
Stamp = tuple[int, int, int, int]   # run file (mtime_ns, size), annotations (mtime_ns, size)


# What a summary leaves out of a run file: what grows with its epochs, and what no listing
# reads (the environment, the attack's and its phases' diagnostics). RunStore.load has it all.
LEFT_OUT = ("epochs", "phases", "env", "attack_info")


def summarize(doc: dict[str, Any], entry: RunEntry) -> dict[str, Any]:
    """A run file without LEFT_OUT and without each detector's per-epoch `scores` and
    `trace`; the rest stays (config, status, final, best, each detector's flag), with the
    number of epochs it trained (`epochs_run`) and its ASR per epoch (`asr_curve`), which
    verdicts need, and the table row of the whole file under ROW_KEY."""
    slim = {k: v for k, v in doc.items() if k not in LEFT_OUT}
    epochs = doc.get("epochs")
    slim["epochs_run"] = len(epochs) if isinstance(epochs, list) else 0
    slim["asr_curve"] = asr_curve(doc)  # the arena's verdicts need when the backdoor went live
    defenses = doc.get("defenses")
    if isinstance(defenses, dict):
        slim["defenses"] = {name: {k: v for k, v in d.items() if k not in ("scores", "trace")}
                            if isinstance(d, dict) else d for name, d in defenses.items()}
    slim[ROW_KEY] = summary_row(entry)
    return slim


def _stamp(folder: Path) -> Stamp | None:
    try:
        st = os.stat(folder / RUN_FILE)
    except OSError:
        return None
    try:
        note = os.stat(folder / ANNOTATIONS_FILE)
        extra = (note.st_mtime_ns, note.st_size)
    except OSError:
        extra = (0, -1)
    return (st.st_mtime_ns, st.st_size, *extra)


class RunIndex:
    """The runs under `root` as RunEntry objects whose `doc` is the run's summary
    (summarize), kept current by `refresh` and persisted in `root`/INDEX_FILE."""

    def __init__(self, root: str | os.PathLike[str], persist: bool = True) -> None:
        self.store = RunStore(root)
        self._entries: dict[str, tuple[Stamp, RunEntry]] = {}
        self._cleaned: set[str] = set()
        self.pending = 0               # changed run files left for the next refresh
        self.version = 0               # goes up whenever a refresh changes what entries() returns
        self.db: sqlite3.Connection | None = None
        self.persistent = False        # whether summaries are being kept in INDEX_FILE
        if persist:
            self._open()

    @property
    def root(self) -> Path:
        return self.store.root

    @property
    def path(self) -> Path:
        return self.root / INDEX_FILE

    # ---- the database ----------------------------------------------------------
    def _open(self) -> None:
        """Open (or create) the index and load its summaries; rebuild it if unreadable;
        go on without it if it cannot be written."""
        if not self.root.is_dir():
            return
        for attempt in (1, 2):
            try:
                db = sqlite3.connect(self.path, timeout=2.0, isolation_level=None, check_same_thread=False)
                db.execute("PRAGMA journal_mode=WAL")
                db.execute("CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT)")
                version = db.execute("SELECT value FROM meta WHERE key='version'").fetchone()
                if version is None or version[0] != INDEX_VERSION:
                    db.execute("DROP TABLE IF EXISTS runs")
                    db.execute("INSERT OR REPLACE INTO meta VALUES ('version', ?)", (INDEX_VERSION,))
                db.execute("CREATE TABLE IF NOT EXISTS runs (id TEXT PRIMARY KEY, stamp TEXT, error TEXT, summary TEXT)")
                rows = db.execute("SELECT id, stamp, error, summary FROM runs").fetchall()
            except sqlite3.DatabaseError:
                try:
                    db.close()  # type: ignore[possibly-undefined]
                except Exception:  # noqa: BLE001
                    pass
                if attempt == 1 and self._remove_index():
                    continue     # corrupt or foreign: start a new one
                return           # cannot be opened here (read-only folder): memory only
            break
        self.db, self.persistent = db, True
        for run_id, stamp, error, summary in rows:
            try:
                doc = json.loads(summary) if summary else None
                entry = RunEntry(run_id, self.store.path(run_id), doc, error)
                self._entries[run_id] = (tuple(json.loads(stamp)), entry)  # type: ignore[arg-type]
            except (ValueError, TypeError):
                continue         # an unreadable row is re-read from its file

    def _remove_index(self) -> bool:
        removed = False
        for suffix in ("", "-wal", "-shm"):
            try:
                os.unlink(str(self.path) + suffix)
                removed = True
            except FileNotFoundError:
                pass
            except OSError:
                return False
        return removed

    def _persist(self, upserts: list[tuple[str, Stamp, RunEntry]], deletes: Iterable[str]) -> None:
        if self.db is None:
            return
        try:
            with self.db:
                self.db.execute("BEGIN")
                self.db.executemany("DELETE FROM runs WHERE id=?", [(i,) for i in deletes])
                self.db.executemany(
                    "INSERT OR REPLACE INTO runs VALUES (?, ?, ?, ?)",
                    [(run_id, json.dumps(stamp), entry.error,
                      json.dumps(entry.doc, allow_nan=True) if entry.doc is not None else None)
                     for run_id, stamp, entry in upserts])
        except sqlite3.Error:
            # Locked by another writer for too long, read-only, disk full: the summaries
            # stay in memory; the next process re-reads what this one could not store.
            try:
                self.db.close()
            except sqlite3.Error:
                pass
            self.db, self.persistent = None, False

    def close(self) -> None:
        if self.db is not None:
            self.db.close()
            self.db = None

    # ---- keeping it current ------------------------------------------------------
    def refresh(self, budget_s: float | None = None) -> int:
        """Re-read every run file added or changed since the last refresh (newest first,
        until `budget_s` seconds have passed, if given) and forget removed ones. Returns how
        many changed files are left for the next call (0: the index is current)."""
        start = time.monotonic()
        stamps: dict[str, Stamp] = {}
        try:
            folders = [e for e in os.scandir(self.root) if not e.name.startswith(".") and e.is_dir()]
        except OSError:
            folders = []
        for folder in folders:
            stamp = _stamp(Path(folder.path))
            if stamp is not None:
                stamps[folder.name] = stamp
        gone = [run_id for run_id in self._entries if run_id not in stamps]
        for run_id in gone:
            del self._entries[run_id]
        changed = sorted((run_id for run_id, stamp in stamps.items()
                          if run_id not in self._entries or self._entries[run_id][0] != stamp), reverse=True)
        upserts = []
        for n, run_id in enumerate(changed):
            if budget_s is not None and n and time.monotonic() - start > budget_s:
                break
            entry = self._read(run_id)
            self._entries[run_id] = (stamps[run_id], entry)
            upserts.append((run_id, stamps[run_id], entry))
        self.pending = len(changed) - len(upserts)
        if upserts or gone:
            self.version += 1
            self._persist(upserts, gone)
        return self.pending

    def _read(self, run_id: str) -> RunEntry:
        path = self.store.path(run_id)
        try:
            doc = read_run_file(path)
        except (RunUnreadable, RunNotFound) as exc:
            return RunEntry(run_id, path, None, str(exc))
        except Exception as exc:  # noqa: BLE001 - a reader never crashes on a bad file
            return RunEntry(run_id, path, None, f"{path}: {exc}")
        full = RunEntry(run_id, path, doc)
        slim = summarize(doc, full)
        slim.update(read_annotations(path.parent))
        return RunEntry(run_id, path, slim)

    # ---- reading -----------------------------------------------------------------
    def entries(self) -> list[RunEntry]:
        """The runs indexed so far (unreadable ones included), newest first. A run whose
        writer is gone reads `interrupted`; its writer's leftover temp files are removed."""
        entries = [e for _, e in self._entries.values()]
        for entry in entries:
            if entry.run_id not in self._cleaned and entry.doc is not None and entry.status == "interrupted":
                _remove_dead_writer_temps(entry.path.parent)
                self._cleaned.add(entry.run_id)
        entries.sort(key=lambda e: (str((e.doc or {}).get("created", "")), e.run_id), reverse=True)
        return entries

    def scan(self) -> list[RunEntry]:
        """refresh() to the end, then entries()."""
        self.refresh()
        return self.entries()

    def get(self, run_id: str) -> RunEntry | None:
        item = self._entries.get(run_id)
        return item[1] if item else None


def run_row(entry: RunEntry) -> dict[str, Any]:
    """A run's row for tables and filters: engine.store.summary_row of its whole file (from
    the index), its status now, its name (the config's free label), tags and note, its
    setting in words and its detectors' verdicts (sltui.format.fmt_setting, fmt_verdicts)."""
    doc = entry.doc
    if doc is None or ROW_KEY not in doc:
        row = summary_row(entry)
    else:
        row = dict(doc[ROW_KEY])
        row["status"] = entry.status
    row["tags"] = list((doc or {}).get("tags") or [])
    row["note"] = (doc or {}).get("note")
    config = (doc or {}).get("config")
    row["name"] = (config.get("name") or None) if isinstance(config, dict) else None
    row["setting"] = fmt_setting(row) if doc is not None else None
    row["detectors"] = fmt_verdicts(doc) if doc is not None else None
    return row


def used_config(config: dict[str, Any]) -> dict[str, Any]:
    """A run's config without the options of the attacks, trigger kinds and detectors it did
    not use (a hijack run's alpha): what `runs show` and the run screen list. The options
    engine.sweeps.grid.experiment_fields leaves out as unused, in the config's order."""
    from engine.sweeps.grid import NOT_EXPERIMENT, experiment_fields

    kept = set(experiment_fields(config)) | set(NOT_EXPERIMENT)
    return {k: v for k, v in config.items() if k in kept}


# ---- short ids -------------------------------------------------------------------
# The fewest characters a short id has: a generated id's random part; and how many more it
# takes so as not to start inside a word.
SHORT_ID_MIN = 4
SHORT_ID_WORD_EXTRA = 4
# `<date>-<time>-<setting>-<4 hex>`, as engine.store.new_run_id writes them.
_GENERATED = re.compile(r"^(\d{8}-\d{6})-.+-([0-9a-f]{4})$")


def compact_id(run_id: str) -> str:
    """A generated id without its setting (`20261124-133627-8eac`: the setting has columns
    of its own); any other id as it is."""
    m = _GENERATED.match(run_id)
    return f"{m.group(1)}-{m.group(2)}" if m else run_id


def _tails(run_id: str, n: int) -> set[str]:
    return {run_id[-n:], compact_id(run_id)[-n:]}


def short_run_ids(ids: Iterable[str]) -> dict[str, str]:
    """The short id of each run: the fewest last characters (SHORT_ID_MIN or more) of its id
    that no other id ends with, so `8eac` for a generated id (its random part), a few more
    only for the ids that need them, never starting inside a short word (_to_part). Where two ids differ only in their date or time, the
    tail of their compact_id (`7-8eac`) where that is shorter. Every command that takes a
    run id takes its short id (resolve_run_id); an id that is the end of another stays whole."""
    ids = list(dict.fromkeys(ids))
    out: dict[str, str] = {}
    left = ids
    n = SHORT_ID_MIN
    while left:
        counts: Counter = Counter()
        for run_id in ids:
            counts.update(_tails(run_id, n))
        still = []
        for run_id in left:
            whole = run_id[-n:]
            if counts[whole] == 1 and len(whole) == n:
                out[run_id] = _to_part(run_id, n)
            elif counts[compact_id(run_id)[-n:]] == 1 and len(compact_id(run_id)) >= n:
                out[run_id] = _to_part(compact_id(run_id), n)
            elif n >= len(run_id):
                out[run_id] = run_id
            else:
                still.append(run_id)
        left, n = still, n + 1
    return out


def _to_part(text: str, n: int) -> str:
    """`text`'s last `n` characters, or more up to the start of the `-`-separated part they
    begin in where that adds SHORT_ID_WORD_EXTRA characters at most (`broken`, not `oken`;
    `none-8eac`, not `ne-8eac`). A longer end of one id is still the end of no other."""
    start = len(text) - n
    part = text.rfind("-", 0, start) + 1 if start > 0 and text[start - 1] != "-" else start
    return text[part:] if start - part <= SHORT_ID_WORD_EXTRA else text[start:]


class AmbiguousRunId(ValueError):
    """A short id that more than one run ends with; the message lists them."""


def run_ids(root: str | os.PathLike[str]) -> list[str]:
    """The ids of the runs under `root`: the folders that hold a run file (as the index
    lists them), trash and index left out."""
    try:
        folders = [e.name for e in os.scandir(root) if not e.name.startswith(".") and e.is_dir()]
    except OSError:
        return []
    return sorted(name for name in folders if os.path.isfile(os.path.join(root, name, RUN_FILE)))


def resolve_run_id(ids: Iterable[str], text: str) -> str:
    """The run `text` names among `ids`: the id itself, else the one run whose id (or
    compact_id) ends with it, as the short ids of short_run_ids do. RunNotFound where none
    does; AmbiguousRunId, naming them, where several do."""
    ids = list(ids)
    if text in ids:
        return text
    found = [run_id for run_id in ids if text and (run_id.endswith(text) or compact_id(run_id).endswith(text))]
    if len(found) == 1:
        return found[0]
    if not found:
        raise RunNotFound(text)
    shown = ", ".join(found[:5]) + (f" and {len(found) - 5} more" if len(found) > 5 else "")
    raise AmbiguousRunId(f"{text!r} is the end of {len(found)} run ids ({shown}); give more of the id")
