"""Bad command lines and hostile surroundings: every one gets one line (exit 2), or for a
folder of many files a warning naming the bad one (exit 0), never a traceback; nothing a
run reached is lost (a hang-up or a closed stdout ends it `cancelled`, a second transfer
keeps the first, two runs never share a folder)."""
from __future__ import annotations

import json
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from engine.store import RunIdTaken, RunStore
from sltui.tui import form_model
from tests.test_cli import QUICK, ROOT, assert_one_line_error, child_env, run_files, sltui  # noqa: F401

NOT_UTF8 = b"\xff\xfe{"


def one_run(sltui, runs: Path, *extra: str) -> dict:
    """A finished quick run in `runs`; its document."""
    code, out, err = sltui("run", "--headless", "--runs-dir", str(runs), "--epochs", "1", *QUICK, *extra)
    assert code == 0, (out, err)
    [file] = run_files(runs)
    return json.loads(file.read_text())


def assert_warning_naming(err: str, path: Path) -> None:
    lines = [line for line in err.splitlines() if line.strip()]
    assert any(line.startswith("warning:") and str(path) in line for line in lines), err
    assert not any(line.startswith("error:") for line in lines) and "Traceback" not in err


# ---------------------------------------------------------------- files that are not UTF-8
@pytest.fixture
def bad_runs(tmp_path) -> Path:
    runs = tmp_path / "runs"
    (runs / "x").mkdir(parents=True)
    (runs / "x" / "run.json").write_bytes(NOT_UTF8)
    return runs


@pytest.mark.parametrize("command", [("runs", "list"), ("runs", "list", "--json"), ("runs", "aggregate"),
                                     ("sweep", "--dry-run", "--datasets", "synthetic"),
                                     ("arena", "--dry-run", "--attacks", "none", "--defenses", "scrutinizer")])
def test_reading_a_folder_with_a_file_that_is_not_utf8_warns_and_goes_on(sltui, bad_runs, command):
    code, out, err = sltui(*command, "--runs-dir", str(bad_runs))
    assert code == 0, err
    assert "Traceback" not in out + err
    if command[0] == "runs":
        assert_warning_naming(err, bad_runs / "x" / "run.json")


@pytest.mark.parametrize("command", [("runs", "show", "x"), ("transfer", "x", "--dataset", "synthetic"),
                                     ("run", "--headless", "--config", "RUNS/x/run.json")])
def test_one_run_file_that_is_not_utf8_is_one_line(sltui, bad_runs, command):
    command = tuple(c.replace("RUNS", str(bad_runs)) for c in command)
    line = assert_one_line_error(*sltui(*command, "--runs-dir", str(bad_runs)))
    assert "UTF-8" in line and "run.json" in line


@pytest.mark.parametrize("option,suffix", [("--config", ".json"), ("--file", ".toml"), ("--file", ".json")])
def test_a_config_or_sweep_file_that_is_not_utf8_is_one_line(sltui, tmp_path, option, suffix):
    bad = tmp_path / f"bad{suffix}"
    bad.write_bytes(NOT_UTF8)
    command = ("run", "--headless") if option == "--config" else ("sweep", "--dry-run")
    line = assert_one_line_error(*sltui(*command, option, str(bad), "--runs-dir", str(tmp_path / "runs")))
    assert str(bad) in line and "UTF-8" in line


# ---------------------------------------------------------------- outputs that cannot be written
def test_aggregate_out_that_cannot_be_written_is_one_line(sltui, tmp_path):
    runs = tmp_path / "runs"
    one_run(sltui, runs)
    a_file = tmp_path / "a-file"
    a_file.write_text("")
    for out in (tmp_path, tmp_path / "missing" / "x.csv", a_file / "x.csv"):
        line = assert_one_line_error(*sltui("runs", "aggregate", "--runs-dir", str(runs), "--out", str(out)))
        assert str(out) in line
    assert a_file.read_text() == ""


