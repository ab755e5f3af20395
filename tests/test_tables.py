"""Plain aligned CLI tables (sltui.tables) and the shared number formats (sltui.format):
ids and statuses never cut, columns left out by priority to fit the width, --wide keeps
all, piped output laid out for 80 columns; and the commands that print them."""
from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from sltui import cli
from sltui.format import fmt_cell, fmt_duration, fmt_mean_std, fmt_num, fmt_pct
from sltui.runs.index import short_run_ids
from sltui.tables import Column, fit_columns, render_table

from tui_helpers import write_run

ROOT = Path(__file__).resolve().parents[1]
LONG_IDS = ["20261124-133627-mnist-lenet-c3-k1-surrogate-8eac", "20261123-194841-mnist-lenet-c1-k1-autoencoder-ce67"]
COLUMNS = (
    Column("id", "id"), Column("status", "status"),
    Column("dataset", "dataset", 3), Column("cda", "CDA %", 1, "right"),
    Column("asr", "ASR %", 2, "right"), Column("seconds", "time", 4, "right"),
)
ROWS = [{"id": LONG_IDS[0], "status": "completed", "dataset": "mnist", "cda": "84.10", "asr": "1.28", "seconds": "6s"},
        {"id": LONG_IDS[1], "status": "interrupted", "dataset": "mnist", "cda": "-", "asr": "-", "seconds": "2m54s"}]


def header_of(text: str) -> list[str]:
    return text.splitlines()[0].split()


@pytest.mark.parametrize("width", [40, 80])
def test_ids_and_status_never_cut(width):
    text = render_table(COLUMNS, ROWS, width)
    lines = text.splitlines()
    for row, line in zip(ROWS, lines[1:]):
        assert line.split()[:2] == [row["id"], row["status"]]
    assert "…" not in text and "..." not in text


def test_columns_left_out_least_important_first():
    full = len(render_table(COLUMNS, ROWS, 1000).splitlines()[1])
    # One character short of everything: only the least important column goes.
    assert header_of(render_table(COLUMNS, ROWS, full - 1)) == ["id", "status", "dataset", "CDA", "%", "ASR", "%"]
    # Narrower: the priorities decide (time 4, dataset 3, ASR 2, CDA 1), not the order on screen.
    kept = [c.key for c in fit_columns(COLUMNS, ROWS, 70)]
    assert kept == ["id", "status", "cda"]
    assert [c.key for c in fit_columns(COLUMNS, ROWS, 10)] == ["id", "status"]


def test_lines_fit_the_width_whenever_the_required_columns_do():
    for width in range(64, 100):
        lines = render_table(COLUMNS, ROWS, width).splitlines()
        assert max(len(line) for line in lines) <= width


def test_wide_keeps_every_column_whatever_the_width():
    text = render_table(COLUMNS, ROWS, 20, wide=True)
    assert header_of(text) == ["id", "status", "dataset", "CDA", "%", "ASR", "%", "time"]
    assert "2m54s" in text


def test_alignment_and_no_trailing_spaces():
    lines = render_table(COLUMNS, ROWS, 1000).splitlines()
    assert all(line == line.rstrip() for line in lines)
    # Right-aligned numbers end in the same column; left-aligned text starts in the same one.
    cda_ends = {line.index(" " + cell) + 1 + len(cell) for line, cell in zip(lines, ["CDA %", "84.10", "-"])}
    assert len(cda_ends) == 1
    assert len({line.index(s) for line, s in zip(lines, ["status", "completed", "interrupted"])}) == 1


def test_missing_cells_and_no_header():
    text = render_table([Column("key", "field"), Column("value", "value")], [{"key": "name"}], 80, header=False)
    assert text == "name  -"


def test_bad_column_spec_is_refused():
    with pytest.raises(ValueError):
        Column("x", "x", align="centre")
    with pytest.raises(ValueError):
        Column("x", "x", priority=-1)


