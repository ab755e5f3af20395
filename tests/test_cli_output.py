"""Issue 31, the command line's last mile: `run --help` in panels that read whole at 80
columns; a runs folder or --data-root that does not exist is one line, exit 2, and creates
nothing; a headless run without --epochs says how many it trains; Ctrl-C is not echoed into
the progress bar's line."""
from __future__ import annotations

import os
import pty
import subprocess
import sys
import termios
from pathlib import Path

import pytest

from sltui.cli.signals import quiet_ctrl_c

from test_cli import assert_one_line_error, sltui  # noqa: F401 - the fixture

ROOT = Path(__file__).resolve().parent.parent


def help_at_80(*args: str) -> str:
    env = {**os.environ, "COLUMNS": "80", "TERM": "dumb", "NO_COLOR": "1"}
    out = subprocess.run([sys.executable, "-m", "sltui", *args, "--help"], cwd=ROOT, env=env, capture_output=True,
                         text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    return out.stdout


def test_run_help_reads_whole_at_80_columns_in_panels():
    text = help_at_80("run")
    lines = text.splitlines()
    assert max(len(line) for line in lines) <= 80
    assert "…" not in text                                   # no option name or help cut
    assert "<bool>" not in text                              # a flag takes no value
    panels = [line.split("─ ", 1)[1].split(" ─")[0] for line in lines if line.startswith("╭─ ")]
    assert panels[:4] == ["Options", "Setting", "Training", "Trigger"] and "Detectors" in panels
    assert "Attack: hijack" in panels and any(p.startswith("Switches") for p in panels)
    for flag in ("--splitguard-fake-prob", "--hijack-warmup-epochs", "--scrutinizer-threshold", "--no-save-weights"):
        assert flag in text
    assert len(lines) < 240                                  # 318 lines in one panel before


@pytest.mark.parametrize("command", [["runs", "list"], ["runs", "show", "x"], ["runs", "tag", "x", "t"],
                                     ["runs", "note", "x", "n"], ["runs", "delete", "x", "--yes"],
                                     ["runs", "restore", "x"], ["runs", "aggregate"], ["report", "sweep-x"],
                                     ["transfer", "x", "--dataset", "synthetic"]])
def test_a_runs_folder_that_does_not_exist_is_one_line_and_creates_nothing(sltui, tmp_path, command):
    missing = tmp_path / "no-such-runs"
    line = assert_one_line_error(*sltui(*command, "--runs-dir", str(missing)))
    assert f"there is no runs folder {missing}" in line
    assert not missing.exists()


@pytest.mark.parametrize("where", ["root", "command"])
def test_a_data_root_that_does_not_exist_is_one_line_and_creates_nothing(sltui, tmp_path, where):
    missing = tmp_path / "no-such-data"
    runs = tmp_path / "runs"
    flag = ["--data-root", str(missing)]
    args = [*flag, "run", "--headless", "--runs-dir", str(runs), "--dataset", "mnist"] if where == "root" else \
        ["run", "--headless", "--runs-dir", str(runs), "--dataset", "mnist", *flag]
    line = assert_one_line_error(*sltui(*args))
    assert f"--data-root {missing} does not exist" in line
    assert not missing.exists() and not runs.exists()
    line = assert_one_line_error(*sltui("sweep", "--datasets", "mnist", "--runs-dir", str(runs), *flag))
    assert not missing.exists() and not runs.exists()


def test_a_headless_run_without_epochs_names_how_many_it_trains(tmp_path):
    """Output that is not a terminal gets a line per epoch: `epoch 1/2` from the run's own
    count (its dataset's default), never `1/None`; the run's name beside its id, as it is."""
    import io

    from rich.console import Console

    from engine.store import RunStore
    from engine.training.lifecycle import RunResult
    from sltui.cli.headless import follow_thread
    from tui_helpers import epoch_metrics
    from engine.events import RunStarted

    def job(emit, stop):
        emit(RunStarted(run_id="r1", config={"name": "[b]mine[/b]"}, env={}, total_epochs=2, samples_per_epoch=10))
        for epoch in (1, 2):
            emit(epoch_metrics("r1", epoch))
        return RunResult("r1", "completed")

    out = io.StringIO()
    console = Console(file=out, force_terminal=False, width=80)
    result, error = follow_thread(job, RunStore(tmp_path), console, None)
    assert error is None and result.status == "completed"
    lines = out.getvalue().splitlines()
    assert lines[0].startswith("run r1 ([b]mine[/b]) -> ")
    assert [line.split()[:2] for line in lines if line.startswith("epoch ")] == [["epoch", "1/2"], ["epoch", "2/2"]]


def test_ctrl_c_is_not_echoed_while_a_progress_bar_is_drawn():
    leader, follower = pty.openpty()
    try:
        with os.fdopen(os.dup(follower)) as stream:
            assert termios.tcgetattr(follower)[3] & termios.ECHOCTL
            with quiet_ctrl_c(stream):
                assert not termios.tcgetattr(follower)[3] & termios.ECHOCTL
            assert termios.tcgetattr(follower)[3] & termios.ECHOCTL      # as it was
    finally:
        os.close(leader)
        os.close(follower)