def test_report_out_that_is_a_file_is_one_line_and_the_file_is_kept(sltui, tmp_path):
    runs = tmp_path / "runs"
    code, out, err = sltui("sweep", "--datasets", "synthetic", "--runs-dir", str(runs), "--epochs", "1",
                           *[q for q in QUICK if q not in ("--dataset", "synthetic")])
    assert code == 0, (out, err)
    [sweep_file] = (runs / "sweeps").glob("*.json")
    target = tmp_path / "taken"
    target.write_text("keep me")
    line = assert_one_line_error(*sltui("report", sweep_file.stem, "--runs-dir", str(runs), "--out", str(target)))
    assert str(target) in line
    assert target.read_text() == "keep me"
    # The sweep is complete: its tally does not ask for another run of the command.
    assert "run the same command again" not in out


# ---------------------------------------------------------------- folders that cannot be made
@pytest.mark.parametrize("command", [("sweep", "--datasets", "synthetic", "--epochs", "1"),
                                     ("arena", "--attacks", "none", "--defenses", "scrutinizer", "--epochs", "1",
                                      "--dataset", "synthetic"),
                                     ("run", "--headless", *QUICK, "--epochs", "1")])
@pytest.mark.parametrize("where", ["file", "under a file"])
def test_a_runs_folder_that_cannot_be_made_is_one_line(sltui, tmp_path, command, where):
    a_file = tmp_path / "a-file"
    a_file.write_text("keep me")
    runs = a_file if where == "file" else a_file / "runs"
    line = assert_one_line_error(*sltui(*command, "--runs-dir", str(runs)))
    assert str(a_file) in line
    assert a_file.read_text() == "keep me"


def test_doctor_reports_a_runs_folder_that_cannot_be_made_as_an_error(sltui, tmp_path):
    a_file = tmp_path / "a-file"
    a_file.write_text("")
    code, out, err = sltui("doctor", "--runs-dir", str(a_file / "runs"))
    assert code == 1
    [line] = [line for line in out.splitlines() if "runs folder" in line]
    assert line.startswith("error:") and str(a_file) in line


# ---------------------------------------------------------------- integers out of range
HUGE = str(10**20)


@pytest.mark.parametrize("flag", ["--seed", "--trigger-seed", "--batch-size", "--epochs", "--eval-batch-size",
                                  "--train-limit", "--clients", "--hijack-shadows", "--patience"])
def test_integers_past_what_a_run_can_use_are_one_line(sltui, tmp_path, flag):
    runs = tmp_path / "runs"
    line = assert_one_line_error(*sltui("run", "--headless", "--runs-dir", str(runs), *QUICK, flag, HUGE))
    assert flag in line
    assert run_files(runs) == []


def test_sweep_seeds_past_what_a_run_can_use_are_one_line(sltui, tmp_path):
    line = assert_one_line_error(*sltui("sweep", "--dry-run", "--datasets", "synthetic", "--seeds", f"1,{HUGE}",
                                        "--runs-dir", str(tmp_path)))
    assert "--seed" in line


def test_the_form_rejects_integers_past_what_a_run_can_use():
    values = form_model.to_text(form_model.RunConfig())
    for name in ("seed", "epochs", "batch_size"):
        cfg, errors = form_model.build({**values, name: HUGE})
        assert cfg is None and name in errors, errors


# ---------------------------------------------------------------- runs that cannot work
def test_detectors_without_an_honest_client_are_one_line(sltui, tmp_path):
    runs = tmp_path / "runs"
    quick = [q for q in QUICK if q not in ("--clients", "2")]
    line = assert_one_line_error(*sltui("run", "--headless", "--runs-dir", str(runs), *quick, "--clients", "1",
                                        "--attack", "client", "--defense", "splitguard"))
    assert "honest client" in line
    assert run_files(runs) == []
    values = {**form_model.to_text(form_model.RunConfig()), "attack": "client", "defenses": "splitguard"}
    cfg, errors = form_model.build(values)
    assert cfg is None and "honest client" in " ".join(errors.values())


def test_an_aux_size_beyond_the_attackers_share_is_one_line_and_no_run_file(sltui, tmp_path):
    runs = tmp_path / "runs"
    line = assert_one_line_error(*sltui("run", "--headless", "--runs-dir", str(runs), *QUICK, "--epochs", "1",
                                        "--attack", "surrogate", "--aux-size", "100000"))
    assert "--aux-size" in line
    assert run_files(runs) == [] and not any(runs.iterdir())