def test_formats():
    assert fmt_duration(28) == "28s" and fmt_duration(245) == "4m05s" and fmt_duration(7380) == "2h03m"
    assert fmt_duration(None) == "-" and fmt_duration(float("nan")) == "-"
    assert fmt_pct(90.384) == "90.38" and fmt_pct(None) == "-" and fmt_pct(True) == "-"
    assert fmt_num(0.41414, ".4f") == "0.4141" and fmt_num("x") == "-"
    assert fmt_mean_std(73.02, 0.68) == "73.02 ± 0.68" and fmt_mean_std(98.1) == "98.10"
    assert fmt_mean_std(None, 1.0) == "-"
    assert fmt_cell("seconds", 28.2) == "28s" and fmt_cell("cda", 1) == "1.00"
    assert fmt_cell("seeds", [1, 2]) == "1,2" and fmt_cell("model", None) == "-"


# ---- the commands ------------------------------------------------------------------
@pytest.fixture
def runs(tmp_path):
    root = tmp_path / "runs"
    for i, run_id in enumerate(LONG_IDS):
        write_run(root, run_id, cut=1 + 2 * i, attack="surrogate", alpha=0.09, created=f"2026-11-2{i}T00:00:00+00:00")
    return root


@pytest.fixture
def sltui(monkeypatch, capsys):
    def invoke(*args: str, columns: int | None = None) -> tuple[int, str, str]:
        if columns is None:
            monkeypatch.delenv("COLUMNS", raising=False)
        else:
            monkeypatch.setenv("COLUMNS", str(columns))
        monkeypatch.setattr(sys, "argv", ["sltui", *args])
        try:
            cli.main()
            code = 0
        except SystemExit as exc:
            code = exc.code if isinstance(exc.code, int) else 1
        out, err = capsys.readouterr()
        return code, out, err
    return invoke


@pytest.mark.parametrize("columns", [40, 80])
def test_runs_list_keeps_ids_and_status_whole(sltui, runs, columns):
    """Too narrow for whole ids: each id shortened to its end (the TUI's short id, which
    every command takes), statuses whole; at 80 columns the setting and both metrics too."""
    code, out, err = sltui("runs", "list", "--runs-dir", str(runs), columns=columns)
    assert code == 0, err
    lines = out.splitlines()
    shown = [line.split()[0] for line in lines[1:]]
    assert sorted(shown) == sorted(short_run_ids(LONG_IDS).values()) == sorted(i[-4:] for i in LONG_IDS)
    assert all(line.split()[1] == "completed" for line in lines[1:])
    assert "--wide" in err and "ids shortened" in err          # says what was shortened and left out
    for short in shown:                                      # a short id is taken where an id is
        code, out_show, _ = sltui("runs", "show", short, "--runs-dir", str(runs))
        assert code == 0 and out_show.splitlines()[0] in LONG_IDS and out_show.splitlines()[0].endswith(short)
    if columns == 80:
        assert max(map(len, lines)) <= 80
        assert header_of(out)[:5] == ["id", "status", "setting", "CDA", "%"] and "ASR" in header_of(out)
        assert all("mnist lenet c1 K1 surrogate α=0.09" in line or "mnist lenet c3 K1 surrogate α=0.09" in line
                   for line in lines[1:])


def test_runs_list_wide_shows_every_column(sltui, runs):
    code, out, err = sltui("runs", "list", "--runs-dir", str(runs), "--wide", columns=80)
    assert code == 0 and err == ""
    assert {"setting", "seed", "best", "verdicts", "name", "tags"} <= set(header_of(out))
    assert sorted(line.split()[0] for line in out.splitlines()[1:]) == sorted(LONG_IDS)     # whole ids


def test_runs_list_columns_picks_them(sltui, runs):
    code, out, err = sltui("runs", "list", "--runs-dir", str(runs), "--columns", "asr,id,time,k", columns=200)
    assert code == 0, err
    assert header_of(out) == ["ASR", "%", "id", "time", "K"]
    assert "6s" in out.split()          # 3 epochs of 2 s each (tui_helpers), with its unit
    code, out, err = sltui("runs", "list", "--runs-dir", str(runs), "--columns", "id,colour", columns=200)
    assert code == 2 and out == "" and "unknown column 'colour'" in err and len(err.strip().splitlines()) == 1


