"""The explorer's data side: the run index, the filter language, tags and notes beside a
run that is still being written, the trash, the notebook API, the CLI commands over them."""
from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import threading
from pathlib import Path

import pytest

from engine.store import RunStore
from sltui.runs.annotations import ANNOTATIONS_FILE, add_tags, read_annotations, remove_tags, set_note
from sltui.runs.query import QueryError, parse_query
from sltui.runs.index import INDEX_FILE, RunIndex, run_row
from sltui.runs.trash import TRASH_DIR, RunBusy, delete_run, restore_run

from tests.test_cli import sltui  # noqa: F401 - the fixture
from tui_helpers import EXAMPLE_RUNS, epoch_metrics, write_run

ROOT = Path(__file__).resolve().parent.parent


def rows_by_id(index: RunIndex) -> dict[str, dict]:
    return {e.run_id: run_row(e) for e in index.scan()}


# ---- the run index ------------------------------------------------------------------
def test_index_summaries_match_the_run_files_and_hold_no_epochs(tmp_path):
    write_run(tmp_path, "a", cut=2, attack="surrogate", alpha=0.2, epochs=4)
    index = RunIndex(tmp_path)
    entry = index.scan()[0]
    assert "epochs" not in entry.doc and entry.doc["config"]["cut"] == 2
    row = run_row(entry)
    assert row["epochs"] == 4 and row["cda"] == 100.0 and row["setting"] == "mnist lenet c2 K1 surrogate α=0.2"
    assert (tmp_path / INDEX_FILE).is_file()
    # A second index (another process) reads the summaries from the file, not the runs.
    again = RunIndex(tmp_path)
    assert again.get("a") is not None and again.refresh() == 0 and again.version == 0


def test_index_rereads_a_changed_file_and_forgets_a_removed_one(tmp_path):
    write_run(tmp_path, "a", epochs=2)
    write_run(tmp_path, "b", epochs=2)
    index = RunIndex(tmp_path)
    assert rows_by_id(index)["a"]["epochs"] == 2
    write_run(tmp_path, "a", epochs=3)                      # rewritten: another size and mtime
    shutil.rmtree(tmp_path / "b")
    assert set(rows_by_id(RunIndex(tmp_path))) == {"a"}
    assert rows_by_id(RunIndex(tmp_path))["a"]["epochs"] == 3


def test_a_corrupt_index_is_rebuilt_and_deleting_it_loses_nothing(tmp_path):
    write_run(tmp_path, "a")
    before = rows_by_id(RunIndex(tmp_path))
    (tmp_path / INDEX_FILE).write_bytes(b"this is not a database" * 100)
    for suffix in ("-wal", "-shm"):
        Path(str(tmp_path / INDEX_FILE) + suffix).unlink(missing_ok=True)
    index = RunIndex(tmp_path)
    assert index.persistent and rows_by_id(index) == before
    (tmp_path / INDEX_FILE).unlink()
    assert rows_by_id(RunIndex(tmp_path)) == before


def test_an_index_that_cannot_be_written_is_not_fatal(tmp_path):
    """Where the index cannot be created (here its path is taken by a folder, as a read-only
    runs folder would refuse it), the runs are listed from the files, in memory."""
    write_run(tmp_path, "a")
    (tmp_path / INDEX_FILE).mkdir()
    index = RunIndex(tmp_path)
    assert not index.persistent and set(rows_by_id(index)) == {"a"}


def test_refresh_with_a_budget_reads_newest_first_and_leaves_the_rest(tmp_path):
    for n in range(6):
        write_run(tmp_path, f"2026010{n}-run")
    index = RunIndex(tmp_path, persist=False)
    assert index.refresh(budget_s=0.0) == 5                 # one file per call at least
    assert [e.run_id for e in index.entries()] == ["20260105-run"]
    while index.refresh(budget_s=0.0):
        pass
    assert len(index.entries()) == 6


def test_a_bad_run_file_is_an_unreadable_row(tmp_path):
    (tmp_path / "bad").mkdir()
    (tmp_path / "bad" / "run.json").write_text("{")
    assert rows_by_id(RunIndex(tmp_path))["bad"]["status"] == "unreadable"


