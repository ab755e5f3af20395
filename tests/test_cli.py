"""The `sltui` command: one-line user errors with exit code 2, run listing, and what a
killed or interrupted headless run leaves behind."""
from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch

from sltui import cli

ROOT = Path(__file__).resolve().parents[1]
QUICK = ["--dataset", "synthetic", "--train-limit", "300", "--eval-limit", "100", "--batch-size", "64",
         "--clients", "2", "--device", "cpu"]


@pytest.fixture
def sltui(monkeypatch, capsys):
    """Run `sltui ARGS` in-process through cli.main, as the console script does.
    Returns (exit code, stdout, stderr)."""
    def invoke(*args: str) -> tuple[int, str, str]:
        monkeypatch.setattr(sys, "argv", ["sltui", *args])
        try:
            cli.main()
            code = 0
        except SystemExit as exc:
            code = exc.code if isinstance(exc.code, int) else (0 if exc.code is None else 1)
        out, err = capsys.readouterr()
        return code, out, err
    return invoke


def run_files(folder: Path) -> list[Path]:
    return list(folder.rglob("run.json")) if folder.exists() else []


def assert_one_line_error(code: int, out: str, err: str) -> str:
    assert code == 2, (code, out, err)
    assert "Traceback" not in out + err
    lines = [line for line in err.splitlines() if line.strip()]
    assert len(lines) == 1, f"expected one line on stderr, got: {err!r}"
    assert lines[0].startswith("error:")
    assert out == "", f"nothing on stdout for a bad invocation, got: {out!r}"
    return lines[0]


@pytest.mark.parametrize("args,needle", [
    (["--cut", "4"], "--cut"),
    (["--alpha", "1.5"], "--alpha"),
    (["--alpha", "0"], "--alpha"),
    (["--clients", "0"], "--clients"),
    (["--dataset", "nope"], "--dataset"),
    (["--trigger-size", "40"], "trigger"),
    (["--lr-milestones", "a,b"], "--lr-milestones"),
])
def test_bad_flag_values(sltui, tmp_path, args, needle):
    runs = tmp_path / "runs"
    line = assert_one_line_error(*sltui("run", "--headless", "--runs-dir", str(runs), *args))
    assert needle in line
    assert run_files(runs) == []


def test_empty_data_root_fails_fast(sltui, tmp_path):
    runs, empty = tmp_path / "runs", tmp_path / "empty"
    empty.mkdir()
    started = time.monotonic()
    line = assert_one_line_error(*sltui("run", "--headless", "--runs-dir", str(runs), "--dataset", "mnist",
                                        "--data-root", str(empty), "--device", "cpu"))
    assert time.monotonic() - started < 60
    assert "MNIST" in line and "--data-root" in line
    assert run_files(runs) == []


@pytest.mark.skipif(torch.cuda.is_available(), reason="needs a machine without a CUDA GPU")
def test_cuda_without_gpu(sltui, tmp_path):
    runs = tmp_path / "runs"
    line = assert_one_line_error(*sltui("run", "--headless", "--runs-dir", str(runs), *QUICK[:-2], "--device", "cuda"))
    assert "--device" in line
    assert run_files(runs) == []


@pytest.mark.parametrize("text,needle", [
    ("{not json", "not valid JSON"),
    ('{"cut": 2, "alhpa": 0.2}', "alhpa"),
    ('{"cut": 4}', "--cut"),
    ("[1, 2]", "JSON object"),
])
def test_bad_config_file(sltui, tmp_path, text, needle):
    runs, config = tmp_path / "runs", tmp_path / "config.json"
    config.write_text(text)
    line = assert_one_line_error(*sltui("run", "--headless", "--runs-dir", str(runs), "--config", str(config)))
    assert needle in line
    assert run_files(runs) == []


def test_missing_config_file(sltui, tmp_path):
    line = assert_one_line_error(*sltui("run", "--headless", "--runs-dir", str(tmp_path / "runs"),
                                        "--config", str(tmp_path / "nope.json")))
    assert "nope.json" in line


@pytest.mark.parametrize("args,needle", [
    (["run", "--headless", "--cut", "abc"], "--cut"),
    (["run", "--headless", "--clients", "1.5"], "--clients"),
    (["run", "--headless", "--bogus"], "--bogus"),
    (["runs", "show"], "run_id"),
    (["nonsense"], "nonsense"),
])
def test_usage_errors_are_one_line(sltui, tmp_path, args, needle):
    line = assert_one_line_error(*sltui(*args, *(["--runs-dir", str(tmp_path)] if args[0] == "run" else [])))
    assert needle in line