def test_runs_list_of_an_empty_folder(sltui, tmp_path):
    code, out, err = sltui("runs", "list", "--runs-dir", str(tmp_path))
    assert code == 0 and out == "" and "no runs" in err


def test_runs_show_metric_table(sltui, runs):
    code, out, err = sltui("runs", "show", LONG_IDS[0], "--runs-dir", str(runs), columns=40)
    assert code == 0, err
    assert out.splitlines()[0] == LONG_IDS[0]
    lines = out.splitlines()
    table = lines[lines.index("epochs") + 1:lines.index("epochs") + 5]      # header and 3 epochs
    assert [line.split()[0] for line in table] == ["epoch", "1", "2", "3"]
    assert "CDA %" in table[0] and max(map(len, table)) <= 40


def test_sweep_dry_run_never_cuts_cells(sltui, tmp_path):
    code, out, err = sltui("sweep", "--datasets", "synthetic", "--cuts", "1", "--attacks", "surrogate,autoencoder",
                           "--alphas", "0.5", "--runs-dir", str(tmp_path), "--dry-run", columns=80)
    assert code == 0, err
    words = out.split()
    assert "surrogate" in words and "autoencoder" in words and out.count("to run") == 2
    assert max(map(len, out.splitlines())) <= 80


def test_aggregate_as_a_table(sltui, runs, tmp_path):
    code, out, err = sltui("runs", "aggregate", "--runs-dir", str(runs), "--format", "table", columns=80)
    assert code == 0, err
    lines = out.splitlines()
    assert header_of(out)[:8] == ["dataset", "model", "cut", "K", "attack", "alpha", "trigger", "epochs"]
    assert len(lines) == 3 and all("surrogate" in line for line in lines[1:])
    code, out, err = sltui("runs", "aggregate", "--runs-dir", str(runs), "--format", "table",
                           "--out", str(tmp_path / "x.txt"))
    assert code == 2 and "--format" in err


def test_piped_output_is_laid_out_for_80_columns(runs, sltui):
    env = {k: v for k, v in os.environ.items() if k not in ("COLUMNS", "LINES")}
    env.update(PYTHONPATH=str(ROOT), OMP_NUM_THREADS="1")
    proc = subprocess.run([sys.executable, "-m", "sltui", "runs", "list", "--runs-dir", str(runs)],
                          cwd=ROOT, env=env, capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr
    assert max(map(len, proc.stdout.splitlines())) <= 80
    assert proc.stdout == sltui("runs", "list", "--runs-dir", str(runs), columns=80)[1]
    assert proc.stdout != sltui("runs", "list", "--runs-dir", str(runs), columns=200)[1]


def test_wrapping_column_gives_way_by_lines_not_by_cutting():
    """A long label wraps at spaces so the status and numbers keep their place; a table
    that fits with whole labels is left on one line each."""
    from sltui.tables import fit_columns_wrapping, natural_widths

    columns = [Column("run", "run"), Column("status", "status"), Column("cda", "CDA", 1, "right"),
               Column("best", "best CDA", 3, "right")]
    rows = [{"run": "cut=3 surrogate α=0.5 epochs=2 seed=2 train_limit=20000", "status": "completed",
             "cda": "90.38", "best": "90.38"}]
    shown, out = fit_columns_wrapping(columns, rows, 40, "run")
    assert [c.key for c in shown][:3] == ["run", "status", "cda"]
    lines = out[0]["run"].split("\n")
    assert len(lines) > 1 and " ".join(lines) == rows[0]["run"]
    widths = natural_widths(shown, out)
    assert sum(widths.values()) + 2 * (len(shown) - 1) <= 40
    short = [{**rows[0], "run": "α=0.5"}]
    shown, out = fit_columns_wrapping(columns, short, 40, "run")
    assert out[0]["run"] == "α=0.5" and [c.key for c in shown] == ["run", "status", "cda", "best"]