# ---- the filter language --------------------------------------------------------------
ROW = {"id": "x-8eac", "status": "completed", "dataset": "mnist", "model": "lenet", "cut": 3, "clients": 3,
       "attack": "hijack", "alpha": None, "seed": 2, "cda": 91.5, "asr": 95.0, "tags": ["paper"],
       "setting": "mnist lenet c3 K3 hijack", "detectors": "SG@3", "note": "Long warm-up"}


@pytest.mark.parametrize("query,hit", [
    ("", True), ("attack=hijack", True), ("attack=HIJACK", True), ("attack=surrogate", False),
    ("cut>=2", True), ("cut>3", False), ("k=3", True), ("asr>90 cda<92", True), ("asr>=95.1", False),
    ("tag:paper", True), ("tag:other", False), ("alpha!=0.5", True), ("alpha=0.5", False),
    ("mnist c3", True), ("warm-up", True), ("8eac", True), ("sg@3", True), ("fmnist", False),
    ("status!=completed", False), ("seed=2 attack=hijack tag:paper", True),
])
def test_filter_terms(query, hit):
    assert parse_query(query).matches(ROW) is hit


@pytest.mark.parametrize("query,says", [
    ("cut>=", "needs a value"), ("colour=red", "unknown field"), ("asr>high", "compares numbers"),
    ("tag:", "needs a name"), (">3", "FIELD OP VALUE"), ("cut=>2", "one operator"),
])
def test_malformed_filters_say_what_is_wrong(query, says):
    with pytest.raises(QueryError, match=says):
        parse_query(query)


# ---- tags and notes beside a run being written ---------------------------------------------
def test_tags_and_note_are_written_and_read_back(tmp_path):
    write_run(tmp_path, "a")
    store = RunStore(tmp_path)
    assert add_tags(store, "a", ["Paper", "best"]) == ["paper", "best"]
    assert remove_tags(store, "a", ["best"]) == ["paper"]
    assert set_note(store, "a", " first try ") == "first try"
    assert read_annotations(tmp_path / "a") == {"tags": ["paper"], "note": "first try"}
    row = rows_by_id(RunIndex(tmp_path))["a"]
    assert row["tags"] == ["paper"] and row["note"] == "first try"
    assert parse_query("tag:paper").matches(row) and parse_query("first").matches(row)
    with pytest.raises(ValueError):
        add_tags(store, "a", ["two words"])


def test_tags_written_while_a_run_writes_its_epochs_lose_neither(tmp_path):
    """A recorder appends 40 epochs (rewriting run.json each time) while another thread tags
    and notes the run 40 times: the run file ends with every epoch, the tags with every tag."""
    from engine.config import RunConfig
    from engine.events import RunStarted

    store = RunStore(tmp_path)
    recorder = store.recorder()
    recorder(RunStarted(run_id="live", config=RunConfig(dataset="mnist").to_dict(), env={}, total_epochs=40,
                        samples_per_epoch=10))
    stop = threading.Event()

    def tagger() -> None:
        for n in range(40):
            add_tags(store, "live", [f"t{n}"])
            set_note(store, "live", f"note {n}")
        stop.set()

    thread = threading.Thread(target=tagger)
    thread.start()
    for epoch in range(1, 41):
        recorder(epoch_metrics("live", epoch))
    thread.join(30)
    assert stop.is_set()
    doc = store.load("live")
    assert [e["epoch"] for e in doc["epochs"]] == list(range(1, 41))
    notes = read_annotations(tmp_path / "live")
    assert notes["tags"] == [f"t{n}" for n in range(40)] and notes["note"] == "note 39"
    assert ANNOTATIONS_FILE not in json.dumps(doc)


