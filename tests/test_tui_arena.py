"""The TUI's arena view: its model (arena_model) on the committed example arenas and on
synthetic sweep files, and the screen through Textual's pilot."""
from __future__ import annotations

import csv
import json
import os
import shutil
import socket
from pathlib import Path

import pytest
from textual.widgets import DataTable, Static

from engine.store import RunStore
from engine.sweeps.arena import arena_sweep
from engine.sweeps.executors import SweepFile, sweep_run_docs
from engine.sweeps.grid import expand, make_sweep
from sltui.reports.arena import write_arena_report
from sltui.tui.arena_model import (COMPLETE, INCOMPLETE, LIST_COLUMNS, MATRIX_VIEW_COLUMNS, RUNNING, find_arenas,
                                   list_cells, matrix_cells, matrix_view, progress, setting)
from sltui.tui.runs_model import RunIndex, table_columns
from sltui.tui.screens.arena import ArenaScreen
from sltui.tui.screens.browser import BrowserScreen

from test_tui_app import make_app, wait_for

EXAMPLES = Path(__file__).resolve().parents[1] / "examples"
BETA07, PLAIN = EXAMPLES / "arena-hijack-beta0.7", EXAMPLES / "arena-hijack-plain-beta0"


def copy_arena(src: Path, root: Path) -> Path:
    """The runs and sweep file of an example arena, copied into the runs folder `root`."""
    for folder in src.iterdir():
        if folder.name == "sweeps":
            (root / "sweeps").mkdir(parents=True, exist_ok=True)
            for path in folder.glob("*.json"):
                shutil.copy(path, root / "sweeps" / path.name)
        elif (folder / "run.json").is_file():
            shutil.copytree(folder, root / folder.name)
    return root


def runs_of(root: Path, attack: str, defenses: tuple[str, ...]) -> list[Path]:
    """The run folders under `root` of one attack and detector set, by seed."""
    found = []
    for entry in RunStore(root).entries():
        cfg = entry.doc["config"]
        if cfg["attack"] == attack and tuple(cfg["defenses"]) == defenses:
            found.append((cfg["seed"], entry.path.parent))
    return [path for _, path in sorted(found)]


def arenas_in(root: Path):
    return find_arenas(root, RunIndex(root, persist=False).scan())   # never writes beside the examples


MD_COLUMNS = ("attack", "detector", "detection", "false_accusation", "false_accusation_epochs", "latency", "before_live",
              "as_live", "cost", "asr", "cda")


def cli_report(root: Path, arena, out: Path) -> tuple[dict, dict]:
    """What `sltui arena` writes for the arena, by (attack, detector): cells.csv's values
    and arena.md's cells (each a dict by column; the attack as arena.md labels it)."""
    write_arena_report(sweep_run_docs(root, arena.doc), out, arena.id)
    with (out / "cells.csv").open() as fh:
        values = {(r["attack"], r["detector"]): r for r in csv.DictReader(fh)}
    cells = {}
    for line in (out / "arena.md").read_text().splitlines():
        parts = [c.strip() for c in line.strip().strip("|").split("|")]
        if line.startswith("| ") and len(parts) == len(MD_COLUMNS) and parts[1] in {d for _, d in values}:
            cells[(parts[0].split(" ")[0], parts[1])] = dict(zip(MD_COLUMNS, parts))
    return values, cells


# ---- model --------------------------------------------------------------------------
def test_only_arena_sweeps_are_listed_newest_first(tmp_path):
    copy_arena(BETA07, tmp_path)
    copy_arena(PLAIN, tmp_path)
    shutil.copytree(EXAMPLES / "runs" / "sweeps", tmp_path / "sweeps", dirs_exist_ok=True)  # a `sltui sweep` grid
    (tmp_path / "sweeps" / "sweep-broken.json").write_text("{")
    arenas, unreadable = arenas_in(tmp_path)
    ids = {json.loads(p.read_text())["id"] for src in (BETA07, PLAIN) for p in (src / "sweeps").glob("*.json")}
    assert {a.id for a in arenas} == ids and unreadable == 1
    updated = [a.doc["updated"] for a in arenas]
    assert updated == sorted(updated, reverse=True)
    assert all(a.state == COMPLETE and a.planned == len(a.doc["points"]) for a in arenas)
    assert arenas_in(tmp_path / "nothing-here") == ([], 0)