def test_help_still_works(sltui):
    code, out, err = sltui("run", "--help")
    assert code == 0 and "--alpha" in out and not err
    code, out, err = sltui("runs")
    assert code == 2 and "list" in out and "Traceback" not in out + err


def test_runs_dir_that_is_a_file(sltui, tmp_path):
    runs = tmp_path / "runs"
    runs.write_text("not a folder")
    line = assert_one_line_error(*sltui("run", "--headless", "--runs-dir", str(runs), "--epochs", "1", *QUICK))
    assert str(runs) in line
    # Reading it is no quieter: a file is not an empty runs folder.
    for command in (("runs", "list", "--json"), ("runs", "list"), ("runs", "show", "x")):
        line = assert_one_line_error(*sltui(*command, "--runs-dir", str(runs)))
        assert str(runs) in line and "file" in line


def test_runs_show_missing_id(sltui, tmp_path):
    line = assert_one_line_error(*sltui("runs", "show", "no-such-run", "--runs-dir", str(tmp_path)))
    assert "no-such-run" in line


def test_run_then_list_and_show(sltui, tmp_path):
    runs = tmp_path / "runs"
    config = tmp_path / "config.json"
    config.write_text(json.dumps({"model": "lenet", "epochs": 1}))
    code, out, err = sltui("run", "--headless", "--runs-dir", str(runs), "--config", str(config), *QUICK)
    assert code == 0, err
    assert "completed" in out
    [file] = run_files(runs)
    doc = json.loads(file.read_text())
    assert doc["status"] == "completed" and doc["config"]["epochs"] == 1 and doc["config"]["clients"] == 2

    code, out, err = sltui("runs", "list", "--json", "--runs-dir", str(runs))
    assert code == 0, err
    [row] = json.loads(out)
    assert row["id"] == doc["id"] and row["status"] == "completed" and row["epochs"] == 1

    code, out, err = sltui("runs", "show", doc["id"], "--runs-dir", str(runs))
    assert code == 0 and doc["id"] in out and "completed" in out
    code, out, err = sltui("runs", "show", doc["id"], "--json", "--runs-dir", str(runs))
    assert code == 0 and json.loads(out)["id"] == doc["id"]

    # A run file can be used as the --config of a new run.
    code, out, err = sltui("run", "--headless", "--runs-dir", str(runs), "--config", str(file), "--seed", "48")
    assert code == 0, err
    assert len(run_files(runs)) == 2


def test_runs_list_warns_about_unreadable_files(sltui, tmp_path):
    (tmp_path / "bad").mkdir()
    (tmp_path / "bad" / "run.json").write_text("{")
    code, out, err = sltui("runs", "list", "--json", "--runs-dir", str(tmp_path))
    assert code == 0 and "Traceback" not in err
    assert json.loads(out)[0]["status"] == "unreadable"
    assert "unreadable" in err


# ---------------------------------------------------------------- real processes
def child_env(tmp_path: Path) -> dict[str, str]:
    env = dict(os.environ)
    env.update(PYTHONPATH=str(ROOT), OMP_NUM_THREADS="1", SLTUI_RUNS=str(tmp_path / "runs"),
               SLTUI_DATA=str(tmp_path / "data"), SLTUI_CACHE=str(tmp_path / "cache"))
    return env