# ---- the trash ------------------------------------------------------------------------
def test_delete_moves_a_run_to_the_trash_and_restore_brings_it_back(tmp_path):
    write_run(tmp_path, "a")
    write_run(tmp_path, "b")
    store = RunStore(tmp_path)
    index = RunIndex(tmp_path)
    assert set(rows_by_id(index)) == {"a", "b"}
    where = delete_run(store, "a")
    assert where == tmp_path / TRASH_DIR / "a" and (where / "run.json").is_file()
    assert set(rows_by_id(index)) == {"b"}
    restore_run(store, "a")
    assert set(rows_by_id(index)) == {"a", "b"} and store.load("a")["id"] == "a"
    write_run(tmp_path, "live", status="running")
    doc = json.loads(store.path("live").read_text())
    doc["pid"], doc["host"] = os.getpid(), __import__("socket").gethostname()   # its writer is alive
    store.path("live").write_text(json.dumps(doc))
    with pytest.raises(RunBusy):
        delete_run(store, "live")
    assert store.path("live").is_file()


# ---- the command line -------------------------------------------------------------------
def test_cli_tag_note_filter_delete_restore(sltui, tmp_path):
    write_run(tmp_path, "run-a", cut=1)
    write_run(tmp_path, "run-b", cut=3, attack="surrogate", alpha=0.09)
    d = ["--runs-dir", str(tmp_path)]
    assert sltui("runs", "tag", "run-b", "paper", *d)[0] == 0
    assert sltui("runs", "note", "run-b", "the good one", *d)[0] == 0
    code, out, err = sltui("runs", "list", "--json", "--filter", "tag:paper cut>=2", *d)
    assert code == 0, err
    rows = json.loads(out)
    assert [r["id"] for r in rows] == ["run-b"] and rows[0]["note"] == "the good one"
    code, out, err = sltui("runs", "list", "--filter", "cut>>2", *d)
    assert code == 2 and "--filter" in err and "Traceback" not in err
    assert "tags: paper" in sltui("runs", "show", "run-b", *d)[1]
    assert sltui("runs", "untag", "run-b", "paper", *d)[0] == 0
    assert json.loads(sltui("runs", "list", "--json", "--filter", "tag:paper", *d)[1] or "[]") == []
    assert sltui("runs", "delete", "run-a", "--yes", *d)[0] == 0
    assert [r["id"] for r in json.loads(sltui("runs", "list", "--json", *d)[1])] == ["run-b"]
    assert sltui("runs", "restore", "run-a", *d)[0] == 0
    assert len(json.loads(sltui("runs", "list", "--json", *d)[1])) == 2
    code, _, err = sltui("runs", "restore", "nope", *d)
    assert code == 2 and "no run 'nope'" in err


def test_aggregate_through_the_index_matches_the_run_files(sltui, tmp_path):
    for seed, cda0 in ((1, 70.0), (2, 74.0)):
        write_run(tmp_path, f"a{seed}", seed=seed, cda0=cda0, attack="surrogate", alpha=0.09)
    code, out, err = sltui("runs", "aggregate", "--format", "json", "--runs-dir", str(tmp_path))
    assert code == 0, err
    (row,) = json.loads(out)
    assert row["n"] == 2 and row["cda_mean"] == pytest.approx(87.0)


# ---- the notebook API ---------------------------------------------------------------------
def test_load_runs_and_epochs_without_textual_or_torch(tmp_path):
    """In a fresh interpreter: DataFrames of the example runs, and neither Textual nor torch
    imported to get them."""
    runs = tmp_path / "runs"
    shutil.copytree(EXAMPLE_RUNS, runs)
    code = (
        "import sys, sltui\n"
        f"r = sltui.load_runs({str(runs)!r})\n"
        f"e = sltui.load_epochs({str(runs)!r}, filter='cut>=3')\n"
        "import json\n"
        "print(json.dumps({'runs': len(r), 'cols': list(r.columns), 'epochs': len(e), 'cuts': sorted(set(e['cut'])),"
        " 'ids': int(e['id'].nunique()), 'mods': [m for m in ('textual', 'torch') if m in sys.modules]}))\n")
    out = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, timeout=120,
                         env={**os.environ, "PYTHONPATH": str(ROOT)})
    assert out.returncode == 0, out.stderr
    got = json.loads(out.stdout.strip().splitlines()[-1])
    assert got["mods"] == []
    assert got["runs"] == len(list(runs.glob("*/run.json")))
    assert {"id", "status", "dataset", "model", "cut", "final_cda", "best_asr", "tags"} <= set(got["cols"])
    assert got["cuts"] == [3] and got["epochs"] >= got["ids"] > 0