def test_matrix_is_the_one_sltui_arena_writes(tmp_path):
    [arena] = arenas_in(BETA07)[0]
    values, cells = cli_report(BETA07, arena, tmp_path / "report")
    rows = matrix_view(arena)
    assert [(r["attack"], r["detector"]) for r in rows] == [(a, d) for a in ("none", "hijack")
                                                            for d in ("scrutinizer", "splitout", "splitguard")]
    assert {(r["attack"], r["detector"]) for r in rows} == set(values)
    for row in rows:
        want = values[(row["attack"], row["detector"])]
        for key in ("detection_rate", "false_accusation_rate", "latency_epochs", "cost_cda", "asr", "cda"):
            assert (row[key] is None and want[key] == "") or row[key] == pytest.approx(float(want[key]))
        assert row["runs"] == int(want["runs"]) == row["planned"] and row["complete"]
        shown, written = matrix_cells(row), cells[(row["attack"], row["detector"])]
        assert {k: shown[k] for k in MD_COLUMNS[1:]} == {k: written[k] for k in MD_COLUMNS[1:]}  # as in arena.md
    # The honest server's row holds false accusations, never detections.
    assert all(matrix_cells(r)["detection"] == "honest" for r in rows if r["attack"] == "none")


def test_a_partial_arena_shows_what_there_is_and_marks_the_rest(tmp_path):
    root = copy_arena(BETA07, tmp_path / "runs")
    for path in runs_of(root, "hijack", ("splitguard",)):
        shutil.rmtree(path)                                     # a cell without any run
    shutil.rmtree(runs_of(root, "hijack", ("scrutinizer", "splitout"))[0])
    running = runs_of(root, "none", ("splitguard",))[0] / "run.json"
    doc = json.loads(running.read_text())
    doc.update(status="running", pid=os.getpid(), host=socket.gethostname())
    running.write_text(json.dumps(doc))
    [arena] = arenas_in(root)[0]
    assert arena.state == RUNNING and progress(arena) == "4 of 8 runs done, 1 running, 3 not started"
    rows = {(r["attack"], r["detector"]): r for r in matrix_view(arena)}
    assert len(rows) == 6                                        # every planned cell, runs or not
    empty = rows[("hijack", "splitguard")]
    assert empty["runs"] == 0 and not empty["complete"] and empty.get("detection_rate") is None
    assert matrix_cells(empty)["runs"] == "0/2" and matrix_cells(empty)["cda"] == "-"
    assert matrix_cells(rows[("hijack", "scrutinizer")])["runs"] == "1/2"
    assert matrix_cells(rows[("none", "scrutinizer")])["runs"] == "2"
    doc["status"] = "failed"
    running.write_text(json.dumps(doc))
    [arena] = arenas_in(root)[0]
    assert arena.state == INCOMPLETE and "1 stopped" in progress(arena)