def test_a_config_that_is_a_run_file_without_a_config_is_one_line(sltui, tmp_path):
    file = tmp_path / "run.json"
    file.write_text(json.dumps({"schema": 1, "id": "x", "config": None, "attack_info": {}}))
    line = assert_one_line_error(*sltui("run", "--headless", "--config", str(file)))
    assert str(file) in line and "config" in line and "attack_info" not in line


# ---------------------------------------------------------------- what gets printed
def test_runs_show_json_is_standard_json_and_names_are_printed_escaped(sltui, tmp_path):
    runs = tmp_path / "runs"
    doc = one_run(sltui, runs, "--name", "evil\x1b[2Jname\x07")
    file = runs / doc["id"] / "run.json"
    stored = json.loads(file.read_text())
    stored["epochs"][0]["val_acc"] = float("nan")  # as a transfer run stores it
    file.write_text(json.dumps(stored))

    def no_constants(name):
        raise AssertionError(f"{name} is not JSON")

    code, out, err = sltui("runs", "show", doc["id"], "--json", "--runs-dir", str(runs))
    assert code == 0 and json.loads(out, parse_constant=no_constants)["epochs"][0]["val_acc"] is None
    code, out, err = sltui("runs", "show", doc["id"], "--runs-dir", str(runs))
    assert code == 0 and "\x1b" not in out and "\x07" not in out and "evil" in out


def test_report_and_aggregate_warn_about_the_run_files_they_leave_out(sltui, tmp_path):
    runs = tmp_path / "runs"
    code, out, err = sltui("sweep", "--datasets", "synthetic", "--runs-dir", str(runs), "--epochs", "1",
                           *[q for q in QUICK if q not in ("--dataset", "synthetic")])
    assert code == 0, (out, err)
    [sweep_file] = (runs / "sweeps").glob("*.json")
    bad = runs / "broken" / "run.json"
    bad.parent.mkdir()
    bad.write_bytes(NOT_UTF8)
    for command in (("runs", "aggregate"), ("runs", "aggregate", "--sweep", sweep_file.stem),
                    ("report", sweep_file.stem, "--out", str(tmp_path / "report"))):
        code, out, err = sltui(*command, "--runs-dir", str(runs))
        assert code == 0, err
        assert_warning_naming(err, bad)


# ---------------------------------------------------------------- the root options
def test_root_options_reach_every_command_and_the_commands_own_win(sltui, tmp_path, monkeypatch):
    root_runs, own_runs = tmp_path / "root-runs", tmp_path / "own-runs"
    monkeypatch.chdir(tmp_path)
    code, out, err = sltui("--runs-dir", str(root_runs), "run", "--headless", *QUICK, "--epochs", "1")
    assert code == 0, err
    assert len(run_files(root_runs)) == 1 and not (tmp_path / "runs").exists()
    code, out, err = sltui("--runs-dir", str(root_runs), "runs", "list", "--json")
    assert [r["status"] for r in json.loads(out)] == ["completed"]
    own_runs.mkdir()
    code, out, err = sltui("--runs-dir", str(root_runs), "runs", "list", "--json", "--runs-dir", str(own_runs))
    assert json.loads(out) == []
    # --data-root: a run on a dataset that is not there names the folder it looked in.
    empty = tmp_path / "empty-data"
    empty.mkdir()
    line = assert_one_line_error(*sltui("--data-root", str(empty), "run", "--headless", "--runs-dir",
                                        str(own_runs), "--dataset", "mnist", "--device", "cpu"))
    assert str(empty) in line


# ---------------------------------------------------------------- nothing lost
def test_a_second_transfer_keeps_the_first(sltui, tmp_path):
    runs = tmp_path / "runs"
    doc = one_run(sltui, runs)
    ids = []
    for _ in range(2):
        code, out, err = sltui("transfer", doc["id"], "--dataset", "synthetic", "--epochs", "1", "--train-limit",
                               "200", "--eval-limit", "100", "--device", "cpu", "--runs-dir", str(runs))
        assert code == 0, err
        ids.append(next(line.split()[1] for line in out.splitlines() if line.startswith("run ")))
    assert len(set(ids)) == 2
    for run_id in ids:
        stored = json.loads((runs / run_id.rstrip(":") / "run.json").read_text())
        assert stored["status"] == "completed" and stored["source_run"] == doc["id"]


