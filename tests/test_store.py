"""engine.store: run files written atomically after every epoch, read defensively."""
from __future__ import annotations

import dataclasses
import json
import os
import subprocess
import sys
import threading

import pytest

from engine.config import RunConfig, resolve
from engine.events import EpochMetrics
from engine.store import RunNotFound, RunStore, fanout, summary_row, write_json_atomic
from engine.training import runner
from engine.training.runner import run
from tests.conftest import tiny_config


def recorded_run(store: RunStore, cfg: RunConfig, extra=None, stop=None):
    sinks = [store.recorder()] + ([extra] if extra else [])
    return run(cfg, fanout(*sinks), stop)


def test_run_file_written_after_every_epoch(tmp_path):
    store = RunStore(tmp_path / "runs")
    seen = []

    def check(event):
        if isinstance(event, EpochMetrics):
            doc = json.loads(store.path(event.run_id).read_text())
            seen.append((doc["status"], len(doc["epochs"]), doc["epochs"][-1]["epoch"]))

    cfg = tiny_config(epochs=3)
    result = recorded_run(store, cfg, check)
    assert seen == [("running", 1, 1), ("running", 2, 2), ("running", 3, 3)]

    doc = store.load(result.run_id)
    assert doc["status"] == "completed" and doc["error"] is None and doc["schema"] == 1
    assert doc["config"] == resolve(cfg).to_dict()
    assert set(doc["config"]) == {f.name for f in dataclasses.fields(RunConfig)}
    assert {"python", "torch", "device", "device_name", "sltui"} <= set(doc["env"])
    assert doc["final"] == doc["epochs"][-1] and doc["best"] in doc["epochs"]
    assert RunConfig.from_dict(doc["config"]) == resolve(cfg), "a run's config runs again as is"
    left = os.listdir(store.root / result.run_id)
    assert "run.json" in left and not [n for n in left if n.startswith(".") or n.endswith(".tmp")], left


def test_save_load_round_trip(tmp_path):
    store = RunStore(tmp_path)
    doc = {"schema": 1, "id": "r1", "created": "2024-01-01T00:00:00", "status": "completed",
           "config": RunConfig().to_dict(), "epochs": [{"epoch": 1, "cda": 12.5, "asr": float("nan")}],
           "final": None, "best": None, "error": None}
    store.save(dict(doc))
    back = store.load("r1")
    assert back["config"] == doc["config"] and back["status"] == "completed"
    assert back["epochs"][0]["cda"] == 12.5 and back["epochs"][0]["asr"] != back["epochs"][0]["asr"]
    assert store.exists("r1") and not store.exists("r2")
    for bad in ("r2", "", "../r1", ".hidden"):
        with pytest.raises(RunNotFound):
            store.load(bad)


def test_entries_list_good_runs_beside_corrupt_ones(tmp_path):
    store = RunStore(tmp_path)
    store.save({"id": "good", "created": "2024-01-02", "status": "completed", "config": {"dataset": "mnist"},
                "epochs": []})
    (tmp_path / "broken").mkdir()
    (tmp_path / "broken" / "run.json").write_text('{"id": "broken", "conf')
    (tmp_path / "other").mkdir()
    (tmp_path / "other" / "run.json").write_text('[1, 2, 3]')
    (tmp_path / "empty-folder").mkdir()
    (tmp_path / "stray.txt").write_text("not a run")
    entries = {e.run_id: e for e in store.entries()}
    assert set(entries) == {"good", "broken", "other"}
    assert entries["good"].readable and entries["good"].status == "completed"
    for name in ("broken", "other"):
        assert not entries[name].readable and entries[name].status == "unreadable"
        assert entries[name].error and "\n" not in entries[name].error
        assert summary_row(entries[name])["status"] == "unreadable"
    assert summary_row(entries["good"])["dataset"] == "mnist"
    assert RunStore(tmp_path / "missing").entries() == []


def dead_pid() -> int:
    proc = subprocess.Popen([sys.executable, "-c", "pass"])
    proc.wait()
    return proc.pid