def test_synthetic_arena_without_runs_and_a_plain_sweep_beside_it(tmp_path):
    sweep, points = arena_sweep("none,surrogate,autoencoder,hijack,client", ["splitguard", "scrutinizer", "splitout"],
                                "1,2,3", {"dataset": "synthetic", "epochs": 5, "clients": 3})
    SweepFile(tmp_path, sweep, points).save()
    plain = make_sweep({"attacks": "none,surrogate", "seeds": "1"}, {"dataset": "synthetic"})
    SweepFile(tmp_path, plain, expand(plain)).save()
    [arena] = arenas_in(tmp_path)[0]
    assert arena.id == sweep.sweep_id() and arena.state == INCOMPLETE
    assert progress(arena) == f"0 of {len(points)} runs done, {len(points)} not started"
    rows = matrix_view(arena)
    assert [(r["attack"], r["detector"]) for r in rows][:3] == [("none", "scrutinizer"), ("none", "splitout"),
                                                                ("none", "splitguard")]
    assert len(rows) == 5 * 3 and all(r["planned"] == 3 and r["runs"] == 0 for r in rows)
    assert setting(arena).startswith("synthetic ")
    # Five attacks by three detectors: which cell and both verdicts fit 80 columns (less the
    # scrollbar); the rest as width allows, all of it at 120.
    cells = [matrix_cells(r) for r in rows]
    assert [c.key for c in table_columns(MATRIX_VIEW_COLUMNS, cells, 78)][:5] == [
        "attack", "detector", "runs", "detection", "false_accusation"]
    assert table_columns(MATRIX_VIEW_COLUMNS, cells, 118) == list(MATRIX_VIEW_COLUMNS)
    assert [c.key for c in table_columns(LIST_COLUMNS, [list_cells(arena)], 78)][:3] == ["id", "state", "runs"]


def test_setting_names_the_fields_the_command_gave():
    [arena] = arenas_in(PLAIN)[0]
    text = setting(arena)
    assert text.startswith("mnist lenet") and "hijack_beta=0.0" in text and "hijack_critic=plain" in text
    assert "data_root" not in text and "save_weights" not in text            # they change no number


# ---- screen ---------------------------------------------------------------------------
def matrix_cell(app, row: str, column: str) -> str:
    return str(app.screen.query_one("#arena-matrix", DataTable).get_cell(row, column))


async def open_arena_view(app, pilot, rows: int) -> None:
    """From the browser, `a`, as a user does; returns once the matrix shows `rows` rows."""
    await wait_for(pilot, lambda: isinstance(app.screen, BrowserScreen))
    await pilot.press("a")
    await wait_for(pilot, lambda: isinstance(app.screen, ArenaScreen)
                   and app.screen.query_one("#arena-matrix", DataTable).row_count == rows)


async def test_arena_view_at_80x24_shows_the_clis_matrix(tmp_path):
    root = copy_arena(BETA07, tmp_path / "runs")
    [arena] = arenas_in(root)[0]
    _, expected = cli_report(root, arena, tmp_path / "report")
    app = make_app(root)
    async with app.run_test(size=(80, 24)) as pilot:
        await open_arena_view(app, pilot, rows=6)
        screen = app.screen
        assert not screen.query_one("#arena-empty").display
        assert screen.query_one("#arena-list", DataTable).row_count == 1
        table = screen.query_one("#arena-matrix", DataTable)
        assert sum(c.get_render_width(table) for c in table.columns.values()) <= 80 - 2
        shown = [c.key for c in table.columns.values()]
        assert {"attack", "detector", "runs", "detection", "false_accusation"} <= {str(k.value) for k in shown}
        for (attack, detector), cells in expected.items():
            for key in ("detection", "false_accusation"):
                assert matrix_cell(app, f"{attack}//{detector}", key) == cells[key]
        assert "8 of 8 runs done" in str(screen.query_one("#arena-detail", Static).render())
        assert app.check_action("arena", ()) is False              # not offered on its own screen
        assert "Arena" in [c.title for c in app.get_system_commands(screen)]
        await pilot.press("escape")
        assert isinstance(app.screen, BrowserScreen) and app.check_action("arena", ()) is True


