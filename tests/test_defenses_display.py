"""Where the detectors' verdicts show: `sltui run --headless`, the runs list and browser,
the run screen's state, the compare chart's series."""
from __future__ import annotations

import json

import pytest

from engine.events import DefenseScores
from engine.store import RunEntry, record_defenses, summary_row
from sltui.format import fmt_defenses, mean_score
from sltui.tui.form_model import visible
from sltui.tui.run_manager import RunState
from sltui.tui.runs_model import BROWSER_COLUMNS, browser_layout, browser_row, defense_series
from tests.test_cli import QUICK, assert_one_line_error, run_files, sltui  # noqa: F401 - the fixture

FLAG = {"epoch": 2, "step": 7, "client": 1}


def report(epoch: int, flagged: bool) -> DefenseScores:
    return DefenseScores("r", epoch, {
        "splitguard": {"scores": [0.9, None], "flagged_at": None, "fake_batches": 3 * epoch},
        "scrutinizer": {"scores": [0.2, 0.4], "flagged_at": FLAG if flagged else None},
    })


def doc_with_defenses() -> dict:
    doc = {"id": "r", "config": {"attack": "none", "defenses": ["splitguard", "scrutinizer"]}, "epochs": [],
           "defenses": {}}
    for epoch in (1, 2, 3):
        record_defenses(doc["defenses"], report(epoch, flagged=epoch >= 2))
    return doc


def test_run_file_defenses_fold_epoch_by_epoch():
    doc = doc_with_defenses()
    assert doc["defenses"]["splitguard"] == {"scores": [[0.9, None]] * 3, "flagged_at": None, "fake_batches": 9}
    assert doc["defenses"]["scrutinizer"]["flagged_at"] == FLAG


def test_detected_column_names_the_detector_and_epoch():
    row = summary_row(RunEntry("r", None, doc_with_defenses()))  # type: ignore[arg-type]
    assert row["detected"] == ["scrutinizer@2!"]  # the server of a `none` run is honest: a false accusation
    attacked = doc_with_defenses()
    attacked["config"]["attack"] = "surrogate"
    attacked["epochs"] = [{"epoch": e} for e in (1, 2, 3)]
    assert summary_row(RunEntry("r", None, attacked))["detected"] == ["scrutinizer@2"]  # type: ignore[arg-type]
    quiet = doc_with_defenses()
    quiet["defenses"]["scrutinizer"]["flagged_at"] = None
    assert summary_row(RunEntry("r", None, quiet))["detected"] == ["none"]  # type: ignore[arg-type]
    assert summary_row(RunEntry("r", None, {"id": "r", "config": {}}))["detected"] is None  # type: ignore[arg-type]


def test_browser_says_which_detector_flagged_and_when():
    rows = [browser_row(RunEntry("x", None, {**doc_with_defenses(), "id": "x"}))]  # type: ignore[arg-type]
    columns, cells = browser_layout(rows, 200)
    assert "detectors" in [c.key for c in columns]
    assert cells[0]["detectors"] == "SG- Scr@2!"     # splitguard never flagged; scrutinizer accused an honest server
    for width in range(200, 40, -1):                  # the metrics outlast the verdicts
        shown = {c.key for c in browser_layout(rows, width)[0]}
        if "detectors" not in shown:
            assert {"cda", "asr"} <= shown
            break


def test_scores_series_skip_epochs_without_a_score():
    doc = doc_with_defenses()
    assert defense_series(doc, "splitguard") == ([1, 2, 3], [0.9, 0.9, 0.9])
    assert defense_series(doc, "scrutinizer")[1] == pytest.approx([0.3] * 3)
    doc["defenses"]["splitguard"]["scores"][1] = [None, None]
    assert defense_series(doc, "splitguard")[0] == [1, 3]
    assert mean_score([None]) is None


def test_epoch_line_shows_scores_and_the_flag():
    line = fmt_defenses(report(2, flagged=True).defenses)
    assert "splitguard 0.90" in line and "scrutinizer 0.30 FLAGGED@2" in line
    assert "FLAGGED" not in fmt_defenses(report(1, flagged=False).defenses)


def test_run_state_keeps_the_scores_as_the_run_file_does():
    state = RunState("r", {})
    for epoch in (1, 2, 3):
        state.apply(report(epoch, flagged=epoch >= 2))
    assert state.defenses == doc_with_defenses()["defenses"]


def test_detector_options_show_only_with_their_detector():
    assert not visible("splitguard_window", "none", defenses=())
    assert visible("splitguard_window", "none", defenses=("splitguard",))
    assert not visible("splitout_window", "none", defenses=("splitguard",))
    assert visible("defenses", "surrogate", defenses=())


def test_headless_prints_scores_per_epoch_and_the_verdict(sltui, tmp_path):  # noqa: F811
    runs = tmp_path / "runs"
    code, out, err = sltui("run", "--headless", "--runs-dir", str(runs), *QUICK, "--epochs", "2",
                           "--defense", "splitguard,scrutinizer", "--splitguard-start", "1",
                           "--scrutinizer-window", "2", "--no-save-weights")
    assert code == 0, err
    lines = out.splitlines()
    assert sum("splitguard" in line and "CDA" in line for line in lines) == 2  # one per epoch
    assert any(line.strip().startswith("splitguard") and "flag" in line for line in lines)
    assert any(line.strip().startswith("scrutinizer") and "flag" in line for line in lines)
    [file] = run_files(runs)
    doc = json.loads(file.read_text())
    assert set(doc["defenses"]) == {"splitguard", "scrutinizer"}
    assert all(len(entry["scores"]) == 2 for entry in doc["defenses"].values())


@pytest.mark.parametrize("value,needle", [("strip", "--defenses"), ("splitout,splitout", "twice")])
def test_bad_defense_flag_is_one_line(sltui, tmp_path, value, needle):  # noqa: F811
    runs = tmp_path / "runs"
    line = assert_one_line_error(*sltui("run", "--headless", "--runs-dir", str(runs), "--defense", value))
    assert needle in line
    assert run_files(runs) == []