def start_long_run(tmp_path: Path) -> tuple[subprocess.Popen, Path]:
    runs = tmp_path / "runs"
    proc = subprocess.Popen(
        [sys.executable, "-m", "sltui", "run", "--headless", "--runs-dir", str(runs), "--epochs", "500", *QUICK],
        cwd=ROOT, env=child_env(tmp_path), stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        files = run_files(runs)
        if files:
            return proc, files[0]
        if proc.poll() is not None:
            pytest.fail(f"the run ended early: {proc.communicate()}")
        time.sleep(0.1)
    proc.kill()
    pytest.fail("no run file appeared")


def test_sigkill_leaves_an_interrupted_run(sltui, tmp_path):
    proc, file = start_long_run(tmp_path)
    time.sleep(0.5)
    proc.send_signal(signal.SIGKILL)
    proc.communicate(timeout=30)
    doc = json.loads(file.read_text())  # parseable: every write was atomic
    assert doc["status"] == "running"
    code, out, err = sltui("runs", "list", "--json", "--runs-dir", str(tmp_path / "runs"))
    assert code == 0
    [row] = json.loads(out)
    assert row["status"] == "interrupted"
    assert not [p.name for p in file.parent.iterdir() if p.name.startswith(".") or p.name.endswith(".tmp")]


def test_sigint_leaves_a_cancelled_run(sltui, tmp_path):
    proc, file = start_long_run(tmp_path)
    time.sleep(0.5)
    proc.send_signal(signal.SIGINT)
    out, err = proc.communicate(timeout=60)
    assert proc.returncode == 130, (out, err)
    assert "Traceback" not in out + err
    doc = json.loads(file.read_text())
    assert doc["status"] == "cancelled"
    code, out, _ = sltui("runs", "list", "--json", "--runs-dir", str(tmp_path / "runs"))
    assert json.loads(out)[0]["status"] == "cancelled"


def test_bad_input_in_a_real_process(tmp_path):
    """What a shell user sees: one line on stderr, exit code 2, no traceback."""
    out = subprocess.run([sys.executable, "-m", "sltui", "run", "--headless", "--cut", "4"], cwd=ROOT,
                         env=child_env(tmp_path), capture_output=True, text=True, timeout=120)
    assert out.returncode == 2
    assert "Traceback" not in out.stdout + out.stderr
    assert len(out.stderr.strip().splitlines()) == 1 and "--cut" in out.stderr
    assert not (tmp_path / "runs").exists()


@pytest.mark.parametrize("doc", [
    {"id": "x", "config": 5, "epochs": []},
    {"id": "x", "config": {}, "epochs": [1, 2]},
    {"id": "x", "config": {}, "epochs": [], "final": "oops"},
    {"id": "x", "config": {}, "epochs": [], "best": [1]},
])
def test_runs_list_and_show_survive_wrongly_shaped_files(sltui, tmp_path, doc):
    """Valid JSON of the wrong shape is unreadable, never a traceback."""
    (tmp_path / "x").mkdir()
    (tmp_path / "x" / "run.json").write_text(json.dumps(doc))
    code, out, err = sltui("runs", "list", "--json", "--runs-dir", str(tmp_path))
    assert code == 0 and "Traceback" not in err, err
    assert json.loads(out)[0]["status"] == "unreadable"
    line = assert_one_line_error(*sltui("runs", "show", "x", "--runs-dir", str(tmp_path)))
    assert "unreadable" in line


def test_example_runs_load(sltui):
    """examples/runs (what the README points a newcomer at) lists every example run as
    readable, with its config and metrics, and no run file there names a local data folder."""
    examples = ROOT / "examples" / "runs"
    code, out, err = sltui("runs", "list", "--json", "--runs-dir", str(examples))
    assert code == 0, err
    rows = json.loads(out)
    assert len(rows) == len(run_files(examples)) > 0
    assert all(row["status"] != "unreadable" for row in rows)
    assert any(row["status"] == "completed" and row["cda"] is not None for row in rows)
    for path in run_files(examples):
        assert json.loads(path.read_text())["config"]["data_root"] is None, path


@pytest.mark.parametrize("args,needle", [
    (["--attack", "hijack", "--aux-size", "0"], "--aux-size"),
    (["--attack", "hijack", "--hijack-beta", "1.5"], "--hijack-beta"),
    (["--attack", "hijack", "--hijack-beta", "-0.1"], "--hijack-beta"),
    (["--attack", "client", "--clients", "3", "--malicious-client", "3"], "--malicious-client"),
    (["--trigger", "blend", "--blend-alpha", "2"], "--blend-alpha"),
    (["--trigger", "wanet"], "--trigger"),
    (["--attack", "hijack", "--epochs", "2", "--hijack-warmup-epochs", "2"], "--hijack-warmup-epochs"),
])
def test_attack_option_errors_are_one_line_exit_2(sltui, tmp_path, args, needle):
    runs = tmp_path / "runs"
    line = assert_one_line_error(*sltui("run", "--headless", "--runs-dir", str(runs), *QUICK, *args))
    assert needle in line
    assert run_files(runs) == []