async def test_f_swaps_the_matrix_for_the_clis_frontier_and_back(tmp_path):
    root = copy_arena(BETA07, tmp_path / "runs")
    [arena] = arenas_in(root)[0]
    cli_report(root, arena, tmp_path / "report")
    with (tmp_path / "report" / "frontier.csv").open() as fh:
        frontier = {(r["attack"], r["detector"]): r for r in csv.DictReader(fh)}
    sentences = [line[2:] for line in (tmp_path / "report" / "arena.md").read_text().split("## The attacker's frontier")[1]
                 .splitlines() if line.startswith("- ")]
    assert frontier and sentences
    app = make_app(root)
    async with app.run_test(size=(80, 24)) as pilot:
        await open_arena_view(app, pilot, rows=6)
        await pilot.press("f")
        table = app.screen.query_one("#arena-matrix", DataTable)
        await wait_for(pilot, lambda: table.row_count == len(frontier))
        assert {"attack", "detector", "detection", "works"} <= {str(c.key.value) for c in table.columns.values()}
        assert sum(c.get_render_width(table) for c in table.columns.values()) <= 80 - 2
        # The stealthiest working setting per detector is the one arena.md names.
        named = {(line.split(": ")[1].split(",")[0], line.split(", ")[1].split(":")[0]) for line in sentences}
        for (attack, detector), row in frontier.items():
            cell = matrix_cell(app, f"{attack}//{detector}", "detection")
            assert cell.startswith(f"{row['detected']}/{row['malicious_runs']} (")
            works = "stealthiest" if (attack, detector) in named else "yes" if row["qualifies"] == "True" else "no"
            assert matrix_cell(app, f"{attack}//{detector}", "works") == works
        assert any(matrix_cell(app, f"{a}//{d}", "works") == "stealthiest" for a, d in frontier)
        legend = str(app.screen.query_one("#arena-legend", Static).render())
        assert "stealthiest:" in legend
        assert "frontier" in str(app.screen.query_one("#arena-detail", Static).render())
        await pilot.press("f")
        await wait_for(pilot, lambda: table.row_count == 6)
        assert "detected: k/n" in str(app.screen.query_one("#arena-legend", Static).render())


async def test_arena_view_follows_the_choice_and_the_runs_as_they_finish(tmp_path):
    root = copy_arena(BETA07, tmp_path / "runs")
    copy_arena(PLAIN, root)
    missing = runs_of(root, "hijack", ("splitguard",))[0]
    kept = tmp_path / "kept"
    shutil.move(missing, kept)
    app = make_app(root)
    async with app.run_test(size=(80, 24)) as pilot:
        await pilot.press("a")
        await wait_for(pilot, lambda: isinstance(app.screen, ArenaScreen)
                       and app.screen.query_one("#arena-list", DataTable).row_count == 2)
        screen = app.screen
        newest, older = screen.arenas
        assert screen.chosen == newest.id and older.state == INCOMPLETE
        await pilot.press("down")
        await wait_for(pilot, lambda: screen.chosen == older.id)
        await wait_for(pilot, lambda: matrix_cell(app, "hijack//splitguard", "runs") == "1/2")
        assert "7 of 8 runs done, 1 not started" in str(screen.query_one("#arena-detail", Static).render())
        shutil.move(kept, missing)                                   # the run finishes
        await wait_for(pilot, lambda: matrix_cell(app, "hijack//splitguard", "runs") == "2")
        assert screen.chosen == older.id


async def test_arena_view_without_arenas_says_how_to_start_one(tmp_path):
    app = make_app(tmp_path)
    async with app.run_test(size=(80, 24)) as pilot:
        await pilot.press("a")
        await wait_for(pilot, lambda: isinstance(app.screen, ArenaScreen))
        screen = app.screen
        empty = screen.query_one("#arena-empty", Static)
        assert empty.display and not screen.query_one("#arena-matrix").display
        text = str(empty.render())
        assert "No arena sweeps" in text and "sltui arena" in text and str(tmp_path) in text
        copy_arena(BETA07, tmp_path)
        await pilot.press("r")
        await wait_for(pilot, lambda: screen.query_one("#arena-matrix", DataTable).row_count == 6)
        assert not empty.display