def test_running_file_with_dead_writer_reads_interrupted(tmp_path):
    import socket

    store = RunStore(tmp_path)
    base = {"created": "2024-01-01", "status": "running", "host": socket.gethostname(), "config": {}, "epochs": []}
    store.save({**base, "id": "dead", "pid": dead_pid()})
    store.save({**base, "id": "alive", "pid": os.getpid()})
    store.save({**base, "id": "elsewhere", "pid": dead_pid(), "host": "another-host"})
    status = {e.run_id: e.status for e in store.entries()}
    assert status == {"dead": "interrupted", "alive": "running", "elsewhere": "running"}
    assert store.load("dead")["status"] == "interrupted"
    assert json.loads(store.path("dead").read_text())["status"] == "running", "reading never rewrites"


def test_a_killed_writers_temp_file_is_cleared_once_it_is_known_dead(tmp_path):
    """SIGKILL in the middle of an atomic write leaves `.run-*.tmp` beside a whole run
    file; listing removes it for a dead writer, never for a live one."""
    import socket

    store = RunStore(tmp_path)
    base = {"created": "2024-01-01", "status": "running", "host": socket.gethostname(), "config": {}, "epochs": []}
    store.save({**base, "id": "dead", "pid": dead_pid()})
    store.save({**base, "id": "alive", "pid": os.getpid()})
    for run_id in ("dead", "alive"):
        (store.path(run_id).parent / ".run-half.tmp").write_text('{"status": "runn')
    assert {e.run_id: e.status for e in store.entries()} == {"dead": "interrupted", "alive": "running"}
    assert not (store.path("dead").parent / ".run-half.tmp").exists()
    assert (store.path("alive").parent / ".run-half.tmp").exists()  # its writer may still rename it
    assert store.load("dead")["id"] == "dead"


def test_atomic_write_keeps_the_old_file_on_failure(tmp_path):
    path = tmp_path / "r" / "run.json"
    write_json_atomic(path, {"id": "r", "n": 1})
    with pytest.raises(TypeError):
        write_json_atomic(path, {"id": "r", "n": object()})
    assert json.loads(path.read_text()) == {"id": "r", "n": 1}
    assert os.listdir(path.parent) == ["run.json"]


def test_cancelled_run_file(tmp_path):
    store = RunStore(tmp_path)
    stop = threading.Event()
    result = recorded_run(store, tiny_config(epochs=5), lambda e: isinstance(e, EpochMetrics) and stop.set(), stop)
    doc = json.loads(store.path(result.run_id).read_text())
    assert doc["status"] == "cancelled" and len(doc["epochs"]) == 1 and doc["final"]["epoch"] == 1
    assert not [n for n in os.listdir(store.root / result.run_id) if n.startswith(".") or n.endswith(".tmp")]


def test_failed_run_file(tmp_path, monkeypatch):
    def boom(ctx):
        raise RuntimeError("boom in training")

    monkeypatch.setattr(runner, "train_epoch", boom)
    store = RunStore(tmp_path)
    result = recorded_run(store, tiny_config())
    doc = store.load(result.run_id)
    assert doc["status"] == "failed" and "RuntimeError: boom in training" in doc["error"]


def test_bad_config_leaves_no_run_file(tmp_path):
    store = RunStore(tmp_path)
    with pytest.raises(Exception):
        recorded_run(store, tiny_config(dataset="mnist", data_root=str(tmp_path / "nothing")))
    assert store.entries() == []


def test_a_killed_but_unreaped_writer_counts_as_gone():
    import subprocess
    import time

    from engine.store import _pid_alive

    proc = subprocess.Popen(["sleep", "0"])
    deadline = time.monotonic() + 5
    while time.monotonic() < deadline:          # exited, but not reaped: a zombie
        with open(f"/proc/{proc.pid}/stat") as fh:
            if fh.read().rsplit(")", 1)[1].split()[0] == "Z":
                break
        time.sleep(0.01)
    assert not _pid_alive(proc.pid)
    proc.wait()
    assert _pid_alive(os.getpid())