def test_a_transfer_whose_weights_file_is_gone_says_so(sltui, tmp_path):
    runs = tmp_path / "runs"
    doc = one_run(sltui, runs)
    (runs / doc["id"] / "model.pt").unlink()
    line = assert_one_line_error(*sltui("transfer", doc["id"], "--dataset", "synthetic", "--runs-dir", str(runs)))
    assert "missing" in line and "--no-save-weights" not in line


def test_run_folders_are_made_exclusively(tmp_path):
    store = RunStore(tmp_path)
    names = iter(["same", "same", "other"])
    assert store.reserve(lambda n: next(names)) == "same"
    assert store.reserve(lambda n: next(names)) == "other"  # "same" is taken: the next name
    # A run file is never replaced by a new run of the same id.
    from engine.events import RunStarted

    recorder = store.recorder()
    recorder(RunStarted("same", {}, {}, 1, 10))
    with pytest.raises(RunIdTaken):
        store.recorder()(RunStarted("same", {}, {}, 1, 10))


# ---------------------------------------------------------------- hang-up and closed stdout
SHORT_RUN = [sys.executable, "-m", "sltui", "run", "--headless", *QUICK]


def test_a_hang_up_ends_the_run_cancelled_with_its_metrics(tmp_path):
    runs = tmp_path / "runs"
    proc = subprocess.Popen([*SHORT_RUN, "--epochs", "500", "--runs-dir", str(runs)], cwd=ROOT,
                            env=child_env(tmp_path), stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    deadline = time.monotonic() + 120
    doc = None
    while time.monotonic() < deadline and proc.poll() is None:
        files = run_files(runs)
        if files:
            try:
                doc = json.loads(files[0].read_text())
            except ValueError:
                doc = None
            if doc and doc["epochs"]:
                break
        time.sleep(0.2)
    assert doc and doc["epochs"], proc.communicate(timeout=5)
    proc.send_signal(signal.SIGHUP)
    out, err = proc.communicate(timeout=120)
    assert proc.returncode == 130, (out, err)
    assert "Traceback" not in out + err
    stored = json.loads(run_files(runs)[0].read_text())
    assert stored["status"] == "cancelled"
    assert len(stored["epochs"]) >= 1 and stored["final"]["epoch"] == len(stored["epochs"])


@pytest.mark.parametrize("command,lines", [("run", 1), ("transfer", 2)])
def test_a_closed_stdout_ends_the_run_cleanly(sltui, tmp_path, command, lines):
    runs = tmp_path / "runs"
    args = [*SHORT_RUN, "--epochs", "3", "--runs-dir", str(runs)]
    if command == "transfer":
        source = one_run(sltui, runs)
        args = [sys.executable, "-m", "sltui", "transfer", source["id"], "--dataset", "synthetic", "--epochs", "3",
                "--train-limit", "200", "--eval-limit", "100", "--device", "cpu", "--runs-dir", str(runs)]
    shell = " ".join(f"'{a}'" for a in args) + f" | head -{lines}; exit ${{PIPESTATUS[0]}}"
    proc = subprocess.run(["bash", "-c", shell], cwd=ROOT, env=child_env(tmp_path), capture_output=True,
                          text=True, timeout=300)
    assert proc.returncode in (0, 130), (proc.returncode, proc.stderr)
    assert "Traceback" not in proc.stderr and "terminate called" not in proc.stderr
    docs = [json.loads(f.read_text()) for f in run_files(runs)]
    newest = [d for d in docs if command == "run" or d.get("source_run")]
    assert [d["status"] for d in newest] in (["cancelled"], ["completed"])
    assert newest[0]["epochs"] and newest[0]["final"]


def test_the_terminal_ui_on_a_runs_folder_that_is_a_file_is_one_line(sltui, tmp_path):
    a_file = tmp_path / "a-file"
    a_file.write_text("")
    line = assert_one_line_error(*sltui("--runs-dir", str(a_file)))
    assert str(a_file) in line and "file" in line
