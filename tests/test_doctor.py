"""`sltui doctor` (issue 11, section 8): one line per finding, one per problem, a non-zero
exit when a run could not start, never a traceback."""
from __future__ import annotations

import os
import sys

import pytest
import torch

from engine.training import doctor
from engine.events import RunStarted

from fake_data import write_idx_dataset
from test_cli import sltui  # noqa: F401 - the fixture


def lines_of(level: str, out: str) -> list[str]:
    return [line for line in out.splitlines() if line.startswith(level + ":")]


def test_reports_a_dataset_found_under_the_data_root(sltui, tmp_path):
    write_idx_dataset(tmp_path / "data", "MNIST", 12, 6, gz=True)
    code, out, err = sltui("doctor", "--data-root", str(tmp_path / "data"), "--runs-dir", str(tmp_path / "runs"))
    assert code == 0, out + err
    assert "Traceback" not in out + err
    [mnist] = [line for line in out.splitlines() if " mnist:" in line]
    assert "found" in mnist and not mnist.startswith("warning") and str(tmp_path / "data") in mnist
    # The others are missing: each is one warning saying where it would go, not an error.
    [fmnist] = [line for line in lines_of("warning", out) if " fmnist:" in line]
    assert str(tmp_path / "data" / "FashionMNIST") in fmnist and "download" in fmnist
    assert lines_of("error", out) == []
    for topic in ("python", "torch", "cuda", "threads", "numba", "runs folder"):
        assert f" {topic}: " in out


def test_a_runs_folder_that_is_a_file_is_one_error_line(sltui, tmp_path):
    (tmp_path / "runs").write_text("not a folder")
    code, out, err = sltui("doctor", "--data-root", str(tmp_path), "--runs-dir", str(tmp_path / "runs"))
    assert code != 0 and "Traceback" not in out + err
    [line] = lines_of("error", out)
    assert "runs folder" in line and str(tmp_path / "runs") in line


@pytest.mark.skipif(os.geteuid() == 0, reason="root writes into read-only folders")
def test_a_read_only_runs_folder_is_one_error_line(sltui, tmp_path):
    runs = tmp_path / "runs"
    runs.mkdir()
    runs.chmod(0o500)
    try:
        code, out, err = sltui("doctor", "--data-root", str(tmp_path), "--runs-dir", str(runs))
    finally:
        runs.chmod(0o700)
    assert code != 0 and "Traceback" not in out + err
    [line] = lines_of("error", out)
    assert "not writable" in line


@pytest.mark.skipif(torch.cuda.is_available(), reason="CUDA is present here")
def test_device_cuda_without_cuda_is_one_error_line(sltui, tmp_path):
    code, out, err = sltui("doctor", "--device", "cuda", "--data-root", str(tmp_path), "--runs-dir", str(tmp_path))
    assert code != 0 and "Traceback" not in out + err
    [line] = lines_of("error", out)
    assert "--device cuda" in line and "training step" not in out


def test_a_bad_device_is_a_one_line_usage_error(sltui, tmp_path):
    code, out, err = sltui("doctor", "--device", "tpu", "--runs-dir", str(tmp_path))
    assert code == 2 and out == "" and len(err.strip().splitlines()) == 1 and "--device" in err


def test_device_cpu_trains_one_step_through_the_run_path(sltui, tmp_path, monkeypatch):
    import engine.training.runner

    seen = []
    real_run = engine.training.runner.run
    monkeypatch.setattr(engine.training.runner, "run", lambda cfg, emit, *a, **k: real_run(
        cfg, lambda e: (seen.append(e), emit(e)), *a, **k))
    code, out, err = sltui("doctor", "--device", "cpu", "--data-root", str(tmp_path), "--runs-dir", str(tmp_path))
    assert code == 0, out + err
    [step] = [line for line in out.splitlines() if " training step:" in line]
    assert step.strip().startswith("ok") and "cpu" in step
    started = next(e for e in seen if isinstance(e, RunStarted))
    assert started.config["device"] == "cpu" and started.total_epochs == 1
    assert list(tmp_path.iterdir()) == [], "the trial run leaves nothing in the runs folder"


@pytest.mark.parametrize("how", ["fails to start", "fails while training"])
def test_a_failing_training_step_is_one_error_line(sltui, tmp_path, monkeypatch, how):
    import engine.training.runner
    from engine.training.runner import RunResult

    message = "CUDA error: no kernel image is available for execution on the device\nmore detail"

    def broken(cfg, emit, *args, **kwargs):
        if how == "fails to start":
            raise RuntimeError(message)
        return RunResult("doctor", "failed", error="RuntimeError: " + message)

    monkeypatch.setattr(engine.training.runner, "run", broken)
    code, out, err = sltui("doctor", "--device", "cpu", "--data-root", str(tmp_path), "--runs-dir", str(tmp_path))
    assert code != 0 and "Traceback" not in out + err
    [line] = lines_of("error", out)
    assert "training step" in line and "no kernel image" in line and "more detail" not in out


def test_a_torch_that_does_not_import_is_an_error_not_a_traceback(tmp_path, monkeypatch):
    monkeypatch.setitem(sys.modules, "torch", None)   # `import torch` now raises ImportError
    findings = list(doctor.diagnose(None, tmp_path / "runs", "cpu"))
    errors = [f for f in findings if f.level == "error"]
    assert [f.topic for f in errors] == ["torch"]
    assert any(f.topic == "runs folder" for f in findings), "the checks that need no torch still run"
